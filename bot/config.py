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
from typing import Any, Literal

import yaml
from pydantic import Field, SecretStr, ValidationError, create_model, field_validator, model_validator

from bot.config_base import (  # noqa: F401 - re-exported: the value types and shared sections live there
    ByteSize,
    ConfigModel,
    Duration,
    MediaConfig,
    RecheckConfig,
    WatcherConfig,
    parse_bytesize,
    parse_duration,
    secret_fields,
)
from bot.errors import ConfigError
from bot.redact import register_secret
from watchers import registry

DEFAULT_DATA_DIR = "./afterimage-data"
CONFIG_ENV = "AFTERIMAGE_CONFIG"
DATA_ENV = "AFTERIMAGE_DATA"

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_WHOLE_ENV_REF = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$")

# ----------------------------------------------------------------------------- sections


def _watchers_model() -> type[ConfigModel]:
    """The ``watchers:`` section: one optional key per registered platform, typed by that watcher's config
    model (see :mod:`watchers`)."""
    fields: dict[str, Any] = {name: (cls.config_model | None, None) for name, cls in registry().items()}
    return create_model("WatchersConfig", __base__=_WatchersBase, **fields)


class _WatchersBase(ConfigModel):
    def enabled(self) -> dict[str, WatcherConfig]:
        """Configured and enabled watcher sections by platform name."""
        out: dict[str, WatcherConfig] = {}
        for name in type(self).model_fields:
            section = getattr(self, name)
            if section is not None and section.enabled:
                out[name] = section
        return out


WatchersConfig = _watchers_model()


class ThresholdOverride(ConfigModel):
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


class MatchingConfig(ConfigModel):
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


class DigestConfig(ConfigModel):
    enabled: bool = False
    #: local time of day (HH:MM, UTC) the digest is sent
    at: str = "08:00"

    @field_validator("at")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not re.match(r"^([01]\d|2[0-3]):[0-5]\d$", v):
            raise ValueError(f'"{v}" is not a time of day (use HH:MM, e.g. 08:00)')
        return v


class AlertsConfig(ConfigModel):
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


class PipelineConfig(ConfigModel):
    """How a daemon runs the work: its worker threads, and the thread pools of its scheduled jobs."""

    #: worker threads processing posts (archive, hash, match); default: one per core
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=256)
    #: how the workers run: ``threads``; ``processes`` (threads, with stills decoded and hashed in as many
    #: processes: the GIL never serialises hashing); ``forked`` (each worker a process forked from the daemon
    #: once its matching index is loaded, running whole posts: every core busy, the index shared; Linux)
    workers_mode: Literal["threads", "processes", "forked"] = "threads"
    #: ``forked`` only: threads in each worker process, so that one's waits (the store, the disk, the media
    #: host) overlap another's CPU work
    worker_threads: int = Field(default=1, ge=1, le=16)
    #: a post claimed by a daemon that died is taken over by another after this long (same on every daemon)
    lease: Duration = Field(default=30.0, ge=1.0)
    #: a post whose processing raises this many times in a row, or kills the daemon processing it (its
    #: claim taken over) this many times, is parked as failed (``afterimage posts failed``, ``afterimage
    #: posts retry``, the console's Parked work page) instead of being retried forever
    max_attempts: int = Field(default=5, ge=1, le=1000)
    #: threads polling accounts (waiting on the network, not the CPU)
    poll_threads: int = Field(default=8, ge=1, le=256)


class HealthConfig(ConfigModel):
    #: host:port for /healthz and /metrics; unset: no HTTP endpoint
    listen: str | None = None

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^[\w.\-\[\]:]+:\d{1,5}$", v):
            raise ValueError(f'"{v}" is not host:port (e.g. 127.0.0.1:9108)')
        return v


class WebConfig(ConfigModel):
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


class EvidenceConfig(ConfigModel):
    """Trusted timestamps (RFC 3161) of what is archived and logged, and the published report."""

    #: RFC 3161 time-stamping authorities, asked in order; none: nothing is timestamped (the chain still is kept)
    tsa_urls: list[str] = Field(default_factory=list)
    #: PEM file with the CA certificates the TSAs' tokens must chain to; unset: the system's CA bundle
    tsa_ca_file: Path | None = None
    #: how often new hashes are timestamped (one request per batch)
    every: Duration = Field(default=60.0, ge=5.0)
    #: where chain, tokens and queue live; unset: an ``evidence`` folder beside the archive
    dir: Path | None = None
    #: shown on the HTML report
    organisation: str = ""
    report_title: str = "Deletion log"

    @field_validator("tsa_urls")
    @classmethod
    def _http_urls(cls, v: list[str]) -> list[str]:
        for url in v:
            if not re.match(r"^https?://[^/\s]+", url):
                raise ValueError(f'"{url}" is not an http(s) URL of a time-stamping authority')
        return v


class Config(ConfigModel):
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
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig)

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

    @property
    def evidence_path(self) -> Path:
        """Chain, timestamp tokens and their queue: ``evidence.dir``, or ``evidence`` beside the archive."""
        return self.evidence.dir if self.evidence.dir is not None else self.archive_path.parent / "evidence"


# ----------------------------------------------------------------------------- loading


class _LineLoader(yaml.SafeLoader):
    """A YAML loader that remembers the line of every mapping key and sequence item, by key path."""


def _compose_lines(
    node: yaml.Node, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int], duplicates: list[str] | None = None
) -> None:
    """Fill ``lines`` (key path -> line) and, when given, ``duplicates`` with a problem per key written twice
    in one mapping (YAML keeps the last silently: half of a section would be ignored without a word)."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        first: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in first and duplicates is not None:
                dotted = ".".join(str(p) for p in path + (key,))
                duplicates.append(f"line {line}: {dotted}: duplicate key (already set at line {first[key]}; keep one)")
            first.setdefault(key, line)
            _compose_lines(value_node, path + (key,), lines, duplicates)
            lines[path + (key,)] = line  # the key's line, not its value's
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _compose_lines(item, path + (i,), lines, duplicates)


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
        watcher = registry().get(name)
        if watcher is None or not isinstance(section, dict):
            continue
        for key in secret_fields(watcher.config_model):
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
    problems: list[str] = []
    if node is not None:
        _compose_lines(node, (), lines, problems)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: the top level must be a mapping of keys (data_dir:, watchers:, ...)"])
    problems += _literal_secret_problems(data, lines)
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
        for name in secret_fields(type(section)):
            secret = getattr(section, name)
            if secret is not None:
                register_secret(secret.get_secret_value())
    for target in config.alerts.targets:
        register_secret(target.get_secret_value())
    from urllib.parse import urlsplit

    password = urlsplit(config.store_url).password
    register_secret(password)


def locate_problems(text: str, problems: list[str], source: str) -> list[str]:
    """``problems`` found after loading (``"alerts.targets.0: ..."``, e.g. by apprise) with the file's line of
    their key path, in the form :func:`parse_config` reports."""
    lines: dict[tuple[Any, ...], int] = {}
    try:
        node = yaml.compose(text, Loader=_LineLoader)
    except yaml.YAMLError:
        node = None
    if node is not None:
        _compose_lines(node, (), lines)
    located = []
    for problem in problems:
        dotted, sep, message = problem.partition(": ")
        if not sep or " " in dotted:
            located.append(f"{source}: {problem}")
            continue
        path = tuple(int(p) if p.isdigit() else p for p in dotted.split("."))
        located.append(f"{source}: {_problem(path, lines, message)}")
    return located


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
