"""Work set aside for an operator, of two kinds: posts the work queue parked (their processing raised on
every attempt, or killed the worker processing it; :mod:`bot.store.queue`) and alerts the outbox parked (a
chat target refused them; :mod:`bot.alerts.sender`). Each kind is described once here, as items with the
same fields and a retry, so the command line (``afterimage posts failed|retry``, ``afterimage alerts
parked|retry``) and the web console's Parked page list and retry both kinds the same way. Errors and alert
keys are redacted here, once, for every place that shows them."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from bot.alerts.sender import shown_error
from bot.models import iso
from bot.redact import redact
from bot.store import StateStore, open_work_queue
from bot.store.queue import POSTS, parse_post_item


@dataclass(frozen=True)
class ParkedItem:
    """One parked item as every view shows it. ``key`` is what a retry takes (never shown: ``shown`` is)."""

    key: str
    shown: str
    #: what it is beyond its key (an alert's kind), or ""
    label: str
    #: which time ``at`` is ("failed": the last failure, "created": when the alert was made)
    at_name: str
    at: datetime
    attempts: int
    #: the last error, redacted
    error: str
    #: the post it concerns, when known: (platform, post_id)
    post: tuple[str, str] | None

    @property
    def ref(self) -> str:
        """A stand-in for ``key`` in web forms (a digest): the page never carries a raw alert key."""
        return hashlib.sha256(self.key.encode()).hexdigest()[:24]

    def line(self) -> str:
        """The item on one line, as the command line lists it."""
        parts = (self.shown, self.label, f"{self.at_name} {iso(self.at)}", f"{self.attempts} attempt(s)", self.error)
        return "  ".join(p for p in parts if p)


@dataclass(frozen=True)
class ParkedKind:
    """One kind of parked work: how to list it, retry one item, and name it to a reader."""

    #: the CLI group (``afterimage <group> retry``) and the form field on the console
    group: str
    #: one item, in prose ("failed post")
    noun: str
    #: what the CLI calls an item's key (ITEM, KEY)
    key_name: str
    #: what a retry does, as a verb and as a past participle ("queue again", "queued")
    verb: str
    done: str
    list_items: Callable[[StateStore], list[ParkedItem]]
    #: put one item back (False: it was not parked)
    retry: Callable[[StateStore, str], bool]
    #: a key given by the user, as shown back (alert keys may carry a secret-looking part)
    show_key: Callable[[str], str]


def _failed_posts(store: StateStore) -> list[ParkedItem]:
    return [
        ParkedItem(f.item, f.item, "", "failed", f.failed_at, f.attempts, redact(f.error), _post_of(f.item))
        for f in open_work_queue(store).failed(POSTS)
    ]


def _post_of(item: str) -> tuple[str, str] | None:
    try:
        platform, post_id, _ = parse_post_item(item)
    except ValueError:
        return None
    return platform, post_id


def _parked_alerts(store: StateStore) -> list[ParkedItem]:
    items = []
    for a in store.parked_alerts():
        platform, post_id = a.payload.get("platform"), a.payload.get("post_id")
        post = (str(platform), str(post_id)) if platform and post_id else None
        items.append(ParkedItem(a.key, redact(a.key), a.kind, "created", a.created_at, a.attempts, redact(shown_error(a)), post))
    return items


POSTS_KIND = ParkedKind(
    group="posts", noun="failed post", key_name="ITEM", verb="queue again", done="queued",
    list_items=_failed_posts, retry=lambda store, item: open_work_queue(store).retry(POSTS, item),
    show_key=lambda item: item,
)  # fmt: skip
ALERTS_KIND = ParkedKind(
    group="alerts", noun="parked alert", key_name="KEY", verb="requeue", done="requeued",
    list_items=_parked_alerts, retry=lambda store, key: store.unpark_alert(key), show_key=redact,
)  # fmt: skip
#: every kind, in the order the console shows them
KINDS = {kind.group: kind for kind in (POSTS_KIND, ALERTS_KIND)}


def retry_refs(store: StateStore, kind: ParkedKind, refs: set[str] | None) -> tuple[int, int]:
    """Retry the parked items of ``kind`` whose :attr:`ParkedItem.ref` is in ``refs`` (every one: None).
    Returns (retried, asked for but no longer parked)."""
    items = [item for item in kind.list_items(store) if refs is None or item.ref in refs]
    retried = sum(1 for item in items if kind.retry(store, item.key))
    wanted = len(items) if refs is None else len(refs)
    return retried, wanted - retried
