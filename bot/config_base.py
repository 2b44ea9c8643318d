"""Configuration value types and the section every watcher's config extends.

Kept apart from :mod:`bot.config` because each watcher module declares its own config model (a subclass of
:class:`WatcherConfig`) and :mod:`bot.config` assembles the ``watchers:`` section from those modules: the
shared base must be importable by both without a cycle.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationInfo, field_validator

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


class ConfigModel(BaseModel):
    """A config section: unknown keys are errors (typos), values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def secret_fields(model: type[BaseModel]) -> set[str]:
    """Names of the fields of ``model`` that hold secrets (written as ``${ENV}`` references)."""
    return {name for name, f in model.model_fields.items() if f.annotation in (SecretStr, SecretStr | None)}


def base_url(value: str, example: str = "https://api.example.org") -> str:
    """``value`` checked to be scheme and host (and port) only, without a trailing slash.

    A path is refused rather than kept: every watcher appends the platform's own paths (``/2/tweets``), so
    ``https://api.twitter.com/2`` would silently produce ``/2/2/tweets``."""
    text = value.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or " " in text:
        raise ValueError(f'"{value}" is not a URL with scheme and host (e.g. {example})')
    if parts.path.strip("/") or parts.query or parts.fragment:
        root = f"{parts.scheme}://{parts.netloc}"
        raise ValueError(f'"{value}" has a path; give scheme and host only ({root}): the watcher adds the API paths')
    return text.rstrip("/")


def api_root(example: str) -> AfterValidator:
    """A config field's check that it holds an API's scheme and host only (:func:`base_url`), ``example``
    shown when it does not: ``Annotated[str, api_root("https://plc.directory")]``."""
    return AfterValidator(lambda value: base_url(value, example))


class MediaConfig(ConfigModel):
    #: hosts (or host:port) media may be fetched from even over http or on a private address
    trusted_hosts: list[str] = Field(default_factory=list)
    max_bytes: ByteSize = 200 * 1000**2
    timeout: Duration = 30.0
    retries: int = Field(default=3, ge=0, le=10)
    #: keyframes sampled from a posted video
    video_keyframes: int = Field(default=8, ge=1, le=100)


class RecheckConfig(ConfigModel):
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
    #: look-up requests per UTC day on this platform (paid APIs bill per read); unset: only the hourly limit
    budget_per_day: int | None = Field(default=None, ge=1)
    #: a post confirmed deleted is looked up again only this often, for a restore
    deleted_every: Duration = 7 * 86400.0


class WatcherConfig(ConfigModel):
    """Settings every platform watcher shares; each watcher module subclasses it with its own keys."""

    #: shortest ``interval`` allowed against the platform's public service (politeness and rate limits);
    #: a watcher pointed at another ``api_base`` (a proxy, a mirror, a test server) may poll down to
    #: :attr:`local_min_interval`
    min_interval: ClassVar[float] = 60.0
    local_min_interval: ClassVar[float] = 1.0

    enabled: bool = True
    accounts: list[str] = Field(default_factory=list)
    #: scheme and host of the API (for proxies and self-hosted instances); the watcher appends the paths.
    #: Declared before ``interval``, whose floor depends on it.
    api_base: str = ""
    interval: Duration = 300.0
    #: random delay added to each poll so several accounts do not hit the API in lockstep
    jitter: Duration = 15.0
    timeout: Duration = 20.0
    #: how far back the first poll of a new account reads its history (older posts are not stored or
    #: processed, so adding a busy account does not flood the pipeline); unset: whatever the API returns
    backfill: Duration | None = None
    recheck: RecheckConfig = Field(default_factory=RecheckConfig)

    @field_validator("api_base")
    @classmethod
    def _api_base_is_url(cls, v: str) -> str:
        return base_url(v) if v else v

    @field_validator("timeout")
    @classmethod
    def _positive_timeout(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("must be more than 0s (a request needs time to answer)")
        return v

    @field_validator("accounts")
    @classmethod
    def _some_accounts(cls, v: list[str], info: ValidationInfo) -> list[str]:
        if info.data.get("enabled", True) and not v:
            raise ValueError("an enabled watcher needs at least one account (or set enabled: false)")
        return v

    @field_validator("interval")
    @classmethod
    def _polite_interval(cls, v: float, info: ValidationInfo) -> float:
        floor = cls.interval_floor(info.data.get("api_base", ""))
        if v < floor:
            service = "for this platform's public service" if floor == cls.min_interval else "for any api_base"
            raise ValueError(f"{v:g}s is below {floor:g}s, the shortest interval allowed {service}")
        return v

    @classmethod
    def interval_floor(cls, api_base: str) -> float:
        """The shortest interval allowed with this ``api_base``: the platform's floor for its public service
        (the default ``api_base``, or always when the platform has no default), else :attr:`local_min_interval`."""
        default = cls.model_fields["api_base"].default
        return cls.min_interval if not default or api_base in ("", default) else cls.local_min_interval
