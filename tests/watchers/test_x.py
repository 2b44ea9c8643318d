"""XWatcher against a local fake X API v2 (pytest-httpserver), driven through the real tweepy.Client.

Payload shapes follow the X API v2 reference (users/by/username, users/:id/tweets, tweets?ids=,
users?ids=): ``data`` / ``includes`` / ``errors`` / ``meta``, errors as problem objects with ``type``
URIs such as ``https://api.twitter.com/2/problems/resource-not-found``.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pydantic import SecretStr
from werkzeug import Request, Response

from watchers.x import XConfig
from bot.errors import PlatformError, RateLimited
from bot.models import MediaKind, StatusKind
from watchers import build_watcher
from watchers.x import XWatcher

FIXTURES = Path(__file__).parent / "fixtures" / "x"
TOKEN = "x-test-bearer-AAAAsecretBBBB"
USER_ID = "2244994945"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def json_response(body, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers or {}, content_type="application/json")


@pytest.fixture
def watcher(httpserver) -> XWatcher:
    config = XConfig(
        bearer_token=SecretStr(TOKEN),
        api_base=httpserver.url_for("/").rstrip("/"),
        accounts=["@MinExample"],
        timeout=0.5,
    )
    w = build_watcher("x", config)
    assert isinstance(w, XWatcher)
    yield w
    w.close()


def serve_user(httpserver) -> None:
    httpserver.expect_request("/2/users/by/username/MinExample").respond_with_json(fixture("user_by_username.json"))


def serve_timeline(httpserver, seen: list | None = None) -> None:
    def handler(request: Request) -> Response:
        if seen is not None:
            seen.append(dict(request.args))
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        if request.args.get("pagination_token") == "7140dibdnow9c7btw3z2vwioavpvutgzrzm9icis4ndix":
            return json_response(fixture("timeline_page2.json"))
        return json_response(fixture("timeline_page1.json"))

    httpserver.expect_request(f"/2/users/{USER_ID}/tweets").respond_with_handler(handler)


# ---------------------------------------------------------------------------------------------- poll


def test_poll_reads_all_pages_oldest_first_and_advances_cursor(httpserver, watcher):
    serve_user(httpserver)
    seen: list = []
    serve_timeline(httpserver, seen)

    result = watcher.poll("@MinExample", None)
    posts, cursor = result

    assert [p.post_id for p in posts] == [
        "1800000000000000005",
        "1800000000000000010",  # the edited tweet, under the id of its first version
        "1800000000000000020",
        "1800000000000000030",
        "1800000000000000040",
    ]
    assert cursor == "1800000000000000040"
    assert len(seen) == 2
    first = seen[0]
    assert first["max_results"] == "100"
    assert "since_id" not in first
    assert set(first["expansions"].split(",")) >= {"attachments.media_keys", "referenced_tweets.id", "edit_history_tweet_ids"}
    assert set(first["media.fields"].split(",")) >= {"url", "preview_image_url", "variants", "alt_text", "width", "height"}
    post = posts[1]
    assert post.platform == "x" and post.account == "@MinExample"
    assert post.url == "https://x.com/MinExample/status/1800000000000000010"
    assert post.author_id == USER_ID
    assert post.created_at == datetime(2024, 6, 10, 12, 25, tzinfo=timezone.utc)


def test_poll_media_of_every_kind(httpserver, watcher):
    serve_user(httpserver)
    serve_timeline(httpserver)
    posts = {p.post_id: p for p in watcher.poll("MinExample", None).posts}

    photos = posts["1800000000000000005"].media
    assert [m.url for m in photos] == ["https://pbs.twimg.com/media/Visit1.jpg", "https://pbs.twimg.com/media/Visit2.jpg"]
    assert photos[0].kind is MediaKind.PHOTO and photos[0].alt_text == "Minister at the site"
    assert photos[0].media_id == "3_1800000000000000005"

    (video,) = posts["1800000000000000020"].media
    assert video.kind is MediaKind.VIDEO
    assert video.url.endswith("/1280x720/high.mp4")  # highest bit rate mp4, never the m3u8 playlist
    assert video.preview_url == "https://pbs.twimg.com/ext_tw_video_thumb/1800000000000000020/pu/img/thumb.jpg"

    (gif,) = posts["1800000000000000030"].media
    assert gif.kind is MediaKind.GIF
    assert gif.url == "https://video.twimg.com/tweet_video/GIF.mp4"
    assert gif.preview_url == "https://pbs.twimg.com/tweet_video_thumb/GIFthumb.jpg"

    (retweeted,) = posts["1800000000000000040"].media  # a retweet shows the retweeted tweet's photo
    assert retweeted.url == "https://pbs.twimg.com/media/FloodMap.jpg"


def test_poll_raw_is_self_contained_evidence(httpserver, watcher):
    serve_user(httpserver)
    serve_timeline(httpserver)
    posts = {p.post_id: p for p in watcher.poll("MinExample", None).posts}
    raw = posts["1800000000000000020"].raw
    assert raw["data"]["id"] == "1800000000000000020"
    assert [m["media_key"] for m in raw["includes"]["media"]] == ["7_1800000000000000020"]
    assert raw["includes"]["users"][0]["username"] == "MinExample"
    rt = posts["1800000000000000040"].raw
    assert rt["includes"]["tweets"][0]["id"] == "1799999999999999999"
    json.dumps(raw)  # JSON-compatible


def test_poll_reports_an_edit_under_the_original_id_with_new_content(httpserver, watcher):
    serve_user(httpserver)
    serve_timeline(httpserver)
    posts = {p.post_id: p for p in watcher.poll("MinExample", None).posts}
    edited = posts["1800000000000000010"]
    assert edited.text.startswith("Corrected:")
    assert edited.raw["data"]["id"] == "1800000000000000025"  # the version actually served
    assert [m.url for m in edited.media] == ["https://pbs.twimg.com/media/PressConf.jpg"]


def test_malformed_items_are_rejected_raw_and_never_lose_the_others(httpserver, watcher, caplog):
    serve_user(httpserver)
    serve_timeline(httpserver)
    with caplog.at_level(logging.WARNING, logger="watchers.x"):
        result = watcher.poll("MinExample", None)
    assert len(result.posts) == 5
    errors = {json.dumps(r.raw, sort_keys=True): r.error for r in result.rejected}
    raws = [r.raw for r in result.rejected]
    assert any(isinstance(r, dict) and r.get("id") == "1800000000000000015" for r in raws)  # text is a number
    assert any(isinstance(r, dict) and r.get("id") == "1800000000000000003" for r in raws)  # no created_at
    assert "not a tweet at all" in raws
    # a media key the tweet references but includes lacks: the post is kept, the gap recorded
    assert {"tweet_id": "1800000000000000020", "media_key": "3_1800000000000000099"} in raws
    assert all(r.platform == "x" and r.account == "MinExample" for r in result.rejected)
    assert len(errors) == 4
    assert "malformed tweet" in caplog.text


def test_poll_with_cursor_sends_since_id_and_drops_older(httpserver, watcher):
    serve_user(httpserver)
    seen: list = []

    def handler(request: Request) -> Response:
        seen.append(dict(request.args))
        return json_response(fixture("timeline_page1.json") | {"meta": {"result_count": 4}})

    httpserver.expect_request(f"/2/users/{USER_ID}/tweets").respond_with_handler(handler)
    posts, cursor = watcher.poll("MinExample", "1800000000000000025")
    assert seen[0]["since_id"] == "1800000000000000025"
    # the server ignored since_id: the watcher still returns only newer tweets
    assert [p.post_id for p in posts] == ["1800000000000000030", "1800000000000000040"]
    assert cursor == "1800000000000000040"


def test_poll_nothing_new_keeps_cursor_and_resolves_username_once(httpserver, watcher):
    httpserver.expect_oneshot_request("/2/users/by/username/MinExample").respond_with_json(fixture("user_by_username.json"))
    httpserver.expect_request(f"/2/users/{USER_ID}/tweets").respond_with_json(fixture("timeline_empty.json"))
    assert watcher.poll("MinExample", "1800000000000000040").posts == []
    result = watcher.poll("MinExample", "1800000000000000040")
    assert result.posts == [] and result.cursor is None
    assert sum(1 for req, _ in httpserver.log if "by/username" in req.path) == 1


def test_poll_unknown_account_is_a_platform_error(httpserver, watcher):
    httpserver.expect_request("/2/users/by/username/NoSuchAccount").respond_with_json(fixture("user_not_found.json"))
    with pytest.raises(PlatformError, match="Could not find user"):
        watcher.poll("NoSuchAccount", None)


def test_poll_429_raises_rate_limited_with_reset_time(httpserver, watcher):
    serve_user(httpserver)
    reset = int(time.time()) + 900
    httpserver.expect_request(f"/2/users/{USER_ID}/tweets").respond_with_response(
        json_response(fixture("rate_limited.json"), 429, {"x-rate-limit-reset": str(reset), "x-rate-limit-remaining": "0"})
    )
    with pytest.raises(RateLimited) as info:
        watcher.poll("MinExample", None)
    assert info.value.platform == "x"
    assert info.value.reset_at == datetime.fromtimestamp(reset, tz=timezone.utc)
    assert sum(1 for req, _ in httpserver.log if req.path.endswith("/tweets")) == 1  # no retry loop


@pytest.mark.parametrize(
    "response",
    [
        json_response(fixture("server_error.json"), 500),
        Response('{"data": [{"id": "18000000000000', status=200, content_type="application/json"),  # truncated
        Response("<html>Bad gateway</html>", status=502, content_type="text/html"),
        json_response(["not", "an", "object"]),
        json_response({"data": {"id": "1"}, "meta": {}}),  # data of the wrong type
    ],
    ids=["500", "truncated-json", "502-html", "array", "data-not-list"],
)
def test_poll_failures_raise_platform_error_without_secrets(httpserver, watcher, response):
    serve_user(httpserver)
    httpserver.expect_request(f"/2/users/{USER_ID}/tweets").respond_with_response(response)
    with pytest.raises(PlatformError) as info:
        watcher.poll("MinExample", None)
    assert not isinstance(info.value, RateLimited)
    assert TOKEN not in str(info.value)


def test_poll_timeout_is_a_platform_error(httpserver, watcher):
    serve_user(httpserver)

    def slow(request: Request) -> Response:
        time.sleep(1.0)
        return json_response(fixture("timeline_empty.json"))

    httpserver.expect_request(f"/2/users/{USER_ID}/tweets").respond_with_handler(slow)
    started = time.monotonic()
    with pytest.raises(PlatformError, match="Timeout|timed out"):
        watcher.poll("MinExample", None)
    assert time.monotonic() - started < 0.95
    time.sleep(0.7)  # let the fake server finish the slow answer before the next test reuses it


def test_bearer_token_never_reaches_logs(httpserver, watcher, caplog):
    from bot.redact import install_log_redaction

    serve_user(httpserver)
    serve_timeline(httpserver)
    root = logging.getLogger()
    handler = logging.StreamHandler()
    root.addHandler(handler)
    try:
        install_log_redaction(root)
        caplog.handler.addFilter(handler.filters[0])
        with caplog.at_level(logging.DEBUG):
            watcher.poll("MinExample", None)
    finally:
        root.removeHandler(handler)
    assert "Bearer" in caplog.text  # tweepy logs its headers at debug level...
    assert TOKEN not in caplog.text  # ...with the token masked


# ---------------------------------------------------------------------------------------------- lookup

LOOKUP_IDS = ["1001", "1002", "1003", "1004", "1005", "1006", "1007", "1008", "1009"]
AUTHORS = {"1004": "100", "1005": "200", "1006": "300", "1007": "400"}


def serve_lookup(httpserver, users=None) -> None:
    httpserver.expect_request("/2/tweets").respond_with_json(fixture("tweets_lookup.json"))
    httpserver.expect_request("/2/users").respond_with_response(users or json_response(fixture("users_lookup.json")))


def test_lookup_distinguishes_every_status(httpserver, watcher):
    serve_lookup(httpserver)
    status = watcher.lookup(LOOKUP_IDS, authors=AUTHORS)

    assert set(status) == set(LOOKUP_IDS)
    kinds = {k: v.kind for k, v in status.items()}
    assert kinds == {
        "1001": StatusKind.ALIVE,
        "1002": StatusKind.ALIVE,
        "1003": StatusKind.WITHHELD,
        "1004": StatusKind.DELETED,  # not found, author still active
        "1005": StatusKind.AUTHOR_PROTECTED,
        "1006": StatusKind.AUTHOR_SUSPENDED,
        "1007": StatusKind.AUTHOR_DELETED,
        "1008": StatusKind.UNKNOWN,  # not authorized and author unknown
        "1009": StatusKind.UNKNOWN,  # missing from the answer
    }
    alive = status["1001"].post
    assert alive.post_id == "1001" and alive.url == "https://x.com/MinExample/status/1001"
    assert [m.url for m in alive.media] == ["https://pbs.twimg.com/media/Still.jpg"]
    assert status["1003"].post is not None and "DE" in status["1003"].error

    users_request = next(req for req, _ in httpserver.log if req.path == "/2/users")
    assert set(users_request.args["ids"].split(",")) == {"100", "200", "300", "400"}
    tweets_request = next(req for req, _ in httpserver.log if req.path == "/2/tweets")
    assert tweets_request.args["ids"] == ",".join(LOOKUP_IDS)


def test_lookup_of_edited_tweet_returns_current_version(httpserver, watcher):
    serve_lookup(httpserver)
    edited = watcher.lookup(["1002"])["1002"]
    assert edited.kind is StatusKind.ALIVE
    assert edited.post.post_id == "1002"
    assert edited.post.text == "Edited wording"
    assert edited.post.raw["data"]["id"] == "1012"


def test_lookup_uses_authors_seen_in_polls(httpserver, watcher):
    """A tweet polled earlier whose author is later suspended resolves without an ``authors`` hint."""
    serve_user(httpserver)
    serve_timeline(httpserver)
    watcher.poll("MinExample", None)
    httpserver.expect_request("/2/tweets").respond_with_json(
        {
            "errors": [
                {
                    "value": "1800000000000000005",
                    "detail": "Sorry, you are not authorized to see the Tweet with ids: [1800000000000000005].",
                    "title": "Authorization Error",
                    "resource_type": "tweet",
                    "parameter": "ids",
                    "resource_id": "1800000000000000005",
                    "type": "https://api.twitter.com/2/problems/not-authorized-for-resource",
                }
            ]
        }
    )
    httpserver.expect_request("/2/users").respond_with_json(
        {
            "errors": [
                {
                    "value": USER_ID,
                    "detail": f"User has been suspended: [{USER_ID}].",
                    "title": "Forbidden",
                    "resource_type": "user",
                    "parameter": "ids",
                    "resource_id": USER_ID,
                    "type": "https://api.twitter.com/2/problems/resource-not-found",
                }
            ]
        }
    )
    assert watcher.lookup(["1800000000000000005"])["1800000000000000005"].kind is StatusKind.AUTHOR_SUSPENDED


def test_lookup_batches_of_100(httpserver, watcher):
    batches: list[list[str]] = []

    def handler(request: Request) -> Response:
        ids = request.args["ids"].split(",")
        batches.append(ids)
        return json_response(
            {"data": [{"id": i, "text": "t", "created_at": "2024-06-01T10:00:00.000Z", "edit_history_tweet_ids": [i]} for i in ids]}
        )

    httpserver.expect_request("/2/tweets").respond_with_handler(handler)
    ids = [str(10_000 + i) for i in range(250)]
    status = watcher.lookup(ids)
    assert [len(b) for b in batches] == [100, 100, 50]
    assert all(s.kind is StatusKind.ALIVE for s in status.values()) and len(status) == 250


def test_lookup_429_makes_the_batch_and_the_rest_unknown(httpserver, watcher):
    reset = int(time.time()) + 600
    httpserver.expect_request("/2/tweets").respond_with_response(
        json_response(fixture("rate_limited.json"), 429, {"x-rate-limit-reset": str(reset)})
    )
    ids = [str(10_000 + i) for i in range(150)]
    status = watcher.lookup(ids)
    assert all(s.kind is StatusKind.UNKNOWN for s in status.values()) and len(status) == 150
    assert "rate limited" in status["10000"].error
    assert len([r for r, _ in httpserver.log if r.path == "/2/tweets"]) == 1  # the second batch is not sent


def test_lookup_author_check_failure_never_yields_deleted(httpserver, watcher):
    serve_lookup(httpserver, users=json_response(fixture("rate_limited.json"), 429, {"x-rate-limit-reset": "1"}))
    status = watcher.lookup(["1001", "1004", "1005"], authors=AUTHORS)
    assert status["1001"].kind is StatusKind.ALIVE
    assert status["1004"].kind is StatusKind.UNKNOWN and "author check failed" in status["1004"].error
    assert status["1005"].kind is StatusKind.UNKNOWN


@pytest.mark.parametrize(
    "response",
    [
        json_response(fixture("server_error.json"), 500),
        json_response(fixture("server_error.json"), 503),
        Response('{"data": [{"id": "1001", "text": "Sti', status=200, content_type="application/json"),
        Response("", status=200, content_type="application/json"),
        json_response({"data": "1001", "errors": []}),
        json_response({"data": [], "errors": {"value": "1001"}}),
        json_response(None),
        Response("Unauthorized", status=401, content_type="text/plain"),
    ],
    ids=["500", "503", "truncated-json", "empty-body", "data-string", "errors-object", "null", "401"],
)
def test_lookup_failures_are_unknown_never_deleted(httpserver, watcher, response):
    httpserver.expect_request("/2/tweets").respond_with_response(response)
    status = watcher.lookup(["1001", "1004"], authors=AUTHORS)
    assert {s.kind for s in status.values()} == {StatusKind.UNKNOWN}
    assert all(TOKEN not in s.error for s in status.values())


def test_lookup_timeout_is_unknown(httpserver, watcher):
    def slow(request: Request) -> Response:
        time.sleep(1.0)
        return json_response(fixture("tweets_lookup.json"))

    httpserver.expect_request("/2/tweets").respond_with_handler(slow)
    status = watcher.lookup(["1001"])
    assert status["1001"].kind is StatusKind.UNKNOWN
    assert "Timeout" in status["1001"].error or "timed out" in status["1001"].error
    time.sleep(0.7)  # let the fake server finish the slow answer before the next test reuses it


def test_lookup_malformed_tweet_is_unknown_others_decided(httpserver, watcher):
    httpserver.expect_request("/2/tweets").respond_with_json(
        {
            "data": [
                {"id": "1001", "text": None, "created_at": "2024-06-01T10:00:00.000Z"},
                {"id": "1002", "text": "fine", "created_at": "2024-06-01T10:00:00.000Z", "edit_history_tweet_ids": ["1002"]},
            ],
            "errors": ["what is this"],
        }
    )
    status = watcher.lookup(["1001", "1002", "abc"])
    assert status["1001"].kind is StatusKind.UNKNOWN and "malformed" in status["1001"].error
    assert status["1002"].kind is StatusKind.ALIVE
    assert status["abc"].kind is StatusKind.UNKNOWN
    assert [r.args["ids"] for r, _ in httpserver.log] == ["1001,1002"]


def test_unknown_error_type_is_unknown(httpserver, watcher):
    httpserver.expect_request("/2/tweets").respond_with_json(
        {
            "errors": [
                {
                    "value": "1001",
                    "detail": "Something else",
                    "title": "Generic Problem",
                    "resource_type": "tweet",
                    "parameter": "ids",
                    "resource_id": "1001",
                    "type": "about:blank",
                }
            ]
        }
    )
    assert watcher.lookup(["1001"])["1001"].kind is StatusKind.UNKNOWN


def test_retweet_listing_the_original_media_keys_again_has_each_attachment_once(httpserver, watcher):
    """Real X answers put the retweeted tweet's media keys on the retweet too: one attachment each."""
    page = fixture("timeline_page1.json")
    for tweet in page["data"]:
        if tweet["id"] == "1800000000000000040":
            tweet["attachments"] = {"media_keys": ["3_1799999999999999999"]}
    serve_user(httpserver)
    httpserver.expect_request(f"/2/users/{USER_ID}/tweets").respond_with_json(page)
    posts = {p.post_id: p for p in watcher.poll("MinExample", None).posts}
    assert [m.url for m in posts["1800000000000000040"].media] == ["https://pbs.twimg.com/media/FloodMap.jpg"]
