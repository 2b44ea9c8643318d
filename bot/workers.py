"""A daemon's worker pool: threads that claim work items one at a time and hand them to a handler.

Why threads and not processes: the heavy steps of matching (ORB and RANSAC in OpenCV, faiss searches)
release the GIL, so the threads of one daemon share ONE matcher index in memory; processes would each need
their own copy of it (6.4 KB per known image). The step that holds the GIL most, decoding and hashing a
still, can run in worker processes instead (``pipeline.workers_mode: processes``, :mod:`bot.hashing.pool`),
which never load the index.

Each thread is a consumer of its own (``<daemon>/w<n>``). A claim is extended every third of the lease while
its thread works on it, so a long post (a video) is not taken over from a live daemon, while a dead daemon's
claims are taken over by any other worker once the lease runs out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from bot.errors import StoreError
from bot.redact import redact
from bot.store.queue import Claim, WorkQueue

log = logging.getLogger(__name__)

#: how long an idle worker waits on the queue for a new item before it looks again (for claims whose lease ran
#: out, and whether it was stopped); a new item queued meanwhile, by anyone, is claimed at once
IDLE_WAIT_SECONDS = 0.5


class WorkerPool:
    """``threads`` workers claiming items of ``topic`` for ``handle``; the handler's return acknowledges the
    item (it must be idempotent: an item may be delivered again after a crash)."""

    def __init__(
        self,
        queue: WorkQueue,
        topic: str,
        handle: Callable[[Claim], None],
        *,
        name: str,
        threads: int,
        stop: threading.Event | None = None,
        max_attempts: int = 5,
        on_start: Callable[[], None] | None = None,
    ):
        """``on_start``: run first in each worker thread, for settings a library keeps per thread (OpenMP's
        thread count is one: set in the main thread only, every worker's faiss search still forked a second
        OpenMP thread that spun after each search, half a core of CPU per busy worker)."""
        self.queue = queue
        self.topic = topic
        self.handle = handle
        self.name = name
        self.size = threads
        self.max_attempts = max_attempts
        self.stop_event = stop or threading.Event()
        self.on_start = on_start
        self.done = 0  # items finished by this pool since it started
        self._lock = threading.Lock()
        self._working: dict[str, tuple[Claim, str]] = {}  # claim token -> (claim, consumer)
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ state
    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    @property
    def busy(self) -> int:
        """Workers handling an item of this pool's topic now."""
        with self._lock:
            return sum(1 for claim, _ in self._working.values() if claim.topic == self.topic)

    @contextmanager
    def extended(self, claim: Claim, consumer: str) -> Iterator[None]:
        """Keep ``claim`` alive (its lease extended with the workers' claims) while the block runs: for work
        claimed outside the workers, such as a platform's re-check run."""
        with self._lock:
            self._working[claim.token] = (claim, consumer)
        try:
            yield
        finally:
            with self._lock:
                self._working.pop(claim.token, None)

    def consumer(self, index: int | str) -> str:
        return f"{self.name}/w{index}"

    # ------------------------------------------------------------------ work
    def work_one(self, consumer: str, wait: float = 0.0) -> bool:
        """Claim one item (waiting up to ``wait`` seconds for one) and handle it in the calling thread. False
        when nothing was claimable."""
        # an item taken over from ``max_attempts`` workers that died with it (it crashes the process) is parked
        claims = self.queue.claim_waiting(self.topic, consumer, wait, max_deliveries=self.max_attempts)
        if not claims:
            return False
        claim = claims[0]
        try:
            with self.extended(claim, consumer):
                self.handle(claim)
        except StoreError as e:  # not acknowledged: redelivered after the lease, when the store is back
            log.error("%s: state store unavailable, %s left for a retry: %s", consumer, claim.item, e)
            return True
        except Exception as e:
            self._failed(claim, consumer, e)
            return True
        try:
            self.queue.ack(claim)
        except StoreError as e:
            log.warning("%s: %s done but not acknowledged (it will be delivered again, harmlessly): %s", consumer, claim.item, e)
        with self._lock:
            self.done += 1
        return True

    def _failed(self, claim: Claim, consumer: str, error: Exception) -> None:
        """The handler raised: count the failure; the item is retried (a pending post is queued again by the
        next sweep) until it has failed ``max_attempts`` times in a row, then parked."""
        text = redact(f"{type(error).__name__}: {error}")[:1000]
        try:
            parked = self.queue.fail(claim, text, self.max_attempts)
        except StoreError as e:  # not counted: delivered again after the lease, like any unacknowledged claim
            log.exception("%s: unexpected error on %s, and the failure cannot be recorded: %s", consumer, claim.item, e)
            return
        if parked:
            log.error(
                "%s: %s failed %d times in a row, parked as failed (`afterimage posts failed`; retry with "
                "`afterimage posts retry`): %s", consumer, claim.item, self.max_attempts, text, exc_info=error,
            )  # fmt: skip
        else:
            log.exception("%s: unexpected error on %s (it will be tried again)", consumer, claim.item)
        with self._lock:
            self.done += 1

    def drain(self, consumer: str | None = None, timeout: float | None = None) -> int:
        """Handle claimable items in the calling thread until there are none (``poll --once``, tests, and a
        daemon whose pool is not started). Returns how many were handled."""
        consumer = consumer or self.consumer("main")
        deadline = None if timeout is None else time.monotonic() + timeout
        handled = 0
        while not self.stop_event.is_set() and (deadline is None or time.monotonic() < deadline):
            if not self.work_one(consumer):
                break
            handled += 1
        return handled

    def _run(self, index: str) -> None:
        consumer = self.consumer(index)
        if self.on_start is not None:
            self.on_start()
        while not self.stop_event.is_set():
            try:
                self.work_one(consumer, wait=IDLE_WAIT_SECONDS)
            except StoreError as e:
                log.warning("%s: cannot claim work: %s", consumer, e)
                self.stop_event.wait(IDLE_WAIT_SECONDS)

    def _extend_leases(self) -> None:
        """Keep the claims being worked on alive: extend each every third of the lease."""
        every = max(self.queue.lease_seconds / 3, 0.05)
        while not self.stop_event.wait(every):
            with self._lock:
                working = list(self._working.values())
            for claim, consumer in working:
                try:
                    if not self.queue.extend(claim, consumer):
                        log.warning("%s: lost the claim on %s (taken over after its lease)", consumer, claim.item)
                except StoreError as e:
                    log.warning("%s: cannot extend the claim on %s: %s", consumer, claim.item, e)

    def run_worker(self, names: list[str]) -> None:
        """Work as the workers ``names`` until stopped: the first in the calling thread (the main thread of a
        worker process, :mod:`bot.worker_processes`), the others in threads beside it."""
        self._start_threads(names[1:])
        self._run(names[0])
        for t in self._threads:  # the others end at the same stop
            t.join()

    def start(self) -> None:
        self._start_threads([str(i) for i in range(self.size)])

    def _start_threads(self, names: list[str]) -> None:
        """A thread per worker name, and the lease-extending thread."""
        self._threads = [
            threading.Thread(target=self._run, args=(name,), name=f"worker-{self.topic}-{name}", daemon=True)
            for name in names
        ]
        self._threads.append(threading.Thread(target=self._extend_leases, name=f"leases-{self.topic}", daemon=True))
        for t in self._threads:
            t.start()

    def join(self, timeout: float) -> bool:
        """Wait for the threads after ``stop`` was set; True when all ended."""
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not self.running
