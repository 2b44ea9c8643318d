"""Where a daemon's stills are decoded and hashed: in the worker thread itself, or in worker processes.

Why processes: decoding and hashing a still (:func:`bot.hashing.stage.hash_image`: PDQ's dihedral
variants, pHash, border detection, ORB keypoints spread over the image) is most of a post's CPU, and much
of it is Python and small numpy operations that hold the GIL, so two worker threads of one daemon kept
only ~1.3 of 2 cores busy (``bench/scale.py``). A :class:`ProcessHasher` runs that step in a pool of
processes and hands back a :class:`~bot.hashing.stage.HashedImage` (the working image, its signals,
query hashes and local features: ~1 MB pickled), while matching stays in the daemon's threads, against
the daemon's ONE matcher index: the pool's processes never load an index (they hold the hashing
libraries only), so memory does not grow with the index per worker.

Both hashers give identical results: the same functions run, only in another process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from typing import Literal

from PIL import Image

from bot.errors import MediaError
from bot.hashing.decode import decode_image
from bot.hashing.stage import HashedImage, hash_image

log = logging.getLogger(__name__)

WorkersMode = Literal["threads", "processes", "forked"]


class InlineHasher:
    """Decodes and hashes in the calling thread (``pipeline.workers_mode: threads``, one-shot commands)."""

    def file(self, data: bytes) -> HashedImage:
        """Decode an archived still (safely: :class:`MediaError` for hostile bytes) and hash it; ``data``
        stays on the result (embedded pictures are cut from a sharper decode of it)."""
        return hash_image(decode_image(data), data=data)

    def image(self, image: Image.Image) -> HashedImage:
        """Hash an already decoded still (a video frame)."""
        return hash_image(image)

    def start(self) -> None:
        """Hash a small image once, before any post waits: the first hash imports the parts of the hashing
        libraries they load lazily (SciPy's FFT for pHash: ~0.7 s of CPU)."""
        warm_up()

    @property
    def pids(self) -> list[int]:
        """Processes doing the hashing besides the daemon's own (for memory figures)."""
        return []

    def close(self) -> None:
        """Nothing to release."""


def one_library_thread_per_worker() -> None:
    """The parallelism comes from the workers: OpenCV's, faiss's and the BLAS's (numpy's) own thread pools
    would only oversubscribe the cores. Measured by ``bench/scale.py``: one worker with OpenCV's and faiss's
    used about twice the CPU per post (199 ms) of a worker without them (94 ms), for the same work. The BLAS
    and OpenMP runtimes are limited the same way (their idle threads spin); no clear gain was measured on
    the loaded machine (a one-worker daemon 164-173 ms per post either way, vs 56 ms once with
    ``OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1`` at a lower load)."""
    import cv2
    import faiss
    from threadpoolctl import threadpool_limits

    cv2.setNumThreads(1)
    faiss.omp_set_num_threads(1)
    threadpool_limits(1)  # every BLAS and OpenMP runtime loaded in the process, at run time


#: glibc's mallopt parameters (malloc.h) and the values :func:`keep_freed_memory` sets
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: free memory kept at the top of a heap (and a thread's arena) instead of being returned to the system
TRIM_THRESHOLD = 128 << 20
#: blocks at least this large get pages of their own (mapped, and unmapped when freed)
MMAP_THRESHOLD = 32 << 20


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep the memory a post's work frees, for the next post (a daemon, a hashing
    process). Why: a still's working buffers (a decoded 2 MP photo, PDQ's 2.4 MB float luma planes, OpenCV
    pyramids) are freed after each post; by default glibc maps a block over its threshold (128 KB, raised to
    the largest mapped block freed so far) for itself and unmaps it when freed, and trims a heap whose free top
    exceeds twice that threshold, so every post faulted the same pages in (and zeroed them) again: ~2,600-2,900
    minor faults per post, 80-170 with this. Measured by ``bench/scale.py``: a one-worker daemon used 45-52 ms of CPU per post
    against 27-30 ms for a check; with this, 37-40 ms (PDQ alone 9.5 -> 4.3 ms in a hashing process). The cost
    is memory the process keeps at its peak (up to :data:`TRIM_THRESHOLD` free per heap). False where the C
    library is not glibc (nothing changed)."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


#: how often a hashing process checks that its daemon is still alive
_WATCH_SECONDS = 1.0


def _start_worker(daemon_pid: int) -> None:
    """The pool's processes are the parallelism: the libraries' own threads would only oversubscribe the cores. A
    process also ends when its daemon is gone (kill -9): it is the fork server's child, not the daemon's, and
    would otherwise wait for work forever."""
    one_library_thread_per_worker()
    keep_freed_memory()
    threading.Thread(target=_exit_with, args=(daemon_pid,), name="watch-daemon", daemon=True).start()


def _exit_with(daemon_pid: int) -> None:
    while True:
        time.sleep(_WATCH_SECONDS)
        try:
            os.kill(daemon_pid, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:  # alive, another user's (cannot happen for our own parent, but harmless)
            pass


def _hash_file(data: bytes) -> HashedImage | tuple[str, str]:
    """In a pool process: :meth:`InlineHasher.file` without sending the file back (the caller has it). A
    :class:`MediaError` comes back as ``(reason, message)``: its constructor does not survive pickling."""
    try:
        return replace(InlineHasher().file(data), data=None)
    except MediaError as e:
        return (e.reason, str(e))


def _hash_image(image: Image.Image) -> HashedImage:
    return hash_image(image)


def warm_up() -> None:
    """Hash a small image (see :meth:`InlineHasher.start`)."""
    hash_image(Image.new("RGB", (64, 48), (128, 96, 64)))


def _ready() -> int:
    warm_up()
    return os.getpid()


class ProcessHasher(InlineHasher):
    """Decodes and hashes in ``processes`` worker processes (``pipeline.workers_mode: processes``).

    The processes come from a fork server that imported the hashing code before any of the daemon's threads
    or connections existed (forking the threaded daemon itself could copy a lock held by another thread).
    A pool whose process died (killed, out of memory) is replaced at the next still."""

    def __init__(self, processes: int):
        self.processes = processes
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(["bot.hashing.pool"])
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.processes, mp_context=self._context, initializer=_start_worker, initargs=(os.getpid(),)
        )

    def _run(self, fn: object, arg: object) -> object:
        try:
            future: Future[object] = self._pool.submit(fn, arg)  # type: ignore[arg-type]
            return future.result()
        except BrokenProcessPool:
            log.warning("a hashing process died: starting a new pool and hashing the still again")
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            return self._pool.submit(fn, arg).result()  # type: ignore[arg-type]

    def start(self) -> None:
        """Start every process now (the fork server, then each process importing the hashing libraries takes
        seconds), not when the first post is waiting for it."""
        for future in [self._pool.submit(_ready) for _ in range(self.processes)]:
            future.result()

    def file(self, data: bytes) -> HashedImage:
        result = self._run(_hash_file, data)
        if isinstance(result, tuple):
            raise MediaError(*result)
        assert isinstance(result, HashedImage)
        return replace(result, data=data)

    def image(self, image: Image.Image) -> HashedImage:
        result = self._run(_hash_image, image)
        assert isinstance(result, HashedImage)
        return result

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in (self._pool._processes or {}).values() if p.pid is not None]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def build_hasher(mode: WorkersMode, workers: int) -> InlineHasher:
    """The hasher of a daemon with ``workers`` workers in ``mode``."""
    return ProcessHasher(workers) if mode == "processes" else InlineHasher()
