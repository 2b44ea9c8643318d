"""Typed errors shared across stages, so callers can react to a kind of failure, not to a message."""

from __future__ import annotations

from datetime import datetime


class AfterimageError(Exception):
    """Base of every error afterimage raises on purpose."""


class ConfigError(AfterimageError):
    """The configuration is invalid. ``problems`` holds one human-readable line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class StoreError(AfterimageError):
    """The state store could not be opened or answered unexpectedly."""


class ArchiveError(AfterimageError):
    """The evidence archive could not write or verify a file (disk full, hash mismatch, ...)."""


class MediaError(AfterimageError):
    """A media item could not be fetched or decoded. ``reason`` is a short machine-readable slug."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


class PlatformError(AfterimageError):
    """A platform answered with something a watcher could not use (5xx, malformed JSON, auth failure)."""


class RateLimited(PlatformError):
    """The platform asked us to slow down. ``reset_at`` is when it allows requests again, if it said."""

    def __init__(self, platform: str, reset_at: datetime | None, message: str = ""):
        self.platform = platform
        self.reset_at = reset_at
        super().__init__(message or f"{platform}: rate limited until {reset_at.isoformat() if reset_at else 'unknown'}")
