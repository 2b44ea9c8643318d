"""Long outages around a running ``afterimage run`` process: Redis restarted and unreachable for a minute, the
chat target down for a long stretch. The daemon lives through both and loses nothing."""

from __future__ import annotations

import collections
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bot.store import open_store

from .conftest import (
    add_post,
    capture,
    footer_keys,
    leaked,
    picture,
    shown_key,
    start_daemon,
    stop_daemon,
    seed_store,
    wait_for,
)
from bot.store.deletion_log import EventFilter

pytestmark = pytest.mark.slow

REDIS_OUTAGE = float(os.environ.get("AFTERIMAGE_FAULTS_REDIS_OUTAGE", "60"))
CHAT_OUTAGE = float(os.environ.get("AFTERIMAGE_FAULTS_CHAT_OUTAGE", "20"))
EVER = (datetime(2000, 1, 1, tzinfo=timezone.utc), datetime(2100, 1, 1, tzinfo=timezone.utc))


def recycling_post(world, i: int) -> str:
    post_id = str(1862000000000000000 + i)
    add_post(world, post_id, picture(3000 + i, variant=i + 1), minutes_ago=1)
    return post_id


def test_redis_restarted_and_down_for_a_minute(tmp_path: Path, world, redis_server) -> None:
    w, server = world
    url = redis_server.url
    config = seed_store(tmp_path, server, url, range(3000, 3006), source="https://example.org/k{k}")
    ids = [recycling_post(w, i) for i in range(2)]
    log = tmp_path / "daemon.log"
    proc = start_daemon(config, url, log)
    try:
        store = open_store(url)
        wait_for(lambda: store.outbox_size() == 0 and len(footer_keys(w)) >= 2, 40, "the first alerts")
        store.close()

        # Redis goes away (clean shutdown: its AOF is fsynced) and stays away while new posts appear
        redis_server.stop()
        ids += [recycling_post(w, i) for i in range(2, 6)]
        time.sleep(REDIS_OUTAGE)
        assert proc.poll() is None, "the daemon died while Redis was down"
        redis_server.start()  # same port, same data folder

        store = open_store(url)
        wait_for(
            lambda: all(store.get_post("x", i) for i in ids) and not store.pending_posts(1) and store.outbox_size() == 0
            and len(store.alerts_between(*EVER)) >= 6,
            60,
            "every post stored and every alert delivered after Redis came back",
            every=0.5,
        )
        time.sleep(3)
        assert proc.poll() is None
    finally:
        code = stop_daemon(proc)
    output = capture("redis outage daemon log", log.read_text(errors="replace"))
    assert code == 0, output[-3000:]
    assert "state store unavailable" in output or "Redis store" in output, "the outage was not logged"
    alerts = store.alerts_between(*EVER)
    received = collections.Counter(footer_keys(w))
    expected = {shown_key(a.key) for a in alerts}
    assert set(received) == expected and all(n == 1 for n in received.values()), (received, expected)
    assert {a.payload["post_id"] for a in alerts if a.kind == "match"} == set(ids)
    assert store.list_events(EventFilter(kinds=["deleted"])) == []
    store.close()
    assert not leaked(output)
    print(f"\nredis down {REDIS_OUTAGE:.0f}s: {len(ids)} posts ({len(ids) - 2} during the outage), {len(alerts)} alerts, "
          f"{sum(received.values())} deliveries, 0 lost, 0 duplicates")


def test_chat_down_for_a_long_stretch_delivers_in_order_once(tmp_path: Path, world, redis_server) -> None:
    w, server = world
    url = redis_server.url
    config = seed_store(tmp_path, server, url, range(3000, 3012), source="https://example.org/k{k}")
    store = open_store(url)
    w.chat_down = True
    log = tmp_path / "daemon.log"
    proc = start_daemon(config, url, log)
    ids: list[str] = []
    try:
        # posts keep coming during the outage; their alerts pile up in the outbox
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < CHAT_OUTAGE:
            if i < 12:
                ids.append(recycling_post(w, i))
                i += 1
            time.sleep(CHAT_OUTAGE / 14)
        wait_for(lambda: store.outbox_size() >= len(ids), 30, "every alert queued during the outage", every=0.5)
        assert footer_keys(w) == [] and proc.poll() is None
        queued = [a.key for a in store.alerts_between(*EVER)]
        w.chat_down = False
        wait_for(lambda: store.outbox_size() == 0, 60, "the backlog delivered", every=0.5)
        time.sleep(3)
    finally:
        code = stop_daemon(proc)
    output = capture("chat outage daemon log", log.read_text(errors="replace"))
    assert code == 0
    received = footer_keys(w)
    assert received == [shown_key(k) for k in queued], "not delivered once each, in queue order"
    assert {a.payload["post_id"] for a in store.alerts_between(*EVER) if a.kind == "match"} == set(ids)
    store.close()
    assert not leaked(output) and not leaked(str(w.received_alerts))
    print(f"\nchat down {CHAT_OUTAGE:.0f}s: {len(queued)} alerts queued, delivered in order, each once")
