"""Forked worker processes (``pipeline.workers_mode: forked``) under kill -9, on both stores, with one thread
per process and (Redis) two.

A real ``afterimage run`` daemon runs its posts in two worker processes. While posts (a third of them
recycling known pictures, their pictures served slowly so that kills land mid-post) keep coming, worker
processes are killed with SIGKILL: each is replaced at once, the post it held is taken over, and in the end
every post is processed, archived and verifiable, and every alert is delivered exactly once (the workers
never deliver: the daemon's outbox does). Killing the daemon itself ends its worker processes too: none is
left running on its own."""

from __future__ import annotations

import collections
import os
import signal
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bot.archive import Archive
from bot.demo.fakes import Fault
from bot.store import open_store, open_work_queue
from bot.store.queue import POSTS

from .conftest import (
    add_post,
    capture,
    footer_keys,
    leaked,
    picture,
    seed_store,
    seeded,
    shown_key,
    start_daemon,
    stop_daemon,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.slow

KNOWN = 4
WORKERS = 2
KILLS = 4


def children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def worker_processes(daemon_pid: int) -> list[int]:
    """The daemon's worker processes: the children of its zygote (its only child process)."""
    return [w for zygote in children(daemon_pid) for w in children(zygote)]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize(("backend", "threads"), [("redis", 1), ("sqlite", 1), ("redis", 2)])
def test_killed_worker_processes_are_replaced_and_lose_nothing(
    tmp_path: Path, world, backend: str, threads: int, request: pytest.FixtureRequest
) -> None:
    w, server = world
    rng = seeded(f"worker-processes-{backend}-{threads}")
    url = request.getfixturevalue("redis_server").url if backend == "redis" else f"sqlite:///{tmp_path / 'data' / 'state.db'}"
    seed_store(tmp_path, server, url, range(8300, 8300 + KNOWN), source="https://example.org/w{k}")
    config = write_config(
        tmp_path / "cfg.yaml", server, url, tmp_path / "data",
        extra_media=f"pipeline:\n  workers: {WORKERS}\n  workers_mode: forked\n  worker_threads: {threads}\n"
                    "  lease: 30s\n  max_attempts: 1000\n",
    )  # fmt: skip
    store = open_store(url)
    queue = open_work_queue(store)
    ids: list[str] = []

    def new_posts(n: int) -> None:
        for _ in range(n):
            ids.append(str(1868000000000000000 + len(ids)))
            k = len(ids)
            data = picture(8300 + k % KNOWN, variant=k) if k % 3 == 0 else picture(8400 + k)
            w.inject(f"/media/{ids[-1]}.jpg", Fault("delay", seconds=0.6, sticky=True))  # kills land mid-post
            add_post(w, ids[-1], data, minutes_ago=30 - k * 0.1)

    new_posts(6)
    log_file = tmp_path / "daemon.log"
    proc = start_daemon(config, url, log_file)
    try:
        wait_for(lambda: "afterimage running" in log_file.read_text(errors="replace"), 60, "the daemon up")
        wait_for(lambda: len(worker_processes(proc.pid)) == WORKERS, 10, "its worker processes")
        killed = []
        for _ in range(KILLS):
            wait_for(lambda: queue.backlog(POSTS).in_progress > 0, 30, "a post in progress", every=0.05)
            time.sleep(rng.uniform(0.1, 0.5))
            victim = rng.choice(worker_processes(proc.pid))
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
            # replaced: the same number of workers, the dead one not among them
            wait_for(lambda v=victim: len(worker_processes(proc.pid)) == WORKERS and v not in worker_processes(proc.pid),
                     10, "the killed worker replaced")  # fmt: skip
            new_posts(rng.choice((1, 2, 3)))
        wait_for(
            lambda: all(store.get_post("x", i) is not None for i in ids) and not store.pending_posts(1)
            and store.outbox_size() == 0,
            120, "every post stored and processed, the outbox empty", every=0.3,
        )  # fmt: skip
        time.sleep(2)  # more polls and outbox runs: nothing may be sent again
        assert proc.poll() is None  # the daemon itself never went down
        # what `afterimage status` shows: the daemon's worker processes and the posts they did (kills included)
        wait_for(lambda: [(d.info["workers"], d.info["mode"]) for d in queue.daemons()] == [(WORKERS * threads, "forked")]
                 and queue.daemons()[0].info["done"] >= len(ids), 15, "the daemon's announcement")  # fmt: skip

        # the daemon killed: its worker processes do not outlive it
        workers = worker_processes(proc.pid)
        zygote = children(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_for(lambda: not any(alive(p) for p in workers + zygote), 10, "the worker processes gone with their daemon")
    finally:
        if proc.poll() is None:
            stop_daemon(proc)
    output = capture(f"worker processes daemon log ({backend}, {threads} thread(s) each)", log_file.read_text(errors="replace"))
    assert output.count("died (signal SIGKILL): starting another") == KILLS, output[-3000:]

    archive = Archive(tmp_path / "data" / "archive")
    for post_id in ids:
        stored = store.get_post("x", post_id)
        assert stored is not None and not stored.pending, f"post {post_id} lost or unprocessed"
        links = store.get_post_media("x", post_id)
        assert links and all(link.sha256 for link in links), f"{post_id}: media not archived: {links}"
        for link in links:
            assert archive.get(store.get_media(link.sha256).archive_path)  # verifies the hash
    alerts = store.alerts_between(datetime(2000, 1, 1, tzinfo=timezone.utc), datetime(2100, 1, 1, tzinfo=timezone.utc))
    store.close()
    received = collections.Counter(footer_keys(w))
    assert {shown_key(a.key) for a in alerts} == set(received), "every stored alert delivered, nothing else"
    assert all(n == 1 for n in received.values()), f"an alert delivered twice: {received}"
    matched = {a.payload.get("post_id") for a in alerts if a.kind == "match"}
    assert {p for k, p in enumerate(ids, 1) if k % 3 == 0} <= matched
    assert not leaked(output) and not any(leaked(str(p)) for p in w.received_alerts)


def test_a_stopped_daemon_stops_its_worker_processes_cleanly(tmp_path: Path, world, redis_server) -> None:
    """SIGTERM (systemd's stop, Docker's): the workers finish or put back their posts, the daemon exits 0, and
    no worker process is left behind; a later daemon finishes whatever was in progress."""
    w, server = world
    url = redis_server.url
    seed_store(tmp_path, server, url, range(8500, 8502))
    config = write_config(tmp_path / "cfg.yaml", server, url, tmp_path / "data",
                          extra_media=f"pipeline:\n  workers: {WORKERS}\n  workers_mode: forked\n")  # fmt: skip
    ids = [str(1868500000000000000 + k) for k in range(4)]
    for k, post_id in enumerate(ids):
        w.inject(f"/media/{post_id}.jpg", Fault("delay", seconds=1.0, sticky=True))
        add_post(w, post_id, picture(8500 + k % 2, variant=k + 1), minutes_ago=10 - k)
    store = open_store(url)
    queue = open_work_queue(store)
    log_file = tmp_path / "daemon.log"
    proc = start_daemon(config, url, log_file)
    try:
        wait_for(lambda: queue.backlog(POSTS).in_progress > 0, 60, "posts in progress", every=0.05)
        processes = worker_processes(proc.pid) + children(proc.pid)
        assert len(processes) == WORKERS + 1
        started = time.monotonic()
        assert stop_daemon(proc) == 0
        stopped_in = time.monotonic() - started
        assert not any(alive(p) for p in processes), "a worker process outlived its stopped daemon"
        print(f"\nforked daemon stopped in {stopped_in:.1f}s with posts in progress")
        proc = start_daemon(config, url, log_file)  # the next daemon finishes the work
        wait_for(lambda: all(store.get_post("x", i) is not None and not store.get_post("x", i).pending for i in ids)
                 and store.outbox_size() == 0, 90, "every post processed and alerted")  # fmt: skip
    finally:
        if proc.poll() is None:
            assert stop_daemon(proc) == 0
        store.close()
    assert len(footer_keys(w)) == len(set(footer_keys(w))) == len(ids)  # each post's match alert, once
