"""The deletion log as rows: the one place that decides what an export contains.

CSV, JSON Lines and the HTML report are all written from :func:`deletion_log_rows`, so they never disagree.
Exports only read the store: they are typed with its reading roles (:class:`~bot.store.base.StoreReader`)
and :class:`ReadOnlyStore` enforces it at run time.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.export.matches import known_media_matches
from bot.models import as_utc, iso
from bot.store.base import StoreReader
from bot.store.deletion_log import EventFilter
from bot.store.records import PostEvent, StoredPost
from watchers import same_account

#: The export columns, in order. Stable: new columns are only ever appended.
#:
#: ==================== =======================================================================================
#: event_id             id of the event in the deletion log (unique per store)
#: kind                 deleted | author_suspended | author_protected | author_deleted | withheld | edited |
#:                      restored
#: scope                ``post``, or ``account`` for an event of the whole account (suspended, protected,
#:                      deleted account, and its return); it is then shown on the post that revealed it
#: platform             the watcher's platform name (``watchers.platform_names()``: bluesky, facebook, ...)
#: account              the watched account the post was found under
#: post_id              the platform's id of the post
#: post_url             link to the post as it was published
#: post_text            text of the post as last seen before the event (for ``edited``: after the edit)
#: posted_at            when the platform says the post was published
#: first_seen           when afterimage first saw the post
#: last_seen_alive      the last time a look-up or poll still saw the post (for ``edited`` and ``restored``:
#:                      the detection itself)
#: detected_at          when the event was confirmed (for a deletion: the second "deleted" answer)
#: lifetime_seconds     last_seen_alive - posted_at, whole seconds: how long the post is proven to have stood
#: media_sha256         SHA-256 of each archived attachment, in attachment order
#: media_archive_paths  path of each archived attachment relative to the archive folder, same order
#: known_matches        known media the attachments matched: objects with media_sha256, known_id, label,
#:                      kind (match: a known image; recycled: seen before in another post), method, distance,
#:                      known_sha256, known_archive_path, source
#: raw_sha256           SHA-256 of the archived raw post JSON (canonical form) of that version
#: details              kind-specific evidence: confirmation answers and times; before/after for edits
#: ==================== =======================================================================================
#:
#: Times are UTC ISO 8601 with a ``Z`` suffix; missing values are empty (CSV) or null (JSON Lines). In CSV
#: (RFC 4180, UTF-8, CRLF, header row) the list columns are space-separated and known_matches and details
#: are JSON; in JSON Lines they are arrays and objects.
COLUMNS: tuple[str, ...] = (
    "event_id",
    "kind",
    "scope",
    "platform",
    "account",
    "post_id",
    "post_url",
    "post_text",
    "posted_at",
    "first_seen",
    "last_seen_alive",
    "detected_at",
    "lifetime_seconds",
    "media_sha256",
    "media_archive_paths",
    "known_matches",
    "raw_sha256",
    "details",
)
LIST_COLUMNS = ("media_sha256", "media_archive_paths")
JSON_COLUMNS = ("known_matches", "details")


@dataclass(frozen=True)
class ExportFilters:
    """Which events to export: detected in [since, until), of one platform and/or account, of some kinds."""

    since: datetime | None = None
    until: datetime | None = None
    platform: str | None = None
    account: str | None = None
    kinds: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": iso(self.since),
            "until": iso(self.until),
            "platform": self.platform,
            "account": self.account,
            "kinds": list(self.kinds) if self.kinds else None,
        }


def _reading_methods() -> frozenset[str]:
    """The public methods of the reading roles :class:`StoreReader` is made of."""
    readers = [cls for cls in StoreReader.__mro__ if cls.__name__.endswith("Reader")]
    return frozenset(name for cls in readers for name, value in vars(cls).items() if callable(value) and not name.startswith("_"))


def _delegate(name: str) -> Any:
    def method(self: ReadOnlyStore, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._store, name)(*args, **kwargs)

    method.__name__ = method.__qualname__ = name
    return method


class ReadOnlyStore(StoreReader):
    """A store seen through its reading roles only (:class:`~bot.store.base.StoreReader`): an export cannot
    modify what it reports on, even when handed the whole store. The methods are those of the reading roles,
    delegated; anything else (a write, ``close``) does not exist here."""

    def __init__(self, store: StoreReader):
        object.__setattr__(self, "_store", store._store if isinstance(store, ReadOnlyStore) else store)

    @property
    def url(self) -> str:  # type: ignore[override]
        return self._store.url

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"exports are read-only: store.{name} is not available")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("exports are read-only")


for _name in _reading_methods():
    setattr(ReadOnlyStore, _name, _delegate(_name))
del _name
abc.update_abstractmethods(ReadOnlyStore)


def _version_post(store: StoreReader, event: PostEvent, stored: StoredPost) -> tuple[Any, str]:
    """The post version an event is about, and the hash of its raw JSON."""
    wanted = event.details.get("version")
    after = event.details.get("after")
    if wanted is None and isinstance(after, dict):
        wanted = after.get("version")
    if wanted is not None and wanted != stored.version:
        for v in store.get_versions(event.platform, event.post_id):
            if v.version == wanted:
                return v.post, v.raw_sha256
    raw = event.details.get("raw_sha256") or stored.post.raw_sha256()
    return stored.post, raw


def event_row(store: StoreReader, event: PostEvent) -> dict[str, Any]:
    """One export row (every key of :data:`COLUMNS`; list and dict values kept structured)."""
    store = ReadOnlyStore(store)
    stored = store.get_post(event.platform, event.post_id)
    details = dict(event.details)
    post = None
    raw_sha = details.get("raw_sha256")
    if stored is not None:
        post, raw_sha = _version_post(store, event, stored)

    last_alive = event.last_seen_alive(stored)
    posted = post.created_at if post is not None else None
    lifetime = event.lifetime_seconds(posted, stored)

    shas: list[str] = []
    paths: list[str | None] = []
    for link in store.get_post_media(event.platform, event.post_id):
        if not link.sha256:
            continue
        record = store.get_media(link.sha256)
        shas.append(link.sha256)
        paths.append(record.archive_path if record else None)

    return {
        "event_id": event.id,
        "kind": event.kind,
        "scope": details.get("scope", "post"),
        "platform": event.platform,
        "account": event.account,
        "post_id": event.post_id,
        "post_url": post.url if post is not None else None,
        "post_text": post.text if post is not None else None,
        "posted_at": iso(posted),
        "first_seen": iso(stored.first_seen) if stored is not None else None,
        "last_seen_alive": iso(last_alive),
        "detected_at": iso(event.detected_at),
        "lifetime_seconds": lifetime,
        "media_sha256": shas,
        "media_archive_paths": paths,
        "known_matches": known_media_matches(store, event.platform, event.post_id, shas),
        "raw_sha256": raw_sha,
        "details": details,
    }


def deletion_log_rows(store: StoreReader, filters: ExportFilters | None = None) -> list[dict[str, Any]]:
    """Every event of the deletion log matching ``filters``, in detection order, as export rows."""
    filters = filters or ExportFilters()
    store = ReadOnlyStore(store)
    kinds: Iterable[str] | None = filters.kinds
    events = store.list_events(EventFilter(since=filters.since, until=filters.until, platform=filters.platform, kinds=kinds))
    if filters.account is not None:  # compared as each platform compares handles (case, a leading @, ...)
        events = [e for e in events if same_account(e.platform, e.account, filters.account)]
    events = sorted(events, key=lambda e: as_utc(e.detected_at))  # stable: ties keep the log's order
    return [event_row(store, e) for e in events]
