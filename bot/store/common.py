"""Logic both store backends share, so SQLite and Redis cannot drift apart: the versioning decision of
``record_poll``/``save_post_version``, which event kinds set a post's status, id generation, time keys and
the JSON text of stored values (each record's own dict form is in :mod:`bot.store.records`).

Conventions (both backends):
- Ids of known media and events are ``uuid4().hex[:12]`` (48 random bits: unique in practice, short enough
  to type in the CLI).
- Orderings that involve times use integer microseconds since the epoch (:func:`micros`), because ISO strings
  of different precision do not sort correctly as text; ties are broken by the natural key (post key,
  post id) or by insertion order, the same way in both backends.
- Raw payloads are stored as JSON without re-ordering keys, so they come back verbatim.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime, timezone
from typing import Any, Protocol, TypeVar

from bot.models import Post, as_utc, iso, utcnow
from bot.store.records import AccountState, Change, PostChange, PostVersion

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

#: Event kinds that are a state of the post, and the status they set. ``edited`` is not a state.
EVENT_STATUS: dict[str, str] = {
    "deleted": "deleted",
    "author_suspended": "author_suspended",
    "author_protected": "author_protected",
    "author_deleted": "author_deleted",
    "withheld": "withheld",
    "restored": "alive",
}

ACCOUNT_FIELDS = frozenset(f.name for f in fields(AccountState)) - {"platform", "account"}


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


_Identified = TypeVar("_Identified", bound=_HasId)


def new_id() -> str:
    """A short unique id for known-media entries and events."""
    return uuid.uuid4().hex[:12]


def with_id(record: _Identified) -> _Identified:
    """The record as stored: with its own ``id``, or a new one (:func:`new_id`) when it has none."""
    return record if record.id else replace(record, id=new_id())  # type: ignore[type-var]


def micros(value: datetime) -> int:
    """Microseconds since the epoch (exact, and below 2**53 so a Redis sorted-set score holds it exactly)."""
    delta = as_utc(value) - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


#: budget spend older than this is pruned from the store (a reader asks for at most the current UTC day)
BUDGET_KEEP_MINUTES = 25 * 60


def budget_minute(at: datetime) -> int:
    """The minute bucket of a budget spend: whole minutes since the epoch. Spend is stored per minute, so
    storage stays small (at most :data:`BUDGET_KEEP_MINUTES` rows per budget) at the price of exactness to
    the minute."""
    return micros(at) // 60_000_000


def check_budget_spend(requests: int) -> None:
    """A spend is a positive whole number of requests (a negative one would hand quota back)."""
    if isinstance(requests, bool) or not isinstance(requests, int) or requests < 1:
        raise ValueError(f"budget spend must be a positive integer, not {requests!r}")


def dumps(value: Any) -> str:
    """JSON text for storage (keys kept in their order, so raw payloads stay verbatim)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def loads(text: str | bytes) -> Any:
    return json.loads(text)


def alert_post(payload: Any) -> tuple[str, str] | None:
    """(platform, post_id) an alert payload is about, for the per-post alert index, or None (a digest).

    ``platform`` must be a string and ``post_id`` a string or an integer (listed under its decimal text);
    anything else is not indexed. The SQLite migration that backfilled old rows applies the same rule."""
    if not isinstance(payload, dict):
        return None
    platform, post_id = payload.get("platform"), payload.get("post_id")
    if not isinstance(platform, str) or isinstance(post_id, bool) or not isinstance(post_id, (str, int)):
        return None
    return platform, str(post_id)


def status_for_event(kind: str) -> str | None:
    """The post status an event kind sets, or None (``edited`` and unknown kinds leave it alone)."""
    return EVENT_STATUS.get(kind)


# --------------------------------------------------------------------------- versioning


@dataclass(frozen=True)
class PlannedPost:
    """What saving one observed post must write. ``version`` is set only for NEW and EDITED."""

    change: PostChange
    fingerprint: str
    new_version: PostVersion | None


def plan_versions(
    posts: Sequence[Post],
    current: Callable[[Post], tuple[int, str] | None],
    at: datetime,
) -> list[PlannedPost]:
    """The versioning decision, in one place for both backends.

    ``current(post)`` returns the stored (latest version, fingerprint) of the post or None. A post never seen
    is NEW (version 1); a different content fingerprint (text or set of attachments; a media URL's query
    string is not part of it) is EDITED (version + 1); otherwise UNCHANGED. The same post twice in one batch
    is handled as if saved one after the other."""
    seen: dict[str, tuple[int, str]] = {}
    plans: list[PlannedPost] = []
    for post in posts:
        fingerprint = post.content_fingerprint()
        state = seen.get(post.key) or current(post)
        if state is None:
            change, version = Change.NEW, 1
        elif state[1] == fingerprint:
            change, version = Change.UNCHANGED, state[0]
        else:
            change, version = Change.EDITED, state[0] + 1
        new_version = None
        if change is not Change.UNCHANGED:
            new_version = PostVersion(
                version=version, observed_at=at, post=post, fingerprint=fingerprint, raw_sha256=post.raw_sha256()
            )
            seen[post.key] = (version, fingerprint)
        elif post.key not in seen:
            seen[post.key] = state  # type: ignore[assignment]
        plans.append(PlannedPost(PostChange(post, change, version), fingerprint, new_version))
    return plans


def resolve_at(at: datetime | None) -> datetime:
    return as_utc(at) if at is not None else utcnow()


# --------------------------------------------------------------------------- account state


def check_account_fields(values: dict[str, Any]) -> dict[str, Any]:
    """Validate ``update_account_state`` fields and return them JSON-ready (datetimes as ISO strings)."""
    unknown = set(values) - ACCOUNT_FIELDS
    if unknown:
        raise TypeError(f"unknown AccountState field(s): {', '.join(sorted(unknown))}")
    return {k: (iso(v) if isinstance(v, datetime) else v) for k, v in values.items()}


def account_from_dict(platform: str, account: str, values: dict[str, Any]) -> AccountState:
    return AccountState.from_dict({**values, "platform": platform, "account": account})


__all__ = [
    "ACCOUNT_FIELDS",
    "EVENT_STATUS",
    "PlannedPost",
    "account_from_dict",
    "alert_post",
    "check_account_fields",
    "dumps",
    "loads",
    "micros",
    "new_id",
    "plan_versions",
    "resolve_at",
    "status_for_event",
    "with_id",
]
