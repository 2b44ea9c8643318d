"""The worker pool: several threads claim items one at a time; a long item keeps its claim (the lease is
extended while it runs); an item whose handler failed on the store is left claimed for a redelivery."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.errors import StoreError
from bot.models import Post
from bot.status import render_prometheus, take_snapshot
from bot.store import open_store, open_work_queue
from bot.store.queue import POSTS, parse_post_item, post_item
from bot.store.sqlite import SqliteStore
from bot.workers import WorkerPool
from bot.store.posts import AccountPoll


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


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store_url(request, tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}" if request.param == "sqlite" else request.getfixturevalue("redis_url")


def test_a_poison_post_is_parked_after_max_attempts_shown_and_retried(store_url, tmp_path):
    """Processing that raises every time: the post is tried ``max_attempts`` times (each daemon sweep queues
    it again), then parked; it stays in the store unprocessed, shows in status and /metrics, is listed by
    ``afterimage posts failed`` and processed after ``afterimage posts retry``."""
    store = open_store(store_url)
    queue = open_work_queue(store)
    post = Post("x", "MinistryOfDefence", "9", "https://x.com/m/status/9", "t", datetime.now(timezone.utc), raw={})
    store.record_poll(AccountPoll("x", "MinistryOfDefence", [post, replace(post, post_id="10", url="https://x.com/m/status/10")], "10"))
    fixed = threading.Event()
    calls: list[str] = []

    def handle(claim):
        platform, post_id, version = parse_post_item(claim.item)
        calls.append(post_id)
        if post_id == "9" and not fixed.is_set():
            raise ValueError("unexpected payload shape in post 9")
        store.mark_processed(platform, post_id, version)

    def sweep() -> None:  # what the daemon's ``pending`` job does every 30 s
        queue.put(POSTS, [post_item(p.post.platform, p.post.post_id, p.version) for p in store.pending_posts(100)])

    pool = WorkerPool(queue, POSTS, handle, name="d", threads=1, max_attempts=3)
    for _ in range(6):
        sweep()
        pool.drain()
    assert calls.count("9") == 3 and calls.count("10") == 1
    (failed,) = queue.failed(POSTS)
    assert failed.item == "x:1:9" and failed.attempts == 3 and "unexpected payload shape" in failed.error
    assert [p.post.post_id for p in store.pending_posts(10)] == ["9"]  # kept, unprocessed: nothing lost

    config = tmp_path / "cfg.yaml"
    config.write_text(f"data_dir: {tmp_path}\nstore: {store_url}\n")
    runner = CliRunner()
    status = runner.invoke(main, ["status", "-c", str(config)])
    assert status.exit_code == 0 and "failed posts: 1 (processing raised, or killed its worker, every attempt" in status.output
    assert "afterimage_posts_failed 1" in render_prometheus(take_snapshot(store, {}, datetime.now(timezone.utc)))
    listed = runner.invoke(main, ["posts", "failed", "-c", str(config)])
    assert listed.exit_code == 0 and "x:1:9" in listed.output and "3 attempt(s)" in listed.output
    assert "ValueError: unexpected payload shape in post 9" in listed.output

    fixed.set()  # the cause is fixed (a new release): queue it again
    assert runner.invoke(main, ["posts", "retry", "x:1:10", "-c", str(config)]).exit_code == 1  # not a failed post
    retried = runner.invoke(main, ["posts", "retry", "--all", "-c", str(config)])
    assert retried.exit_code == 0 and "queued x:1:9" in retried.output
    assert pool.drain() == 1
    assert store.pending_posts(10) == [] and queue.failed(POSTS) == []
    assert "failed posts: 0" in runner.invoke(main, ["status", "-c", str(config)]).output
    store.close()
