"""The outbox role of the store: alerts waiting for (or done with) delivery to team chat. An alert is enqueued
once per key, delivered in FIFO order, parked when a target refuses it, and indexed per post and by creation
time so exports and digests read them without a scan.

Implemented by :mod:`bot.store.sqlite_outbox` and :mod:`bot.store.redis_outbox`; contract in
``tests/store/test_outbox_contract.py``."""

from __future__ import annotations

from abc import abstractmethod
from typing import Protocol
from collections.abc import Iterable
from datetime import datetime

from bot.store.records import OutboxAlert


class OutboxReader(Protocol):
    """Reading alerts: the delivery queue, parked alerts, a post's alerts, a window of alerts."""

    @abstractmethod
    def due_alerts(self, now: datetime, limit: int = 50) -> list[OutboxAlert]:
        """Unsent, unparked alerts in FIFO order. The head is returned even when not yet due, so a caller that
        keeps order can see that it must wait; callers check ``next_attempt_at`` themselves."""

    @abstractmethod
    def get_alert(self, key: str) -> OutboxAlert | None: ...

    @abstractmethod
    def outbox_size(self) -> int:
        """Number of alerts waiting for delivery (parked alerts are not counted: they wait for an operator)."""

    @abstractmethod
    def parked_alerts(self) -> list[OutboxAlert]:
        """Every parked alert, in FIFO (seq) order."""

    @abstractmethod
    def parked_count(self) -> int:
        """Number of parked alerts (what status and health report, without reading the alerts)."""

    @abstractmethod
    def list_alerts(self, platform: str, post_id: str, kinds: Iterable[str] | None = None) -> list[OutboxAlert]:
        """Every alert (pending or sent) whose payload's ``platform`` and ``post_id`` are these, in FIFO (seq)
        order, optionally only of the given kinds (an empty ``kinds`` gives nothing). Read from a per-post
        index, never a scan of the outbox. Alerts without both payload fields (a digest) are never listed;
        a numeric ``post_id`` in a payload is listed under its decimal text."""

    @abstractmethod
    def alerts_between(
        self, since: datetime, until: datetime, kinds: Iterable[str] | None = None
    ) -> list[OutboxAlert]:
        """Every alert (pending or sent) whose ``created_at`` is in [since, until), in FIFO (seq) order,
        optionally only of the given kinds (an empty ``kinds`` gives nothing). Read from an index on the
        creation time (integer microseconds), never a scan of the outbox."""


class OutboxStore(OutboxReader, Protocol):
    """The alert outbox, as the pipeline and tracker fill it and the sender empties it."""

    @abstractmethod
    def enqueue_alert(self, alert: OutboxAlert) -> bool:
        """Add an alert unless its key was ever enqueued (pending, parked or sent). True when added. It goes
        into the delivery queue unless it is already sent (or parked)."""

    @abstractmethod
    def mark_alert_sent(self, key: str, at: datetime) -> None: ...

    @abstractmethod
    def mark_alert_failed(self, key: str, error: str, next_attempt_at: datetime) -> None:
        """Count a failed delivery attempt and when to try again."""

    @abstractmethod
    def park_alert(self, key: str, error: str) -> bool:
        """Atomically take a queued alert out of the delivery queue, keeping it (``parked``, ``last_error`` =
        ``error``) so the alerts behind it can go out. False (nothing changed) unless the alert is queued:
        unknown, sent or already parked."""

    @abstractmethod
    def unpark_alert(self, key: str) -> bool:
        """Atomically put a parked alert back into the delivery queue at its original position (its ``seq``
        is kept: it is older than the alerts queued behind it, so it is tried first), due now, with
        ``attempts`` reset so it gets the full ``park_after`` tries again. ``last_error`` is kept: it carries
        the targets that already accepted the alert (see :func:`bot.alerts.sender.delivered_targets`), which
        must not get it twice. False (nothing changed) unless the alert is parked."""
