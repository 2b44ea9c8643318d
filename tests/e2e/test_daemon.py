"""End to end: ``afterimage run`` as a real process against fake X, a real redis-server and a chat webhook.

The fake platforms (``bot.demo.fakes``) speak X API v2 and Graph API JSON; the daemon reaches them through
tweepy as in production. Alerts go out through apprise's ``json://`` target to the fake's webhook.
"""

from __future__ import annotations

import base64
import io
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
from PIL import Image

from bot.cli import main
from bot.demo.fakes import FakePlatforms, FakePost, FakeWorld
from bot.demo.scene import ministry_evidence, write_trailer
from bot.store import open_store

pytestmark = pytest.mark.slow

TOKEN = "x-bearer-e2e-secret-7731"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> tuple[Path, bytes]:
    folder = tmp_path_factory.mktemp("scene")
    return write_trailer(folder / "trailer.mp4"), ministry_evidence()


@pytest.fixture
def world() -> Iterator[tuple[FakeWorld, FakePlatforms]]:
    w = FakeWorld()
    with FakePlatforms(w) as server:
        yield w, server


def write_config(path: Path, server: FakePlatforms, store_url: str, data: Path) -> Path:
    path.write_text(
        f"""
data_dir: {data}
store: {store_url}
log_level: info
watchers:
  x:
    bearer_token: ${{X_E2E_TOKEN}}
    api_base: {server.base_url}
    accounts: [MinistryOfDefence]
    interval: 2s
    jitter: 0s
    recheck:
      schedule: [2s, 4s]
      confirm_after: 1s
media:
  trusted_hosts: ["{server.host}"]
  retries: 0
alerts:
  targets: ["json://{server.host}/hook"]
  console: false
  max_backoff: 2s
"""
    )
    return path


def post(world: FakeWorld, post_id: str, evidence: bytes, minutes_ago: int = 3) -> None:
    path = f"/media/{post_id}.jpg"
    with world.lock:
        world.media[path] = ("image/jpeg", evidence)
        world.x_posts.append(
            FakePost(post_id, f"Proof #{post_id}: convoy under air cover", datetime.now(timezone.utc) - timedelta(minutes=minutes_ago), path)
        )


def start_daemon(config: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "X_E2E_TOKEN": TOKEN}
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "run", "-c", str(config)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, float, str]:
    start = time.monotonic()
    proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError("daemon did not stop within 15 s:\n" + out)
    return proc.returncode, time.monotonic() - start, out


def seed_known(config: Path, trailer: Path, monkeypatch) -> None:
    monkeypatch.setenv("X_E2E_TOKEN", TOKEN)
    result = CliRunner().invoke(
        main,
        ["known", "add", str(trailer), "--label", "Gunship sim trailer (2015)", "--source", "https://example.org/trailer", "-c", str(config)],
    )
    assert result.exit_code == 0, result.output


def alerts_of(world: FakeWorld) -> list[dict]:
    with world.lock:
        return list(world.received_alerts)


def test_matching_post_alerts_once_with_picture_and_stops_on_sigterm(tmp_path, world, scene, redis_url, monkeypatch):
    w, server = world
    trailer, evidence = scene
    config = write_config(tmp_path / "cfg.yaml", server, redis_url, tmp_path / "data")
    seed_known(config, trailer, monkeypatch)
    post(w, "1859000000000000001", evidence)
    older_format = tmp_path / "data" / "features" / "ab" / f"{'ab' * 32}.v3.npz"  # left by an earlier version
    older_format.parent.mkdir(parents=True)
    older_format.write_bytes(b"PK\x03\x04")

    proc = start_daemon(config)
    try:
        latency = wait_for(lambda: len(alerts_of(w)) >= 1, 45, "the match alert at the webhook")
        time.sleep(5)  # two more poll intervals: nothing may be sent again
    finally:
        code, stop_seconds, output = stop(proc)

    alerts = alerts_of(w)
    assert len(alerts) == 1, output
    alert = alerts[0]
    text = alert["title"] + "\n" + alert["message"]
    assert "Gunship sim trailer (2015)" in text
    assert "https://x.com/MinistryOfDefence/status/1859000000000000001" in text
    assert "MinistryOfDefence" in text and "Proof #1859000000000000001" in text
    picture = alert["attachments"][0]
    image = Image.open(io.BytesIO(base64.b64decode(picture["base64"])))
    assert image.format == "JPEG" and image.width > image.height  # side by side
    assert code == 0 and stop_seconds < 10, output
    assert TOKEN not in output
    assert not older_format.exists() and "removed 1 cached feature file(s) of an older format" in output
    print(f"alert latency {latency:.1f}s after start (poll interval 2s); SIGTERM to exit {stop_seconds:.1f}s")


def test_chat_outage_and_kill_restart_deliver_every_alert_once_in_order(tmp_path, world, scene, redis_url, monkeypatch):
    w, server = world
    trailer, evidence = scene
    config = write_config(tmp_path / "cfg.yaml", server, redis_url, tmp_path / "data")
    seed_known(config, trailer, monkeypatch)
    w.chat_down = True
    ids = ["1859000000000000011", "1859000000000000012", "1859000000000000013"]
    for i, post_id in enumerate(ids):
        post(w, post_id, evidence, minutes_ago=10 - i)

    store = open_store(redis_url)
    proc = start_daemon(config)
    try:
        wait_for(lambda: store.outbox_size() >= 3, 60, "three alerts queued during the outage")
    finally:
        proc.kill()  # kill -9 in the middle of retrying deliveries
        proc.communicate()
    assert alerts_of(w) == []

    w.chat_down = False
    proc = start_daemon(config)
    try:
        try:
            wait_for(lambda: len(alerts_of(w)) >= 3, 45, "the backlog after the chat came back")
        except AssertionError:
            print([a["title"] for a in alerts_of(w)], store.outbox_size())
            raise
        time.sleep(4)
    finally:
        code, _, output = stop(proc)
    alerts = alerts_of(w)
    # every post matches the trailer; the posts processed after the first one with the same file also list
    # it as recycled: one message per post, listing all its cases (the worker threads process the posts in
    # parallel: which post is first follows processing, not posting)
    delivered = [
        (next(i for i in ids if f"Proof #{i}" in a["message"]), "also recycled" if "Also in this post (1)" in a["message"] else "match")
        for a in alerts
    ]
    assert sorted(p for p, _ in delivered) == sorted(ids), output  # one message per post, each exactly once
    assert sorted(kind for _, kind in delivered) == ["also recycled", "also recycled", "match"], output
    assert store.outbox_size() == 0
    assert code == 0
    store.close()
