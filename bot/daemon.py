"""The daemon: scheduled polling of every watched account, re-checks, the pipeline and alert delivery.

Jobs (APScheduler 3.x, rebuilt from config at every start):

- ``poll:<platform>:<account>``: interval with jitter, coalesced, one instance at a time. A 429 pauses the
  whole platform until its reset time; other errors back the account off exponentially. Both are stored
  in the account state, so ``afterimage status`` shows them.
- ``recheck:<platform>``: the deletion tracker's due re-checks.
- ``pending``: finishes posts a crash left half-processed.
- ``outbox``: delivers queued alerts; a chat outage only delays this job, never polling.
- ``digest``: the optional daily digest.

Several daemons may share one Redis store: each job takes a store lock first (an account is polled by one
daemon at a time; the poll lock is kept for most of the interval so a second daemon does not poll it again
right after), and alerts go out under the ``outbox`` lock, so none is sent twice.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from bot.alerts.digest import enqueue_digest_if_due
from bot.alerts.sender import LOCK_NAME as ALERTS_LOCK
from bot.alerts.sender import AlertSender
from bot.archive import Archive
from bot.cases import CaseDesk
from bot.config import Config
from bot.deletions.tracker import RecheckTracker
from bot.errors import PlatformError, RateLimited, StoreError
from bot.matching.matcher import Matcher
from bot.media.fetch import MediaFetcher
from bot.models import utcnow
from bot.pipeline import Pipeline
from bot.store import StateStore, open_store
from watchers import build_watcher
from watchers.base import Watcher

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 3600.0
STOP_TIMEOUT_SECONDS = 8.0  # SIGTERM to exit: jobs are asked to stop, then abandoned (every step is idempotent)


@dataclass
class PollOutcome:
    platform: str
    account: str
    new: int = 0
    edited: int = 0
    unchanged: int = 0
    rejected: int = 0
    media: int = 0
    error: str | None = None
    skipped: str | None = None  # why the poll did not run (locked by another daemon, paused, backing off)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, someone else's
        return True
    return True


class Daemon:
    """Owns the long-lived objects (store, archive, watchers, matcher, sender) and the scheduler."""

    def __init__(
        self,
        config: Config,
        *,
        store: StateStore | None = None,
        watchers: dict[str, Watcher] | None = None,
        clock: Callable[[], datetime] = utcnow,
        recheck_every: float = 30.0,
    ):
        """``recheck_every``: how often each platform's due re-checks are looked for (the schedule itself
        is per post, in the store; the demo looks every second to show a deletion within a minute)."""
        self.config = config
        self.recheck_every = recheck_every
        self.clock = clock
        self.stop_event = threading.Event()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.store = store or open_store(config.store_url)
        self.archive = Archive(config.archive_path)
        sections = config.watchers.enabled()
        self.watchers = watchers if watchers is not None else {p: build_watcher(p, s) for p, s in sections.items()}
        self.accounts = {p: list(s.accounts) for p, s in sections.items() if p in self.watchers}
        self.matcher = Matcher(self.store, self.archive, config.matching)
        self.tracker = RecheckTracker(self.store, {p: s.recheck for p, s in sections.items()})
        self.sender = AlertSender(self.store, self.archive, config.alerts, owner=self.owner)
        self.pipeline = Pipeline(
            self.store,
            self.archive,
            MediaFetcher(config.media),
            self.matcher,
            self.tracker,
            video_keyframes=config.media.video_keyframes,
            clock=clock,
            stop=self.stop_event,
            cases=CaseDesk(
                self.store,  # type: ignore[arg-type]  # both backends are CaseStores
                self.archive,
                base_url=config.web.base_url,
                suggest_to_chat=config.alerts.suggest_to_chat,
                thresholds=config.matching.thresholds,
                clock=clock,
            ),
        )
        self.scheduler: BackgroundScheduler | None = None
        self._paused_until: dict[str, datetime] = {}
        self._running_jobs = 0
        self._jobs_lock = threading.Lock()

    # ------------------------------------------------------------------ jobs
    def poll_account(self, platform: str, account: str, *, hold_lock: bool = True) -> PollOutcome:
        """One poll of one account through the pipeline. Never raises: the outcome says what happened.

        ``hold_lock``: keep the account's poll lock for most of the interval after a successful poll, so
        another daemon does not poll it again right away. A one-shot run (``poll --once``) releases it: it
        is not going to poll again, and a second ``poll --once`` must not be told another daemon has it."""
        outcome = PollOutcome(platform, account)
        now = self.clock()
        section = self.config.watchers.enabled()[platform]
        paused = self._paused_until.get(platform)
        if paused and paused > now:
            outcome.skipped = f"{platform} rate-limited until {paused.isoformat()}"
            return outcome
        state = next((s for s in self.store.get_account_states() if (s.platform, s.account) == (platform, account)), None)
        if state and state.paused_until and state.paused_until > now:
            outcome.skipped = f"backing off until {state.paused_until.isoformat()}"
            return outcome
        lock = f"poll:{platform}:{account}"
        if not self.store.acquire_lock(lock, self.owner, ttl_seconds=max(section.interval * 0.9, 5.0)):
            outcome.skipped = "polled by another daemon"
            return outcome
        try:
            result = self.watchers[platform].poll(account, self.store.get_cursor(platform, account))
            changes = self.pipeline.ingest(platform, account, result)
        except RateLimited as e:
            reset = e.reset_at or now + timedelta(minutes=15)
            self._paused_until[platform] = reset
            outcome.error = f"rate limited until {reset.isoformat()}"
            self.store.update_account_state(platform, account, last_error=outcome.error, last_error_at=now, paused_until=reset)
            log.warning("%s/%s: %s", platform, account, outcome.error)
            self.store.release_lock(lock, self.owner)
            return outcome
        except (PlatformError, StoreError) as e:
            errors = (state.consecutive_errors if state else 0) + 1
            backoff = min(section.interval * (2 ** (errors - 1)), MAX_BACKOFF_SECONDS)
            outcome.error = str(e)
            self.store.update_account_state(
                platform,
                account,
                last_error=outcome.error,
                last_error_at=now,
                consecutive_errors=errors,
                paused_until=now + timedelta(seconds=backoff),
            )
            log.warning("%s/%s: poll failed (%d in a row, next try in %.0fs): %s", platform, account, errors, backoff, e)
            self.store.release_lock(lock, self.owner)
            return outcome
        for change in changes:
            setattr(outcome, change.change.value, getattr(outcome, change.change.value) + 1)
            outcome.media += len(change.post.media) if change.change.value != "unchanged" else 0
        outcome.rejected = len(result.rejected)
        self.store.update_account_state(
            platform, account, last_poll_at=now, consecutive_errors=0, paused_until=None, next_poll_at=self._next_run(platform, account)
        )
        if not hold_lock:
            self.store.release_lock(lock, self.owner)
        self.process_pending()
        return outcome

    def process_pending(self) -> None:
        if not self.store.acquire_lock("pipeline", self.owner, ttl_seconds=300):
            return
        try:
            report = self.pipeline.process_pending()
            if report.posts or report.retry_later:
                log.info(
                    "pipeline: %d post(s) processed, %d file(s) archived, %d alert(s) queued, %d pending for retry",
                    report.posts,
                    report.media_archived,
                    report.alerts_enqueued,
                    report.retry_later,
                )
        finally:
            self.store.release_lock("pipeline", self.owner)

    def run_rechecks(self, platform: str) -> None:
        lock = f"recheck:{platform}"
        if not self.store.acquire_lock(lock, self.owner, ttl_seconds=600):
            return
        try:
            self.tracker.run(platform, self.watchers[platform], self.clock())
        finally:
            self.store.release_lock(lock, self.owner)
        self.process_pending()  # edits found by re-checks: archive and match their new media

    def deliver_alerts(self) -> None:
        """Deliver queued alerts (the sender takes the outbox lock itself, so several daemons never both send)."""
        self.sender.deliver_due(self.clock())

    def enqueue_digest(self) -> None:
        """Queue today's digest once its time has passed; idempotent, so checking often is harmless."""
        enqueue_digest_if_due(self.store, self.config.alerts.digest, self.clock())

    # ------------------------------------------------------------------ scheduling
    def _guarded(self, name: str, fn: Callable[..., object], *args: object) -> None:
        """Run a job unless stopping; log (never propagate) its errors so the scheduler keeps the job."""
        if self.stop_event.is_set():
            return
        with self._jobs_lock:
            self._running_jobs += 1
        try:
            fn(*args)
        except StoreError as e:
            log.error("%s: state store unavailable, will retry: %s", name, e)
        except Exception:
            log.exception("%s: unexpected error (the job stays scheduled)", name)
        finally:
            with self._jobs_lock:
                self._running_jobs -= 1

    def build_scheduler(self) -> BackgroundScheduler:
        scheduler = BackgroundScheduler(
            timezone=timezone.utc,
            executors={"default": ThreadPoolExecutor(4)},
            job_defaults={"coalesce": True, "max_instances": 1},
        )
        now = datetime.now(timezone.utc)
        for platform, accounts in self.accounts.items():
            section = self.config.watchers.enabled()[platform]
            for account in accounts:
                scheduler.add_job(
                    self._guarded,
                    IntervalTrigger(seconds=section.interval, jitter=section.jitter or None, timezone=timezone.utc),
                    args=(f"poll {platform}/{account}", self.poll_account, platform, account),
                    id=f"poll:{platform}:{account}",
                    next_run_time=now,
                    misfire_grace_time=max(int(section.interval), 1),
                )
            scheduler.add_job(
                self._guarded,
                IntervalTrigger(seconds=self.recheck_every, timezone=timezone.utc),
                args=(f"recheck {platform}", self.run_rechecks, platform),
                id=f"recheck:{platform}",
                next_run_time=now + timedelta(seconds=min(5.0, self.recheck_every)),
                misfire_grace_time=30,
            )
        scheduler.add_job(
            self._guarded, IntervalTrigger(seconds=2, timezone=timezone.utc), args=("outbox", self.deliver_alerts),
            id="outbox", next_run_time=now, misfire_grace_time=10,
        )
        scheduler.add_job(
            self._guarded, IntervalTrigger(seconds=60, timezone=timezone.utc), args=("pending", self.process_pending),
            id="pending", next_run_time=now, misfire_grace_time=60,
        )
        if self.config.alerts.digest.enabled:
            scheduler.add_job(
                self._guarded, IntervalTrigger(minutes=5, timezone=timezone.utc), args=("digest", self.enqueue_digest),
                id="digest", next_run_time=now, misfire_grace_time=300,
            )
        return scheduler

    def _next_run(self, platform: str, account: str) -> datetime | None:
        if self.scheduler is None:
            return None
        job = self.scheduler.get_job(f"poll:{platform}:{account}")
        return job.next_run_time if job else None

    def lock_names(self) -> list[str]:
        names = [f"poll:{p}:{a}" for p, accounts in self.accounts.items() for a in accounts]
        return names + [f"recheck:{p}" for p in self.accounts] + ["pipeline", ALERTS_LOCK]

    def reclaim_stale_locks(self) -> list[str]:
        """Release the locks a dead daemon of this host left behind (a kill -9, a crash, a container restart).

        Owners are ``host:pid:nonce``. A lock of this host whose pid is not running, or is our own pid (the
        previous incarnation in a container, where the daemon is always pid 1), cannot be held by a live
        daemon: without this, a restart would wait out the lock TTLs (up to 5 minutes) before delivering the
        alerts and processing the posts the crash interrupted. Locks of other hosts are left to expire."""
        host, pid = socket.gethostname(), os.getpid()
        reclaimed = []
        for name in self.lock_names():
            owner = self.store.lock_owner(name)
            if not owner or owner == self.owner:
                continue
            parts = owner.rsplit(":", 2)
            if len(parts) != 3 or not parts[1].isdigit():
                continue
            owner_host, owner_pid = parts[0], int(parts[1])
            if owner_host != host or not (owner_pid == pid or not _pid_alive(owner_pid)):
                continue
            self.store.release_lock(name, owner)
            reclaimed.append(name)
        if reclaimed:
            log.info("released %d lock(s) left by a daemon of this host that is gone: %s", len(reclaimed), ", ".join(reclaimed))
        return reclaimed

    def start(self) -> None:
        swept = self.archive.sweep_temporary()
        if swept:
            log.info("removed %d temporary file(s) an interrupted run left in the archive", swept)
        try:
            self.reclaim_stale_locks()
        except StoreError as e:  # not fatal: the locks expire on their own
            log.warning("cannot check for stale locks: %s", e)
        self.scheduler = self.build_scheduler()
        self.scheduler.start()
        log.info(
            "afterimage running: %d account(s) on %s, store %s",
            sum(len(a) for a in self.accounts.values()),
            ", ".join(self.accounts) or "no platform",
            self.store.url,
        )

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> bool:
        """Ask running jobs to stop, wait up to ``timeout``, close the store. True when nothing was abandoned."""
        self.stop_event.set()
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._jobs_lock:
                if self._running_jobs == 0:
                    break
            time.sleep(0.05)
        with self._jobs_lock:
            clean = self._running_jobs == 0
        if not clean:
            log.warning("stopping with %d job(s) still running: their work stays pending and resumes next start", self._running_jobs)
        for name, watcher in self.watchers.items():
            try:
                watcher.close()
            except Exception:  # closing is best effort
                log.debug("closing the %s watcher failed", name, exc_info=True)
        if clean:
            self.store.close()
        return clean

    def run_forever(self) -> int:
        """Run until SIGTERM or SIGINT; exit code 0 after a clean or safely abandoned stop."""
        stop_requested = threading.Event()

        def on_signal(signum: int, _frame: object) -> None:
            log.info("received %s, stopping", signal.Signals(signum).name)
            stop_requested.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        while not stop_requested.wait(1.0):
            pass
        clean = self.stop()
        if not clean:
            logging.shutdown()
            os._exit(0)  # worker threads are abandoned mid-step; every step is idempotent and resumes next start
        return 0
