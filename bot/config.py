"""Configuration: one YAML file validated by pydantic, with defaults that work with no file at all.

- Secrets are written as ``${ENV_NAME}`` references and resolved at load; a missing variable is an error
  naming it. Secret fields refuse literal values, and every resolved value is registered for redaction.
- Every problem is reported with its key path and line, e.g.
  ``line 7: watchers.x.interval: "5 minutes" is not a duration (use 30s, 5m, 1h)``.
- Where things live: ``data_dir`` from the file, else ``$AFTERIMAGE_DATA``, else ``./afterimage-data``;
  the store defaults to ``sqlite:///<data>/state.db`` and the archive to ``<data>/archive/``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.errors import ConfigError
from bot.redact import register_secret

DEFAULT_DATA_DIR = "./afterimage-data"
CONFIG_ENV = "AFTERIMAGE_CONFIG"
DATA_ENV = "AFTERIMAGE_DATA"

# ----------------------------------------------------------------------------- value types

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> float:
    """``30s``, ``5m``, ``1h30m``, ``2d`` or a number of seconds -> seconds (float)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration (use 30s, 5m, 1h)")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"{value!r} is not a duration: it is negative")
        return float(value)
    text = str(value).strip().lower().replace(" ", "")
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if not text or pos != len(text):
        raise ValueError(f'"{value}" is not a duration (use 30s, 5m, 1h)')
    return total


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|kib|mib|gib)?$")
_SIZE_UNITS = {None: 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1024, "mib": 1024**2, "gib": 1024**3}


def parse_bytesize(value: Any) -> int:
    """``50MB``, ``512KiB`` or a number of bytes -> bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _SIZE.match(str(value).strip().lower())
    if not m:
        raise ValueError(f'"{value}" is not a size (use 500KB, 50MB, 1GiB)')
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])


Duration = Annotated[float, BeforeValidator(parse_duration)]
ByteSize = Annotated[int, BeforeValidator(parse_bytesize)]

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_WHOLE_ENV_REF = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _secret_fields(model: type[BaseModel]) -> set[str]:
    return {name for name, f in model.model_fields.items() if f.annotation in (SecretStr, SecretStr | None)}


# ----------------------------------------------------------------------------- sections


class RecheckConfig(_Model):
    """When posts are looked up again after posting (a decaying schedule, then daily until the horizon)."""

    schedule: list[Duration] = Field(
        default_factory=lambda: [parse_duration(s) for s in ("2m", "5m", "15m", "30m", "1h", "2h", "6h", "12h", "24h")]
    )
    then_every: Duration = 86400.0
    horizon: Duration = 30 * 86400.0
    #: a deletion is confirmed by two "deleted" answers at least this far apart
    confirm_after: Duration = 60.0
    #: look-up requests per hour the re-checker may spend on this platform (young posts first when short)
    budget_per_hour: int = Field(default=600, ge=1)


class WatcherConfig(_Model):
    """Settings every platform watcher shares."""

    enabled: bool = True
    accounts: list[str] = Field(default_factory=list)
    interval: Duration = 300.0
    #: random delay added to each poll so several accounts do not hit the API in lockstep
    jitter: Duration = 15.0
    timeout: Duration = 20.0
    #: scheme and host of the API (for proxies and self-hosted instances); the watcher appends the paths
    api_base: str = ""
    recheck: RecheckConfig = Field(default_factory=RecheckConfig)

    @field_validator("api_base")
    @classmethod
    def _api_base_is_url(cls, v: str) -> str:
        if v and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f'"{v}" is not a URL with scheme and host (e.g. https://api.example.org)')
        return v.rstrip("/")


class XConfig(WatcherConfig):
    bearer_token: SecretStr
    api_base: str = "https://api.twitter.com"


class FacebookConfig(WatcherConfig):
    access_token: SecretStr
    api_base: str = "https://graph.facebook.com"
    version: str = "v24.0"


class MastodonConfig(WatcherConfig):
    access_token: SecretStr | None = None
    api_base: str = "https://mastodon.social"


class BlueskyConfig(WatcherConfig):
    api_base: str = "https://public.api.bsky.app"
    #: the PLC directory that resolves ``did:plc`` authors to their PDS (where a post missing from the AppView
    #: is confirmed deleted or found hidden by moderation)
    plc_directory: str = "https://plc.directory"
    #: hosts (or host:port) the DID documents and PDS endpoints may point at even over http or on a private
    #: address (a self-hosted PDS on the intranet, tests); every other one must be https on public addresses
    trusted_hosts: list[str] = Field(default_factory=list)

    @field_validator("plc_directory")
    @classmethod
    def _plc_is_url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f'"{v}" is not a URL with scheme and host (e.g. https://plc.directory)')
        return v.rstrip("/")


class RssConfig(WatcherConfig):
    """``accounts`` are feed URLs."""

    user_agent: str = "afterimage (+https://github.com/afterimage)"
    #: hosts (or host:port) item links and feed redirects may point at even on a private address (intranet
    #: press sites, tests); every other link must resolve to public addresses only
    trusted_hosts: list[str] = Field(default_factory=list)


class WatchersConfig(_Model):
    x: XConfig | None = None
    facebook: FacebookConfig | None = None
    mastodon: MastodonConfig | None = None
    bluesky: BlueskyConfig | None = None
    rss: RssConfig | None = None

    def enabled(self) -> dict[str, WatcherConfig]:
        """Configured and enabled watcher sections by platform name."""
        out: dict[str, WatcherConfig] = {}
        for name in type(self).model_fields:
            section = getattr(self, name)
            if section is not None and section.enabled:
                out[name] = section
        return out


class MediaConfig(_Model):
    #: hosts (or host:port) media may be fetched from even over http or on a private address
    trusted_hosts: list[str] = Field(default_factory=list)
    max_bytes: ByteSize = 200 * 1000**2
    timeout: Duration = 30.0
    retries: int = Field(default=3, ge=0, le=10)
    #: keyframes sampled from a posted video
    video_keyframes: int = Field(default=8, ge=1, le=100)


class ThresholdOverride(_Model):
    """A stricter bar for some known media: one item (``item``: its id, or a video's group) or every entry
    whose ``source`` starts with ``source`` (an imported list). Unset thresholds keep the global ones; a
    looser value than the global one has no effect (the matcher already applied the global bar)."""

    item: str | None = None
    source: str | None = None
    pdq_match: int | None = Field(default=None, ge=0, le=256)
    pdq_suggest: int | None = Field(default=None, ge=0, le=256)
    min_inliers_match: int | None = Field(default=None, ge=4)
    min_inliers_suggest: int | None = Field(default=None, ge=4)

    @model_validator(mode="after")
    def _one_selector(self) -> ThresholdOverride:
        if (self.item is None) == (self.source is None):
            raise ValueError("give exactly one of item (a known item id) or source (a source prefix)")
        return self


class MatchingConfig(_Model):
    """Thresholds of the two tiers: ``match`` raises an alert, ``suggest`` is shown for review."""

    pdq_match: int = Field(default=31, ge=0, le=256)
    pdq_suggest: int = Field(default=63, ge=0, le=256)
    min_quality: int = Field(default=50, ge=0, le=100)
    min_inliers_match: int = Field(default=50, ge=4)
    min_inliers_suggest: int = Field(default=24, ge=4)
    #: descriptor-index votes that make a stored image a candidate for local-feature verification
    min_votes: int = Field(default=3, ge=1)
    #: candidates verified with local features per checked image (bounds the cost of a check)
    max_candidates: int = Field(default=8, ge=0, le=100)
    #: stricter thresholds for some known items or imported lists (first rule that applies wins)
    thresholds: list[ThresholdOverride] = Field(default_factory=list)


class DigestConfig(_Model):
    enabled: bool = False
    #: local time of day (HH:MM, UTC) the digest is sent
    at: str = "08:00"

    @field_validator("at")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not re.match(r"^([01]\d|2[0-3]):[0-5]\d$", v):
            raise ValueError(f'"{v}" is not a time of day (use HH:MM, e.g. 08:00)')
        return v


class AlertsConfig(_Model):
    #: apprise URLs (slack://, mmosts://, workflows://, discord://, matrixs://, tgram://, json://...)
    targets: list[SecretStr] = Field(default_factory=list)
    #: also print alerts to the log (local runs)
    console: bool = True
    digest: DigestConfig = Field(default_factory=DigestConfig)
    max_backoff: Duration = 900.0
    #: failed attempts in a row after which the head alert is tested against the next one: if a target accepts
    #: the next alert, the head is parked (a target refuses it for good) instead of holding up the queue
    park_after: int = Field(default=5, ge=1, le=100)
    #: also page the chat for "suggest"-tier hits (by default they only wait in the web console's review queue)
    suggest_to_chat: bool = False


class HealthConfig(_Model):
    #: host:port for /healthz and /metrics; unset: no HTTP endpoint
    listen: str | None = None

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^[\w.\-\[\]:]+:\d{1,5}$", v):
            raise ValueError(f'"{v}" is not host:port (e.g. 127.0.0.1:9108)')
        return v


class WebConfig(_Model):
    """The web console (``afterimage web``)."""

    #: host:port the console listens on; keep it on loopback behind a TLS reverse proxy
    listen: str = "127.0.0.1:8080"
    #: the console's public URL (https://review.example.org): chat alerts then link to their case page
    base_url: str | None = None
    #: signs session cookies; unset: a random key kept in <data_dir>/web-secret (0600)
    secret_key: SecretStr | None = None

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        return HealthConfig._host_port(v)  # type: ignore[return-value]

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f'"{v}" is not an http(s) URL (e.g. https://review.example.org)')
        return v.rstrip("/") if v else v


class Config(_Model):
    data_dir: Path = Field(default_factory=lambda: Path(os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR))
    #: sqlite:///path/state.db (default in data_dir) or redis://[:password@]host:port/db, rediss:// for TLS
    store: SecretStr | None = None
    archive_dir: Path | None = None
    log_level: Literal["debug", "info", "warning", "error", "DEBUG", "INFO", "WARNING", "ERROR"] = "info"
    watchers: WatchersConfig = Field(default_factory=WatchersConfig)
    media: MediaConfig = Field(default_factory=MediaConfig)
    matching: MatchingConfig = Field(default_factory=MatchingConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    web: WebConfig = Field(default_factory=WebConfig)

    @field_validator("store")
    @classmethod
    def _store_scheme(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not re.match(r"^(sqlite:///|rediss?://)", v.get_secret_value()):
            raise ValueError("store must start with sqlite:///, redis:// or rediss://")
        return v

    @property
    def store_url(self) -> str:
        if self.store is not None:
            return self.store.get_secret_value()
        return f"sqlite:///{(self.data_dir / 'state.db').as_posix()}"

    @property
    def archive_path(self) -> Path:
        return self.archive_dir if self.archive_dir is not None else self.data_dir / "archive"


# ----------------------------------------------------------------------------- loading


class _LineLoader(yaml.SafeLoader):
    """A YAML loader that remembers the line of every mapping key and sequence item, by key path."""


def _compose_lines(node: yaml.Node, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            _compose_lines(value_node, path + (key,), lines)
            lines[path + (key,)] = key_node.start_mark.line + 1  # the key's line, not its value's
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _compose_lines(item, path + (i,), lines)


def _disabled_watchers(data: dict[str, Any]) -> set[tuple[str, str]]:
    """Paths of watcher sections with ``enabled: false``: their unset variables are not errors."""
    watchers = data.get("watchers")
    if not isinstance(watchers, dict):
        return set()
    return {("watchers", k) for k, v in watchers.items() if isinstance(v, dict) and v.get("enabled") is False}


def _resolve_env(
    value: Any,
    path: tuple[Any, ...],
    lines: dict[tuple[Any, ...], int],
    problems: list[str],
    environ: dict[str, str],
    lenient: set[tuple[str, str]],
) -> Any:
    """Replace ``${NAME}`` in every string; register resolved values as secrets."""
    if isinstance(value, dict):
        return {k: _resolve_env(v, path + (k,), lines, problems, environ, lenient) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_env(v, path + (i,), lines, problems, environ, lenient) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in environ:
                if path[:2] not in lenient:
                    problems.append(_problem(path, lines, f"environment variable {name} is not set"))
                return "unset"
            register_secret(environ[name])
            return environ[name]

        return _ENV_REF.sub(sub, value)
    return value


def _problem(path: tuple[Any, ...], lines: dict[tuple[Any, ...], int], message: str) -> str:
    dotted = ".".join(str(p) for p in path) or "(top level)"
    probe = path
    while probe and probe not in lines:
        probe = probe[:-1]
    line = lines.get(probe)
    return f"line {line}: {dotted}: {message}" if line else f"{dotted}: {message}"


def _literal_secret_problems(data: Any, lines: dict[tuple[Any, ...], int]) -> list[str]:
    """Secret fields must be ``${ENV}`` references: a token written into the file leaks with the file."""
    problems = []
    watchers = data.get("watchers") if isinstance(data, dict) else None
    if not isinstance(watchers, dict):
        return problems
    for name, section in watchers.items():
        model = WatchersConfig.model_fields.get(name)
        if model is None or not isinstance(section, dict):
            continue
        section_model = [a for a in getattr(model.annotation, "__args__", ()) if isinstance(a, type)][0]
        for key in _secret_fields(section_model):
            raw = section.get(key)
            if isinstance(raw, str) and raw and not _WHOLE_ENV_REF.match(raw.strip()):
                problems.append(
                    _problem(("watchers", name, key), lines, "write secrets as ${ENV_NAME} references, not in the file")
                )
    return problems


def _format_validation_error(err: ValidationError, data: Any, lines: dict[tuple[Any, ...], int]) -> list[str]:
    problems = []
    for e in err.errors():
        loc = tuple(e["loc"])
        # pydantic adds the union member or validator name to loc for some errors; keep only real keys
        loc = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        elif e["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling; config.example.yaml lists every key)"
        elif e["type"] == "missing":
            msg = "is required"
        else:
            shown = e.get("input")
            if not isinstance(shown, (dict, list)):
                msg = f"{msg} (got {shown!r})"
        problems.append(_problem(loc, lines, msg))
    return problems


def parse_config(text: str, environ: dict[str, str] | None = None, source: str = "<config>") -> Config:
    """Validate config text; raises :class:`ConfigError` listing every problem with path and line."""
    environ = dict(os.environ) if environ is None else environ
    try:
        node = yaml.compose(text, Loader=_LineLoader)
        data = yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise ConfigError([f"{source}: {where}not valid YAML: {getattr(e, 'problem', None) or e}"]) from None
    lines: dict[tuple[Any, ...], int] = {}
    if node is not None:
        _compose_lines(node, (), lines)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: the top level must be a mapping of keys (data_dir:, watchers:, ...)"])
    problems = _literal_secret_problems(data, lines)
    data = _resolve_env(data, (), lines, problems, environ, _disabled_watchers(data))
    if "data_dir" not in data and environ.get(DATA_ENV):
        data["data_dir"] = environ[DATA_ENV]
    try:
        config = Config.model_validate(data)
    except ValidationError as e:
        problems.extend(_format_validation_error(e, data, lines))
        config = None
    if problems:
        raise ConfigError([f"{source}: {p}" for p in problems])
    assert config is not None
    _register_config_secrets(config)
    return config


def _register_config_secrets(config: Config) -> None:
    for section in config.watchers.enabled().values():
        for name in _secret_fields(type(section)):
            secret = getattr(section, name)
            if secret is not None:
                register_secret(secret.get_secret_value())
    for target in config.alerts.targets:
        register_secret(target.get_secret_value())
    from urllib.parse import urlsplit

    password = urlsplit(config.store_url).password
    register_secret(password)


def find_config_file(path: str | os.PathLike[str] | None) -> Path | None:
    """The file to use: the one given, else ``$AFTERIMAGE_CONFIG``, else ``./afterimage.yaml`` if present."""
    if path:
        return Path(path)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    default = Path("afterimage.yaml")
    return default if default.exists() else None


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load the config file (see :func:`find_config_file`) or, when there is none, the defaults."""
    file = find_config_file(path)
    if file is None:
        return parse_config("", source="(defaults)")
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([f"{file}: cannot read the config file: {e.strerror or e}"]) from None
    return parse_config(text, source=str(file))
