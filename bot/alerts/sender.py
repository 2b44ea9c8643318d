"""Delivers the persistent alert outbox to the configured targets.

Guarantees (with the store's outbox semantics: ``enqueue_alert`` is idempotent by key, ``due_alerts`` returns
unsent alerts in FIFO order):

- **Order**: alerts go out in outbox order. Delivery stops at the first alert that fails; nothing behind it
  is sent until it has been delivered, so after an outage the backlog arrives in order. One exception, the
  *refused alert* (below): without it, one message a chat rejects for good (too long, a bad attachment,
  HTTP 400) would hold up every alert behind it forever.
- **Refused alerts are parked**: apprise only says "not accepted", so an outage and a permanent refusal look
  the same. Once the head has failed ``alerts.park_after`` times in a row, each further failure of it is
  followed at once by one try of the next due alert (the *probe*, rendered beforehand so the two requests go
  out back to back). If the probe fails too, it is an outage: the probe's failure (and any target that did
  accept it) is recorded like any failed attempt, it waits as long as the head, and the order is kept. If
  every target accepts the probe, it is recorded as sent and the head is tried once more: refused again, the
  chat is up and refuses that alert, so it is parked (kept in the store with its error, out of the queue:
  ``afterimage alerts parked`` / ``alerts retry``) and delivery goes on in order behind it. Accepted this
  time, the outage ended between the head's failure and the probe: nothing is parked, and the head arrives
  just after the probe (the only way an outage can swap two alerts, within a window of milliseconds). A head
  with nothing behind it is never parked (it holds nothing up). Two refused alerts in a row look like an
  outage (the probe is refused too) and stay queued: erring towards keeping the order, never towards
  dropping an alert.
- **Nothing lost**: an alert leaves the outbox (``mark_alert_sent``) only after every target accepted it.
  A restart picks up whatever is still unsent.
- **Delivered once**: each target's acceptance is recorded; a retry only goes to the targets that have not
  accepted the alert yet. The record of partial progress is kept in the alert's ``last_error`` as a leading
  ``[delivered: id,id]`` marker, written atomically with the failure by ``mark_alert_failed`` (no store
  contract change needed; see :func:`delivered_targets`). The one remaining window is a crash between a
  target accepting and that record being written (the target then gets the alert again after restart):
  at-least-once at a crash, exactly once otherwise.
- **Backoff**: after a failure the head waits ``uniform(d/2, d)`` with ``d = min(max_backoff, base * 2**n)``
  (``n`` = failed attempts so far), never more than ``max_backoff``.
- **Never blocks polling**: :meth:`AlertSender.deliver_due` never sleeps for a backoff; it returns at once
  when the head is not due, bounds each target call by ``timeout`` and each run by ``max_per_run``. The
  daemon calls it from its own scheduled job.
- **Several daemons**: one sender at a time holds the ``alerts:sender`` store lock; the others skip the run.
  The lock's TTL is short (``lock_ttl``: the daemon's ``pipeline.lease``, 30 s by default) and a thread
  renews it every third of that while a run is sending, however long one chat call takes: a killed daemon's
  lock lapses ``lock_ttl`` after its last renewal, and another daemon delivers at its next outbox tick (2 s).

A dead target holds back every target (one ordered queue). A target that is misconfigured is refused at start
(:class:`bot.errors.ConfigError`) rather than blocking the queue forever.
"""

from __future__ import annotations

import logging
import os
import random
import re
import socket
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal, Protocol

from bot.alerts.messages import render
from bot.alerts.picture import PICTURE_EXT, archived_picture, comparison_picture
from bot.alerts.targets import DEFAULT_TIMEOUT, ConsoleTarget, Target, build_targets
from bot.archive import Archive
from bot.config import AlertsConfig
from bot.errors import StoreError
from bot.models import as_utc, iso, utcnow
from bot.redact import redact
from bot.store.coordination import CoordinationStore
from bot.store.media import MediaReader
from bot.store.outbox import OutboxStore
from bot.store.posts import PostReader
from bot.store.records import OutboxAlert

log = logging.getLogger(__name__)

LOCK_NAME = "alerts:sender"


class SenderStore(OutboxStore, CoordinationStore, PostReader, MediaReader, Protocol):
    """The store roles the sender uses: the outbox it empties, the lock that makes it the only sender, and
    the posts and media an alert's post card shows."""

ATTACH_KINDS = ("match", "recycled")
#: events whose alert carries the post card (the post as it looked; an edit: both versions side by side)
CARD_KINDS = ("deleted", "author_suspended", "author_protected", "author_deleted", "withheld", "edited", "restored")
MAX_ERROR_CHARS = 1000
_DELIVERED = re.compile(r"^\[delivered: ([A-Za-z0-9_,]*)\] ?")


def delivered_targets(alert: OutboxAlert) -> set[str]:
    """Ids of the targets that already accepted ``alert`` (from the marker in ``last_error``)."""
    m = _DELIVERED.match(alert.last_error or "")
    return {t for t in m.group(1).split(",") if t} if m else set()


def shown_error(alert: OutboxAlert) -> str:
    """``last_error`` without the progress marker (the target ids mean nothing to a reader)."""
    return _DELIVERED.sub("", alert.last_error or "", count=1)


def progress_error(delivered: set[str], error: str) -> str:
    """The ``last_error`` text recording partial progress: ``[delivered: a,b] <error>``."""
    error = redact(error)[:MAX_ERROR_CHARS]
    return f"[delivered: {','.join(sorted(delivered))}] {error}" if delivered else error


def backoff_delay(attempts: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait after ``attempts`` failed attempts (before this one): exponential, jittered, capped."""
    exp = base * (2 ** min(max(attempts, 0), 30))
    delay = min(cap, exp)
    return min(cap, rng.uniform(delay / 2, delay))


@dataclass
class DeliveryReport:
    """What one :meth:`AlertSender.deliver_due` run did."""

    sent: list[str] = field(default_factory=list)  # keys fully delivered this run, in order
    parked: list[str] = field(default_factory=list)  # keys parked this run (refused while the next was accepted)
    failed: str | None = None  # key of the alert that failed (delivery stopped there)
    error: str | None = None  # its (redacted) error
    retry_at: datetime | None = None  # when the head of the outbox will be tried again
    waiting: bool = False  # the head is backing off: nothing was attempted
    locked: bool = False  # another sender holds the lock: nothing was attempted
    pending: int = 0  # alerts still in the outbox after this run

    @property
    def ok(self) -> bool:
        return self.failed is None and not self.locked


class _KeptLock:
    """Renews the sender lock every third of its TTL while a run holds it, from a thread of its own: a chat
    call may take a target's whole timeout, and the TTL must not have to cover it (a killed daemon's lock would
    then hold every alert back that long). ``lost`` is set when the lock turned out to be someone else's."""

    def __init__(self, store: StateStore, owner: str, ttl: float):
        self.store, self.owner, self.ttl = store, owner, ttl
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="outbox-lock", daemon=True)

    def __enter__(self) -> _KeptLock:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _renew(self) -> None:
        while not self._done.wait(self.ttl / 3):
            try:
                if not self.store.acquire_lock(LOCK_NAME, self.owner, self.ttl):
                    self.lost.set()
                    return
            except StoreError as e:  # still ours until the TTL runs out: the next renewal may get through
                log.warning("cannot renew the alert sender lock: %s", e)


@dataclass
class _Message:
    """An alert rendered for sending, and the ids of the targets that have accepted it so far."""

    alert: OutboxAlert
    delivered: set[str]
    title: str
    body: str
    attachment: Path | None


class AlertSender:
    def __init__(
        self,
        store: SenderStore,
        archive: Archive,
        config: AlertsConfig,
        *,
        targets: list[Target] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        base_backoff: float = 5.0,
        max_per_run: int = 200,
        lock_ttl: float = 30.0,
        rng: random.Random | None = None,
        owner: str | None = None,
    ):
        """``targets`` defaults to those of ``config`` (console first when ``config.console``, then each URL);
        raises :class:`bot.errors.ConfigError` when apprise cannot use a URL."""
        self.store = store
        self.archive = archive
        self.config = config
        if targets is None:
            targets = build_targets([t.get_secret_value() for t in config.targets], config.console, timeout)
        self.targets = list(targets)
        self.base_backoff = base_backoff
        self.max_backoff = float(config.max_backoff)
        self.park_after = config.park_after
        self.max_per_run = max_per_run
        self.lock_ttl = lock_ttl  # renewed while a run sends (see _KeptLock), so it bounds only a dead sender
        self.rng = rng or random.Random()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._kept = _KeptLock(store, self.owner, lock_ttl)
        self._warned_no_targets = False
        self._clock = utcnow

    # ------------------------------------------------------------------ running
    def deliver_due(self, now: datetime | None = None) -> DeliveryReport:
        """Deliver due alerts in FIFO order until the outbox is empty, the head is backing off, or one fails."""
        # a given ``now`` (tests, replays) is used throughout; otherwise each record gets the real time
        fixed = as_utc(now) if now is not None else None
        self._clock = (lambda: fixed) if fixed is not None else utcnow
        now = fixed or utcnow()
        report = DeliveryReport()
        if not self.targets:
            if not self._warned_no_targets:
                log.warning("no alert targets configured (alerts.targets empty and alerts.console off): alerts stay queued")
                self._warned_no_targets = True
            report.pending = self.store.outbox_size()
            return report
        if not self.store.acquire_lock(LOCK_NAME, self.owner, self.lock_ttl):
            report.locked = True
            report.pending = self.store.outbox_size()
            return report
        self._kept = _KeptLock(self.store, self.owner, self.lock_ttl)
        try:
            with self._kept:
                self._run(now, report)
        finally:
            try:
                self.store.release_lock(LOCK_NAME, self.owner)
            finally:
                report.pending = self.store.outbox_size()
        return report

    def _run(self, now: datetime, report: DeliveryReport) -> None:
        while len(report.sent) < self.max_per_run:
            batch = self.store.due_alerts(now, limit=min(50, self.max_per_run - len(report.sent)))
            batch = [a for a in batch if a.sent_at is None]
            if not batch:
                return
            for alert in batch:
                if alert.key in report.sent:  # the store did not record the send; do not loop on it
                    log.error("alert %s is still pending after being marked sent; stopping this run", redact(alert.key))
                    return
                if alert.next_attempt_at is not None and as_utc(alert.next_attempt_at) > now:
                    report.waiting = True
                    report.retry_at = as_utc(alert.next_attempt_at)
                    return
                outcome = self._deliver_one(alert, now, report)
                if outcome == "stop" or len(report.sent) >= self.max_per_run or not self._renew_lock():
                    return
                if outcome == "reread":  # the alert behind it went out too: the batch is stale
                    break

    def _renew_lock(self) -> bool:
        """Whether the run still holds the lock (renewed by its keeper thread)."""
        if not self._kept.lost.is_set():
            return True
        log.warning("lost the alert sender lock to another daemon; stopping this run")
        return False

    def _prepare(self, alert: OutboxAlert, tmp: Path) -> _Message:
        """Render ``alert`` (and its picture, in ``tmp``) for the targets that have not accepted it yet."""
        delivered = delivered_targets(alert)
        todo = [t for t in self.targets if t.id not in delivered]
        if not todo:
            return _Message(alert, delivered, "", "", None)
        title, body = render(alert)
        tmp.mkdir()
        return _Message(alert, delivered, title, body, self._attachment(alert, todo, tmp))

    def _send(self, message: _Message) -> list[str]:
        """Send to every target that has not accepted the alert yet (recording acceptances in ``message``);
        the redacted errors of those that did not accept it."""
        errors: list[str] = []
        for target in [t for t in self.targets if t.id not in message.delivered]:
            try:
                target.send(message.title, message.body, message.attachment)
            except Exception as e:
                errors.append(redact(str(e)) or type(e).__name__)
                log.warning("alert %s not accepted by %s: %s", redact(message.alert.key), target.label, errors[-1])
            else:
                message.delivered.add(target.id)
        return errors

    def _deliver_one(self, alert: OutboxAlert, now: datetime, report: DeliveryReport) -> Literal["sent", "stop", "reread"]:
        """Deliver the head. Once it has failed ``park_after`` times, a failure is followed at once by the probe
        (the next due alert, prepared beforehand so that the two are sent back to back: the shorter the gap,
        the less likely an outage ends in between); see the module docstring."""
        probe = self._next_due(alert.key, now) if alert.attempts + 1 >= self.park_after else None
        with tempfile.TemporaryDirectory(prefix="afterimage-alert-") as tmp:
            head = self._prepare(alert, Path(tmp) / "head")
            behind = self._prepare(probe, Path(tmp) / "probe") if probe is not None else None
            errors = self._send(head)
            probe_errors = self._send(behind) if errors and behind is not None else None
            if not errors:
                self._record_sent(alert.key, report)
                return "sent"
            self._record_failed(head, errors, alert.attempts, report)
            if behind is None or probe_errors is None:
                return "stop"
            if probe_errors:  # refused too: the chat is down, not refusing the head; the probe waits with it
                self.store.mark_alert_failed(
                    behind.alert.key, progress_error(behind.delivered, "; ".join(probe_errors)), report.retry_at
                )
                log.warning("alert %s: the next alert failed too: an outage, order kept", redact(alert.key))
                return "stop"
            self._record_sent(behind.alert.key, report)
            return self._park_or_deliver(head, report)

    def _park_or_deliver(self, head: _Message, report: DeliveryReport) -> Literal["stop", "reread"]:
        """The probe was accepted: try the head once more before parking it. Accepted now, the chat came back
        between the head's failure and the probe (the two then arrive swapped, the only way an outage reorders);
        refused again, a target refuses this alert while it accepts others: park it."""
        errors = self._send(head)
        if not errors:
            log.info("alert %s delivered right after the next alert: the chat came back meanwhile", redact(head.alert.key))
            self._record_sent(head.alert.key, report)
            report.failed = report.error = report.retry_at = None
            return "reread"
        # the head failed once already in this run: this is its attempts + 2nd
        error = self._record_failed(head, errors, head.alert.attempts + 1, report)
        if not self.store.park_alert(head.alert.key, error):
            return "stop"
        report.parked.append(head.alert.key)
        report.failed = report.error = report.retry_at = None
        log.warning(
            "alert %s parked after %d failed attempts: a target refuses it but accepted the next alert; "
            "last error: %s (list with `afterimage alerts parked`, requeue with `afterimage alerts retry`)",
            redact(head.alert.key),
            head.alert.attempts + 2,
            redact("; ".join(errors)),
        )
        return "reread"

    def _record_sent(self, key: str, report: DeliveryReport) -> None:
        self.store.mark_alert_sent(key, self._clock())
        report.sent.append(key)
        log.info("alert %s delivered to %d target(s)", redact(key), len(self.targets))

    def _record_failed(self, message: _Message, errors: list[str], attempts: int, report: DeliveryReport) -> str:
        """Record a failed attempt (and the targets that did accept) with the backoff of the ``attempts`` failed
        before it; the error text stored (progress marker included)."""
        alert = message.alert
        retry_at = self._clock() + timedelta(seconds=backoff_delay(attempts, self.base_backoff, self.max_backoff, self.rng))
        error = "; ".join(errors)
        stored = progress_error(message.delivered, error)
        self.store.mark_alert_failed(alert.key, stored, retry_at)
        report.failed = alert.key
        report.error = redact(error)
        report.retry_at = retry_at
        log.warning(
            "alert %s: delivery failed (attempt %d), next try at %s; %d alert(s) wait behind it",
            redact(alert.key),
            attempts + 1,
            iso(retry_at),
            max(0, self.store.outbox_size() - 1),
        )
        return stored

    def _card(self, alert: OutboxAlert) -> bytes | None:
        """The post card of an event alert, rendered from the archived version(s) in the store."""
        from bot.evidence.card import event_card_png
        from bot.store.records import PostEvent

        p = alert.payload
        event = PostEvent(str(p.get("platform")), str(p.get("account")), str(p.get("post_id")), alert.kind,
                          details=dict(p.get("details") or {}))
        return event_card_png(self.store, self.archive, event)

    def _next_due(self, key: str, now: datetime) -> OutboxAlert | None:
        """The alert queued right behind ``key``, when it is due at ``now``."""
        for alert in self.store.due_alerts(now, limit=2):
            if alert.key == key or alert.sent_at is not None:
                continue
            if alert.next_attempt_at is None or as_utc(alert.next_attempt_at) <= now:
                return alert
            return None
        return None

    def _attachment(self, alert: OutboxAlert, todo: list[Target], tmp: Path) -> Path | None:
        """The picture in ``tmp`` for targets other than the console: the comparison picture of a match/recycled
        alert; for a deletion-log alert the post card (the post as it looked; an edit: both versions), or the
        archived picture when no card can be made."""
        if all(isinstance(t, ConsoleTarget) for t in todo):
            return None
        try:
            data: bytes | None = None
            ext = PICTURE_EXT
            if alert.kind in ATTACH_KINDS:
                data, name, ident = comparison_picture(self.archive, alert.payload), "comparison", alert.payload.get("media_sha256")
            elif alert.kind in CARD_KINDS:
                data, name, ident, ext = self._card(alert), "post", alert.payload.get("post_id"), "png"
            if data is None and alert.kind not in ATTACH_KINDS and isinstance(alert.payload.get("media"), list):
                data, name, ident = archived_picture(self.archive, alert.payload["media"]), "archived", alert.payload.get("media_sha256")
                ext = PICTURE_EXT
            if data is None:
                return None
            path = tmp / f"{name}-{re.sub(r'[^A-Za-z0-9]', '', str(ident or alert.kind))[:40] or 'image'}.{ext}"
            path.write_bytes(data)
        except Exception:  # e.g. no space for the temp file: deliver the text without the picture
            log.exception("alert %s: cannot prepare its picture; sending without it", redact(alert.key))
            return None
        return path
