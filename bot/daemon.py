"""The daemon: scheduled polling of every watched account, re-checks, the pipeline and alert delivery.

Work is distributed through the store's work queue (:mod:`bot.store.queue`), not a lock: a poll stores its
posts and queues them (one item per post version); the daemon's worker threads (``pipeline.workers``, one
per core by default; :mod:`bot.workers`) claim posts one by one and run the pipeline on them, so every core
of every daemon sharing a store works at once, and a dead daemon's claims are taken over after
``pipeline.lease``. Re-check runs are queue items too (one per platform: two runs of one platform would
spend its budget twice).

Jobs (APScheduler 3.x, rebuilt from config at every start), each kind on its own thread pool so that none
starves another (a slow poll never delays the alert outbox):

- ``poll:<platform>:<account>`` (executor ``polls``): interval with jitter, coalesced, one instance at a
  time. A 429 pauses the whole platform until its reset time; other errors back the account off
  exponentially. Both are stored in the account state, so ``afterimage status`` shows them.
- ``recheck:<platform>`` (executor ``rechecks``): queues the platform's re-check run and runs the queued ones.
- ``outbox`` (executor ``outbox``): delivers queued alerts; a chat outage only delays this job, never polling.
- ``pending`` and ``announce`` (default executor): queue the posts a crash or a retry left pending; tell the
  store how many workers this daemon has and how many are busy (``afterimage status``).
- ``digest``: the optional daily digest.
- ``evidence``: new deletion-log events and case decisions into the hash chain, and new hashes to the TSAs
  (:mod:`bot.evidence.stamper`); a TSA outage only delays this job.

Several daemons may share one Redis store: an account is polled by one daemon at a time (a store lock kept
for most of the interval, so a second daemon does not poll it again right after), and alerts go out under
the ``outbox`` lock, so none is sent twice.
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
from bot.config import Config
from bot.evidence.ledger import EvidenceLedger
from bot.evidence.stamper import Stamper
from bot.evidence.tsa import TsaClient
from bot.hashing.pool import build_hasher, keep_freed_memory, one_library_thread_per_worker
from bot.errors import PlatformError, RateLimited, StoreError
from bot.models import utcnow
from bot.pipeline import ProcessReport, build_pipeline
from bot.store import StateStore, open_store, open_work_queue
from bot.stopping import stop_on_signals
from bot.store.queue import POSTS, RECHECKS, Claim, parse_post_item, post_item
from bot.worker_processes import WorkerProcesses
from bot.workers import WorkerPool
from watchers import build_watcher
from watchers.base import PollResult, Watcher

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 3600.0
#: how often pending posts are swept into the queue (posts kept pending for a retry wait this long)
SWEEP_SECONDS = 30.0
#: how often a daemon announces its workers to the store (the announcement lives three times as long)
ANNOUNCE_SECONDS = 5.0
#: posts swept into the queue per run
SWEEP_LIMIT = 1000
#: worker names without claims idle this long are forgotten by the queue at a daemon's start
CONSUMER_IDLE_SECONDS = 86400.0
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
        self.evidence = EvidenceLedger(config.evidence_path)
        tsa = TsaClient(config.evidence.tsa_urls, config.evidence.tsa_ca_file) if config.evidence.tsa_urls else None
        # with a TSA, every new archived file (media, raw post versions, post cards) is queued for a timestamp
        self.archive = Archive(config.archive_path, on_new=(lambda f: self.evidence.enqueue_file(f.sha256, f.relpath)) if tsa else None)
        self.stamper = Stamper(self.evidence, tsa, self.store, self.archive, clock=clock,
                               cases=self.store)  # type: ignore[arg-type]  # both backends are CaseStores
        self._swept = tsa is None  # the first evidence run queues archived files that have no timestamp
        sections = config.watchers.enabled()
        self.watchers = watchers if watchers is not None else {p: build_watcher(p, s) for p, s in sections.items()}
        self.accounts = {p: list(s.accounts) for p, s in sections.items() if p in self.watchers}
        self.hasher = build_hasher(config.pipeline.workers_mode, config.pipeline.workers)
        self.pipeline = build_pipeline(
            config, self.store, self.archive, clock=clock, stop=self.stop_event, hasher=self.hasher
        )
        self.matcher = self.pipeline.matcher
        self.tracker = self.pipeline.tracker
        # the outbox lock is renewed while this daemon sends and lapses one lease after a kill: another daemon
        # then delivers at its next outbox tick
        self.sender = AlertSender(self.store, self.archive, config.alerts, owner=self.owner, lock_ttl=config.pipeline.lease)
        one_library_thread_per_worker()
        keep_freed_memory()
        self.queue = open_work_queue(self.store, config.pipeline.lease)
        forked = config.pipeline.workers_mode == "forked"
        # forked: the daemon's own pool has no worker thread (it still extends the re-check runs' claims and
        # drains the queue for one-shot commands); each worker process runs a copy of it
        self.workers = WorkerPool(
            self.queue,
            POSTS,
            self.process_claim,
            name=self.owner,
            threads=0 if forked else config.pipeline.workers,
            stop=self.stop_event,
            max_attempts=config.pipeline.max_attempts,
            on_start=one_library_thread_per_worker,
        )
        self.processes = (
            WorkerProcesses(self.workers, config.pipeline.workers, after_fork=self._in_worker_process,
                            threads=config.pipeline.worker_threads) if forked else None
        )
        self._daemon_pid: int | None = None  # set in a worker process: the daemon to wake for alerts
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
        state = self.store.get_account_state(platform, account)
        if state and state.paused_until and state.paused_until > now:
            outcome.skipped = f"backing off until {state.paused_until.isoformat()}"
            return outcome
        lock = f"poll:{platform}:{account}"
        if not self.store.acquire_lock(lock, self.owner, ttl_seconds=max(section.interval * 0.9, 5.0)):
            outcome.skipped = "polled by another daemon"
            return outcome
        try:
            cursor = self.store.get_cursor(platform, account)
            result = self.watchers[platform].poll(account, cursor)
            if cursor is None and section.backfill is not None:
                result = _backfilled(result, now - timedelta(seconds=section.backfill), f"{platform}/{account}")
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
        queued = [post_item(c.post.platform, c.post.post_id, c.version) for c in changes if c.change.value != "unchanged"]
        if queued:
            self.queue.put(POSTS, queued)
            self._work_queued()
        return outcome

    def _work_queued(self) -> None:
        """Posts were queued: the workers, waiting on the queue, claim them; when they are not running
        (``poll --once``, a daemon used as a library), the calling thread processes the queue."""
        if not self.workers.running:
            self.workers.drain()

    def process_claim(self, claim: Claim) -> None:
        """The work of one queued post version (a worker's handler). Idempotent: a version processed already
        (a redelivery after a crash, a sweep that raced a worker) is skipped; the pipeline's own steps are
        idempotent too (alert keys, content-addressed archive), for a redelivery in the middle of a post."""
        platform, post_id, version = parse_post_item(claim.item)
        stored = self.store.get_post(platform, post_id)
        if stored is None or not stored.pending:  # processed already (by us earlier, or another worker)
            return
        if claim.deliveries > 1:
            log.info("%s: taken over (delivery %d of version %d)", stored.post.key, claim.deliveries, version)
        report = ProcessReport()
        self.pipeline.process(stored, report)
        if report.alerts_enqueued:
            self._deliver_soon()
        if report.posts or report.retry_later:
            log.info(
                "pipeline: %s processed (%d file(s) archived, %d alert(s) queued)%s",
                stored.post.key,
                report.media_archived,
                report.alerts_enqueued,
                ", pending for retry" if report.retry_later else "",
            )

    def _deliver_soon(self) -> None:
        """Run the outbox job now instead of at its next 2-second tick: an alert should not wait for it. A
        worker process asks its daemon (SIGUSR1)."""
        if self._daemon_pid is not None:
            try:
                os.kill(self._daemon_pid, signal.SIGUSR1)
            except OSError:
                pass
            return
        job = self.scheduler.get_job("outbox") if self.scheduler is not None and self.scheduler.running else None
        if job is not None:
            job.modify(next_run_time=datetime.now(timezone.utc))

    def process_pending(self) -> int:
        """Queue every post the store has pending (a crash between storing and queueing, a retry after a
        transient error), then let the workers at them. Returns how many were newly queued."""
        pending = self.store.pending_posts(SWEEP_LIMIT)
        added = self.queue.put(POSTS, [post_item(p.post.platform, p.post.post_id, p.version) for p in pending])
        if pending:
            self._work_queued()
        return added

    def run_rechecks(self, platform: str) -> None:
        """Queue ``platform``'s re-check run and run the re-check runs this daemon can claim (one at a time per
        platform across daemons; a dead daemon's run is taken over after the lease)."""
        self.queue.put(RECHECKS, [platform])
        consumer = f"{self.owner}/rechecks"
        while not self.stop_event.is_set():
            claims = self.queue.claim(RECHECKS, consumer)
            if not claims:
                break
            claim = claims[0]
            try:
                if claim.item in self.watchers:
                    with self.workers.extended(claim, consumer):  # a long run is not taken over from a live daemon
                        self.tracker.run(claim.item, self.watchers[claim.item], self.clock())
            finally:
                self.queue.ack(claim)  # the next run of the job queues the platform again
        self.process_pending()  # edits found by re-checks: archive and match their new media

    def announce(self) -> None:
        """Tell the store this daemon's workers (shown by ``afterimage status`` and /metrics)."""
        workers = self.processes or self.workers
        self.queue.announce(
            self.owner,
            {
                "workers": workers.size,
                "mode": self.config.pipeline.workers_mode,
                "busy": workers.busy,
                "done": workers.done,
            },
            ttl_seconds=ANNOUNCE_SECONDS * 3,
        )

    def deliver_alerts(self) -> None:
        """Deliver queued alerts (the sender takes the outbox lock itself, so several daemons never both send)."""
        self.sender.deliver_due(self.clock())

    def enqueue_digest(self) -> None:
        """Queue today's digest once its time has passed; idempotent, so checking often is harmless."""
        enqueue_digest_if_due(self.store, self.config.alerts.digest, self.clock())

    def run_evidence(self) -> None:
        """Chain new events and timestamp what waits (one daemon at a time: lock ``evidence``)."""
        if not self.store.acquire_lock("evidence", self.owner, ttl_seconds=900):
            return
        try:
            if not self._swept:
                queued = self.stamper.sweep_archive()
                if queued:
                    log.info("evidence: %d archived file(s) without a timestamp queued", queued)
                self._swept = True
            self.stamper.run()
        finally:
            self.store.release_lock("evidence", self.owner)

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
        """One thread pool per kind of job: polls (network-bound, many accounts), re-checks, the outbox (one
        thread, never behind a poll) and the housekeeping jobs. Posts are processed by the worker pool."""
        scheduler = BackgroundScheduler(
            timezone=timezone.utc,
            executors={
                "default": ThreadPoolExecutor(2),
                "polls": ThreadPoolExecutor(self.config.pipeline.poll_threads),
                "rechecks": ThreadPoolExecutor(2),
                "outbox": ThreadPoolExecutor(1),
            },
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
                    executor="polls",
                    next_run_time=now,
                    misfire_grace_time=max(int(section.interval), 1),
                )
            scheduler.add_job(
                self._guarded,
                IntervalTrigger(seconds=self.recheck_every, timezone=timezone.utc),
                args=(f"recheck {platform}", self.run_rechecks, platform),
                id=f"recheck:{platform}",
                executor="rechecks",
                next_run_time=now + timedelta(seconds=min(5.0, self.recheck_every)),
                misfire_grace_time=30,
            )
        scheduler.add_job(
            self._guarded, IntervalTrigger(seconds=2, timezone=timezone.utc), args=("outbox", self.deliver_alerts),
            id="outbox", executor="outbox", next_run_time=now, misfire_grace_time=10,
        )
        scheduler.add_job(
            self._guarded, IntervalTrigger(seconds=SWEEP_SECONDS, timezone=timezone.utc),
            args=("pending", self.process_pending), id="pending", next_run_time=now, misfire_grace_time=60,
        )
        scheduler.add_job(
            self._guarded, IntervalTrigger(seconds=ANNOUNCE_SECONDS, timezone=timezone.utc),
            args=("announce", self.announce), id="announce", next_run_time=now, misfire_grace_time=10,
        )
        scheduler.add_job(
            self._guarded, IntervalTrigger(seconds=self.config.evidence.every, timezone=timezone.utc),
            args=("evidence", self.run_evidence), id="evidence",
            next_run_time=now + timedelta(seconds=min(10.0, self.config.evidence.every)), misfire_grace_time=300,
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
        return [f"poll:{p}:{a}" for p, accounts in self.accounts.items() for a in accounts] + [ALERTS_LOCK, "evidence"]

    def reclaim_stale_locks(self) -> list[str]:
        """Release the locks a dead daemon of this host left behind (a kill -9, a crash, a container restart).

        Owners are ``host:pid:nonce``. A lock of this host whose pid is not running, or is our own pid (the
        previous incarnation in a container, where the daemon is always pid 1), cannot be held by a live
        daemon: without this, a restart would wait out the lock TTLs (up to 5 minutes) before delivering the
        alerts the crash interrupted. Locks of other hosts are left to expire. The same goes for the work
        queue's claims (consumers ``host:pid:nonce/w<n>``): a dead local daemon's posts are claimable at once,
        not after the lease."""
        reclaimed = []
        for name in self.lock_names():
            owner = self.store.lock_owner(name)
            if owner and owner != self.owner and self._owner_is_gone(owner):
                self.store.release_lock(name, owner)
                reclaimed.append(name)
        if reclaimed:
            log.info("released %d lock(s) left by a daemon of this host that is gone: %s", len(reclaimed), ", ".join(reclaimed))
        for topic in (POSTS, RECHECKS):
            self.queue.prune_consumers(topic, CONSUMER_IDLE_SECONDS)
            for consumer in self.queue.backlog(topic).claims:
                if not consumer.startswith(self.owner) and self._owner_is_gone(consumer.split("/", 1)[0]):
                    n = self.queue.expire_claims(topic, consumer)
                    log.info("took over %d %s claim(s) of %s, a daemon of this host that is gone", n, topic, consumer)
        return reclaimed

    @staticmethod
    def _owner_is_gone(owner: str) -> bool:
        """Whether ``host:pid:nonce`` names a daemon of this host that cannot be running any more."""
        parts = owner.rsplit(":", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            return False
        owner_host, owner_pid = parts[0], int(parts[1])
        return owner_host == socket.gethostname() and (owner_pid == os.getpid() or not _pid_alive(owner_pid))

    def start(self) -> None:
        swept = self.archive.sweep_temporary()
        if swept:
            log.info("removed %d temporary file(s) an interrupted run left in the archive", swept)
        try:
            self.reclaim_stale_locks()
        except StoreError as e:  # not fatal: the locks expire on their own
            log.warning("cannot check for stale locks: %s", e)
        self.hasher.start()
        try:  # the index is loaded before the first post waits for it (a second or more at 100 k entries)
            self.matcher.refresh()
        except StoreError as e:  # not fatal: the first post loads it
            log.warning("cannot load the matching index yet: %s", e)
        if self.processes is not None:  # before any thread of ours starts (see bot.worker_processes)
            self.processes.start()
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGUSR1, lambda *_: self._deliver_soon())
        # after an upgrade that changed the cache's format this deletes up to one file per known image:
        # not worth delaying the first post for
        threading.Thread(target=self._sweep_feature_cache, name="features-sweep", daemon=True).start()
        self.workers.start()
        self.scheduler = self.build_scheduler()
        self.scheduler.start()
        log.info(
            "afterimage running: %d account(s) on %s, %d worker(s)%s, store %s",
            sum(len(a) for a in self.accounts.values()),
            ", ".join(self.accounts) or "no platform",
            (self.processes or self.workers).size,
            f" in {self.processes.processes} processes" if self.processes is not None else "",
            self.store.url,
        )

    def _sweep_feature_cache(self) -> None:
        removed = self.matcher.sweep_feature_cache()
        if removed:
            log.info("removed %d cached feature file(s) of an older format", removed)

    def _in_worker_process(self) -> None:
        """First thing in a forked worker process: a connection of its own, and the daemon to wake."""
        assert self.processes is not None
        self._daemon_pid = self.processes.daemon_pid
        self.store.after_fork()

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
        workers_done = self.workers.join(max(0.0, deadline - time.monotonic()))
        if self.processes is not None:
            workers_done = self.processes.join(max(0.0, deadline - time.monotonic())) and workers_done
        with self._jobs_lock:
            clean = self._running_jobs == 0 and workers_done
        if clean:
            try:
                self.queue.withdraw(self.owner)
            except StoreError:
                pass
        if not clean:
            log.warning(
                "stopping with %d job(s) and %d worker(s) still running: their work stays claimed and is taken over",
                self._running_jobs,
                self.workers.busy,
            )
        self.hasher.close()
        for name, watcher in self.watchers.items():
            try:
                watcher.close()
            except Exception:  # closing is best effort
                log.debug("closing the %s watcher failed", name, exc_info=True)
        if clean:
            self.store.close()
        return clean

    def run_forever(self, stop_requested: threading.Event | None = None) -> int:
        """Run until SIGTERM or SIGINT (or ``stop_requested`` is set); exit code 0 after a clean or safely
        abandoned stop. A caller that takes a while before this (imports, opening the store) passes the
        event of :func:`bot.stopping.stop_on_signals` installed first, so a stop sent meanwhile is clean."""
        stop_requested = stop_requested or stop_on_signals()
        if not stop_requested.is_set():
            self.start()
        while not stop_requested.wait(1.0):
            pass
        clean = self.stop()
        if not clean:
            logging.shutdown()
            os._exit(0)  # worker threads are abandoned mid-step; every step is idempotent and resumes next start
        return 0


def _backfilled(result: PollResult, since: datetime, name: str) -> PollResult:
    """A first poll's result without the posts older than ``since`` (the account's ``backfill``); the cursor
    still moves past them, so they are not read again."""
    kept = [p for p in result.posts if p.created_at >= since]
    if len(kept) < len(result.posts):
        log.info("%s: first poll, %d post(s) older than the backfill limit not kept", name, len(result.posts) - len(kept))
    return PollResult(kept, result.cursor, result.rejected)
