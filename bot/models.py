"""The domain model every stage shares: a normalized post, its media, and what a re-check found.

Watchers produce these, the store persists them, the pipeline and the deletion tracker consume them.
Nothing here knows about a platform's wire format or about storage, so any stage can be tested alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit, urlunsplit


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC (the only kind of datetime the project stores)."""
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    """Return ``value`` in UTC; a naive datetime is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def iso(value: datetime | None) -> str | None:
    """UTC ISO 8601 with a ``Z`` suffix, the format of every exported and stored time."""
    if value is None:
        return None
    return as_utc(value).isoformat().replace("+00:00", "Z")


def parse_iso(value: str | None) -> datetime | None:
    """Inverse of :func:`iso`; accepts ``Z`` or an explicit offset."""
    if value is None or value == "":
        return None
    return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))

def human_duration(seconds: float | None) -> str:
    """``3d 4h``, ``2h 14m``, ``5m 3s``, ``45s`` (how long a post stood, for people; "—" when unknown)."""
    if seconds is None:
        return "—"
    s = int(round(seconds))
    sign = "-" if s < 0 else ""
    s = abs(s)
    d, rem = divmod(s, 86400)
    h, rem = divmod(rem, 3600)
    m, sec = divmod(rem, 60)
    if d:
        return f"{sign}{d}d {h}h"
    if h:
        return f"{sign}{h}h {m}m"
    if m:
        return f"{sign}{m}m {sec}s"
    return f"{sign}{sec}s"


def canonical_json(value: Any) -> bytes:
    """Stable JSON bytes (sorted keys, no spaces): the form that is hashed and archived."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


class MediaKind(StrEnum):
    """What an attachment is, as the platform reported it: a video or GIF also has its preview still
    fetched, besides the keyframes of the file itself."""

    PHOTO = "photo"
    VIDEO = "video"
    GIF = "gif"


@dataclass(frozen=True)
class Media:
    """One attachment of a post.

    ``url`` is what gets downloaded: the photo itself, or for videos and GIFs the best video file.
    ``preview_url`` is a still image for videos and GIFs. ``media_id`` is the platform's stable identifier
    where it has one; CDN URLs are often signed and change between fetches, so edit detection prefers it.
    """

    url: str
    kind: MediaKind = MediaKind.PHOTO
    alt_text: str | None = None
    preview_url: str | None = None
    media_id: str | None = None

    def identity(self) -> str:
        """What makes two observations of an attachment "the same" for edit detection."""
        if self.media_id:
            return f"id:{self.media_id}"
        parts = urlsplit(self.url)
        return "url:" + urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "kind": self.kind.value,
            "alt_text": self.alt_text,
            "preview_url": self.preview_url,
            "media_id": self.media_id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Media:
        return cls(
            url=data["url"],
            kind=MediaKind(data.get("kind", "photo")),
            alt_text=data.get("alt_text"),
            preview_url=data.get("preview_url"),
            media_id=data.get("media_id"),
        )


@dataclass(frozen=True)
class Post:
    """A post as one platform showed it at one moment, normalized.

    ``raw`` is the platform's payload for this post, kept verbatim (JSON-compatible) as evidence.
    ``account`` is the configured account name the post was found under (a handle, page name or feed URL).
    """

    platform: str
    account: str
    post_id: str
    url: str
    text: str
    created_at: datetime
    media: tuple[Media, ...] = ()
    raw: Any = None
    author_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "created_at", as_utc(self.created_at))
        object.__setattr__(self, "media", tuple(self.media))

    @property
    def key(self) -> str:
        """Globally unique key of the post across platforms."""
        return f"{self.platform}:{self.post_id}"

    def content_fingerprint(self) -> str:
        """Hash of what a reader sees (text and the set of attachments); a change of it is an edit."""
        content = {"text": self.text, "media": sorted(m.identity() for m in self.media)}
        return hashlib.sha256(canonical_json(content)).hexdigest()

    def raw_bytes(self) -> bytes:
        """The raw payload as canonical JSON, exactly as it is archived."""
        return canonical_json(self.raw)

    def raw_sha256(self) -> str:
        return hashlib.sha256(self.raw_bytes()).hexdigest()

    def with_raw(self, raw: Any) -> Post:
        return replace(self, raw=raw)

    def to_dict(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "account": self.account,
            "post_id": self.post_id,
            "url": self.url,
            "text": self.text,
            "created_at": iso(self.created_at),
            "media": [m.to_dict() for m in self.media],
            "raw": self.raw,
            "author_id": self.author_id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Post:
        created = parse_iso(data["created_at"])
        assert created is not None
        return cls(
            platform=data["platform"],
            account=data["account"],
            post_id=str(data["post_id"]),
            url=data["url"],
            text=data.get("text", ""),
            created_at=created,
            media=tuple(Media.from_dict(m) for m in data.get("media", [])),
            raw=data.get("raw"),
            author_id=data.get("author_id"),
        )


class StatusKind(StrEnum):
    """What a platform says about a post when it is looked up again."""

    ALIVE = "alive"
    DELETED = "deleted"
    AUTHOR_SUSPENDED = "author_suspended"
    AUTHOR_PROTECTED = "author_protected"
    AUTHOR_DELETED = "author_deleted"
    WITHHELD = "withheld"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class PostStatus:
    """The answer of :meth:`watchers.base.Watcher.lookup` for one post.

    ``unknown`` covers every failure (rate limit, timeout, 5xx, malformed answer): it never counts as a
    deletion. ``post`` is set for ``alive`` when the platform showed the current version (for edit
    detection); an ``alive`` answer without a post means "still there, content not observed" (an RSS item
    whose link still answers after it left the feed): it proves the post stands but says nothing of edits.
    """

    kind: StatusKind
    post: Post | None = None
    error: str | None = None

    @classmethod
    def alive(cls, post: Post | None) -> PostStatus:
        return cls(StatusKind.ALIVE, post=post)

    @classmethod
    def deleted(cls) -> PostStatus:
        return cls(StatusKind.DELETED)

    @classmethod
    def unknown(cls, error: str) -> PostStatus:
        return cls(StatusKind.UNKNOWN, error=error)

    @classmethod
    def of(cls, kind: StatusKind, error: str | None = None) -> PostStatus:
        return cls(kind, error=error)


@dataclass(frozen=True)
class RejectedItem:
    """An item of a platform's answer that could not be normalized. Kept (raw) as evidence, never dropped."""

    platform: str
    account: str
    raw: Any
    error: str
    seen_at: datetime = field(default_factory=utcnow)

    def to_dict(self) -> dict[str, Any]:
        return {"platform": self.platform, "account": self.account, "raw": self.raw, "error": self.error,
                "seen_at": iso(self.seen_at)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RejectedItem:
        return cls(d["platform"], d["account"], d.get("raw"), d["error"], parse_iso(d["seen_at"]))  # type: ignore[arg-type]

    def digest(self) -> str:
        """The identity of a rejected item: a malformed item a platform keeps serving (no id or date to place
        it before the cursor) is the same evidence every poll, and is stored once."""
        identity = {"platform": self.platform, "account": self.account, "raw": self.raw, "error": self.error}
        return hashlib.sha256(canonical_json(identity)).hexdigest()
