"""Two daemons process two posts of the same picture file at the same instant: one post is the picture's first
appearance and the other is reported as recycling it, on both stores. Each "daemon" here is a pipeline with
its own store connection and matcher, the two hashing steps released together (a barrier), so the two posts
reach the seen memory and the matcher at the same moment every run."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from werkzeug import Response

from bot.archive import Archive
from bot.config import MatchingConfig, MediaConfig, RecheckConfig
from bot.deletions.tracker import RecheckTracker
from bot.hashing.pool import InlineHasher
from bot.matching.matcher import Matcher
from bot.media.fetch import MediaFetcher
from bot.models import Media, Post
from bot.pipeline import Pipeline
from bot.store import open_store
from bot.store.records import KnownKind
from tests.images import encode, scene
from watchers.base import PollResult

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


class TogetherHasher(InlineHasher):
    """Hashes as usual, then waits until the other daemon has hashed its still too."""

    def __init__(self, barrier: threading.Barrier):
        self.barrier = barrier

    def file(self, data: bytes):
        hashed = super().file(data)
        self.barrier.wait(30)
        return hashed


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store_url(request, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}" if request.param == "sqlite" else request.getfixturevalue("redis_url")


def test_a_file_posted_twice_at_the_same_instant_is_reported_recycled_once(store_url, tmp_path, httpserver):
    picture = encode(scene(4242, 900, 700), quality=90)
    httpserver.expect_request("/media/same.jpg").respond_with_response(Response(picture, content_type="image/jpeg"))
    host = f"{httpserver.host}:{httpserver.port}"
    barrier = threading.Barrier(2)
    posts = [
        Post("x", account, post_id, f"https://x.com/{account}/status/{post_id}", "look", NOW - timedelta(minutes=m),
             media=(Media(httpserver.url_for("/media/same.jpg")),), raw={"id": post_id})
        for account, post_id, m in (("first_account", "5001", 2), ("second_account", "5002", 1))
    ]  # fmt: skip
    daemons = []
    for _ in range(2):
        store = open_store(store_url)
        archive = Archive(tmp_path / "archive")
        fetcher = MediaFetcher(MediaConfig(trusted_hosts=[host], retries=0), sleep=lambda s: None)
        daemons.append((store, fetcher, Pipeline(
            store, archive, fetcher, Matcher(store, archive, MatchingConfig()), RecheckTracker(store, {"x": RecheckConfig()}),
            clock=lambda: NOW, hasher=TogetherHasher(barrier),
        )))  # fmt: skip
    store = daemons[0][0]
    for post in posts:
        daemons[0][2].ingest("x", post.account, PollResult([post], None))
    pending = {p.post.post_id: p for p in store.pending_posts(10)}
    threads = [
        threading.Thread(target=pipeline.process, args=(pending[post.post_id],))
        for (_, _, pipeline), post in zip(daemons, posts)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert not store.pending_posts(10)
    [link] = store.get_post_media("x", "5001")
    seen = [e for e in store.find_known_by_sha256(link.sha256) if e.kind == KnownKind.SEEN]
    assert len(seen) == 1, "both posts became the file's first appearance"
    first = seen[0].origin["post_id"]
    other = "5002" if first == "5001" else "5001"
    alerts = store.due_alerts(NOW + timedelta(hours=1))
    assert [(a.kind, a.payload["post_id"]) for a in alerts] == [("recycled", other)]
    assert alerts[0].payload["known"]["origin"]["post_id"] == first
    for s, fetcher, _ in daemons:
        fetcher.close()
        s.close()
