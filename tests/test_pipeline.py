"""The post pipeline with its real stages: SQLite store, archive, safe fetcher (media from a local HTTP
server, trusted by config), matcher and re-check tracker. Each step must be idempotent and lose nothing."""

from __future__ import annotations

import errno
import io
import os
from datetime import datetime, timedelta, timezone

import pytest
from PIL import Image
from werkzeug import Response

from bot.archive import Archive
from bot.config import MatchingConfig, MediaConfig, RecheckConfig
from bot.demo.scene import ministry_evidence, trailer_frames
from bot.deletions.tracker import RecheckTracker
from bot.known import add_paths
from bot.matching.matcher import Matcher
from bot.media.fetch import MediaFetcher
from bot.models import Media, Post
from bot.pipeline import Pipeline
from bot.store.sqlite import SqliteStore
from watchers.base import PollResult

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def frame_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("known") / "trailer-frame-30.png"
    trailer_frames()[30].save(path)
    return path


@pytest.fixture(scope="module")
def evidence() -> bytes:
    return ministry_evidence(30)


@pytest.fixture
def parts(tmp_path, httpserver, frame_png):
    store = SqliteStore(str(tmp_path / "state.db"))
    archive = Archive(tmp_path / "archive")
    add_paths(store, archive, [frame_png], label="Gunship sim trailer (2015)", source="https://example.org/trailer")
    host = f"{httpserver.host}:{httpserver.port}"
    fetcher = MediaFetcher(MediaConfig(trusted_hosts=[host], retries=0), sleep=lambda s: None)
    tracker = RecheckTracker(store, {"x": RecheckConfig()})
    pipeline = Pipeline(store, archive, fetcher, Matcher(store, archive, MatchingConfig()), tracker, clock=lambda: NOW)
    yield store, archive, pipeline
    fetcher.close()
    store.close()


def make_post(httpserver, post_id: str, account: str = "MinistryOfDefence", path: str = "/media/a.jpg") -> Post:
    return Post(
        platform="x",
        account=account,
        post_id=post_id,
        url=f"https://x.com/{account}/status/{post_id}",
        text=f"Proof {post_id}",
        created_at=NOW - timedelta(minutes=1),
        media=(Media(httpserver.url_for(path)),),
        raw={"data": {"id": post_id, "text": f"Proof {post_id}"}},
    )


def serve(httpserver, path: str, body: bytes, content_type: str = "image/jpeg", status: int = 200) -> None:
    httpserver.expect_request(path).respond_with_response(Response(body, status=status, content_type=content_type))


def test_matching_post_is_archived_matched_and_alerted_exactly_once(parts, httpserver, evidence):
    store, archive, pipeline = parts
    serve(httpserver, "/media/a.jpg", evidence)
    post = make_post(httpserver, "101")
    changes = pipeline.ingest("x", "MinistryOfDefence", PollResult([post], "101"))
    assert [c.change.value for c in changes] == ["new"]
    assert store.get_cursor("x", "MinistryOfDefence") == "101"
    assert archive.exists(archive.relpath_for(post.raw_sha256(), "json"))

    report = pipeline.process_pending()
    assert (report.posts, report.media_archived, report.alerts_enqueued) == (1, 1, 1)
    stored = store.get_post("x", "101")
    assert not stored.pending
    [link] = store.get_post_media("x", "101")
    assert link.error is None and archive.get(store.get_media(link.sha256).archive_path) == evidence
    [alert] = store.due_alerts(NOW + timedelta(hours=1))
    assert alert.kind == "match" and alert.payload["known"]["label"] == "Gunship sim trailer (2015)"
    assert alert.payload["tier"] == "match" and alert.payload["region"]
    assert store.get_recheck("x", "101") is not None  # the deletion tracker took it over

    # a crash after processing but before anything else: running the steps again changes nothing
    pipeline.ingest("x", "MinistryOfDefence", PollResult([post], None))
    pipeline.process(stored)
    assert store.outbox_size() == 1


def test_transient_media_failure_keeps_the_post_pending_until_it_works(parts, httpserver, evidence):
    store, _, pipeline = parts
    httpserver.expect_oneshot_request("/media/a.jpg").respond_with_data("busy", status=503)
    pipeline.ingest("x", "MinistryOfDefence", PollResult([make_post(httpserver, "102")], "102"))
    report = pipeline.process_pending()
    assert report.retry_later == 1 and report.posts == 0
    assert store.get_post("x", "102").pending and store.outbox_size() == 0

    serve(httpserver, "/media/a.jpg", evidence)
    report = pipeline.process_pending()
    assert report.posts == 1 and report.alerts_enqueued == 1
    assert not store.get_post("x", "102").pending


def test_html_served_as_an_image_is_recorded_and_the_post_moves_on(parts, httpserver):
    store, _, pipeline = parts
    serve(httpserver, "/media/a.jpg", b"<!doctype html><html><body>login</body></html>")
    pipeline.ingest("x", "MinistryOfDefence", PollResult([make_post(httpserver, "103")], "103"))
    report = pipeline.process_pending()
    assert report.posts == 1 and report.media_archived == 0
    [link] = store.get_post_media("x", "103")
    assert link.sha256 is None and link.error.startswith("not_media")
    assert not store.get_post("x", "103").pending


def test_disk_full_keeps_the_post_and_leaves_no_half_written_file(parts, httpserver, evidence, monkeypatch):
    store, archive, pipeline = parts
    serve(httpserver, "/media/a.jpg", evidence)
    real_fsync = os.fsync

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    changes = pipeline.ingest("x", "MinistryOfDefence", PollResult([make_post(httpserver, "104")], "104"))
    assert changes and store.get_post("x", "104") is not None  # persisted although nothing could be archived
    report = pipeline.process_pending()
    assert report.retry_later == 1 and store.get_post("x", "104").pending
    assert not [p for p in archive.root.rglob(".tmp-*")]

    monkeypatch.setattr(os, "fsync", real_fsync)
    report = pipeline.process_pending()
    assert report.posts == 1 and report.alerts_enqueued == 1


def test_an_image_reposted_by_another_account_is_reported_as_recycled(parts, httpserver):
    store, _, pipeline = parts
    photo = io.BytesIO()
    Image.effect_noise((640, 480), 60).convert("RGB").save(photo, "JPEG", quality=90)
    serve(httpserver, "/media/b.jpg", photo.getvalue())
    first = make_post(httpserver, "201", account="ArmyPressOffice", path="/media/b.jpg")
    pipeline.ingest("x", "ArmyPressOffice", PollResult([first], "201"))
    pipeline.process_pending()
    assert store.outbox_size() == 0  # a new image: nothing to say yet

    again = make_post(httpserver, "202", account="MinistryOfDefence", path="/media/b.jpg")
    pipeline.ingest("x", "MinistryOfDefence", PollResult([again], "202"))
    pipeline.process_pending()
    [alert] = store.due_alerts(NOW + timedelta(hours=1))
    assert alert.kind == "recycled"
    origin = alert.payload["known"]["origin"]
    assert (origin["account"], origin["post_id"]) == ("ArmyPressOffice", "201")


def test_a_posted_video_matching_a_known_trailer_raises_one_alert(tmp_path, httpserver):
    """Every sampled frame of the posted video matches some keyframe of the trailer: one finding, one alert,
    also when the post is processed again."""
    from bot.demo.scene import write_trailer
    from bot.models import MediaKind

    trailer = write_trailer(tmp_path / "trailer.mp4")
    store = SqliteStore(str(tmp_path / "state.db"))
    archive = Archive(tmp_path / "archive")
    add_paths(store, archive, [trailer], label="Gunship sim trailer (2015)", source="https://example.org/trailer")
    fetcher = MediaFetcher(MediaConfig(trusted_hosts=[f"{httpserver.host}:{httpserver.port}"], retries=0))
    pipeline = Pipeline(
        store, archive, fetcher, Matcher(store, archive, MatchingConfig()), RecheckTracker(store, {}), video_keyframes=4, clock=lambda: NOW
    )
    serve(httpserver, "/media/v.mp4", trailer.read_bytes(), content_type="video/mp4")
    post = make_post(httpserver, "301", path="/media/v.mp4")
    post = Post(**{**post.__dict__, "media": (Media(httpserver.url_for("/media/v.mp4"), MediaKind.VIDEO),)})
    try:
        pipeline.ingest("x", "MinistryOfDefence", PollResult([post], "301"))
        report = pipeline.process_pending()
        assert report.posts == 1 and report.alerts_enqueued == 1
        pipeline.process(store.get_post("x", "301"))
        [alert] = store.due_alerts(NOW + timedelta(hours=1))
        assert alert.kind == "match" and alert.payload["media_frame_ts"] is not None
    finally:
        fetcher.close()
        store.close()
