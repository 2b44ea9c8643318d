"""Video pages read by yt-dlp under the media address policy (:mod:`bot.media.pages`)."""

from __future__ import annotations

import pytest
from pytest_httpserver import HTTPServer

from bot.config import MediaConfig
from bot.errors import MediaError
from bot.media.fetch import MediaFetcher
from bot.media.pages import _page_info, download
from tests.media.videos import make_video

PAGE = '<html><head><title>Trailer</title></head><body><video src="/v.mp4"></video></body></html>'


def test_every_request_yt_dlp_makes_is_checked_by_the_policy(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/page").respond_with_data(PAGE, content_type="text/html")
    url = f"http://127.0.0.1:{httpserver.port}/page"
    with MediaFetcher(MediaConfig(trusted_hosts=[], retries=0)) as untrusted:
        with pytest.raises(MediaError) as e:
            _page_info(untrusted.client, url)  # yt-dlp itself is stopped before it connects
        assert e.value.reason == "not_https"
    assert httpserver.log == []  # nothing reached the server
    with MediaFetcher(MediaConfig(trusted_hosts=[], retries=0)) as untrusted:
        with pytest.raises(MediaError) as e:
            _page_info(untrusted.client, url.replace("http://", "https://"))
        assert e.value.reason == "private_address"


def test_a_page_gives_its_video_and_keeps_the_page_as_source(httpserver: HTTPServer) -> None:
    video = make_video("mp4", "libx264", seconds=2, fps=5, gop=5)
    httpserver.expect_request("/page").respond_with_data(PAGE, content_type="text/html")
    httpserver.expect_request("/v.mp4").respond_with_data(video, content_type="video/mp4")
    url = f"http://127.0.0.1:{httpserver.port}/page"
    with MediaFetcher(MediaConfig(trusted_hosts=[f"127.0.0.1:{httpserver.port}"], retries=0)) as fetcher:
        got = download(fetcher, url)
    assert got.media.data == video and got.media.kind == "video"
    assert got.source == url and got.file_name.endswith(".mp4")


def test_a_redirect_yt_dlp_meets_is_checked_like_the_first_request(httpserver: HTTPServer) -> None:
    """yt-dlp follows redirects by itself; ours are the only requests it can make, so each hop is checked."""
    secret = f"https://localhost:{httpserver.port}/secret"  # loopback under a name that is not trusted
    httpserver.expect_request("/page").respond_with_data("", status=302, headers={"Location": secret})
    httpserver.expect_request("/secret").respond_with_data(PAGE, content_type="text/html")
    url = f"http://127.0.0.1:{httpserver.port}/page"
    with MediaFetcher(MediaConfig(trusted_hosts=[f"127.0.0.1:{httpserver.port}"], retries=0)) as fetcher:
        with pytest.raises(MediaError) as e:
            _page_info(fetcher.client, url)
    assert e.value.reason == "private_address"
    assert str(e.value) == f"localhost resolves to a non-public address (127.0.0.1); refused: {secret}"
    assert [r.path for r, _ in httpserver.log] == ["/page"]  # never /secret


def test_a_page_behind_an_allowed_redirect_still_gives_its_video(httpserver: HTTPServer) -> None:
    video = make_video("mp4", "libx264", seconds=2, fps=5, gop=5)
    httpserver.expect_request("/old").respond_with_data("", status=301, headers={"Location": "/page"})
    httpserver.expect_request("/page").respond_with_data(PAGE, content_type="text/html")
    httpserver.expect_request("/v.mp4").respond_with_data(video, content_type="video/mp4")
    url = f"http://127.0.0.1:{httpserver.port}/old"
    with MediaFetcher(MediaConfig(trusted_hosts=[f"127.0.0.1:{httpserver.port}"], retries=0)) as fetcher:
        got = download(fetcher, url)
    assert got.media.data == video and got.source == url
