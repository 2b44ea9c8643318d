"""Hostile media (generated here, nothing downloaded) and a full disk, through the real daemon objects.

Each hostile attachment gets its own specific logged error, its post is kept in the store, and the daemon
keeps working (a normal post afterwards is archived and matched). A full archive disk gives a clear error,
keeps the post pending for as long as the disk stays full, leaves nothing half-written, and the post is
archived once space is back.
"""

from __future__ import annotations

import errno
import io
import logging
import struct
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

import bot.archive
from bot.config import parse_config
from bot.daemon import Daemon
from bot.demo.fakes import Fault
from bot.store import open_store

from .conftest import CAPTURED, X_TOKEN, add_post, leaked, picture, verify_archive_tree

MAX_BYTES = 20 * 1000**2
DECODE_ERRORS = {"decompression_bomb", "damaged", "truncated", "corrupt"}


def png_bomb(width: int = 60000, height: int = 60000) -> bytes:
    """A tiny PNG whose header claims 3.6 gigapixels (the pixel data is a few compressed bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1) * 64, 9)  # the first rows only; the decoder must refuse earlier
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def many_frames_gif(frames: int = 3000) -> bytes:
    images = [Image.new("P", (16, 16), i % 256) for i in range(frames)]
    out = io.BytesIO()
    images[0].save(out, "GIF", save_all=True, append_images=images[1:], duration=10, loop=0)
    return out.getvalue()


#: name -> (content type, body or None for a fault, fault, expected reason in the log)
CORPUS = {
    "decompression_bomb": ("image/png", png_bomb(), None, "decompression_bomb"),
    "truncated_jpeg": ("image/jpeg", picture(11)[: len(picture(11)) // 3], None, "truncated"),
    "zero_bytes": ("image/jpeg", b"", None, "not_media"),
    "100mb_body": ("image/jpeg", b"\xff\xd8\xff\xe0" + bytes(100 * 1000**2), None, "too_large"),
    "html_as_jpeg": ("image/jpeg", b"<!doctype html><html><script>alert(1)</script></html>", None, "not_media"),
    "svg_as_jpeg": ("image/jpeg", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', None, "not_media"),
    "gif_thousands_of_frames": ("image/gif", many_frames_gif(), None, None),  # decoded: first frame only
    "redirect_to_private": (None, None, Fault("status", 302, {"Location": "https://10.20.30.40/x.jpg"}, sticky=True), "private_address"),
    "redirect_to_loopback": (None, None, Fault("status", 302, {"Location": "https://127.0.0.1:9/x.jpg"}, sticky=True), "private_address"),
    "redirect_to_http": (None, None, Fault("status", 302, {"Location": "http://example.org/x.jpg"}, sticky=True), "not_https"),
    "oversized_header": (None, None, Fault("status", 200, {"X-Padding": "a" * 100_000}, sticky=True), "header_too_large"),
}


def make_daemon(tmp_path: Path, server) -> Daemon:
    cfg = parse_config(
        f"""
data_dir: {tmp_path / "data"}
store: sqlite:///{tmp_path / "state.db"}
watchers:
  x:
    bearer_token: ${{FAULTS_X_TOKEN}}
    api_base: {server.base_url}
    accounts: [{server.world.username}]
    interval: 60s
    jitter: 0s
media:
  trusted_hosts: ["{server.host}"]
  retries: 0
  timeout: 5s
  max_bytes: {MAX_BYTES}
alerts:
  targets: ["json://{server.host}/hook"]
  console: false
""",
        {"FAULTS_X_TOKEN": X_TOKEN},
    )
    return Daemon(cfg, store=open_store(f"sqlite:///{tmp_path / 'state.db'}"))


@pytest.mark.parametrize("name", list(CORPUS))
def test_hostile_media(tmp_path: Path, world, name: str, caplog) -> None:
    w, server = world
    caplog.set_level(logging.INFO)
    content_type, body, fault, reason = CORPUS[name]
    daemon = make_daemon(tmp_path, server)
    try:
        post_id = "1863000000000000001"
        if fault is None:
            add_post(w, post_id, body, content_type=content_type)
        else:
            add_post(w, post_id, b"unused")
            w.inject(f"/media/{post_id}.jpg", fault)
        start = time.monotonic()
        outcome = daemon.poll_account("x", server.world.username)
        seconds = time.monotonic() - start
        assert outcome.error is None and outcome.new == 1, outcome
        stored = daemon.store.get_post("x", post_id)
        assert stored is not None, "the post was lost"
        assert not daemon.store.pending_posts(10), "a permanently bad attachment must not keep the post pending"
        links = daemon.store.get_post_media("x", post_id)
        if reason in DECODE_ERRORS:  # refused by the decoder: the file is archived as posted (evidence), not matched
            assert links and links[0].sha256 and daemon.archive.verify(daemon.store.get_media(links[0].sha256).archive_path)
            assert f"x:{post_id}: attachment 0 archived but not decodable ({reason})" in caplog.text, caplog.text
        elif reason is not None:  # refused by the fetcher: nothing archived, the reason recorded on the post
            assert links and links[0].sha256 is None and links[0].error.startswith(reason), links
            assert f"x:{post_id}: attachment 0 (main) not archived ({reason})" in caplog.text, caplog.text
        assert seconds < 20, f"{name} took {seconds:.1f}s"

        # the daemon lives on: the next post is archived and recorded normally
        add_post(w, "1863000000000000002", picture(12))
        outcome = daemon.poll_account("x", server.world.username)
        assert outcome.error is None and outcome.new == 1
        ok = daemon.store.get_post_media("x", "1863000000000000002")
        assert ok and ok[0].sha256 and daemon.archive.verify(daemon.store.get_media(ok[0].sha256).archive_path)
        verify_archive_tree(tmp_path / "data" / "archive")
    finally:
        daemon.stop(timeout=2)
        CAPTURED.append((f"caplog hostile {name}", caplog.text))
    assert not leaked(caplog.text)


class _FullDisk:
    """Writes half of what is asked, then fails with ENOSPC (what a full filesystem does)."""

    def __init__(self, fh):
        self.fh = fh

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()

    def write(self, data: bytes) -> int:
        self.fh.write(data[: len(data) // 2])
        self.fh.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self.fh, name)


def test_disk_full_keeps_the_post_pending_and_writes_nothing_half(tmp_path: Path, world, monkeypatch, caplog) -> None:
    w, server = world
    caplog.set_level(logging.INFO)
    daemon = make_daemon(tmp_path, server)
    real_fdopen = bot.archive.os.fdopen
    try:
        add_post(w, "1863000000000000010", picture(13))
        monkeypatch.setattr(bot.archive.os, "fdopen", lambda fd, mode="r", *a, **k: _FullDisk(real_fdopen(fd, mode, *a, **k)))
        outcome = daemon.poll_account("x", server.world.username)
        assert outcome.error is None and outcome.new == 1, outcome
        for _ in range(8):  # the disk stays full for many runs: the post is never given up on
            daemon.process_pending()
        stored = daemon.store.get_post("x", "1863000000000000010")
        assert stored is not None
        assert [p.post.post_id for p in daemon.store.pending_posts(10)] == ["1863000000000000010"]
        assert "No space left on device" in caplog.text and "kept pending for retry" in caplog.text
        files, temps = verify_archive_tree(tmp_path / "data" / "archive")
        assert temps == 0, "a temporary file was left behind"
        assert files == 0, "a file appeared under a final name while the disk was full"

        monkeypatch.setattr(bot.archive.os, "fdopen", real_fdopen)  # space is back
        daemon.process_pending()
        assert not daemon.store.pending_posts(10)
        links = daemon.store.get_post_media("x", "1863000000000000010")
        assert links and links[0].sha256 and daemon.archive.verify(daemon.store.get_media(links[0].sha256).archive_path)
    finally:
        daemon.stop(timeout=2)
        CAPTURED.append(("caplog disk full", caplog.text))
