"""HLS playlists (what Bluesky posts as a video) followed to one video file, through the real fetcher against
a local HTTP server: real H.264 segments written by FFmpeg's hls muxer, hostile and broken playlists."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from bot.config import MediaConfig
from bot.errors import MediaError
from bot.media.fetch import MediaFetcher
from bot.media.hls import Variant, choose_variant, fetch_attachment
from bot.media.keyframes import extract_keyframes
from bot.media.sniff import MP4, MPEGTS, sniff
from tests.media.videos import hls_from_video, make_video, synthetic_frame

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
TS_SEGMENTS = ["seg0.ts", "seg1.ts", "seg2.ts"]


@pytest.fixture(scope="module")
def ts_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return hls_from_video(make_video("mp4", seconds=3, fps=10, gop=10), tmp_path_factory.mktemp("hls-ts"))


@pytest.fixture(scope="module")
def fmp4_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return hls_from_video(make_video("mp4", seconds=3, fps=10, gop=10), tmp_path_factory.mktemp("hls-fmp4"), "fmp4")


@pytest.fixture
def fetcher(server: HTTPServer):
    config = MediaConfig(trusted_hosts=[f"127.0.0.1:{server.port}"], timeout=2, retries=1)
    with MediaFetcher(config, sleep=lambda s: None) as f:
        yield f


def serve(server: HTTPServer, path: str, body: bytes | str, content_type: str = "video/mp2t", status: int = 200):
    server.expect_request(path).respond_with_response(Response(body, status=status, content_type=content_type))


def serve_files(server: HTTPServer, folder: str, files: dict[str, bytes], *, playlist: bool = True) -> None:
    """The files of :func:`make_hls` under ``folder`` (without its playlist when the test serves its own)."""
    for name, body in files.items():
        if name.endswith(".m3u8") and not playlist:
            continue
        serve(server, f"{folder}/{name}", body, PLAYLIST_TYPE if name.endswith(".m3u8") else "video/mp2t")


def media_playlist(*uris: str, header: str = "", end: bool = True) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:1", header]
    for uri in uris:
        lines += ["#EXTINF:1.000000,", uri]
    return "\n".join([*lines, "#EXT-X-ENDLIST" if end else ""]) + "\n"


def requested(server: HTTPServer, path: str) -> int:
    return sum(1 for request, _ in server.log if request.path == path)


def reason_of(fetcher: MediaFetcher, url: str, **kwargs) -> MediaError:
    with pytest.raises(MediaError) as e:
        fetch_attachment(fetcher, url, **kwargs)
    return e.value


def nearest_synthetic_frame(image, count: int) -> int:
    """The index of the :func:`synthetic_frame` the decoded ``image`` looks most like."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    errors = [np.abs(pixels - synthetic_frame(i, 64, 48).astype(np.int16)).mean() for i in range(count)]
    return int(np.argmin(errors))


# ----------------------------------------------------------------------------- following a playlist


def test_master_playlist_ts_segments_become_one_video_with_the_known_frames(server, fetcher, ts_files):
    serve_files(server, "/v/360p", ts_files)
    master = (
        "#EXTM3U\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=9000000,RESOLUTION=1920x1080,CODECS="avc1.640028,mp4a.40.2"\n'
        "1080p/index.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360\n"
        "360p/index.m3u8\n"
    )
    serve(server, "/v/playlist.m3u8", master, PLAYLIST_TYPE)

    attachment = fetch_attachment(fetcher, server.url_for("/v/playlist.m3u8"))

    video = attachment.media
    assert video.data == b"".join(ts_files[name] for name in TS_SEGMENTS)
    assert (video.ext, video.kind, video.content_type) == ("ts", "video", "video/mp2t")
    assert video.url == server.url_for("/v/playlist.m3u8")
    assert [p.data for p in attachment.playlists] == [master.encode(), ts_files["index.m3u8"]]
    assert requested(server, "/v/1080p/index.m3u8") == 0  # the 1080p variant is larger than needed
    frames = extract_keyframes(video.data, min_interval=0.5)
    assert [round(ts, 2) for ts, _ in frames] == [0.0, 1.0, 2.0]  # one keyframe per one-second segment
    assert [nearest_synthetic_frame(image, 30) for _, image in frames] == [0, 10, 20]


def test_fmp4_segments_after_their_init_section_become_a_fragmented_mp4(server, fetcher, fmp4_files):
    serve_files(server, "/f", fmp4_files)
    attachment = fetch_attachment(fetcher, server.url_for("/f/index.m3u8"))
    video = attachment.media
    assert video.data == b"".join(fmp4_files[n] for n in ("init.mp4", "seg0.m4s", "seg1.m4s", "seg2.m4s"))
    assert (video.ext, video.kind) == ("mp4", "video") and sniff(video.data) == MP4
    frames = extract_keyframes(video.data, min_interval=0.5)
    assert [nearest_synthetic_frame(image, 30) for _, image in frames] == [0, 10, 20]


def test_a_plain_video_is_returned_as_it_is(server, fetcher):
    data = make_video("mp4", seconds=1)
    serve(server, "/plain.mp4", data, "video/mp4")
    attachment = fetch_attachment(fetcher, server.url_for("/plain.mp4"))
    assert attachment.media.data == data and attachment.playlists == ()


def test_a_plain_fetch_still_refuses_a_playlist(server, fetcher, ts_files):
    """Only :func:`fetch_attachment` follows playlists; other callers of the fetcher get media files only."""
    serve(server, "/index.m3u8", ts_files["index.m3u8"], PLAYLIST_TYPE)
    with pytest.raises(MediaError) as e:
        fetcher.fetch(server.url_for("/index.m3u8"))
    assert e.value.reason == "not_media"


def test_live_playlist_without_endlist_takes_the_segments_listed(server, fetcher, ts_files):
    serve_files(server, "/live", {n: ts_files[n] for n in TS_SEGMENTS[:2]})
    serve(server, "/live/index.m3u8", media_playlist(*TS_SEGMENTS[:2], end=False), PLAYLIST_TYPE)
    video = fetch_attachment(fetcher, server.url_for("/live/index.m3u8")).media
    assert video.data == ts_files["seg0.ts"] + ts_files["seg1.ts"]
    assert len(extract_keyframes(video.data, min_interval=0.5)) == 2


@pytest.mark.parametrize(
    ("variants", "chosen"),
    [
        ([(800_000, (640, 360)), (2_500_000, (1280, 720)), (9_000_000, (1920, 1080))], 2_500_000),
        ([(2_500_000, (720, 1280)), (900_000, (360, 640))], 2_500_000),  # portrait: the longer side counts
        ([(9_000_000, (1920, 1080)), (6_000_000, (2560, 1440))], 6_000_000),  # none fits: the lowest
        ([(500_000, None), (300_000, None)], 300_000),  # no RESOLUTION: not known to fit
    ],
)
def test_choose_variant(variants, chosen):
    assert choose_variant([Variant(f"https://v.test/{b}", b, r) for b, r in variants]).bandwidth == chosen


# ----------------------------------------------------------------------------- refused


def test_segment_at_a_private_address_is_refused_and_never_requested(server, fetcher, ts_files):
    """``localhost`` is not the trusted ``127.0.0.1:port`` as written: it gets the public-address policy."""
    serve_files(server, "/p", ts_files, playlist=False)
    private = f"https://localhost:{server.port}/p/seg1.ts"
    serve(server, "/p/index.m3u8", media_playlist("seg0.ts", private), PLAYLIST_TYPE)
    error = reason_of(fetcher, server.url_for("/p/index.m3u8"))
    assert error.reason == "private_address"
    assert "segment 2 of 2" in str(error) and "non-public address" in str(error)
    assert requested(server, "/p/seg1.ts") == 0


@pytest.mark.parametrize("where", ["media", "master"])
def test_encrypted_playlist_is_refused_before_any_segment(server, fetcher, ts_files, where):
    serve_files(server, "/e/v", ts_files)
    if where == "media":
        key = '#EXT-X-KEY:METHOD=AES-128,URI="https://keys.test/k",IV=0x00000000000000000000000000000001'
        serve(server, "/e/index.m3u8", media_playlist("v/seg0.ts", header=key), PLAYLIST_TYPE)
    else:
        master = (
            '#EXTM3U\n#EXT-X-SESSION-KEY:METHOD=SAMPLE-AES,URI="skd://key"\n'
            "#EXT-X-STREAM-INF:BANDWIDTH=1000\nv/index.m3u8\n"
        )
        serve(server, "/e/index.m3u8", master, PLAYLIST_TYPE)
    error = reason_of(fetcher, server.url_for("/e/index.m3u8"))
    assert error.reason == "hls_encrypted" and "encrypted" in str(error)
    assert not any(request.path.startswith("/e/v/") for request, _ in server.log)


def test_key_method_none_is_not_encryption(server, fetcher, ts_files):
    serve_files(server, "/n", ts_files, playlist=False)
    serve(server, "/n/index.m3u8", media_playlist(*TS_SEGMENTS, header="#EXT-X-KEY:METHOD=NONE"), PLAYLIST_TYPE)
    assert fetch_attachment(fetcher, server.url_for("/n/index.m3u8")).media.ext == "ts"


def test_too_many_segments_is_refused_before_any_segment(server, fetcher, ts_files):
    serve_files(server, "/m", ts_files)
    error = reason_of(fetcher, server.url_for("/m/index.m3u8"), max_segments=2)
    assert error.reason == "too_many_segments" and "3 segments" in str(error)
    assert not any(request.path.endswith(".ts") for request, _ in server.log)


def test_segments_over_the_size_cap_in_total_are_refused(server, ts_files):
    """Each segment is under the cap; together they are not. The download stops at the segment that crosses it."""
    serve_files(server, "/c", ts_files)
    cap = len(ts_files["seg0.ts"]) + len(ts_files["seg1.ts"]) + 100
    config = MediaConfig(trusted_hosts=[f"127.0.0.1:{server.port}"], timeout=2, retries=0, max_bytes=cap)
    with MediaFetcher(config) as fetcher:
        error = reason_of(fetcher, server.url_for("/c/index.m3u8"))
    assert error.reason == "too_large" and f"limit of {cap} bytes at segment 3 of 3" in str(error)


def test_segments_dripping_past_the_overall_deadline_are_a_timeout(server, fetcher, ts_files):
    """Each segment is quick enough on its own; together they take longer than the video may."""
    def slow(request):
        time.sleep(0.3)
        return Response(ts_files[request.path.rsplit("/", 1)[1]], content_type="video/mp2t")

    serve(server, "/slow/index.m3u8", ts_files["index.m3u8"], PLAYLIST_TYPE)
    server.expect_request(re.compile(r"^/slow/seg\d\.ts$")).respond_with_handler(slow)
    error = reason_of(fetcher, server.url_for("/slow/index.m3u8"), max_seconds=0.5)
    assert error.reason == "timeout" and "stopped at segment 3 of 3" in str(error)
    assert requested(server, "/slow/seg2.ts") == 0


@pytest.mark.parametrize(
    ("playlist", "reason", "words"),
    [
        ("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-ENDLIST\n", "hls_malformed", "no segment"),
        ("#EXTM3U\n#EXTINF:1,\nseg0.ts\nthis is not a playlist line\n", "hls_malformed", "follows no #EXTINF"),
        ("#EXTM3U\n#EXTINF:1,\nseg 0.ts\n", "hls_malformed", "not a URI"),
        ("#EXTM3U\n#EXTINF:1,\n../../secret/seg0.ts\n", "hls_malformed", ". or .. path segments"),
        ("#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n", "hls_malformed", "not an http(s) URL"),
        ("#EXTM3U\n#EXTINF:soon,\nseg0.ts\n", "hls_malformed", "bad #EXTINF duration"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n#EXTINF:1,\nseg0.ts\n", "hls_malformed", "mixes"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:RESOLUTION=big\nv.m3u8\n", "hls_malformed", "BANDWIDTH"),
        ("#EXTM3U\n#EXT-X-BYTERANGE:1000@0\n#EXTINF:1,\nseg0.ts\n", "hls_unsupported", "byte ranges"),
        ("#EXTM3U\n#EXTINF:1,\nseg0.ts\x00\n", "hls_malformed", "control characters"),
        (b"#EXTM3U\n#EXTINF:1,\n\xff\xfe.ts\n", "hls_malformed", "not UTF-8"),
    ],
    ids=["no-segments", "garbage-line", "space-in-uri", "dot-dot", "file-scheme", "bad-duration", "master-and-media",
         "no-bandwidth", "byterange", "nul", "not-utf8"],
)
def test_malformed_playlists_are_refused_with_a_clear_error(server, fetcher, ts_files, playlist, reason, words):
    serve_files(server, "/bad", {n: ts_files[n] for n in TS_SEGMENTS})
    serve(server, "/bad/index.m3u8", playlist, PLAYLIST_TYPE)
    error = reason_of(fetcher, server.url_for("/bad/index.m3u8"))
    assert (error.reason, words in str(error)) == (reason, True), str(error)
    assert requested(server, "/secret/seg0.ts") == 0


def test_a_master_playlist_whose_variant_is_a_master_is_refused(server, fetcher):
    master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\nnext.m3u8\n"
    serve(server, "/loop/index.m3u8", master, PLAYLIST_TYPE)
    serve(server, "/loop/next.m3u8", master, PLAYLIST_TYPE)
    assert reason_of(fetcher, server.url_for("/loop/index.m3u8")).reason == "hls_unsupported"


def test_fmp4_segments_without_an_init_section_do_not_make_a_video(server, fetcher, fmp4_files):
    serve_files(server, "/noinit", fmp4_files, playlist=False)
    serve(server, "/noinit/index.m3u8", media_playlist("seg0.m4s", "seg1.m4s"), PLAYLIST_TYPE)
    error = reason_of(fetcher, server.url_for("/noinit/index.m3u8"))
    assert error.reason == "not_media" and "EXT-X-MAP" in str(error)


def test_an_image_listed_as_a_segment_is_refused(server, fetcher, ts_files):
    serve(server, "/img/index.m3u8", media_playlist("seg0.ts", "pic.jpg"), PLAYLIST_TYPE)
    serve(server, "/img/seg0.ts", ts_files["seg0.ts"])
    serve(server, "/img/pic.jpg", b"\xff\xd8\xff\xe0" + bytes(600), "image/jpeg")
    error = reason_of(fetcher, server.url_for("/img/index.m3u8"))
    assert error.reason == "not_media" and "segment 2 of 2" in str(error)


def test_a_missing_segment_is_its_own_reason_and_a_failing_one_keeps_its_reason(server, fetcher, ts_files):
    serve(server, "/gone/index.m3u8", media_playlist(*TS_SEGMENTS), PLAYLIST_TYPE)
    serve(server, "/gone/seg0.ts", ts_files["seg0.ts"])
    serve(server, "/gone/seg1.ts", "not found", "text/plain", status=404)
    error = reason_of(fetcher, server.url_for("/gone/index.m3u8"))
    assert error.reason == "hls_segment_missing" and "segment 2 of 3" in str(error) and "404" in str(error)
    assert requested(server, "/gone/seg2.ts") == 0

    server.clear()
    serve(server, "/busy/index.m3u8", media_playlist(*TS_SEGMENTS), PLAYLIST_TYPE)
    serve(server, "/busy/seg0.ts", "busy", "text/plain", status=503)
    error = reason_of(fetcher, server.url_for("/busy/index.m3u8"))
    assert error.reason == "unavailable" and requested(server, "/busy/seg0.ts") == 2  # retried like any media


def test_mpeg_ts_is_sniffed_by_three_sync_bytes_only():
    packet = b"\x47" + bytes(187)
    assert sniff(packet * 3) == MPEGTS
    assert sniff(packet * 2 + b"\x00" + bytes(187)) is None  # one sync byte missing
    assert sniff(b"\x47" + bytes(1000)) is None
