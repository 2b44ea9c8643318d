"""FacebookWatcher against a local fake Graph API (pytest-httpserver), driven through the real
python-facebook-api GraphAPI.

Payload shapes follow the Graph API reference: page ``/posts`` edges with ``data`` and ``paging``
(``cursors``, absolute ``next`` URLs carrying the token), StoryAttachment objects (``media.image.src``,
``media.source``, ``subattachments``), ``?ids=`` answers keyed by id, and error objects
``{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}``.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import SecretStr
from werkzeug import Request, Response

from watchers.facebook import FacebookConfig
from bot.errors import ConfigError, PlatformError, RateLimited
from bot.models import MediaKind, StatusKind
from watchers import build_watcher
from watchers.facebook import FacebookWatcher

FIXTURES = Path(__file__).parent / "fixtures" / "facebook"
TOKEN = "EAAB-test-page-token-SECRET123"
V = "/v24.0"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def json_response(body, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers or {}, content_type="application/json")


def make_config(httpserver, **overrides) -> FacebookConfig:
    values = dict(
        access_token=SecretStr(TOKEN),
        api_base=httpserver.url_for("/").rstrip("/"),
        accounts=["111"],
        timeout=0.5,
    )
    values.update(overrides)
    return FacebookConfig(**values)


@pytest.fixture
def watcher(httpserver) -> FacebookWatcher:
    w = build_watcher("facebook", make_config(httpserver))
    assert isinstance(w, FacebookWatcher)
    yield w
    w.close()


def serve_posts(httpserver, seen: list | None = None) -> None:
    def handler(request: Request) -> Response:
        if seen is not None:
            seen.append(dict(request.args))
        assert request.args["access_token"] == TOKEN  # never the token found in a next URL
        if request.args.get("after") == "QVFIUl9hZnRlcg":
            return json_response(fixture("page_posts_2.json"))
        return json_response(fixture("page_posts_1.json"))

    httpserver.expect_request(f"{V}/111/posts").respond_with_handler(handler)


# ---------------------------------------------------------------------------------------------- poll


def test_poll_reads_all_pages_oldest_first(httpserver, watcher):
    seen: list = []
    serve_posts(httpserver, seen)
    posts, cursor = watcher.poll("111", None)
    assert [p.post_id for p in posts] == ["111_199", "111_200", "111_201", "111_203", "111_204", "111_205"]
    assert cursor == "2024-06-10T12:50:00Z"
    assert len(seen) == 2
    first = seen[0]
    assert "since" not in first and first["limit"] == "100"
    assert "attachments{media,media_type,type,url" in first["fields"] and "subattachments" in first["fields"]
    assert {"created_time", "permalink_url", "message"} <= set(re.split(r"[,{}]", first["fields"]))
    assert seen[1]["after"] == "QVFIUl9hZnRlcg"
    post = posts[2]
    assert post.platform == "facebook" and post.account == "111"
    assert post.url == "https://www.facebook.com/111/posts/201"
    assert post.text == "Flood warning for the northern districts"
    assert post.created_at == datetime(2024, 6, 10, 12, 10, tzinfo=timezone.utc)
    assert post.author_id == "111"
    assert post.raw["id"] == "111_201"  # the Graph object verbatim
    assert posts[0].media == () and posts[0].text == "Office closed on Monday"


def test_poll_media_of_every_kind(httpserver, watcher):
    serve_posts(httpserver)
    posts = {p.post_id: p for p in watcher.poll("111", None).posts}

    (photo,) = posts["111_201"].media
    assert photo.kind is MediaKind.PHOTO and photo.url.startswith("https://scontent.xx.fbcdn.net/v/t39.30808-6/flood.jpg")
    assert photo.media_id == "501"

    album = posts["111_205"].media  # the album's photos, not its cover
    assert [m.media_id for m in album] == ["301", "302"]
    assert all(m.kind is MediaKind.PHOTO for m in album)
    assert not any("cover.jpg" in m.url for m in album)

    (video,) = posts["111_204"].media
    assert video.kind is MediaKind.VIDEO
    assert video.url.startswith("https://video.xx.fbcdn.net/v/t42.1790-2/statement.mp4")
    assert video.preview_url == "https://scontent.xx.fbcdn.net/v/t15.5256-10/statement_thumb.jpg"
    assert video.media_id == "401"

    (gif,) = posts["111_203"].media
    assert gif.kind is MediaKind.GIF and gif.url == "https://media.giphy.com/media/abc/giphy.mp4"
    assert gif.preview_url == "https://external.xx.fbcdn.net/emg1/v/t13/gif_still.jpg"
    assert posts["111_203"].text == ""  # no message field at all

    # a shared link's preview card is not an attachment (Bluesky's rule for link cards)
    assert posts["111_200"].media == () and posts["111_200"].raw["attachments"]["data"][0]["type"] == "share"


def test_poll_rejects_malformed_items_and_keeps_the_others(httpserver, watcher, caplog):
    serve_posts(httpserver)
    with caplog.at_level(logging.WARNING, logger="watchers.facebook"):
        result = watcher.poll("111", None)
    assert len(result.posts) == 6
    assert sorted(r.raw["id"] for r in result.rejected) == ["111_198", "111_202"]
    assert all(r.platform == "facebook" and r.account == "111" for r in result.rejected)
    assert "malformed post" in caplog.text


def test_poll_with_cursor_sends_since_and_drops_not_newer(httpserver, watcher):
    seen: list = []

    def handler(request: Request) -> Response:
        seen.append(dict(request.args))
        page = fixture("page_posts_1.json")
        del page["paging"]["next"]
        return json_response(page)

    httpserver.expect_request(f"{V}/111/posts").respond_with_handler(handler)
    posts, cursor = watcher.poll("111", "2024-06-10T12:40:00Z")
    assert seen[0]["since"] == str(int(datetime(2024, 6, 10, 12, 40, tzinfo=timezone.utc).timestamp()))
    # 111_204 is exactly at the cursor: kept, since another post of that second may only appear now (Graph
    # times have one-second resolution); the store reports a post it already has as unchanged
    assert [p.post_id for p in posts] == ["111_204", "111_205"]
    assert cursor == "2024-06-10T12:50:00Z"

    # a unix cursor works too; the post at the cursor comes again, and nothing newer keeps the cursor
    posts, cursor = watcher.poll("111", str(int(datetime(2024, 6, 10, 12, 50, tzinfo=timezone.utc).timestamp())))
    assert [p.post_id for p in posts] == ["111_205"] and cursor is None


def test_poll_rate_limit_by_code_uses_usage_header(httpserver, watcher):
    usage = {"111": [{"type": "pages", "call_count": 100, "total_cputime": 12, "total_time": 30, "estimated_time_to_regain_access": 15}]}
    httpserver.expect_request(f"{V}/111/posts").respond_with_response(
        json_response(fixture("error_rate_limit.json"), 400, {"x-business-use-case-usage": json.dumps(usage)})
    )
    before = datetime.now(timezone.utc)
    with pytest.raises(RateLimited) as info:
        watcher.poll("111", None)
    assert info.value.platform == "facebook"
    assert before + timedelta(minutes=14) < info.value.reset_at < before + timedelta(minutes=16)
    assert len(httpserver.log) == 1  # no retry loop, no sleeping in the library


def test_poll_http_429_without_json_is_rate_limited(httpserver, watcher):
    httpserver.expect_request(f"{V}/111/posts").respond_with_response(
        Response("Too Many Requests", status=429, headers={"Retry-After": "120"}, content_type="text/plain")
    )
    with pytest.raises(RateLimited) as info:
        watcher.poll("111", None)
    assert info.value.reset_at is not None


@pytest.mark.parametrize(
    "response",
    [
        json_response(fixture("error_unknown.json"), 500),
        Response("<html>Service Unavailable</html>", status=503, content_type="text/html"),
        Response('{"data": [{"id": "111_205", "message": "Alb', status=200, content_type="application/json"),
        json_response({"data": {"id": "111_205"}}),
        json_response(["no"]),
        json_response({"data": []}, 500),
        json_response(fixture("error_token_expired.json"), 400),
    ],
    ids=["500-graph-error", "503-html", "truncated-json", "data-not-list", "array", "500-no-error-object", "token-expired"],
)
def test_poll_failures_raise_platform_error_without_secrets(httpserver, watcher, response):
    httpserver.expect_request(f"{V}/111/posts").respond_with_response(response)
    with pytest.raises(PlatformError) as info:
        watcher.poll("111", None)
    assert not isinstance(info.value, RateLimited)
    assert TOKEN not in str(info.value)


def test_poll_timeout_is_platform_error(httpserver, watcher):
    def slow(request: Request) -> Response:
        time.sleep(1.0)
        return json_response({"data": []})

    httpserver.expect_request(f"{V}/111/posts").respond_with_handler(slow)
    with pytest.raises(PlatformError, match="Timeout|timed out"):
        watcher.poll("111", None)
    time.sleep(0.7)  # let the fake server finish the slow answer before the next test reuses it


def test_connection_error_messages_never_carry_the_token():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = FacebookConfig(access_token=SecretStr(TOKEN), api_base=f"http://127.0.0.1:{port}", timeout=0.5)
    w = FacebookWatcher(config)
    with pytest.raises(PlatformError) as info:
        w.poll("111", None)
    status = w.lookup(["111_201"])
    assert "access_token=***" in str(info.value)  # the URL is there, the token is not
    assert TOKEN not in str(info.value)
    assert status["111_201"].kind is StatusKind.UNKNOWN and TOKEN not in status["111_201"].error


def test_invalid_version_is_a_config_error(httpserver):
    with pytest.raises(ConfigError):
        FacebookWatcher(make_config(httpserver, version="latest"))


def test_version_is_configurable(httpserver):
    httpserver.expect_request("/v23.0/111/posts").respond_with_json({"data": []})
    w = FacebookWatcher(make_config(httpserver, version="v23.0"))
    assert w.poll("111", None).posts == []


# ---------------------------------------------------------------------------------------------- lookup


def serve_single(httpserver, post_id: str, response: Response) -> None:
    httpserver.expect_request(f"{V}/{post_id}").respond_with_response(response)


def test_lookup_batch_alive_and_edited(httpserver, watcher):
    page1 = fixture("page_posts_1.json")["data"]
    answer = {"111_205": page1[0], "111_204": fixture("post_111_204_edited.json")}
    httpserver.expect_request(V).respond_with_json(answer)
    status = watcher.lookup(["111_205", "111_204"])
    assert {k: v.kind for k, v in status.items()} == {"111_205": StatusKind.ALIVE, "111_204": StatusKind.ALIVE}
    edited = status["111_204"].post
    assert edited.text == "Statement by the minister (corrected date)"
    assert edited.media[0].identity() == "id:401"  # same video despite the re-signed CDN URL
    request = httpserver.log[0][0]
    assert request.args["ids"] == "111_205,111_204" and "attachments" in request.args["fields"]


def test_lookup_distinguishes_deleted_from_permission_problem(httpserver, watcher):
    gone = ["111_404", "111_405", "999_1"]
    alive = {"111_201": fixture("page_posts_2.json")["data"][0]}

    def batch(request: Request) -> Response:  # Graph fails a multi-id request naming the ids it cannot load
        ids = request.args["ids"].split(",")
        missing = [i for i in ids if i in gone]
        if missing:
            error = fixture("error_aliases.json")
            error["error"]["message"] = "(#803) Some of the aliases you requested do not exist: " + ",".join(missing)
            return json_response(error, 404)
        return json_response({i: alive[i] for i in ids})

    httpserver.expect_request(V).respond_with_handler(batch)
    serve_single(httpserver, "111_404", json_response(fixture("error_does_not_exist.json"), 400))
    serve_single(httpserver, "111_405", json_response(fixture("error_does_not_exist.json"), 400))
    serve_single(httpserver, "111", json_response(fixture("page_111.json")))
    serve_single(httpserver, "999_1", json_response(fixture("error_does_not_exist.json"), 400))
    serve_single(httpserver, "999", json_response(fixture("error_does_not_exist.json"), 400))

    status = watcher.lookup(["111_201", "111_404", "111_405", "999_1"])
    assert status["111_201"].kind is StatusKind.ALIVE
    assert status["111_404"].kind is StatusKind.DELETED  # the page itself still loads with this token
    assert status["111_405"].kind is StatusKind.DELETED
    assert status["999_1"].kind is StatusKind.UNKNOWN
    assert "permission problem" in status["999_1"].error
    paths = [r.full_path.split("?")[0] for r, _ in httpserver.log]
    assert paths.count(V) == 2  # the batch, then the batch without the ids Graph named
    assert paths.count(f"{V}/111") == 1  # one control request per page and lookup
    assert sorted(p for p in paths if "_" in p) == [f"{V}/111_404", f"{V}/111_405", f"{V}/999_1"]


def test_lookup_batch_error_without_named_ids_asks_each_alone(httpserver, watcher):
    httpserver.expect_request(V).respond_with_response(json_response(fixture("error_does_not_exist.json"), 400))
    serve_single(httpserver, "111_201", json_response(fixture("page_posts_2.json")["data"][0]))
    serve_single(httpserver, "111_404", json_response(fixture("error_does_not_exist.json"), 400))
    serve_single(httpserver, "111", json_response(fixture("page_111.json")))
    status = watcher.lookup(["111_201", "111_404"])
    assert status["111_201"].kind is StatusKind.ALIVE
    assert status["111_404"].kind is StatusKind.DELETED


def test_lookup_control_request_rate_limited_is_unknown(httpserver, watcher):
    serve_single(httpserver, "111_404", json_response(fixture("error_does_not_exist.json"), 400))
    httpserver.expect_request(V).respond_with_response(json_response(fixture("error_does_not_exist.json"), 400))
    serve_single(httpserver, "111", json_response(fixture("error_rate_limit.json"), 400))
    status = watcher.lookup(["111_404"])
    assert status["111_404"].kind is StatusKind.UNKNOWN and "rate limited" in status["111_404"].error


def test_lookup_other_graph_errors_are_unknown(httpserver, watcher):
    httpserver.expect_request(V).respond_with_response(json_response(fixture("error_token_expired.json"), 400))
    status = watcher.lookup(["111_201"])
    assert status["111_201"].kind is StatusKind.UNKNOWN and "permission problem" in status["111_201"].error


def test_lookup_id_missing_from_batch_answer_is_checked_alone(httpserver, watcher):
    httpserver.expect_request(V).respond_with_json({"111_201": fixture("page_posts_2.json")["data"][0]})
    serve_single(httpserver, "111_404", json_response(fixture("error_does_not_exist.json"), 400))
    serve_single(httpserver, "111", json_response(fixture("page_111.json")))
    status = watcher.lookup(["111_201", "111_404"])
    assert status["111_201"].kind is StatusKind.ALIVE
    assert status["111_404"].kind is StatusKind.DELETED


def test_lookup_batches_of_50(httpserver, watcher):
    batches: list[list[str]] = []

    def handler(request: Request) -> Response:
        ids = request.args["ids"].split(",")
        batches.append(ids)
        return json_response({i: {"id": i, "message": "m", "created_time": "2024-06-10T12:00:00+0000"} for i in ids})

    httpserver.expect_request(V).respond_with_handler(handler)
    ids = [f"111_{i}" for i in range(120)]
    status = watcher.lookup(ids)
    assert [len(b) for b in batches] == [50, 50, 20]
    assert all(s.kind is StatusKind.ALIVE for s in status.values()) and list(status) == ids


def test_lookup_rate_limit_makes_everything_unknown_and_stops(httpserver, watcher):
    httpserver.expect_request(V).respond_with_response(json_response(fixture("error_rate_limit.json"), 400))
    status = watcher.lookup([f"111_{i}" for i in range(80)])
    assert all(s.kind is StatusKind.UNKNOWN for s in status.values())
    assert len(httpserver.log) == 1


@pytest.mark.parametrize(
    "response",
    [
        json_response(fixture("error_unknown.json"), 500),
        Response("<html>oops</html>", status=502, content_type="text/html"),
        Response('{"111_201": {"id": "111_201", "mess', status=200, content_type="application/json"),
        Response("", status=200),
        json_response({"111_201": "gone?", "111_404": None}),
        json_response({"111_201": {"id": "111_201", "message": ["list"], "created_time": "2024-06-10T12:00:00+0000"}}),
        json_response({"111_201": {"id": "other", "created_time": "2024-06-10T12:00:00+0000"}}),
        Response("Too Many Requests", status=429),
    ],
    ids=["500", "502-html", "truncated-json", "empty-no-content-type", "item-string", "message-list", "wrong-id", "429"],
)
def test_lookup_failures_are_unknown_never_deleted(httpserver, watcher, response):
    httpserver.expect_request(V).respond_with_response(response)
    # a single-id request for whatever was not in the batch answer fails the same way
    httpserver.expect_request(re.compile(rf"^{V}/111_\d+$")).respond_with_response(response)
    status = watcher.lookup(["111_201"])
    assert status["111_201"].kind is StatusKind.UNKNOWN
    assert TOKEN not in status["111_201"].error


def test_lookup_timeout_is_unknown(httpserver, watcher):
    def slow(request: Request) -> Response:
        time.sleep(1.0)
        return json_response({})

    httpserver.expect_request(V).respond_with_handler(slow)
    status = watcher.lookup(["111_201"])
    assert status["111_201"].kind is StatusKind.UNKNOWN
    time.sleep(0.7)


def test_lookup_post_account_comes_from_polls(httpserver, watcher):
    httpserver.expect_request(f"{V}/ministry.examples/posts").respond_with_json(fixture("page_posts_2.json"))
    watcher.poll("ministry.examples", None)
    httpserver.expect_request(V).respond_with_json({"111_201": fixture("page_posts_2.json")["data"][0]})
    assert watcher.lookup(["111_201"])["111_201"].post.account == "ministry.examples"


def test_access_token_in_query_strings_never_reaches_logs(httpserver, watcher, caplog):
    from bot.redact import RedactingFilter

    serve_posts(httpserver)
    caplog.handler.addFilter(RedactingFilter())
    with caplog.at_level(logging.DEBUG, logger="urllib3"):
        watcher.poll("111", None)
    assert "access_token=" in caplog.text  # urllib3 logs each request line at debug level...
    assert TOKEN not in caplog.text  # ...with the registered token masked
