"""Alert fixtures: the real store (SQLite; Redis too when AFTERIMAGE_TEST_REDIS_URL is set), an archive in tmp_path,
archived test images, alert factories, and a recording HTTP receiver (pytest-httpserver) that apprise delivers to."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pytest
from alert_helpers import BLUE, RED, T0, png_bytes
from werkzeug import Request, Response

from bot.alerts.payloads import match_alert
from bot.archive import Archive
from bot.models import Media, Post
from bot.store import StateStore, open_store
from bot.store.records import KnownKind, KnownMedia, OutboxAlert


@pytest.fixture
def db_path(tmp_path) -> str:
    return str(tmp_path / "state.db")


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store_url(request, db_path) -> Iterator[str]:
    """The real store every alert test runs against: SQLite, and Redis when a test server is configured."""
    if request.param == "sqlite":
        yield f"sqlite:///{db_path}"
        return
    yield request.getfixturevalue("redis_url")  # skips (or fails under CI) without a test server


@pytest.fixture
def reopen(store_url) -> Iterator[Callable[[], StateStore]]:
    """Open the same store again (a restart, or a second daemon); closed at the end of the test."""
    opened: list[StateStore] = []

    def make() -> StateStore:
        opened.append(open_store(store_url))
        return opened[-1]

    yield make
    for s in opened:
        try:
            s.close()
        except Exception:
            pass


@pytest.fixture
def store(reopen) -> StateStore:
    return reopen()


@pytest.fixture
def archive(tmp_path) -> Archive:
    return Archive(tmp_path / "archive")


@dataclass
class Images:
    posted: str  # archive relpaths
    known: str
    posted_sha: str


@pytest.fixture
def images(archive) -> Images:
    posted = archive.put(png_bytes((400, 300), RED, "JPEG"), "jpg")
    known = archive.put(png_bytes((300, 300), BLUE), "png")
    return Images(posted.relpath, known.relpath, posted.sha256)


@pytest.fixture
def make_alert(store, images) -> Callable[..., OutboxAlert]:
    """Build (and by default enqueue) a match alert for post ``post_id`` with ``text``."""
    known_cache: dict[str, KnownMedia] = {}

    def make(
        post_id: str = "1001",
        text: str = "Our forces destroyed the target today.",
        kind: KnownKind = KnownKind.KNOWN,
        enqueue: bool = True,
        created_at: datetime = T0,
        tier: str = "match",
        region: Any = ((40, 30), (360, 30), (360, 270), (40, 270)),
    ) -> OutboxAlert:
        if kind.value not in known_cache:
            origin = (
                {"platform": "x", "account": "othergov", "post_id": "77", "url": "https://x.com/othergov/status/77",
                 "posted_at": "2025-01-02T03:04:05Z"}
                if kind is KnownKind.SEEN
                else {}
            )
            known_cache[kind.value] = store.add_known(
                KnownMedia(
                    label="Arma 3 gameplay footage",
                    signals={"pdq": "00" * 32},
                    kind=kind,
                    source="https://www.youtube.com/watch?v=abc",
                    note="viral in 2022 as 'air strike'",
                    archive_path=images.known,
                    origin=origin,
                    added_at=datetime(2024, 5, 6, 7, 8, tzinfo=timezone.utc),
                )
            )
        post = Post(
            platform="x",
            account="mod_gov",
            post_id=post_id,
            url=f"https://x.com/mod_gov/status/{post_id}",
            text=text,
            created_at=datetime(2026, 11, 24, 10, 30, tzinfo=timezone.utc),
            media=(Media(url=f"https://pbs.example/{post_id}.jpg"),),
        )
        alert = match_alert(
            post,
            media_sha256=images.posted_sha,
            media_archive_path=images.posted,
            media_url=f"https://pbs.example/{post_id}.jpg",
            known=known_cache[kind.value],
            tier=tier,
            signal="pdq",
            distance=12,
            inliers=87,
            region=region,
            created_at=created_at,
        )
        if enqueue:
            assert store.enqueue_alert(alert)
        return alert

    return make


@dataclass
class Receiver:
    """Records every request body; answers ``status`` (settable) — 500 simulates an outage."""

    status: int = 200
    received: list[dict[str, Any]] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handler(self, request: Request) -> Response:
        body = json.loads(request.get_data() or b"{}")
        with self.lock:
            self.received.append(body)
            if 200 <= self.status < 300:
                self.accepted.append(body)
        return Response("{}" if self.status < 300 else "down", status=self.status, content_type="application/json")


@pytest.fixture
def receiver(httpserver) -> Callable[[str], Receiver]:
    """``receiver("/path")`` -> a Receiver handling POSTs to that path of the test server."""

    def make(path: str) -> Receiver:
        r = Receiver()
        httpserver.expect_request(path, method="POST").respond_with_handler(r.handler)
        return r

    return make


