"""Shared machinery of the fault suite: own redis-server processes, the fake platforms, a daemon subprocess,
a generated image corpus, and the secret scanner.

Everything is loopback only and bounded in time. Each test that needs Redis starts its own redis-server on a
free port (so it can be stopped and restarted) and stops it in teardown.
"""

from __future__ import annotations

import io
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from bot.demo.fakes import FakePlatforms, FakePost, FakeWorld

ROOT = Path(__file__).resolve().parents[2]
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

#: the test secrets: no output of the suite may contain any of them
X_TOKEN = "x-bearer-FAULTS-secret-5521"
FB_TOKEN = "fb-token-FAULTS-secret-8812"
REDIS_PASSWORD = "redis-pw-FAULTS-secret-3390"
SECRETS = (X_TOKEN, FB_TOKEN, REDIS_PASSWORD)

#: every piece of output the suite produced (subprocess logs, caplog text, exports, webhook payloads)
CAPTURED: list[tuple[str, str]] = []


def capture(what: str, text: str) -> str:
    CAPTURED.append((what, text))
    return text


def leaked(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


# ------------------------------------------------------------------------------------------------ redis
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server of our own on a loopback port, durable (AOF, fsync always) so it can be restarted."""

    def __init__(self, folder: Path, password: str | None = REDIS_PASSWORD):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
            "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------------ fakes
@pytest.fixture
def world() -> Iterator[tuple[FakeWorld, FakePlatforms]]:
    w = FakeWorld()
    with FakePlatforms(w) as server:
        yield w, server


def picture(seed: int, variant: int = 0) -> bytes:
    """A structured JPEG (smooth random blobs, so perceptual hashes are meaningful); ``variant`` > 0 gives a
    slightly altered copy (re-encoded, brightened, a small mark) that still matches the original."""
    rng = np.random.default_rng(seed)
    small = (rng.random((9, 12, 3)) * 255).astype(np.uint8)
    image = Image.fromarray(small).resize((640, 480), Image.BICUBIC).filter(ImageFilter.GaussianBlur(2))
    if variant:
        pixels = np.asarray(image).astype(np.int16) + 6
        pixels[10 + variant % 20 : 14 + variant % 20, 10:14] = 255
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90 - (variant % 5))
    return out.getvalue()


def add_post(world: FakeWorld, post_id: str, data: bytes, *, text: str | None = None, minutes_ago: float = 3.0,
             content_type: str = "image/jpeg", media_path: str | None = None) -> None:
    path = media_path or f"/media/{post_id}.jpg"
    with world.lock:
        world.media[path] = (content_type, data)
        world.x_posts.append(
            FakePost(post_id, text or f"Post #{post_id}", datetime.now(timezone.utc) - timedelta(minutes=minutes_ago), path)
        )


def write_config(path: Path, server: FakePlatforms, store_url: str, data: Path, *, interval: str = "1s",
                 extra_media: str = "", recheck: str = "[2s, 4s]") -> Path:
    path.write_text(
        f"""
data_dir: {data}
store: ${{FAULTS_STORE_URL}}
log_level: info
watchers:
  x:
    bearer_token: ${{FAULTS_X_TOKEN}}
    api_base: {server.base_url}
    accounts: [{server.world.username}]
    interval: {interval}
    jitter: 0s
    timeout: 3s
    recheck:
      schedule: {recheck}
      confirm_after: 1s
media:
  trusted_hosts: ["{server.host}"]
  retries: 0
  timeout: 5s
{extra_media}
alerts:
  targets: ["json://{server.host}/hook"]
  console: false
  max_backoff: 1s
"""
    )
    os.environ["FAULTS_STORE_URL"] = store_url
    os.environ["FAULTS_X_TOKEN"] = X_TOKEN
    return path


def seed_store(tmp_path: Path, server: FakePlatforms, store_url: str, seeds: range, *, label: str = "Known {k}",
               source: str = "https://example.org/{seed}") -> Path:
    """The config of a daemon run (data under ``tmp_path/data``), whose store holds one known picture per seed
    (``label``/``source`` formatted with the picture's number ``k`` and its ``seed``)."""
    from bot.archive import Archive
    from bot.known import add_image
    from bot.store import open_store

    config = write_config(tmp_path / "cfg.yaml", server, store_url, tmp_path / "data")
    store = open_store(store_url)
    archive = Archive(tmp_path / "data" / "archive")
    try:
        for k, seed in enumerate(seeds):
            add_image(store, archive, picture(seed), label=label.format(k=k, seed=seed), source=source.format(k=k, seed=seed))
    finally:
        store.close()
    return config


def daemon_env(store_url: str) -> dict[str, str]:
    return {**os.environ, "FAULTS_X_TOKEN": X_TOKEN, "FAULTS_STORE_URL": store_url, "PYTHONUNBUFFERED": "1"}


def start_daemon(config: Path, store_url: str, log_file: Path) -> subprocess.Popen[bytes]:
    out = open(log_file, "ab")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "run", "-c", str(config)],
        cwd=ROOT, env=daemon_env(store_url), stdout=out, stderr=subprocess.STDOUT,
    )  # fmt: skip
    out.close()
    return proc


def stop_daemon(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("daemon did not stop in time") from None


def wait_for(condition: Callable[[], bool], timeout: float, what: str, every: float = 0.1) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if condition():
                return time.monotonic() - start
        except Exception:  # the store may be down on purpose
            pass
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


_FOOTER_KEY = re.compile(r"_afterimage · (.+?) · queued")


def shown_key(key: str) -> str:
    """An alert key as the message footer shows it (sha256 shortened)."""
    return re.sub(r"\b([0-9a-f]{12})[0-9a-f]{52}\b", r"\1…", key)


def footer_keys(world: FakeWorld) -> list[str]:
    """The alert key of every message the webhook accepted, in arrival order."""
    with world.lock:
        payloads = list(world.received_alerts)
    keys = []
    for p in payloads:
        text = str(p.get("message", ""))
        m = _FOOTER_KEY.search(text.replace("\\", ""))
        keys.append(m.group(1).strip("`") if m else "?")
    return keys


def verify_archive_tree(root: Path) -> tuple[int, int]:
    """(files verified, leftover temp files); raises when a file under a final name does not match its hash."""
    import hashlib

    files = temps = 0
    if not root.exists():
        return 0, 0
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        if path.name.startswith(".tmp-"):
            temps += 1
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert path.name.split(".", 1)[0] == digest, f"{path} does not match its hash"
        files += 1
    return files, temps


@pytest.fixture(scope="session", autouse=True)
def _scan_everything_for_secrets() -> Iterator[None]:
    """At the end of the fault suite: no captured output may contain a test secret."""
    yield
    bad = [(what, leaked(text)) for what, text in CAPTURED if leaked(text)]
    assert not bad, f"secrets leaked into: {bad}"


def seeded(name: str) -> random.Random:
    return random.Random(f"afterimage-faults-{name}")
