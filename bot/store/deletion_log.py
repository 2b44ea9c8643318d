"""The deletion-log role of the store: when each post is looked up again (its re-check), and the events those
look-ups confirmed (deleted, author suspended, withheld, edited, restored, ...), from which the exports are
written. An event, the post's new status, its next re-check and its alert are recorded in one transaction.

Implemented by :mod:`bot.store.sqlite_deletion_log` and :mod:`bot.store.redis_deletion_log`; contract in
``tests/store/test_deletion_log_contract.py``."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Protocol
from collections.abc import Collection
from datetime import datetime

from bot.models import as_utc
from bot.store.records import OutboxAlert, PostEvent, Recheck


@dataclass(frozen=True)
class EventFilter:
    """Which events of the deletion log to read: detected in [``since``, ``until``), of one platform, one
    account, of some kinds (None: any; empty: none). Each bound left None does not filter."""

    since: datetime | None = None
    until: datetime | None = None
    platform: str | None = None
    account: str | None = None
    kinds: Collection[str] | None = None

    def __post_init__(self) -> None:
        if self.kinds is not None:  # any iterable of kinds (a generator too), kept as a set of names
            object.__setattr__(self, "kinds", frozenset(str(k) for k in self.kinds))

    @property
    def none_wanted(self) -> bool:
        """True when no event can match (an empty set of kinds)."""
        return self.kinds is not None and not self.kinds

    def matches(self, event: PostEvent) -> bool:
        at = as_utc(event.detected_at)
        return (
            (self.since is None or at >= as_utc(self.since))
            and (self.until is None or at < as_utc(self.until))
            and (self.platform is None or event.platform == self.platform)
            and (self.account is None or event.account == self.account)
            and (self.kinds is None or event.kind in self.kinds)
        )


class DeletionLogReader(Protocol):
    """Reading re-checks and the events of the deletion log."""

    @abstractmethod
    def get_recheck(self, platform: str, post_id: str) -> Recheck | None: ...

    @abstractmethod
    def due_rechecks(self, platform: str, now: datetime, limit: int = 1000) -> list[Recheck]:
        """Re-checks of a platform due at ``now`` or earlier, earliest due first."""

    @abstractmethod
    def count_rechecks(self, platform: str | None = None) -> int: ...

    @abstractmethod
    def list_events(self, where: EventFilter = EventFilter()) -> list[PostEvent]:
        """The events ``where`` selects (every event by default), in detection order."""


class DeletionLogStore(DeletionLogReader, Protocol):
    """Re-checks and the deletion log, as the tracker keeps them."""

    @abstractmethod
    def schedule_recheck(self, recheck: Recheck) -> None:
        """Insert or replace the re-check state of a post."""

    @abstractmethod
    def start_recheck(self, recheck: Recheck) -> Recheck:
        """The post's re-check state if it has one, else ``recheck``, stored: in one atomic step, so a post
        processed again (a redelivery) keeps its schedule and its start costs one round trip."""

    @abstractmethod
    def remove_recheck(self, platform: str, post_id: str) -> None: ...

    @abstractmethod
    def record_event(
        self, event: PostEvent, next_recheck: Recheck | None, alert: OutboxAlert | None = None
    ) -> PostEvent:
        """Atomically append an event (assigning ``id`` when empty; an event id already logged is not logged
        again), set the post's status to the event kind where it is a state (not for ``edited``), replace the
        post's re-check by ``next_recheck`` (remove it when None) and, when given, enqueue ``alert`` exactly
        as :meth:`enqueue_alert` does (a key ever enqueued is not enqueued again). All in one transaction:
        after a crash either all of it happened or none. A caller whose alert key names the event id
        assigns the id itself (:func:`bot.store.common.new_id`) before building the alert."""
