"""The post pipeline with its real stages: SQLite store, archive, safe fetcher (media from a local HTTP
server, trusted by config), matcher and re-check tracker. Each step must be idempotent and lose nothing."""

from __future__ import annotations

import errno
import hashlib
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
from bot.known import AddOptions, add_paths
from bot.matching.matcher import Matcher
from bot.media.fetch import MediaFetcher
from bot.models import Media, MediaKind, Post
from bot.pipeline import Pipeline
from bot.store.records import KnownKind
from bot.store.sqlite import SqliteStore
from tests.media.videos import hls_from_video
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
    add_paths(store, archive, [frame_png], AddOptions("Gunship sim trailer (2015)", "https://example.org/trailer"))
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
    # hashed once: the media record keeps the still's signals, the very ones the "seen" memory stored
    record_signals = store.get_media(link.sha256).signals
    [seen] = [e for e in store.find_known_by_sha256(link.sha256) if e.kind == KnownKind.SEEN]
    assert record_signals["pdq"] and record_signals["phash"] and "orb" not in record_signals
    assert all(seen.signals[k] == v for k, v in record_signals.items())
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
    add_paths(store, archive, [trailer], AddOptions("Gunship sim trailer (2015)", "https://example.org/trailer"))
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


# ----------------------------------------------------------------------------- HLS videos (Bluesky)

HLS_TYPE = "application/vnd.apple.mpegurl"
THUMBNAIL = ministry_evidence(7)


@pytest.fixture(scope="module")
def trailer_hls(tmp_path_factory) -> dict[str, bytes]:
    """The known trailer as Bluesky would publish it: an HLS master playlist over 2-second MPEG-TS segments."""
    from bot.demo.scene import write_trailer

    folder = tmp_path_factory.mktemp("trailer-hls")
    trailer = write_trailer(folder / "trailer.mp4").read_bytes()
    files = hls_from_video(trailer, folder / "720p", segment_seconds=2)
    files["trailer.mp4"] = trailer
    files["playlist.m3u8"] = b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=2000000,RESOLUTION=1280x720\n720p/index.m3u8\n"
    return files


def serve_hls(httpserver, files: dict[str, bytes], skip: str = "") -> None:
    """``files`` under /watch/v/ (the master playlist and the 720p variant), except the file ``skip``."""
    for name, body in files.items():
        if name == skip or name == "trailer.mp4":
            continue
        path = "/watch/v/playlist.m3u8" if name == "playlist.m3u8" else f"/watch/v/720p/{name}"
        serve(httpserver, path, body, HLS_TYPE if name.endswith(".m3u8") else "video/mp2t")


def bluesky_video_post(httpserver, post_id: str) -> Post:
    uri = f"at://did:plc:govagency123456789abcde/app.bsky.feed.post/{post_id}"
    return Post(
        platform="bluesky",
        account="agency.gov.example",
        post_id=uri,
        url=f"https://bsky.app/profile/agency.gov.example/post/{post_id}",
        text="Footage from today",
        created_at=NOW - timedelta(minutes=1),
        media=(
            Media(
                httpserver.url_for("/watch/v/playlist.m3u8"),
                MediaKind.VIDEO,
                preview_url=httpserver.url_for("/watch/v/thumbnail.jpg"),
            ),
        ),
        raw={"uri": uri},
    )


@pytest.fixture
def video_parts(tmp_path, httpserver):
    store = SqliteStore(str(tmp_path / "state.db"))
    archive = Archive(tmp_path / "archive")
    fetcher = MediaFetcher(MediaConfig(trusted_hosts=[f"{httpserver.host}:{httpserver.port}"], retries=0))
    matcher = Matcher(store, archive, MatchingConfig())
    tracker = RecheckTracker(store, {})
    pipeline = Pipeline(store, archive, fetcher, matcher, tracker, video_keyframes=4, clock=lambda: NOW)
    serve(httpserver, "/watch/v/thumbnail.jpg", THUMBNAIL)
    yield store, archive, pipeline
    pipeline.fetcher.close()  # a test may have replaced it
    store.close()


def archived_files(archive: Archive, ext: str) -> list[str]:
    return sorted(p.name for p in archive.root.rglob(f"*.{ext}"))


def test_a_bluesky_hls_video_is_archived_as_one_file_sampled_and_matched(video_parts, httpserver, trailer_hls):
    """The segments joined are the archived evidence (with both playlists and the preview), its keyframes are
    recorded as stills of that video, and the known trailer in it raises one alert."""
    store, archive, pipeline = video_parts
    (archive.root.parent / "trailer.mp4").write_bytes(trailer_hls["trailer.mp4"])
    add_paths(store, archive, [archive.root.parent / "trailer.mp4"], AddOptions("Gunship sim trailer (2015)"))
    serve_hls(httpserver, trailer_hls)
    post = bluesky_video_post(httpserver, "3lbvideo0001")
    pipeline.ingest("bluesky", post.account, PollResult([post], None))
    report = pipeline.process_pending()
    assert (report.posts, report.retry_later, report.errors) == (1, 0, [])

    [link] = store.get_post_media("bluesky", post.post_id)
    assert link.error is None and link.url.endswith("/playlist.m3u8")
    record = store.get_media(link.sha256)
    joined = b"".join(trailer_hls[f"seg{i}.ts"] for i in range(3))
    assert archive.get(record.archive_path) == joined and record.archive_path.endswith(".ts")
    assert record.content_type == "video/mp2t" and record.first_url == post.media[0].url
    variant_url = httpserver.url_for("/watch/v/720p/index.m3u8")
    for name, url in (("playlist.m3u8", post.media[0].url), ("index.m3u8", variant_url)):
        kept = store.get_media(hashlib.sha256(trailer_hls[name]).hexdigest())
        assert kept is not None and kept.first_url == url and archive.get(kept.archive_path) == trailer_hls[name]
    assert store.get_media(hashlib.sha256(THUMBNAIL).hexdigest()) is not None  # the preview still

    frames = [e for e in store.iter_known(KnownKind.SEEN) if e.group == link.sha256]
    assert len(frames) == 4 and min(e.frame_ts for e in frames) == 0.0
    # the preview (a still of the trailer too) has an alert of its own; the video's frames raise one together
    [alert] = [a for a in store.due_alerts(NOW + timedelta(hours=1)) if a.payload["media_sha256"] == link.sha256]
    assert alert.kind == "match" and alert.payload["media_frame_ts"] is not None


def test_a_missing_hls_segment_keeps_the_post_pending_with_nothing_half_archived(
    video_parts, httpserver, trailer_hls
):
    store, archive, pipeline = video_parts
    serve_hls(httpserver, trailer_hls, skip="seg1.ts")
    httpserver.expect_oneshot_request("/watch/v/720p/seg1.ts").respond_with_data("not yet", status=404)
    post = bluesky_video_post(httpserver, "3lbvideo0002")
    pipeline.ingest("bluesky", post.account, PollResult([post], None))

    report = pipeline.process_pending()
    assert report.retry_later == 1 and report.posts == 0
    assert store.get_post("bluesky", post.post_id).pending and store.get_post_media("bluesky", post.post_id) == []
    assert archived_files(archive, "ts") == [] and archived_files(archive, "m3u8") == []

    serve(httpserver, "/watch/v/720p/seg1.ts", trailer_hls["seg1.ts"], "video/mp2t")
    report = pipeline.process_pending()
    assert report.posts == 1 and not store.get_post("bluesky", post.post_id).pending
    [link] = store.get_post_media("bluesky", post.post_id)
    assert link.sha256 and len(archived_files(archive, "ts")) == 1 and len(archived_files(archive, "m3u8")) == 2


@pytest.mark.parametrize("problem", ["encrypted", "over_the_size_cap"])
def test_an_hls_video_that_cannot_be_archived_is_recorded_as_such_and_its_preview_still_archived(
    video_parts, httpserver, trailer_hls, problem
):
    """Refused before (encrypted) or while (over the cap) fetching segments: the reason is on the attachment,
    the post moves on, the thumbnail is archived, and no joined file or playlist is."""
    store, archive, pipeline = video_parts
    if problem == "encrypted":
        key = b'#EXT-X-KEY:METHOD=AES-128,URI="k.key"\n#EXTINF'
        serve_hls(httpserver, {**trailer_hls, "index.m3u8": trailer_hls["index.m3u8"].replace(b"#EXTINF", key, 1)})
    else:  # every segment fits the cap, the three together do not
        serve_hls(httpserver, trailer_hls)
        cap = max(len(trailer_hls[f"seg{i}.ts"]) for i in range(3)) + 1000
        config = MediaConfig(trusted_hosts=[f"{httpserver.host}:{httpserver.port}"], retries=0, max_bytes=cap)
        pipeline.fetcher.close()
        pipeline.fetcher = MediaFetcher(config)
    post = bluesky_video_post(httpserver, "3lbvideo0003")
    pipeline.ingest("bluesky", post.account, PollResult([post], None))

    report = pipeline.process_pending()
    assert report.posts == 1 and not store.get_post("bluesky", post.post_id).pending
    [link] = store.get_post_media("bluesky", post.post_id)
    reason = "hls_encrypted" if problem == "encrypted" else "too_large"
    assert link.sha256 is None and link.error.startswith(reason), link.error
    assert store.get_media(hashlib.sha256(THUMBNAIL).hexdigest()) is not None
    assert archived_files(archive, "ts") == [] and archived_files(archive, "m3u8") == []
    if problem == "encrypted":
        assert not any(r.path.endswith(".ts") for r, _ in httpserver.log)
