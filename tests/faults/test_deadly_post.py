"""A post that kills its worker's process every time (a native decoder's segfault, the OOM killer) is parked
after ``pipeline.max_attempts`` deaths instead of being taken over forever, and the other posts go on.

Such a post never raises: its daemon just vanishes, the claim runs out (or is released at once by a daemon
restarted on the same host) and the next worker takes it over. No decoder in the stack crashes on a known
input (one that did would be a bug to fix), so the death is the real thing done from outside: a real
``afterimage run`` process is sent SIGKILL each time the queue shows its worker holding the deadly post
(read from the Redis stream's pending entries, or the SQLite store's leased rows: both stores are run). Its picture is served slowly, so the claim is seen while
the post is being worked on. After the limit, the next daemon parks it at its first claim, processes every
other post, and ``afterimage posts failed`` lists it with the deaths and the last holder;
``afterimage posts retry`` queues it again and, the cause gone, it is processed and alerted."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
import redis

from bot.demo.fakes import Fault
from bot.store import open_store, open_work_queue
from bot.store.queue import POSTS, post_item
from bot.store.review import CaseQuery

from .conftest import (
    ROOT,
    add_post,
    capture,
    daemon_env,
    leaked,
    picture,
    seed_store,
    start_daemon,
    stop_daemon,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.slow

MAX_ATTEMPTS = 3
KNOWN = 4


def redis_holder(url: str) -> Callable[[str], str | None]:
    """The consumer holding a claim on an item now, from the posts stream's pending entries (XPENDING)."""
    client = redis.Redis.from_url(url, decode_responses=True)
    stream = "afterimage:q:posts"

    def holder_of(item: str) -> str | None:
        items = {entry_id: fields.get("item") for entry_id, fields in client.xrange(stream)}
        for row in client.xpending_range(stream, "workers", "-", "+", 1000):
            if items.get(row["message_id"]) == item:
                return row["consumer"]
        return None

    return holder_of


def sqlite_holder(path: Path) -> Callable[[str], str | None]:
    """The consumer holding a claim on an item now, from the SQLite store's leased rows."""

    def holder_of(item: str) -> str | None:
        with closing(sqlite3.connect(path, timeout=10)) as db:
            row = db.execute("SELECT consumer FROM work_items WHERE topic = 'posts' AND item = ? AND lease_until_us >= ?",
                             (item, int(time.time() * 1_000_000))).fetchone()  # fmt: skip
        return row[0] if row else None

    return holder_of


def cli(config: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "posts", *args, "-c", str(config)],
        cwd=ROOT, env=daemon_env(url), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize("backend", ["redis", "sqlite"])
def test_a_post_that_kills_every_worker_is_parked_and_the_others_are_processed(
    tmp_path: Path, world, backend: str, request: pytest.FixtureRequest
) -> None:
    w, server = world
    if backend == "redis":
        url = request.getfixturevalue("redis_server").url
        holder_of = redis_holder(url)
    else:
        url = f"sqlite:///{tmp_path / 'data' / 'state.db'}"
        holder_of = sqlite_holder(tmp_path / "data" / "state.db")
    seed_store(tmp_path, server, url, range(8100, 8100 + KNOWN), source="https://example.org/d{k}")
    config = write_config(
        tmp_path / "cfg.yaml", server, url, tmp_path / "data",
        extra_media=f"pipeline:\n  workers: 2\n  lease: 3s\n  max_attempts: {MAX_ATTEMPTS}\n",
    )  # fmt: skip
    store = open_store(url)
    queue = open_work_queue(store)
    deadly = "1867000000000000000"
    item = post_item("x", deadly, 1)
    w.inject(f"/media/{deadly}.jpg", Fault("delay", seconds=4.0, sticky=True))
    add_post(w, deadly, picture(8100, variant=1), minutes_ago=20)  # recycles a known picture: a match once it passes
    others = [str(1867000000000000001 + k) for k in range(KNOWN + 2)]
    add_post(w, others[0], picture(8101, variant=2), minutes_ago=19)

    log_file = tmp_path / "daemon.log"
    holders = []
    for kill in range(MAX_ATTEMPTS):
        proc = start_daemon(config, url, log_file)
        try:
            wait_for(lambda: (holder_of(item) or "").split(":")[1:2] == [str(proc.pid)], 90,
                     f"a worker of daemon {kill + 1} holding the deadly post", every=0.05)  # fmt: skip
            holders.append(holder_of(item))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        add_post(w, others[kill + 1], picture(8000 + kill, variant=0), minutes_ago=5 - kill)  # posts keep coming
        assert store.get_post("x", deadly).pending

    proc = start_daemon(config, url, log_file)  # parks it at once, works through the rest
    started = time.monotonic()
    try:
        wait_for(lambda: [f.item for f in queue.failed(POSTS)] == [item], 90, "the deadly post parked")
        parked_after = time.monotonic() - started
        wait_for(lambda: all(store.get_post("x", i) is not None and not store.get_post("x", i).pending
                             for i in others[: MAX_ATTEMPTS + 1]), 120, "every other post processed")  # fmt: skip
        assert store.get_post("x", deadly).pending  # kept, unprocessed, not lost
        assert holder_of(item) is None and queue.backlog(POSTS).failed == 1

        listed = cli(config, url, "failed")
        assert listed.returncode == 0, listed.stderr
        line = next(line for line in listed.stdout.splitlines() if line.startswith(item))
        assert f"{MAX_ATTEMPTS} attempt(s)" in line
        assert f"the worker processing it died {MAX_ATTEMPTS} time(s); last taken over from {holders[-1]}" in line
        assert "1 failed post(s)" in listed.stderr

        with w.lock:  # the cause is fixed (say, the decoder upgraded): retried, it goes through
            w.faults.clear()
        retried = cli(config, url, "retry", item)
        assert retried.returncode == 0 and f"queued {item}" in retried.stdout, retried.stderr
        wait_for(lambda: not store.get_post("x", deadly).pending, 60, "the retried post processed")
        wait_for(lambda: store.outbox_size() == 0, 60, "its alert delivered")
        assert queue.failed(POSTS) == []
    finally:
        code = stop_daemon(proc)
    text = capture("deadly post daemon log", log_file.read_text(errors="replace"))
    matched = {c.post_id for c in store.list_cases(CaseQuery(platform="x"))}
    store.close()
    print(f"\ndeadly post: held by {holders} (each killed); parked {parked_after:.1f}s after the next daemon started "
          f"(its start-up included); retried and matched: {deadly in matched}")
    assert code == 0
    assert len({h.split("/")[0] for h in holders}) == MAX_ATTEMPTS  # a different daemon each time
    assert f"died {MAX_ATTEMPTS} time(s)" in text and "parked as failed" in text  # the log says so too
    assert deadly in matched and others[0] in matched
    assert not leaked(text)
