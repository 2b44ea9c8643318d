"""Delivers the persistent alert outbox to the configured targets.

Guarantees (with the store's outbox semantics: ``enqueue_alert`` is idempotent by key, ``due_alerts`` returns
unsent alerts in FIFO order):

- **Order**: alerts go out in outbox order. Delivery stops at the first alert that fails; nothing behind it
  is sent until it has been delivered, so after an outage the backlog arrives in order.
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
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from bot.alerts.messages import render
from bot.alerts.picture import comparison_png
from bot.alerts.targets import DEFAULT_TIMEOUT, ConsoleTarget, Target, build_targets
from bot.archive import Archive
from bot.config import AlertsConfig
from bot.models import as_utc, iso, utcnow
from bot.redact import redact
from bot.store.base import StateStore
from bot.store.records import OutboxAlert

log = logging.getLogger(__name__)

LOCK_NAME = "alerts:sender"
ATTACH_KINDS = ("match", "recycled")
MAX_ERROR_CHARS = 1000
_DELIVERED = re.compile(r"^\[delivered: ([A-Za-z0-9_,]*)\] ?")


def delivered_targets(alert: OutboxAlert) -> set[str]:
    """Ids of the targets that already accepted ``alert`` (from the marker in ``last_error``)."""
    m = _DELIVERED.match(alert.last_error or "")
    return {t for t in m.group(1).split(",") if t} if m else set()


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
    failed: str | None = None  # key of the alert that failed (delivery stopped there)
    error: str | None = None  # its (redacted) error
    retry_at: datetime | None = None  # when the head of the outbox will be tried again
    waiting: bool = False  # the head is backing off: nothing was attempted
    locked: bool = False  # another sender holds the lock: nothing was attempted
    pending: int = 0  # alerts still in the outbox after this run

    @property
    def ok(self) -> bool:
        return self.failed is None and not self.locked


class AlertSender:
    def __init__(
        self,
        store: StateStore,
        archive: Archive,
        config: AlertsConfig,
        *,
        targets: list[Target] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        base_backoff: float = 5.0,
        max_per_run: int = 200,
        lock_ttl: float = 300.0,
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
        self.max_per_run = max_per_run
        # a run renews the lock after each alert; one alert may take every target's full timeout
        self.lock_ttl = max(lock_ttl, 2 * timeout * (len(self.targets) + 1))
        self.rng = rng or random.Random()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
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
        try:
            self._run(now, report)
        finally:
            try:
                self.store.release_lock(LOCK_NAME, self.owner)
            finally:
                report.pending = self.store.outbox_size()
        return report

    def _run(self, now: datetime, report: DeliveryReport) -> None:
        done: set[str] = set()
        while len(report.sent) < self.max_per_run:
            batch = self.store.due_alerts(now, limit=min(50, self.max_per_run - len(report.sent)))
            batch = [a for a in batch if a.sent_at is None]
            if not batch:
                return
            for alert in batch:
                if alert.key in done:  # the store did not record the send; do not loop on it
                    log.error("alert %s is still pending after being marked sent; stopping this run", redact(alert.key))
                    return
                if alert.next_attempt_at is not None and as_utc(alert.next_attempt_at) > now:
                    report.waiting = True
                    report.retry_at = as_utc(alert.next_attempt_at)
                    return
                if not self._deliver_one(alert, now, report):
                    return
                done.add(alert.key)
                if len(report.sent) >= self.max_per_run:
                    return
                if not self.store.acquire_lock(LOCK_NAME, self.owner, self.lock_ttl):  # renew
                    log.warning("lost the alert sender lock to another daemon; stopping this run")
                    return

    def _deliver_one(self, alert: OutboxAlert, now: datetime, report: DeliveryReport) -> bool:
        delivered = delivered_targets(alert)
        todo = [t for t in self.targets if t.id not in delivered]
        errors: list[str] = []
        if todo:
            title, body = render(alert)
            with tempfile.TemporaryDirectory(prefix="afterimage-alert-") as tmp:
                attachment = self._attachment(alert, todo, Path(tmp))
                for target in todo:
                    try:
                        target.send(title, body, attachment)
                    except Exception as e:
                        errors.append(redact(str(e)) or type(e).__name__)
                        log.warning("alert %s not accepted by %s: %s", redact(alert.key), target.label, errors[-1])
                    else:
                        delivered.add(target.id)
        now = self._clock()
        if errors:
            delay = backoff_delay(alert.attempts, self.base_backoff, self.max_backoff, self.rng)
            retry_at = now + timedelta(seconds=delay)
            error = "; ".join(errors)
            self.store.mark_alert_failed(alert.key, progress_error(delivered, error), retry_at)
            report.failed = alert.key
            report.error = redact(error)
            report.retry_at = retry_at
            log.warning(
                "alert %s: delivery failed (attempt %d), next try at %s; %d alert(s) wait behind it",
                redact(alert.key),
                alert.attempts + 1,
                iso(retry_at),
                max(0, self.store.outbox_size() - 1),
            )
            return False
        self.store.mark_alert_sent(alert.key, now)
        report.sent.append(alert.key)
        log.info("alert %s delivered to %d target(s)", redact(alert.key), len(self.targets))
        return True

    def _attachment(self, alert: OutboxAlert, todo: list[Target], tmp: Path) -> Path | None:
        """The comparison PNG in ``tmp`` for match/recycled alerts going to a target other than the console."""
        if alert.kind not in ATTACH_KINDS or all(isinstance(t, ConsoleTarget) for t in todo):
            return None
        try:
            data = comparison_png(self.archive, alert.payload)
            sha = str(alert.payload.get("media_sha256") or "image")[:12]
            path = tmp / f"comparison-{re.sub(r'[^A-Za-z0-9]', '', sha) or 'image'}.png"
            path.write_bytes(data)
        except Exception:  # e.g. no space for the temp file: deliver the text without the picture
            log.exception("alert %s: cannot prepare the comparison picture; sending without it", redact(alert.key))
            return None
        return path
