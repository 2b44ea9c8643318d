"""A daemon's worker processes (``pipeline.workers_mode: forked``): the whole post pipeline in N processes
forked from the daemon once its matching index is loaded.

Why processes that run the whole post, not threads: most of a post's CPU (decoding, PDQ's variants, pHash,
border detection, the small numpy steps of matching) holds the GIL, so one daemon's threads kept ~1.3 of 2
cores busy; hashing alone in processes (``workers_mode: processes``) still left the matching, the store
round trips and the pickling of every hashed still in the daemon (``bench/scale.py``). A forked worker runs
a post from claim to acknowledgement on a core of its own.

Why one index per daemon still holds: the workers are forked after the index is loaded, so its pages (faiss
lists, cached local features) are shared copy-on-write with the daemon; each worker only adds the entries
appended since (the *seen* images of new posts). ``bench/scale.py`` reports the proportional set size.

Why a zygote: the workers are forked by a single-threaded process (itself forked from the daemon before any
of the daemon's threads started), never by the threaded daemon: a fork copies every lock as it is at that
instant, and a lock another thread held (a store connection's, the evidence folder's ``flock``) would stay
held forever in the copy. The zygote only waits for its workers and forks a replacement for one that died
(killed, out of memory), which first makes its predecessor's claim claimable at once. The daemon's death
(even ``kill -9``) ends the zygote and the workers with it (Linux ``PR_SET_PDEATHSIG``); their claims are then
taken over like any dead daemon's.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable

from bot.store.queue import Claim
from bot.workers import WorkerPool

log = logging.getLogger(__name__)

#: Linux prctl option: the signal a process gets when the thread that forked it ends
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Be killed when the process that forked this one dies (best effort: Linux only)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


class WorkerProcesses:
    """``processes`` processes, each running ``threads`` workers of ``pool`` until told to stop (``size``
    workers in all, as a :class:`WorkerPool` counts them).

    ``after_fork`` runs first in each worker (reopen what must not be shared across a fork: the store's
    connection). ``busy`` and ``done`` are read from counters the workers keep in shared memory."""

    def __init__(self, pool: WorkerPool, processes: int, *, after_fork: Callable[[], None], threads: int = 1):
        self.pool = pool
        self.processes = processes
        self.threads = threads
        self.size = processes * threads
        self.after_fork = after_fork
        self._busy = multiprocessing.RawArray("i", processes)  # shared memory: set up before any fork
        self._done = multiprocessing.RawArray("q", processes)
        self.zygote: int | None = None
        self.daemon_pid = os.getpid()  # the process that forks the zygote: the daemon's workers wake it

    # ------------------------------------------------------------------ the daemon's side
    @property
    def busy(self) -> int:
        return sum(self._busy)

    @property
    def done(self) -> int:
        return sum(self._done)

    @property
    def running(self) -> bool:
        if self.zygote is None:
            return False
        try:
            pid, _ = os.waitpid(self.zygote, os.WNOHANG)
        except ChildProcessError:
            return False
        return pid == 0

    def start(self) -> None:
        """Fork the zygote, which forks the workers. Call before the daemon starts any thread."""
        if threading.active_count() > 1:
            log.warning("forking worker processes while %d threads run", threading.active_count())
        pid = os.fork()
        if pid == 0:
            self._zygote()  # never returns
        self.zygote = pid

    def join(self, timeout: float) -> bool:
        """Ask the workers to stop after their current post and wait up to ``timeout`` (then kill them: their
        claims are taken over). True when they ended in time."""
        if self.zygote is None:
            return True
        try:
            os.kill(self.zygote, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                return True
            time.sleep(0.05)
        try:
            os.kill(self.zygote, signal.SIGKILL)  # its workers die with it
            os.waitpid(self.zygote, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        return False

    # ------------------------------------------------------------------ the zygote
    def _zygote(self) -> None:
        code = 1
        try:
            _die_with_parent()
            stopping = False
            workers: dict[int, int] = {}  # pid -> index

            def stop(signum: int, _frame: object) -> None:
                nonlocal stopping
                stopping = True
                for pid in list(workers):
                    try:
                        os.kill(pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass

            signal.signal(signal.SIGTERM, stop)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C: the daemon stops us
            for index in range(self.processes):
                workers[self._fork_worker(index, replacing=False)] = index
            while workers:
                try:
                    pid, status = os.wait()
                except ChildProcessError:
                    break
                index = workers.pop(pid, None)
                if index is None or stopping:
                    continue
                log.error("worker process %d (%s) died (%s): starting another", pid, self.pool.consumer(index), _status_text(status))
                self._busy[index] = 0
                workers[self._fork_worker(index, replacing=True)] = index
            code = 0
        except BaseException:
            log.exception("worker processes: the zygote failed")
        finally:
            os._exit(code)

    def _fork_worker(self, index: int, *, replacing: bool) -> int:
        pid = os.fork()
        if pid == 0:
            self._worker(index, replacing)  # never returns
        return pid

    # ------------------------------------------------------------------ a worker
    def _worker(self, index: int, replacing: bool) -> None:
        code = 1
        try:
            _die_with_parent()
            pool = self.pool
            signal.signal(signal.SIGTERM, lambda *_: pool.stop_event.set())
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            self.after_fork()
            names = [str(index)] if self.threads == 1 else [f"{index}.{t}" for t in range(self.threads)]
            if replacing:  # the posts its predecessor died with are taken over now, not after the lease
                for name in names:
                    pool.queue.expire_claims(pool.topic, pool.consumer(name))
            handle, lock = pool.handle, threading.Lock()

            def counted(claim: Claim) -> None:
                with lock:
                    self._busy[index] += 1
                try:
                    handle(claim)
                finally:
                    with lock:
                        self._busy[index] -= 1
                        self._done[index] += 1

            pool.handle = counted
            pool.run_worker(names)
            code = 0
        except BaseException:
            log.exception("worker process %s failed", self.pool.consumer(index))
        finally:
            logging.shutdown()
            os._exit(code)


def _status_text(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
