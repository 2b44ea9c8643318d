"""Mastodon watcher against a fake instance (pytest-httpserver) speaking the Mastodon REST API, driven
through the real Mastodon.py client: pagination by Link headers, media kinds, edits, every lookup status
and every failure path (none of which may yield ``deleted``)."""

from __future__ import annotations

import copy
import json
import logging
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlencode

import pytest
from pydantic import SecretStr
from werkzeug import Request, Response

from watchers.mastodon import MastodonConfig
from bot.errors import PlatformError, RateLimited
from bot.models import MediaKind, StatusKind
from watchers import build_watcher
from watchers.mastodon import MastodonWatcher

FIXTURES = Path(__file__).parent / "fixtures" / "mastodon"
TOKEN = "mastodon-token-s3cret-value"
BASE_ID = 113500000000000000


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def make_status(n: int, *, media: bool = True, **changes) -> dict:
    status = load("status.json")
    sid = str(BASE_ID + n)
    status["id"] = sid
    status["uri"] = f"https://social.example.gov/users/govinfo/statuses/{sid}"
    status["url"] = f"https://social.example.gov/@govinfo/{sid}"
    status["created_at"] = f"2026-11-24T{9 + n // 60:02d}:{n % 60:02d}:00.000Z"
    status["content"] = f"<p>Post number {n}</p>"
    if not media:
        status["media_attachments"] = []
    status.update(changes)
    return status


class FakeMastodon:
    """A Mastodon instance: account lookup, account statuses with real min_id/max_id/since_id semantics
    and Link headers, single status and account fetches. ``force`` queues raw answers per endpoint."""

    def __init__(self, httpserver):
        self.server = httpserver
        self.account = load("account.json")
        self.statuses: dict[str, dict] = {}
        self.status_answers: dict[str, tuple[int, object]] = {}
        self.account_answer: tuple[int, object] | None = None
        self.force: dict[str, list[Response]] = {"statuses": [], "status": [], "lookup": []}
        self.requests: list[tuple[str, dict]] = []
        #: endpoint kinds ("statuses", "status") answered only after 1.5 s (the watcher's timeout is 0.5 s)
        self.slow: set[str] = set()
        httpserver.expect_request(re.compile(r"^/api/v1/.*")).respond_with_handler(self.handle)

    def add(self, *statuses: dict) -> None:
        for s in statuses:
            self.statuses[s["id"]] = s

    def base(self) -> str:
        return self.server.url_for("").rstrip("/")

    def handle(self, request: Request) -> Response:
        path = request.path
        args = request.args.to_dict()
        self.requests.append((path, args))
        assert request.headers.get("Authorization") == f"Bearer {TOKEN}"
        if path == "/api/v1/accounts/lookup":
            if self.force["lookup"]:
                return self.force["lookup"].pop(0)
            if args.get("acct") != "govinfo":
                return Response(json.dumps({"error": "Record not found"}), 404, content_type="application/json")
            return Response(json.dumps(self.account), 200, content_type="application/json")
        m = re.fullmatch(r"/api/v1/accounts/(\w+)/statuses", path)
        if m:
            if "statuses" in self.slow:
                time.sleep(1.5)
            if self.force["statuses"]:
                return self.force["statuses"].pop(0)
            return self.account_statuses(m.group(1), args)
        m = re.fullmatch(r"/api/v1/accounts/(\w+)", path)
        if m:
            if self.account_answer is not None:
                code, body = self.account_answer
                return Response(json.dumps(body), code, content_type="application/json")
            return Response(json.dumps(self.account), 200, content_type="application/json")
        m = re.fullmatch(r"/api/v1/statuses/(\w+)", path)
        if m:
            if "status" in self.slow:
                time.sleep(1.5)
            if self.force["status"]:
                return self.force["status"].pop(0)
            sid = m.group(1)
            if sid in self.status_answers:
                code, body = self.status_answers[sid]
                return Response(json.dumps(body), code, content_type="application/json")
            if sid in self.statuses:
                return Response(json.dumps(self.statuses[sid]), 200, content_type="application/json")
            return Response(json.dumps({"error": "Record not found"}), 404, content_type="application/json")
        return Response(json.dumps({"error": "Not found"}), 404, content_type="application/json")

    def account_statuses(self, account_id: str, args: dict) -> Response:
        assert account_id == self.account["id"]
        assert args.get("exclude_reblogs") in ("1", "true", "True")
        limit = min(int(args.get("limit", 20)), 40)
        ordered = sorted(self.statuses.values(), key=lambda s: int(s["id"]))  # oldest first
        if "max_id" in args:
            ordered = [s for s in ordered if int(s["id"]) < int(args["max_id"])]
        if "since_id" in args:
            ordered = [s for s in ordered if int(s["id"]) > int(args["since_id"])]
        if "min_id" in args:
            ordered = [s for s in ordered if int(s["id"]) > int(args["min_id"])]
            page = ordered[:limit]  # the ones just after min_id
        else:
            page = ordered[-limit:]  # the newest
        page = list(reversed(page))  # Mastodon answers newest first
        headers = {}
        if page:
            url = f"{self.base()}/api/v1/accounts/{account_id}/statuses"
            common = {"exclude_reblogs": "true", "limit": str(limit)}
            nxt = f"{url}?{urlencode({**common, 'max_id': page[-1]['id']})}"
            prev = f"{url}?{urlencode({**common, 'min_id': page[0]['id']})}"
            headers["Link"] = f'<{nxt}>; rel="next", <{prev}>; rel="prev"'
        return Response(json.dumps(page), 200, headers=headers, content_type="application/json")


@pytest.fixture
def server(threaded_server):
    threaded_server.clear()
    yield threaded_server
    threaded_server.clear()


@pytest.fixture
def fake(server) -> FakeMastodon:
    return FakeMastodon(server)


def make_watcher(fake: FakeMastodon, **overrides) -> MastodonWatcher:
    cfg = MastodonConfig(
        access_token=SecretStr(TOKEN),
        api_base=fake.base(),
        accounts=["@govinfo@localhost"],
        timeout=0.5,
        **overrides,
    )
    watcher = build_watcher("mastodon", cfg)
    assert isinstance(watcher, MastodonWatcher)
    return watcher


def statuses_requests(fake: FakeMastodon) -> list[dict]:
    return [a for p, a in fake.requests if p.endswith("/statuses")]


# ----------------------------------------------------------------------------- poll


def test_first_poll_reads_newest_page_oldest_first_with_media_of_every_kind(fake):
    fake.add(make_status(1), make_status(2, media=False))
    w = make_watcher(fake)
    posts, cursor = w.poll("@govinfo@localhost", None)
    assert [p.post_id for p in posts] == [str(BASE_ID + 1), str(BASE_ID + 2)]
    assert cursor == str(BASE_ID + 2)
    first = posts[0]
    assert first.platform == "mastodon" and first.account == "@govinfo@localhost"
    assert first.url == f"https://social.example.gov/@govinfo/{BASE_ID + 1}"
    assert first.author_id == "109302"
    assert first.created_at == datetime(2026, 11, 24, 9, 1, tzinfo=timezone.utc)
    kinds = [(m.kind, m.media_id) for m in first.media]
    assert kinds == [(MediaKind.PHOTO, "22345792"), (MediaKind.VIDEO, "22546306"), (MediaKind.GIF, "21130559")]
    photo, video, gif = first.media
    assert photo.alt_text == "Flooded road near the bridge" and photo.url.endswith("original/57859aede991da25.jpeg")
    assert video.preview_url.endswith("small/dab9a597f68b9745.png") and video.alt_text is None
    assert gif.url.endswith(".mp4")
    assert first.raw == fake.statuses[first.post_id]  # verbatim wire JSON
    assert posts[1].media == ()
    # account resolved once, by its local name
    assert [a for p, a in fake.requests if p.endswith("/lookup")] == [{"acct": "govinfo"}]


def test_html_content_becomes_plain_text(fake):
    status = load("status.json")
    fake.add(status)
    post = make_watcher(fake).poll("govinfo", None).posts[0]
    assert post.text == "Flood update: roads closed in the #north district.\nStay safe & follow instructions.\n\nPhotos: our staff."


def test_spoiler_text_is_part_of_the_text(fake):
    fake.add(make_status(1, spoiler_text="CW: flood"))
    post = make_watcher(fake).poll("govinfo", None).posts[0]
    assert post.text == "CW: flood\n\nPost number 1"


def test_poll_with_cursor_follows_every_page_oldest_first(fake):
    fake.add(*[make_status(n, media=False) for n in range(1, 96)])  # 95 statuses
    w = make_watcher(fake)
    posts, cursor = w.poll("govinfo", str(BASE_ID + 10))
    assert [p.post_id for p in posts] == [str(BASE_ID + n) for n in range(11, 96)]
    assert cursor == str(BASE_ID + 95)
    reqs = statuses_requests(fake)
    assert reqs[0]["min_id"] == str(BASE_ID + 10)
    assert [r.get("min_id") for r in reqs[1:]] == [str(BASE_ID + 50), str(BASE_ID + 90), str(BASE_ID + 95)]
    assert all("max_id" not in r and "since_id" not in r for r in reqs)
    # next poll: nothing new, cursor stays
    posts, cursor = w.poll("govinfo", str(BASE_ID + 95))
    assert posts == [] and cursor is None


def test_poll_stops_after_max_pages_and_the_cursor_lets_the_next_poll_continue(fake):
    fake.add(*[make_status(n, media=False) for n in range(1, 101)])
    w = make_watcher(fake)
    w.max_pages = 2
    posts, cursor = w.poll("govinfo", str(BASE_ID))
    assert len(posts) == 80 and cursor == str(BASE_ID + 80)
    posts, cursor = w.poll("govinfo", cursor)
    assert [p.post_id for p in posts] == [str(BASE_ID + n) for n in range(81, 101)]


def test_malformed_items_are_rejected_and_the_rest_kept(fake, caplog):
    no_date = make_status(2)
    del no_date["created_at"]
    bad_media = make_status(3, media_attachments="not a list")
    bad_content = make_status(4, content=["<p>x</p>"])
    no_url_media = make_status(5)
    no_url_media["media_attachments"][0]["url"] = None
    fake.add(make_status(1), no_date, bad_media, bad_content, no_url_media, make_status(6))
    with caplog.at_level(logging.WARNING):
        result = make_watcher(fake).poll("govinfo", str(BASE_ID))
    assert [p.post_id for p in result.posts] == [str(BASE_ID + 1), str(BASE_ID + 6)]
    assert [r.raw["id"] for r in result.rejected] == [str(BASE_ID + n) for n in (2, 3, 4, 5)]
    assert "missing field 'created_at'" in result.rejected[0].error
    assert result.cursor == str(BASE_ID + 6)
    assert "skipped a malformed status" in caplog.text


def test_rejected_newest_item_still_advances_the_cursor(fake):
    bad = make_status(2, created_at="yesterday")
    fake.add(make_status(1), bad)
    result = make_watcher(fake).poll("govinfo", str(BASE_ID))
    assert len(result.posts) == 1 and len(result.rejected) == 1
    assert result.cursor == str(BASE_ID + 2)


def test_non_dict_item_is_rejected(fake):
    fake.force["statuses"].append(
        Response(json.dumps([make_status(1), "garbage", 42]), 200, content_type="application/json")
    )
    result = make_watcher(fake).poll("govinfo", None)
    assert len(result.posts) == 1 and sorted(map(str, (r.raw for r in result.rejected))) == ["42", "garbage"]


def test_poll_429_raises_rate_limited_with_reset(fake):
    reset = "2026-11-24T20:05:00.000Z"
    fake.force["statuses"].append(
        Response(
            json.dumps({"error": "Too many requests"}),
            429,
            headers={"X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset},
            content_type="application/json",
        )
    )
    with pytest.raises(RateLimited) as info:
        make_watcher(fake).poll("govinfo", None)
    assert info.value.platform == "mastodon"
    assert info.value.reset_at == datetime(2026, 11, 24, 20, 5, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "response",
    [
        Response(json.dumps({"error": "boom"}), 500, content_type="application/json"),
        Response("<html>Bad gateway</html>", 502, content_type="text/html"),
        Response('[{"id": "1135000000000', 200, content_type="application/json"),  # truncated JSON
        Response(json.dumps({"statuses": []}), 200, content_type="application/json"),  # unexpected type
    ],
    ids=["500", "502-html", "truncated", "object-not-list"],
)
def test_poll_failures_raise_platform_error_without_the_token(fake, response):
    fake.force["statuses"].append(response)
    with pytest.raises(PlatformError) as info:
        make_watcher(fake).poll("govinfo", None)
    assert not isinstance(info.value, RateLimited)
    assert TOKEN not in str(info.value)


def test_poll_failure_on_a_later_page_raises(fake):
    fake.add(*[make_status(n, media=False) for n in range(1, 50)])
    w = make_watcher(fake)
    w.poll("govinfo", None)  # resolves the account
    original = fake.account_statuses
    calls = []

    def flaky(account_id, args):
        calls.append(args)
        if len(calls) == 2:
            return Response("oops", 503)
        return original(account_id, args)

    fake.account_statuses = flaky
    with pytest.raises(PlatformError):
        w.poll("govinfo", str(BASE_ID))


def test_poll_timeout_raises_platform_error(fake):
    fake.add(make_status(1))
    w = make_watcher(fake)
    w.poll("govinfo", None)
    fake.slow.add("statuses")
    with pytest.raises(PlatformError) as info:
        w.poll("govinfo", None)
    assert "timed out" in str(info.value).lower()


def test_unknown_or_suspended_account_raises_platform_error(fake):
    with pytest.raises(PlatformError, match="not found"):
        make_watcher(fake).poll("@nobody@localhost", None)
    fake.account = {**fake.account, "suspended": True}
    with pytest.raises(PlatformError, match="suspended"):
        make_watcher(fake).poll("govinfo", None)


def test_remote_account_keeps_its_domain(fake):
    fake.force["lookup"].append(Response(json.dumps({"error": "Record not found"}), 404))
    with pytest.raises(PlatformError):
        make_watcher(fake).poll("@someone@other.example", None)
    assert fake.requests[-1] == ("/api/v1/accounts/lookup", {"acct": "someone@other.example"})


# ----------------------------------------------------------------------------- lookup


def polled_watcher(fake: FakeMastodon, *ns: int) -> MastodonWatcher:
    fake.add(*[make_status(n) for n in ns])
    w = make_watcher(fake)
    w.poll("@govinfo@localhost", None)
    return w


def test_lookup_alive_returns_current_version_and_detects_edits(fake):
    w = polled_watcher(fake, 1)
    sid = str(BASE_ID + 1)
    before = w.lookup([sid])[sid]
    assert before.kind == StatusKind.ALIVE and before.post.account == "@govinfo@localhost"
    edited = copy.deepcopy(fake.statuses[sid])
    edited["content"] = "<p>Post number 1 (corrected)</p>"
    edited["edited_at"] = "2026-11-24T10:00:00.000Z"
    edited["media_attachments"] = edited["media_attachments"][:1]
    fake.statuses[sid] = edited
    after = w.lookup([sid])[sid]
    assert after.kind == StatusKind.ALIVE
    assert after.post.text == "Post number 1 (corrected)" and len(after.post.media) == 1
    assert after.post.content_fingerprint() != before.post.content_fingerprint()
    assert after.post.raw["edited_at"] == "2026-11-24T10:00:00.000Z"


def test_lookup_404_with_healthy_author_is_deleted(fake):
    w = polled_watcher(fake, 1, 2)
    sid = str(BASE_ID + 1)
    del fake.statuses[sid]
    answer = w.lookup([sid, str(BASE_ID + 2)])
    assert answer[sid].kind == StatusKind.DELETED
    assert answer[str(BASE_ID + 2)].kind == StatusKind.ALIVE


def test_lookup_404_after_restart_checks_configured_accounts(fake):
    fake.add(make_status(1))
    w = make_watcher(fake)  # never polled: author of the status unknown
    answer = w.lookup([str(BASE_ID + 7)])
    assert answer[str(BASE_ID + 7)].kind == StatusKind.DELETED
    assert ("/api/v1/accounts/109302", {}) in fake.requests


@pytest.mark.parametrize(
    "account_answer, kind",
    [
        ((200, {**load("account.json"), "suspended": True}), StatusKind.AUTHOR_SUSPENDED),
        ((410, {"error": "Gone"}), StatusKind.AUTHOR_SUSPENDED),
        ((403, {"error": "This action is not allowed"}), StatusKind.AUTHOR_SUSPENDED),
        ((404, {"error": "Record not found"}), StatusKind.AUTHOR_DELETED),
        ((500, {"error": "boom"}), StatusKind.UNKNOWN),
        ((429, {"error": "Too many requests"}), StatusKind.UNKNOWN),
        ((200, ["not", "an", "account"]), StatusKind.UNKNOWN),
    ],
    ids=["suspended-flag", "410", "403", "404", "500", "429", "malformed"],
)
def test_lookup_404_is_told_apart_from_account_states(fake, account_answer, kind):
    w = polled_watcher(fake, 1)
    sid = str(BASE_ID + 1)
    del fake.statuses[sid]
    fake.account_answer = account_answer
    assert w.lookup([sid])[sid].kind == kind


def test_lookup_404_after_restart_with_unhealthy_configured_account_is_unknown(fake):
    w = make_watcher(fake)
    fake.account_answer = (200, {**load("account.json"), "suspended": True})
    assert w.lookup([str(BASE_ID + 3)])[str(BASE_ID + 3)].kind == StatusKind.UNKNOWN


def test_lookup_410_is_author_suspended(fake):
    w = polled_watcher(fake, 1)
    fake.status_answers[str(BASE_ID + 1)] = (410, {"error": "Gone"})
    assert w.lookup([str(BASE_ID + 1)])[str(BASE_ID + 1)].kind == StatusKind.AUTHOR_SUSPENDED


@pytest.mark.parametrize(
    "response",
    [
        Response(json.dumps({"error": "Too many requests"}), 429, headers={"X-RateLimit-Reset": "2026-11-24T20:00:00Z"}),
        Response(json.dumps({"error": "boom"}), 500, content_type="application/json"),
        Response("upstream down", 503),
        Response(json.dumps({"error": "Forbidden"}), 403, content_type="application/json"),
        Response('{"id": "1135000', 200, content_type="application/json"),
        Response(json.dumps(["a list"]), 200, content_type="application/json"),
        Response(json.dumps({"id": str(BASE_ID + 1), "url": "x"}), 200, content_type="application/json"),
        Response(json.dumps({**make_status(9)}), 200, content_type="application/json"),  # another status
    ],
    ids=["429", "500", "503", "403", "truncated", "list", "missing-fields", "wrong-id"],
)
def test_lookup_failures_are_unknown_never_deleted(fake, response):
    w = polled_watcher(fake, 1)
    fake.force["status"].append(response)
    status = w.lookup([str(BASE_ID + 1)])[str(BASE_ID + 1)]
    assert status.kind == StatusKind.UNKNOWN and status.error
    assert TOKEN not in status.error


def test_lookup_timeout_is_unknown(fake):
    w = polled_watcher(fake, 1)
    fake.slow.add("status")
    status = w.lookup([str(BASE_ID + 1)])[str(BASE_ID + 1)]
    assert status.kind == StatusKind.UNKNOWN and "timed out" in status.error.lower()


def test_lookup_rejects_ids_that_are_not_status_ids(fake):
    w = make_watcher(fake)
    assert w.lookup(["../accounts/1"])["../accounts/1"].kind == StatusKind.UNKNOWN
    assert fake.requests == []


def test_token_is_sent_but_never_logged(fake, caplog):
    from bot.redact import install_log_redaction

    fake.force["statuses"].append(Response("down", 500))
    w = make_watcher(fake)
    with caplog.at_level(logging.DEBUG):
        install_log_redaction(logging.getLogger())
        with pytest.raises(PlatformError) as info:
            w.poll("govinfo", None)
    assert TOKEN not in str(info.value) and TOKEN not in caplog.text


def test_429_without_reset_header_and_garbage_reset_header(fake):
    fake.force["statuses"].append(Response(json.dumps({"error": "Too many requests"}), 429))
    with pytest.raises(RateLimited) as info:
        make_watcher(fake).poll("govinfo", None)
    assert info.value.reset_at is None
    # a 200 whose X-RateLimit-Reset Mastodon.py cannot parse is a failure, not a rate limit
    fake.force["statuses"].append(Response("[]", 200, headers={"X-RateLimit-Reset": "soon-ish"}, content_type="application/json"))
    with pytest.raises(PlatformError) as info:
        make_watcher(fake).poll("govinfo", None)
    assert not isinstance(info.value, RateLimited)


def test_built_from_yaml_config_with_env_token(fake, caplog):
    from bot.config import parse_config
    from bot.redact import redact

    text = f"""
watchers:
  mastodon:
    access_token: ${{MASTODON_TOKEN}}
    api_base: {fake.base()}
    accounts: ["@govinfo@localhost"]
    interval: 2m
    timeout: 5s
"""
    config = parse_config(text, environ={"MASTODON_TOKEN": TOKEN})
    w = build_watcher("mastodon", config.watchers.mastodon)
    fake.add(make_status(1))
    assert len(w.poll("@govinfo@localhost", None).posts) == 1  # the fake asserts the Bearer token
    assert redact(f"token={TOKEN}") == "token=***"
    w.close()
