"""VK watcher through the real vk_api client against a local server answering in VK API's JSON format
(``{"response": ...}`` / ``{"error": {"error_code", "error_msg", "request_params"}}``, form-encoded POSTs to
``/method/<name>``)."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs

import pytest
from pydantic import SecretStr
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from bot.config import parse_config
from bot.errors import ConfigError, PlatformError, RateLimited
from bot.models import MediaKind, StatusKind
from watchers import build_watcher
from watchers.vk import VkConfig, VkWatcher, wall_name

TOKEN = "vk-service-token-SECRET-0b7f"
OWNER = -72580409
T0 = 1767225600  # 2026-01-01T00:00:00Z


def photo(pid: int, name: str) -> dict:
    return {
        "type": "photo",
        "photo": {
            "id": pid,
            "owner_id": OWNER,
            "album_id": -7,
            "date": T0,
            "text": "",
            "sizes": [
                {"type": "s", "url": f"https://sun9-1.userapi.com/{name}-s.jpg", "width": 75, "height": 50},
                {"type": "w", "url": f"https://sun9-1.userapi.com/{name}-w.jpg", "width": 1280, "height": 853},
                {"type": "x", "url": f"https://sun9-1.userapi.com/{name}-x.jpg", "width": 604, "height": 403},
            ],
        },
    }


VIDEO = {
    "type": "video",
    "video": {
        "id": 456239400,
        "owner_id": OWNER,
        "title": "Briefing",
        "duration": 95,
        "image": [
            {"url": "https://sun9-2.userapi.com/vthumb-320.jpg", "width": 320, "height": 180},
            {"url": "https://sun9-2.userapi.com/vthumb-1280.jpg", "width": 1280, "height": 720, "with_padding": 1},
        ],
    },
}
LINK = {"type": "link", "link": {"url": "https://mil.example/news", "title": "News", "photo": photo(9, "card")["photo"]}}


def post(pid: int, text: str = "", attachments: list | None = None, **extra) -> dict:
    return {
        "id": pid,
        "owner_id": OWNER,
        "from_id": OWNER,
        "date": T0 + pid,
        "post_type": "post",
        "text": text or f"Post {pid}",
        "attachments": attachments or [],
        "comments": {"count": 0},
        "views": {"count": 100},
        **extra,
    }


class FakeVk:
    """wall.get (domain or owner_id, count, offset) and wall.getById over a mutable wall."""

    def __init__(self) -> None:
        self.wall: list[dict] = []
        self.pinned: dict | None = None
        self.errors: list[tuple[int, dict | None, int]] = []  # (http status, VK error or None, for how many calls)
        self.calls: list[tuple[str, dict]] = []
        self.wall_error: dict | None = None
        self.wall_status: int | None = None

    def handle(self, request: Request) -> Response:
        method = request.path.rsplit("/", 1)[-1]
        form = {k: v[-1] for k, v in parse_qs(request.get_data(as_text=True)).items()}
        self.calls.append((method, form))
        assert form["access_token"] == TOKEN and form["v"] == "5.199"
        if self.errors:
            status, error, _ = self.errors.pop(0)
            if error is None:
                return Response("<html>502 Bad Gateway</html>", status, content_type="text/html")
            return Response(json.dumps({"error": {**error, "request_params": [{"key": "method", "value": method}]}}), status,
                            content_type="application/json")
        if method == "wall.get":
            if self.wall_status:
                return Response("<html>bad gateway</html>", self.wall_status, content_type="text/html")
            if self.wall_error:
                return self.json({"error": self.wall_error})
            items = sorted(self.wall, key=lambda p: -p["id"])
            offset, count = int(form.get("offset", 0)), int(form.get("count", 20))
            page = items[offset : offset + count]
            if self.pinned and offset == 0:
                page = [self.pinned, *page]
            return self.json({"response": {"count": len(items), "items": page}})
        if method == "wall.getById":
            wanted = form["posts"].split(",")
            by_key = {f"{p['owner_id']}_{p['id']}": p for p in self.wall}
            return self.json({"response": {"items": [by_key[k] for k in wanted if k in by_key]}})
        return self.json({"error": {"error_code": 3, "error_msg": "Unknown method passed"}})

    @staticmethod
    def json(body: dict) -> Response:
        return Response(json.dumps(body), 200, content_type="application/json")


@pytest.fixture
def vk(httpserver: HTTPServer):
    fake = FakeVk()
    httpserver.expect_request("/method/wall.get").respond_with_handler(fake.handle)
    httpserver.expect_request("/method/wall.getById").respond_with_handler(fake.handle)
    watcher = make(httpserver.url_for("").rstrip("/"))
    yield fake, watcher
    watcher.close()


def make(base: str, **kw) -> VkWatcher:
    values = {"service_token": SecretStr(TOKEN), "api_base": base, "accounts": ["mil"], "interval": 5, "timeout": 1.0, **kw}
    return build_watcher("vk", VkConfig(**values))


def test_poll_media_kinds_reposts_and_pinned(vk):
    fake, w = vk
    fake.wall = [
        post(10, "Two photos", [photo(1, "a"), photo(2, "b")]),
        post(11, "Video", [VIDEO]),
        post(12, "Link only", [LINK]),
        post(13, "Repost", copy_history=[{"id": 5, "owner_id": -1, "text": "Original", "attachments": [photo(3, "orig")]}]),
        {"id": 14, "owner_id": OWNER, "text": "no date"},
    ]
    fake.pinned = post(3, "Pinned, old", is_pinned=1)
    result = w.poll("mil", None)
    assert [p.post_id for p in result.posts] == [f"{OWNER}_3", f"{OWNER}_10", f"{OWNER}_11", f"{OWNER}_12", f"{OWNER}_13"]
    by_id = {p.post_id: p for p in result.posts}
    assert [m.url for m in by_id[f"{OWNER}_10"].media] == ["https://sun9-1.userapi.com/a-w.jpg", "https://sun9-1.userapi.com/b-w.jpg"]
    assert [(m.kind, m.url) for m in by_id[f"{OWNER}_11"].media] == [(MediaKind.PHOTO, "https://sun9-2.userapi.com/vthumb-1280.jpg")]
    assert by_id[f"{OWNER}_12"].media == ()  # a link card is not an attachment
    assert [m.url for m in by_id[f"{OWNER}_13"].media] == ["https://sun9-1.userapi.com/orig-w.jpg"]
    assert by_id[f"{OWNER}_13"].text == "Repost\n\nOriginal"
    assert by_id[f"{OWNER}_10"].url == f"https://vk.com/wall{OWNER}_10"
    assert len(result.rejected) == 1 and "not a time" in result.rejected[0].error
    assert result.cursor == "14"
    assert fake.calls[0][1]["domain"] == "mil"


def test_later_polls_page_back_to_the_cursor_and_ignore_the_pinned_post(vk):
    fake, w = vk
    fake.wall = [post(n) for n in range(1, 6)]
    fake.pinned = post(2, "Pinned", is_pinned=1)
    cursor = w.poll("mil", None).cursor
    assert cursor == "5"
    fake.wall += [post(n) for n in range(6, 256)]  # 250 new posts: three pages
    result = w.poll("mil", cursor)
    assert [int(p.raw["id"]) for p in result.posts] == list(range(6, 256))
    assert [int(c[1]["offset"]) for c in fake.calls if c[0] == "wall.get"][1:] == [0, 100, 200]
    assert w.poll("mil", result.cursor).posts == []


@pytest.mark.parametrize(
    "status, error, expected",
    [
        (200, {"error_code": 6, "error_msg": "Too many requests per second"}, RateLimited),
        (200, {"error_code": 29, "error_msg": "Rate limit reached"}, RateLimited),
        (200, {"error_code": 15, "error_msg": "Access denied: wall is disabled"}, PlatformError),
        (200, {"error_code": 10, "error_msg": "Internal server error"}, PlatformError),
        (200, {"error_code": 14, "error_msg": "Captcha needed", "captcha_sid": "1", "captcha_img": "https://api.vk.com/captcha.php?sid=1"}, PlatformError),
        (502, None, PlatformError),
    ],
    ids=["too-many-rps", "rate-limit", "access-denied", "internal", "captcha", "http-502"],
)
def test_poll_errors(vk, status, error, expected):
    fake, w = vk
    fake.errors = [(status, error, 1)]
    with pytest.raises(expected) as info:
        w.poll("mil", None)
    assert TOKEN not in str(info.value)
    assert len(fake.calls) == 1  # vk_api's own retries and captcha prompts are off


def test_poll_http_429_reads_retry_after(httpserver: HTTPServer):
    httpserver.expect_request("/method/wall.get").respond_with_response(Response("", 429, headers={"Retry-After": "60"}))
    w = make(httpserver.url_for("").rstrip("/"))
    with pytest.raises(RateLimited) as info:
        w.poll("mil", None)
    assert info.value.reset_at is not None


def test_poll_timeout_and_malformed(httpserver: HTTPServer):
    httpserver.expect_oneshot_request("/method/wall.get").respond_with_json({"response": {"count": 1}})
    httpserver.expect_oneshot_request("/method/wall.get").respond_with_data('{"response": {"count": 1, "items": [{"id"', content_type="application/json")
    httpserver.expect_oneshot_request("/method/wall.get").respond_with_handler(lambda r: (time.sleep(1.5), Response("{}"))[1])
    w = make(httpserver.url_for("").rstrip("/"), timeout=0.5)
    for message in ("malformed", "failed", "ReadTimeout"):
        with pytest.raises(PlatformError, match=message):
            w.poll("mil", None)


def test_lookup_statuses(vk):
    fake, w = vk
    fake.wall = [post(1, "Alive", [photo(1, "a")]), post(2)]
    answer = w.lookup([f"{OWNER}_1", f"{OWNER}_2", f"{OWNER}_3", "garbage"])
    assert answer[f"{OWNER}_1"].kind == StatusKind.ALIVE and answer[f"{OWNER}_1"].post.text == "Alive"
    assert answer[f"{OWNER}_2"].kind == StatusKind.ALIVE
    assert answer[f"{OWNER}_3"].kind == StatusKind.DELETED  # missing from getById, and the wall answers
    assert answer["garbage"].kind == StatusKind.UNKNOWN
    assert [c[0] for c in fake.calls] == ["wall.getById", "wall.get"]


def test_lookup_edit_is_the_current_version(vk):
    fake, w = vk
    fake.wall = [post(1, "Before")]
    assert w.lookup([f"{OWNER}_1"])[f"{OWNER}_1"].post.text == "Before"
    fake.wall = [post(1, "After", edited=T0 + 500)]
    assert w.lookup([f"{OWNER}_1"])[f"{OWNER}_1"].post.text == "After"


@pytest.mark.parametrize(
    "code, kind",
    [(15, StatusKind.AUTHOR_PROTECTED), (30, StatusKind.AUTHOR_PROTECTED), (18, StatusKind.AUTHOR_DELETED), (10, StatusKind.UNKNOWN)],
)
def test_missing_post_on_an_unreadable_wall_is_an_author_state_not_a_deletion(vk, code, kind):
    fake, w = vk
    fake.wall_error = {"error_code": code, "error_msg": "wall unavailable"}
    assert w.lookup([f"{OWNER}_7"])[f"{OWNER}_7"].kind == kind


@pytest.mark.parametrize(
    "status, error",
    [
        (200, {"error_code": 6, "error_msg": "Too many requests per second"}),
        (200, {"error_code": 10, "error_msg": "Internal server error"}),
        (200, {"error_code": 14, "error_msg": "Captcha needed", "captcha_sid": "1", "captcha_img": "https://x/c"}),
        (500, None),
        (503, None),
    ],
)
def test_lookup_failures_are_unknown(vk, status, error):
    fake, w = vk
    fake.errors = [(status, error, 1)]
    answer = w.lookup([f"{OWNER}_1"])
    assert answer[f"{OWNER}_1"].kind == StatusKind.UNKNOWN
    assert TOKEN not in answer[f"{OWNER}_1"].error


def test_lookup_missing_post_with_failing_wall_check_is_unknown(vk):
    fake, w = vk
    fake.wall_status = 502  # getById answers without the post, then the wall check fails
    status = w.lookup([f"{OWNER}_1"])[f"{OWNER}_1"]
    assert status.kind == StatusKind.UNKNOWN and "wall check failed" in status.error


def test_config_walls_and_token_reference():
    env = {"VK_SERVICE_TOKEN": TOKEN}
    cfg = parse_config(
        "watchers:\n  vk:\n    service_token: ${VK_SERVICE_TOKEN}\n    accounts: [mil, 'https://vk.com/club72580409', '-1']\n",
        environ=env,
    )
    assert cfg.watchers.vk.accounts == ["mil", "-72580409", "-1"]
    with pytest.raises(ConfigError):
        parse_config(f"watchers:\n  vk:\n    service_token: {TOKEN}\n    accounts: [mil]\n", environ=env)
    assert wall_name("vk.com/id1") == "1"
