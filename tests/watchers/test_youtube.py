"""YouTube watcher against a local server speaking YouTube's formats: the channel Atom feed (fixtures/youtube),
a channel page naming its id, oEmbed, thumbnails, and the Data API (through google-api-python-client)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from pydantic import SecretStr
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from bot.errors import PlatformError, RateLimited
from bot.models import StatusKind
from watchers import build_watcher
from watchers.youtube import YoutubeConfig, YoutubeWatcher, channel_account

CHANNEL = "UCexampleMinistryChan012"
KEY = "AIza-youtube-key-SECRET-77"
FEED = (Path(__file__).parent / "fixtures" / "youtube" / "videos.xml").read_text()


class FakeYoutube:
    def __init__(self, base: str) -> None:
        self.base = base
        self.feed_status = 200
        self.thumbs = {"/vi/Vid000000B2/maxresdefault.jpg", "/vi/Vid000000A1/sddefault.jpg"}
        self.videos: dict[str, dict] = {}
        self.channel_exists = True
        self.oembed: dict[str, int] = {}
        self.api_error: tuple[int, str] | None = None
        self.requests: list[str] = []

    def handle(self, request: Request) -> Response:
        self.requests.append(request.full_path)
        path = request.path
        if path == "/feeds/videos.xml":
            if request.args.get("channel_id") != CHANNEL or not self.channel_exists:
                return Response("<html>Not Found</html>", 404, content_type="text/html")
            if self.feed_status != 200:
                return Response("<html>error</html>", self.feed_status, content_type="text/html")
            return Response(FEED.replace("{BASE}", self.base), 200, content_type="application/atom+xml; charset=UTF-8")
        if path == "/@MinistryExample":
            page = f'<!DOCTYPE html><html><head><link rel="canonical" href="https://www.youtube.com/channel/{CHANNEL}"></head><body></body></html>'
            return Response(page, 200, content_type="text/html")
        if path.startswith("/vi/"):
            if path in self.thumbs or path.endswith("hqdefault.jpg"):
                return Response(b"\xff\xd8\xff", 200, content_type="image/jpeg")
            return Response("", 404)
        if path == "/oembed":
            video = request.args["url"].rpartition("=")[2]
            status = self.oembed.get(video, 200)
            if status == 200:
                return Response(json.dumps({"title": "Briefing", "author_name": "Ministry Example", "type": "video"}), 200,
                                content_type="application/json")
            return Response("Not Found" if status == 404 else "Unauthorized", status, content_type="text/html")
        if path == "/youtube/v3/videos":
            assert request.args["key"] == KEY
            if self.api_error:
                status, reason = self.api_error
                body = {"error": {"code": status, "message": reason, "errors": [{"reason": reason, "domain": "youtube.quota"}]}}
                return Response(json.dumps(body), status, content_type="application/json")
            items = [self.videos[i] for i in request.args["id"].split(",") if i in self.videos]
            return Response(json.dumps({"kind": "youtube#videoListResponse", "items": items}), 200, content_type="application/json")
        if path == "/youtube/v3/channels":
            items = [{"kind": "youtube#channel", "id": CHANNEL}] if self.channel_exists else []
            return Response(json.dumps({"kind": "youtube#channelListResponse", "items": items}), 200, content_type="application/json")
        return Response("not found", 404)


@pytest.fixture
def yt(httpserver: HTTPServer):
    base = httpserver.url_for("").rstrip("/")
    fake = FakeYoutube(base)
    httpserver.expect_request(__import__("re").compile(".*")).respond_with_handler(fake.handle)
    return fake, base


def make(base: str, **kw) -> YoutubeWatcher:
    values = {"accounts": [CHANNEL], "api_base": base, "interval": 5, "timeout": 1.0, "data_api_base": base, **kw}
    return build_watcher("youtube", YoutubeConfig(**values))


def video(video_id: str, privacy: str = "public", upload: str = "processed", **extra) -> dict:
    return {
        "kind": "youtube#video",
        "id": video_id,
        "snippet": {"channelId": CHANNEL, "title": "Briefing"},
        "status": {"uploadStatus": upload, "privacyStatus": privacy, **extra},
    }


def test_feed_largest_thumbnails_cursor_and_malformed_entry(yt):
    fake, base = yt
    w = make(base)
    result = w.poll(CHANNEL, None)
    assert [p.post_id for p in result.posts] == ["Vid000000A1", "Vid000000B2"]  # oldest first
    a1, b2 = result.posts
    assert [m.url for m in b2.media] == [f"{base}/vi/Vid000000B2/maxresdefault.jpg"]  # the largest that exists
    assert [m.url for m in a1.media] == [f"{base}/vi/Vid000000A1/sddefault.jpg"]
    assert b2.text.startswith("Briefing on the night's events\n\nSpokesperson's statement.")
    assert b2.url == "https://www.youtube.com/watch?v=Vid000000B2" and b2.author_id == CHANNEL
    assert len(result.rejected) == 1 and "yt:videoId" in result.rejected[0].error
    assert result.cursor == "2026-02-11T08:00:00Z"
    again = w.poll(CHANNEL, result.cursor)
    assert [p.post_id for p in again.posts] == ["Vid000000B2"] and again.cursor is None  # the store sees it unchanged


def test_handle_resolved_once(yt):
    fake, base = yt
    w = make(base, accounts=["@MinistryExample"])
    w.poll("@MinistryExample", None)
    w.poll("@MinistryExample", None)
    assert sum(1 for r in fake.requests if r.startswith("/@MinistryExample")) == 1
    assert channel_account("https://www.youtube.com/channel/" + CHANNEL) == CHANNEL
    with pytest.raises(ValueError):
        channel_account("MinistryExample")


@pytest.mark.parametrize("status, error", [(500, PlatformError), (502, PlatformError), (429, RateLimited)])
def test_feed_failures(yt, status, error):
    fake, base = yt
    fake.feed_status = status
    with pytest.raises(error):
        make(base).poll(CHANNEL, None)


def test_feed_that_is_a_consent_page_is_refused(httpserver: HTTPServer):
    httpserver.expect_request("/feeds/videos.xml").respond_with_data("<html><body>Before you continue to YouTube</body></html>", content_type="text/html")
    with pytest.raises(PlatformError, match="not an Atom feed"):
        make(httpserver.url_for("").rstrip("/")).poll(CHANNEL, None)


def test_feed_timeout(httpserver: HTTPServer):
    httpserver.expect_request("/feeds/videos.xml").respond_with_handler(lambda r: (time.sleep(1.5), Response(""))[1])
    with pytest.raises(PlatformError, match="failed"):
        make(httpserver.url_for("").rstrip("/"), timeout=0.5).poll(CHANNEL, None)


def test_lookup_without_key_uses_oembed(yt):
    fake, base = yt
    w = make(base)
    w.poll(CHANNEL, None)
    fake.oembed = {"Vid000000A1": 404, "Vid000000B2": 401}
    answer = w.lookup(["Vid000000A1", "Vid000000B2", "Vid0000000X", "bad id"])
    assert answer["Vid000000A1"].kind == StatusKind.DELETED  # 404 while the channel's feed answers
    assert answer["Vid000000B2"].kind == StatusKind.AUTHOR_PROTECTED
    assert answer["Vid0000000X"].kind == StatusKind.ALIVE
    assert answer["bad id"].kind == StatusKind.UNKNOWN
    fake.channel_exists = False
    assert w.lookup(["Vid000000A1"])["Vid000000A1"].kind == StatusKind.AUTHOR_DELETED  # channel gone: author state
    fake.channel_exists, fake.feed_status = True, 503
    assert w.lookup(["Vid000000A1"])["Vid000000A1"].kind == StatusKind.UNKNOWN


def test_lookup_with_key_videos_list(yt):
    fake, base = yt
    w = make(base, api_key=SecretStr(KEY))
    fake.videos = {
        "Vid000000B2": video("Vid000000B2"),
        "Vid0000000P": video("Vid0000000P", privacy="private"),
        "Vid0000000R": video("Vid0000000R", upload="rejected", rejectionReason="copyright"),
    }
    w.poll(CHANNEL, None)
    answer = w.lookup(["Vid000000B2", "Vid0000000P", "Vid0000000R", "Vid000000A1"], authors={"Vid000000A1": CHANNEL})
    assert {k: v.kind for k, v in answer.items()} == {
        "Vid000000B2": StatusKind.ALIVE,
        "Vid0000000P": StatusKind.AUTHOR_PROTECTED,
        "Vid0000000R": StatusKind.WITHHELD,
        "Vid000000A1": StatusKind.DELETED,  # absent while its channel exists
    }
    [listed] = [r for r in fake.requests if r.startswith("/youtube/v3/videos")]  # one batch
    assert "id=Vid000000B2%2CVid0000000P%2CVid0000000R%2CVid000000A1&" in listed
    fake.channel_exists = False
    assert w.lookup(["Vid000000A1"])["Vid000000A1"].kind == StatusKind.AUTHOR_DELETED


@pytest.mark.parametrize("status, reason", [(403, "quotaExceeded"), (429, "rateLimitExceeded"), (500, "backendError"), (503, "backendError")])
def test_data_api_failures_are_unknown_and_keep_the_key_secret(yt, status, reason):
    fake, base = yt
    fake.api_error = (status, reason)
    answer = make(base, api_key=SecretStr(KEY)).lookup(["Vid000000B2"])
    assert answer["Vid000000B2"].kind == StatusKind.UNKNOWN
    assert KEY not in answer["Vid000000B2"].error
