"""End to end: ``afterimage run`` as a real process watching a Telegram channel on a fake t.me.

The fake preview site (``bot.demo.fake_telegram`` inside ``bot.demo.fakes``) renders t.me's markup; the daemon
reads it with the Telegram watcher as in production. While it runs, the site answers 429s, 502s, truncated
pages and challenge pages to polls and look-ups: none of that may become a deletion.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.demo.fake_telegram import CHALLENGE_PAGE, FakeMessage, channel_page, embed_page
from bot.demo.fakes import Fault, FakePlatforms, FakeWorld
from bot.demo.scene import ministry_evidence, write_trailer
from bot.store import open_store
from tests.images import encode, scene

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CHANNEL = "mod_example_en"
ALBUM = 120


@pytest.fixture
def world() -> Iterator[tuple[FakeWorld, FakePlatforms]]:
    w = FakeWorld(tg_channel=CHANNEL)
    with FakePlatforms(w) as server:
        yield w, server


def write_config(path: Path, server: FakePlatforms, data: Path, store_url: str) -> Path:
    path.write_text(
        f"""
data_dir: {data}
store: {store_url}
log_level: info
watchers:
  telegram:
    api_base: {server.base_url}
    accounts: ["@{CHANNEL}"]
    interval: 1s
    jitter: 0s
    timeout: 3s
    recheck:
      schedule: [2s, 4s]
      then_every: 2s
      horizon: 10m
      confirm_after: 2s
media:
  trusted_hosts: ["{server.host}"]
  retries: 0
alerts:
  targets: ["json://{server.host}/hook"]
  console: false
  max_backoff: 1s
"""
    )
    return path


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def events(store_url: str) -> list[tuple[str, str]]:
    with open_store(store_url) as store:
        return [(e.kind, e.post_id) for e in store.list_events()]


def lookup_faults(world: FakeWorld) -> list[tuple[str, str]]:
    with world.lock:
        return [(path, kind) for path, kind in world.faults_served if path.startswith(f"/{CHANNEL}/")]


def faults(server: FakePlatforms, page_of: Callable[[], str]) -> list[Fault]:
    """One of each misbehaviour, in the order the site serves them."""
    page = page_of()
    return [
        Fault("status", 429, headers={"Retry-After": "1"}),
        Fault("status", 502, body={"error": "Bad Gateway"}),
        Fault("html", 200, body=page[: len(page) // 2]),  # truncated
        Fault("html", 200, body=CHALLENGE_PAGE),
        Fault("html", 403, body=CHALLENGE_PAGE),
    ]


def test_album_match_alert_deletion_logged_and_faults_never_deletions(tmp_path, world, redis_url):
    w, server = world
    data = tmp_path / "data"
    config = write_config(tmp_path / "cfg.yaml", server, data, redis_url)
    trailer = write_trailer(tmp_path / "trailer.mp4")
    result = CliRunner().invoke(
        main, ["known", "add", str(trailer), "--label", "Gunship sim trailer (2015)", "--source", "https://example.org/t", "-c", str(config)]
    )
    assert result.exit_code == 0, result.output

    now = datetime.now(timezone.utc)
    w.media["/media/evidence.jpg"] = ("image/jpeg", ministry_evidence())
    w.media["/media/unrelated.jpg"] = ("image/jpeg", encode(scene(4242, 480, 300), "JPEG"))
    w.media["/media/briefing.jpg"] = ("image/jpeg", encode(scene(777, 480, 300), "JPEG"))
    w.tg_messages = [
        FakeMessage(100, "Morning briefing", now - timedelta(seconds=20), photos=["/media/briefing.jpg"]),
        FakeMessage(101, "Statement on the night's events", now - timedelta(seconds=10)),
        FakeMessage(ALBUM, "Proof: convoy under air cover", now, photos=["/media/evidence.jpg", "/media/unrelated.jpg"]),
    ]
    # the first polls meet every kind of failure before the real page
    w.inject(f"/s/{CHANNEL}", *faults(server, lambda: channel_page(CHANNEL, w.tg_messages, server.base_url)))

    log_file = (tmp_path / "daemon.log").open("w")  # a file, not a pipe: minutes of logs would fill a pipe and block
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "run", "-c", str(config)],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=log_file,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: len(w.received_alerts) >= 1, 90, "the match alert")
        # the daemon's re-check runs (every 30 s) now meet the failures on look-ups and channel checks, and
        # polls meet them too, while every message stands
        w.inject(f"/{CHANNEL}/", *faults(server, lambda: embed_page(CHANNEL, w.tg_messages, 101, server.base_url)))
        w.inject(f"/s/{CHANNEL}", *faults(server, lambda: channel_page(CHANNEL, w.tg_messages, server.base_url)))
        wait_for(lambda: len(lookup_faults(w)) >= 5, 120, "look-ups answered with every failure")
        assert events(redis_url) == []
        with w.lock:
            w.tg_messages[2].deleted = True
            w.faults.clear()
        w.inject(f"/{CHANNEL}/", *faults(server, lambda: embed_page(CHANNEL, w.tg_messages, 101, server.base_url)))
        try:
            wait_for(lambda: ("deleted", f"{CHANNEL}/{ALBUM}") in events(redis_url), 300, "the deletion in the log")
        except AssertionError:
            with open_store(redis_url) as store:
                print("rechecks:", store.due_rechecks("telegram", datetime.now(timezone.utc) + timedelta(days=2)))
            print("faults served:", w.faults_served)
            raise
        time.sleep(3)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log_file.close()
        output = (tmp_path / "daemon.log").read_text()
        print(output[-20000:])  # shown when the test fails

    assert len(lookup_faults(w)) >= 8 and len(w.faults_served) >= 15, w.faults_served  # every failure was met
    assert events(redis_url) == [("deleted", f"{CHANNEL}/{ALBUM}")], output  # nothing else reported deleted
    matches = [a for a in w.received_alerts if a["title"].startswith("Known image")]
    assert len(matches) == 1, [a["title"] for a in w.received_alerts]
    assert f"https://t.me/{CHANNEL}/{ALBUM}" in matches[0]["message"]
    assert "Gunship sim trailer (2015)" in matches[0]["title"]
    assert proc.returncode == 0, output
