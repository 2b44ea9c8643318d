"""The worker pool: several threads claim items one at a time; a long item keeps its claim (the lease is
extended while it runs); an item whose handler failed on the store is left claimed for a redelivery."""

from __future__ import annotations

import threading
import time

from bot.errors import StoreError
from bot.store import open_work_queue
from bot.store.sqlite import SqliteStore
from bot.workers import WorkerPool


def test_threads_share_the_items_and_each_is_handled_once(tmp_path):
    queue = open_work_queue(SqliteStore(str(tmp_path / "s.db")))
    queue.put("posts", [f"i{n}" for n in range(20)])
    seen: list[str] = []
    threads: set[str] = set()
    lock = threading.Lock()

    def handle(claim):
        time.sleep(0.05)
        with lock:
            seen.append(claim.item)
            threads.add(threading.current_thread().name)

    pool = WorkerPool(queue, "posts", handle, name="d", threads=3)
    pool.start()
    deadline = time.monotonic() + 20
    while len(seen) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    pool.stop_event.set()
    assert pool.join(5)
    assert sorted(seen) == sorted(f"i{n}" for n in range(20))
    assert len(threads) > 1 and pool.done == 20
    assert queue.backlog("posts").in_progress == 0 and queue.claim("posts", "other") == []


def test_a_long_item_keeps_its_claim_beyond_the_lease(tmp_path):
    store = SqliteStore(str(tmp_path / "s.db"))
    queue = open_work_queue(store, lease_seconds=0.3)
    queue.put("posts", ["slow"])
    started, release = threading.Event(), threading.Event()

    def handle(claim):
        started.set()
        release.wait(5)

    pool = WorkerPool(queue, "posts", handle, name="d", threads=1)
    pool.start()
    assert started.wait(5)
    time.sleep(1.0)  # three leases
    assert open_work_queue(store, lease_seconds=0.3).claim("posts", "thief") == []
    assert pool.busy == 1
    release.set()
    pool.stop_event.set()
    assert pool.join(5)
    assert queue.backlog("posts").in_progress == 0


def test_a_store_failure_leaves_the_item_for_a_redelivery(tmp_path):
    queue = open_work_queue(SqliteStore(str(tmp_path / "s.db")), lease_seconds=0.2)
    queue.put("posts", ["x"])
    calls = []

    def handle(claim):
        calls.append(claim.deliveries)
        if len(calls) == 1:
            raise StoreError("store down")

    pool = WorkerPool(queue, "posts", handle, name="d", threads=1)
    assert pool.drain() == 1  # claimed, failed, not acknowledged
    time.sleep(0.3)  # the lease runs out (nobody extends it without started threads)
    assert pool.drain() == 1
    assert calls == [1, 2]
    assert queue.backlog("posts").in_progress == 0
