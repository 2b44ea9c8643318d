"""Records the state store holds besides posts. Plain dataclasses with dict round-trips, so both backends
(SQLite rows, Redis hashes) serialize them the same way (JSON)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Self

from bot.models import Post, as_utc, iso, parse_iso, utcnow


class JsonRecord:
    """The dict round-trip every stored record shares, so both backends write the same JSON: datetimes become
    ISO text; reading back, the fields a record names parse again. ``_TIMES`` must be present,
    ``_OPTIONAL_TIMES`` may be absent or null (None), ``_DICTS`` may be absent or null (an empty dict)."""

    _TIMES: ClassVar[tuple[str, ...]] = ()
    _OPTIONAL_TIMES: ClassVar[tuple[str, ...]] = ()
    _DICTS: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        """The fields by name, datetimes as ISO text. Shallow: dict and list values are the record's own (the
        stores serialize the result at once; ``dataclasses.asdict`` deep-copied every alert payload and
        signal dict, about 1 ms of a post's CPU). A record with nested records converts them itself."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        return cls(**cls._parsed(d))

    @classmethod
    def _parsed(cls, d: dict[str, Any]) -> dict[str, Any]:
        """``d`` with the named fields turned back into datetimes and dicts."""
        return {
            **d,
            **{k: parse_iso(d[k]) for k in cls._TIMES},
            **{k: parse_iso(d.get(k)) for k in cls._OPTIONAL_TIMES},
            **{k: dict(d.get(k) or {}) for k in cls._DICTS},
        }


def _plain(value: Any) -> Any:
    return iso(value) if isinstance(value, datetime) else value


class Change(StrEnum):
    """What saving an observed post did to the store."""

    NEW = "new"
    EDITED = "edited"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class PostChange:
    """What saving ``post`` did (``change``) and the version it is now."""

    post: Post
    change: Change
    version: int


@dataclass(frozen=True)
class PostVersion:
    """One observed version of a post (version 1 is the first one seen)."""

    version: int
    observed_at: datetime
    post: Post
    fingerprint: str
    raw_sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "observed_at": iso(self.observed_at),
            "fingerprint": self.fingerprint,
            "raw_sha256": self.raw_sha256,
            "post": self.post.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PostVersion:
        observed = parse_iso(d["observed_at"])
        assert observed is not None
        return cls(int(d["version"]), observed, Post.from_dict(d["post"]), d["fingerprint"], d["raw_sha256"])


@dataclass(frozen=True)
class StoredPost:
    """The latest version of a post plus what the store knows about its life."""

    post: Post
    version: int
    first_seen: datetime
    last_seen_alive: datetime
    processed_version: int
    status: str = "alive"  # alive | deleted | author_suspended | ... (last confirmed state)

    @classmethod
    def from_stored(
        cls, post: dict[str, Any] | str, version: int | str, first_seen: str, last_seen_alive: str,
        processed_version: int | str, status: str,
    ) -> StoredPost:
        """Build from the stored columns or fields (the post as JSON text or a dict)."""
        first, alive = parse_iso(first_seen), parse_iso(last_seen_alive)
        assert first is not None and alive is not None
        data = json.loads(post) if isinstance(post, str) else post
        return cls(Post.from_dict(data), int(version), first, alive, int(processed_version), status)

    @property
    def pending(self) -> bool:
        """True while the pipeline has not finished the latest version (restart resumes it)."""
        return self.processed_version < self.version


@dataclass(frozen=True)
class MediaRecord(JsonRecord):
    """An archived media file, keyed by its SHA-256. ``signals`` maps signal type to serialized hash."""

    sha256: str
    size: int
    content_type: str
    archive_path: str
    first_url: str
    first_seen: datetime = field(default_factory=utcnow)
    signals: dict[str, str] = field(default_factory=dict)

    _TIMES = ("first_seen",)
    _DICTS = ("signals",)


@dataclass(frozen=True)
class PostMediaLink(JsonRecord):
    """Which archived file a post's attachment resolved to (``sha256`` is None while it failed)."""

    platform: str
    post_id: str
    index: int
    url: str
    sha256: str | None
    error: str | None = None


class KnownKind(StrEnum):
    KNOWN = "known"  # added by a person: game footage, stock photo, debunked image
    SEEN = "seen"  # archived from a watched post: a later reuse is "recycled"


@dataclass(frozen=True)
class KnownMedia(JsonRecord):
    """An entry of the known-media store.

    ``signals`` maps a signal type name (``pdq``, ``phash``...) to its serialized hash. For a video, each
    keyframe is its own entry with ``frame_ts`` (seconds) and the same ``source``. For ``seen`` entries
    ``origin`` holds platform, account, post_id, url and posted_at of the post it first appeared in.
    ``group`` is shared by entries that are one item to a person (the keyframes of one video: the video
    file's SHA-256), so a post matching several frames of a trailer raises one alert, not one per frame.
    ``file_name`` is the name of the file (or the last part of the URL) a person added, shown when items are
    listed. ``id`` is assigned by the store when empty.
    """

    label: str
    signals: dict[str, str]
    kind: KnownKind = KnownKind.KNOWN
    id: str = ""
    source: str | None = None
    note: str | None = None
    sha256: str | None = None
    archive_path: str | None = None
    frame_ts: float | None = None
    origin: dict[str, Any] = field(default_factory=dict)
    added_at: datetime = field(default_factory=utcnow)
    group: str | None = None
    file_name: str | None = None

    @property
    def item(self) -> str:
        """What one alert is about: the group (a whole video) or the entry itself."""
        return self.group or self.id

    _TIMES = ("added_at",)
    _DICTS = ("signals", "origin")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KnownMedia:
        return cls(**{**cls._parsed(d), "kind": KnownKind(d.get("kind", "known"))})


@dataclass(frozen=True)
class KnownState:
    """Where the known-media store stands, read in one go.

    ``generation`` changes on every change; ``epoch`` only when an existing entry is replaced or removed
    (an index built from the entries must then reload them all); ``count`` is the number of entries, so an
    index that appended the new ones can tell it missed none (a writer still committing a lower insertion
    number shows up as a count that does not add up)."""

    generation: int
    epoch: int
    count: int


@dataclass(frozen=True)
class OutboxAlert(JsonRecord):
    """An alert waiting in (or delivered from) the persistent outbox.

    ``key`` is the idempotence key (e.g. ``match:x:123:<sha>:<known_id>``): enqueuing a key twice is a no-op,
    which is what makes a restart resend nothing. ``seq`` orders delivery (FIFO). A ``parked`` alert is kept
    (with its ``last_error``) but out of the delivery queue: a target refused it while accepting the alerts
    behind it (see :mod:`bot.alerts.sender`); ``afterimage alerts retry`` puts it back."""

    key: str
    kind: str
    payload: dict[str, Any]
    created_at: datetime = field(default_factory=utcnow)
    seq: int = 0
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    sent_at: datetime | None = None
    parked: bool = False  # default: rows written before parking existed load as not parked

    _TIMES = ("created_at",)
    _OPTIONAL_TIMES = ("next_attempt_at", "sent_at")


@dataclass(frozen=True)
class Recheck(JsonRecord):
    """Where a post stands in its re-check schedule.

    ``step`` indexes the decaying schedule; ``deleted_streak`` counts consecutive ``deleted`` answers
    (a deletion is confirmed at 2, at least a minute apart, measured from ``first_deleted_at``)."""

    platform: str
    post_id: str
    account: str
    posted_at: datetime
    due_at: datetime
    step: int = 0
    deleted_streak: int = 0
    first_deleted_at: datetime | None = None
    last_status: str | None = None

    _TIMES = ("posted_at", "due_at")
    _OPTIONAL_TIMES = ("first_deleted_at",)


#: every kind the deletion log holds: the states a post can be confirmed in, and the changes to it
EVENT_KINDS: tuple[str, ...] = (
    "deleted",
    "author_suspended",
    "author_protected",
    "author_deleted",
    "withheld",
    "edited",
    "restored",
)


@dataclass(frozen=True)
class PostEvent(JsonRecord):
    """An entry of the deletion log: deleted, author_suspended, author_protected, author_deleted,
    withheld, edited or restored. ``details`` holds kind-specific evidence (before/after for edits)."""

    platform: str
    account: str
    post_id: str
    kind: str
    detected_at: datetime = field(default_factory=utcnow)
    details: dict[str, Any] = field(default_factory=dict)
    id: str = ""

    _TIMES = ("detected_at",)
    _DICTS = ("details",)

    def last_seen_alive(self, stored: StoredPost | None) -> datetime | None:
        """The last time the post was seen standing, by a poll or a look-up, as this event proves it.

        A confirmed gone answer records it at confirmation (``details.last_seen_alive``); an edit or a return
        is itself a sighting (``detected_at``); otherwise the post's own record. Alerts and exports both
        derive the lifetime from this, so a chat message and a report never disagree."""
        recorded = self.details.get("last_seen_alive")
        if recorded:
            return parse_iso(recorded) if isinstance(recorded, str) else recorded
        if self.kind in ("edited", "restored"):
            return self.detected_at
        return stored.last_seen_alive if stored is not None else None

    def lifetime_seconds(self, posted_at: datetime | None, stored: StoredPost | None) -> int | None:
        """Whole seconds from posting to the last sighting alive: how long the post is proven to have stood."""
        last_alive = self.last_seen_alive(stored)
        if posted_at is None or last_alive is None:
            return None
        return int((as_utc(last_alive) - as_utc(posted_at)).total_seconds())


@dataclass(frozen=True)
class AccountState(JsonRecord):
    """Polling state of one watched account, shown by ``afterimage status``."""

    platform: str
    account: str
    last_poll_at: datetime | None = None
    next_poll_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    consecutive_errors: int = 0
    paused_until: datetime | None = None

    _OPTIONAL_TIMES = ("last_poll_at", "next_poll_at", "last_error_at", "paused_until")
