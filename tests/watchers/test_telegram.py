"""Telegram watcher against local servers speaking t.me's preview markup: a hand-written page in the real format
(fixtures/telegram/channel-page.html) and the fake preview site of :mod:`bot.demo.fake_telegram`."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from bot.config import parse_config
from bot.demo.fake_telegram import CHALLENGE_PAGE, FakeMessage, channel_page
from bot.demo.fakes import Fault, FakePlatforms, FakeWorld
from bot.errors import ConfigError, PlatformError, RateLimited
from bot.models import MediaKind, StatusKind
from watchers import build_watcher
from watchers.telegram import TelegramConfig, TelegramWatcher, background_url, channel_name

FIXTURE = (Path(__file__).parent / "fixtures" / "telegram" / "channel-page.html").read_text(encoding="utf-8")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
CHANNEL = "mod_example_en"


def make_watcher(base_url: str, **overrides) -> TelegramWatcher:
    values = {"accounts": [CHANNEL], "api_base": base_url, "interval": 5, "timeout": 0.5, **overrides}
    return build_watcher("telegram", TelegramConfig(**values))


@pytest.fixture
def site():
    world = FakeWorld(tg_channel=CHANNEL)
    with FakePlatforms(world) as server:
        yield world, server


def message(n: int, text: str = "", **kw) -> FakeMessage:
    return FakeMessage(n, text or f"Message {n}", T0 + timedelta(minutes=n), **kw)


# ----------------------------------------------------------------------------- parsing a real-format page


def test_real_format_page_every_field(httpserver: HTTPServer):
    older = channel_page("ministry_example", [], "https://cdn4.telesco.pe")  # the channel's first page: nothing older
    httpserver.expect_request("/s/ministry_example", query_string="before=5120").respond_with_data(older, content_type="text/html")
    httpserver.expect_request("/s/ministry_example").respond_with_data(FIXTURE, content_type="text/html; charset=utf-8")
    w = make_watcher(httpserver.url_for("").rstrip("/"), accounts=["ministry_example"])
    result = w.poll("ministry_example", None)
    assert [p.post_id for p in result.posts] == ["ministry_example/5120", "ministry_example/5125", "ministry_example/5131"]
    album, photo, forwarded = result.posts
    # album: every photo and the video of the group, once each, under the first id; the members are seen
    assert [(m.kind, m.url, m.media_id) for m in album.media] == [
        (MediaKind.PHOTO, "https://cdn4.telesco.pe/file/album-one.jpg", "ministry_example/5120"),
        (MediaKind.PHOTO, "https://cdn4.telesco.pe/file/album-two.jpg", "ministry_example/5121"),
        (MediaKind.VIDEO, "https://cdn4.telesco.pe/file/album-video.mp4?token=abc", "ministry_example/5122"),
    ]
    assert album.media[2].preview_url == "https://cdn4.telesco.pe/file/album-video-thumb.jpg"
    # entities flattened, links kept, emoji as characters
    assert album.text == (
        "Air defence units intercepted three drones overnight.\n\n"
        "Details: mil.example/news/42 (https://mil.example/news/42) | 🇺🇦Channel (https://t.me/ministry_example)"
    )
    assert album.raw["edited"] is True and album.url == "https://t.me/ministry_example/5120"
    assert album.created_at == datetime(2026, 2, 11, 6, 2, 17, tzinfo=timezone.utc)
    # a reply's quote is not the text; a link card is not an attachment
    assert photo.text == "Correction: the photo above shows the 7th brigade (https://mil.example/units/7)."
    assert [m.url for m in photo.media] == ["https://cdn4.telesco.pe/file/single-photo.jpg"]
    # a video too big for the preview keeps its thumbnail as a still; forwarded-from is kept
    assert [(m.kind, m.url) for m in forwarded.media] == [(MediaKind.PHOTO, "https://cdn4.telesco.pe/file/big-video-thumb.jpg")]
    assert forwarded.raw["forwarded_from"] == {"name": "Regional Administration", "url": "https://t.me/regional_admin/880"}
    # the message without a date is kept raw and skipped; the cursor still passes it
    assert len(result.rejected) == 1 and "ministry_example/5127" in result.rejected[0].raw["html"]
    assert "no date" in result.rejected[0].error
    assert result.cursor == "5131"


def test_background_url_and_channel_names():
    assert background_url("left:0;background-image:url('//cdn.example/a.jpg')") == "https://cdn.example/a.jpg"
    assert background_url('width:1px;background-image:url("https://x/y.jpg")') == "https://x/y.jpg"
    assert background_url("width:1px") is None
    assert [channel_name(a) for a in ("@mod_russia_en", "https://t.me/s/mod_russia", "t.me/idf_telegram")] == [
        "mod_russia_en",
        "mod_russia",
        "idf_telegram",
    ]
    with pytest.raises(ValueError):
        channel_name("https://t.me/+AbCdEf_private_invite")


# ----------------------------------------------------------------------------- polling


def test_first_poll_pages_back_up_to_the_limit_and_later_polls_reach_the_cursor(site):
    world, server = site
    world.tg_messages = [message(n) for n in range(100, 170)]  # 70 messages: 4 pages of 20
    w = make_watcher(server.base_url, history_pages=3)
    first = w.poll(CHANNEL, None)
    assert [p.raw["id"] for p in first.posts] == list(range(110, 170))  # 3 pages, oldest first
    assert first.cursor == "169"
    world.tg_messages += [message(n) for n in range(170, 215)]  # 45 new: more than two pages
    second = w.poll(CHANNEL, first.cursor)
    assert [p.raw["id"] for p in second.posts] == list(range(170, 215))
    assert second.cursor == "214"
    third = w.poll(CHANNEL, second.cursor)
    assert third.posts == [] and third.cursor is None


def test_album_members_are_one_post_and_move_the_cursor(site):
    world, server = site
    world.media = {}
    world.tg_messages = [message(10), message(11, "Album", photos=["/a.jpg", "/b.jpg", "/c.jpg"])]
    w = make_watcher(server.base_url)
    result = w.poll(CHANNEL, None)
    assert [p.raw["id"] for p in result.posts] == [10, 11]
    assert [m.media_id for m in result.posts[1].media] == [f"{CHANNEL}/11", f"{CHANNEL}/12", f"{CHANNEL}/13"]
    assert result.cursor == "13"
    world.tg_messages.append(message(14, "After the album"))
    assert [p.raw["id"] for p in w.poll(CHANNEL, result.cursor).posts] == [14]


def test_every_media_kind(site):
    world, server = site
    world.tg_messages = [
        message(1, "photo", photos=["/p.jpg"]),
        message(2, "video", video=("/v.mp4", "/v-thumb.jpg")),
        message(3, "too big", video=(None, "/big-thumb.jpg")),
        message(4, "text only"),
    ]
    posts = make_watcher(server.base_url).poll(CHANNEL, None).posts
    base = server.base_url
    assert [[(m.kind, m.url, m.preview_url) for m in p.media] for p in posts] == [
        [(MediaKind.PHOTO, f"{base}/p.jpg", None)],
        [(MediaKind.VIDEO, f"{base}/v.mp4", f"{base}/v-thumb.jpg")],
        [(MediaKind.PHOTO, f"{base}/big-thumb.jpg", None)],
        [],
    ]


def test_an_edited_message_is_returned_again_with_its_new_text(site):
    world, server = site
    world.tg_messages = [message(1, "Original"), message(2)]
    w = make_watcher(server.base_url)
    cursor = w.poll(CHANNEL, None).cursor
    world.tg_messages[0].text, world.tg_messages[0].edited = "Corrected", True
    again = w.poll(CHANNEL, cursor)
    assert [(p.raw["id"], p.text, p.raw["edited"]) for p in again.posts] == [(1, "Corrected", True)]
    assert again.cursor is None
    status = w.lookup([f"{CHANNEL}/1"])[f"{CHANNEL}/1"]
    assert status.kind == StatusKind.ALIVE and status.post.text == "Corrected"


@pytest.mark.parametrize(
    "fault, error",
    [
        (Fault("status", 502, body={"error": "bad gateway"}), "HTTP 502"),
        (Fault("html", 200, body=CHALLENGE_PAGE), "not a channel preview page"),
        (Fault("html", 200, body="<!DOCTYPE html><html><body><main class=tgme_main><section class=tgme_channel_history>"), "truncated"),
        (Fault("hang", seconds=2.0), "failed"),
    ],
    ids=["5xx", "challenge", "truncated", "timeout"],
)
def test_poll_failures_raise_platform_error(site, fault, error):
    world, server = site
    world.tg_messages = [message(1)]
    world.inject(f"/s/{CHANNEL}", fault)
    with pytest.raises(PlatformError) as info:
        make_watcher(server.base_url).poll(CHANNEL, None)
    assert not isinstance(info.value, RateLimited)
    assert error in str(info.value)


def test_poll_429_respects_retry_after(site):
    world, server = site
    world.inject(f"/s/{CHANNEL}", Fault("status", 429, headers={"Retry-After": "120"}))
    before = datetime.now(timezone.utc)
    with pytest.raises(RateLimited) as info:
        make_watcher(server.base_url).poll(CHANNEL, None)
    assert timedelta(seconds=115) < info.value.reset_at - before < timedelta(seconds=130)


def test_truncated_real_page_is_refused_not_half_read(site):
    world, server = site
    world.tg_messages = [message(n) for n in range(1, 6)]
    page = channel_page(CHANNEL, world.tg_messages, server.base_url)
    world.inject(f"/s/{CHANNEL}", Fault("html", 200, body=page[: len(page) // 2]))
    w = make_watcher(server.base_url)
    with pytest.raises(PlatformError, match="truncated"):
        w.poll(CHANNEL, None)
    assert [p.raw["id"] for p in w.poll(CHANNEL, None).posts] == [1, 2, 3, 4, 5]  # nothing lost: read next time


def test_a_channel_without_preview_fails_the_poll_clearly(site):
    _, server = site
    with pytest.raises(PlatformError, match="redirects"):
        make_watcher(server.base_url, accounts=["gone_channel"]).poll("gone_channel", None)


# ----------------------------------------------------------------------------- lookup


def test_lookup_statuses(site):
    world, server = site
    world.tg_messages = [message(1), message(2), message(3)]
    w = make_watcher(server.base_url)
    world.tg_messages[1].deleted = True
    answer = w.lookup([f"{CHANNEL}/1", f"{CHANNEL}/2", "gone_channel/7", "not-an-id"])
    assert answer[f"{CHANNEL}/1"].kind == StatusKind.ALIVE
    assert answer[f"{CHANNEL}/1"].post.text == "Message 1"
    assert answer[f"{CHANNEL}/2"].kind == StatusKind.DELETED  # "Post not found" while the channel is readable
    assert answer["gone_channel/7"].kind == StatusKind.AUTHOR_DELETED  # a channel gone is an author state
    assert answer["not-an-id"].kind == StatusKind.UNKNOWN


def test_post_not_found_is_not_a_deletion_when_the_channel_check_fails(site):
    world, server = site
    world.tg_messages = [message(1)]
    world.tg_messages[0].deleted = True
    world.inject(f"/s/{CHANNEL}", Fault("status", 502))
    status = make_watcher(server.base_url).lookup([f"{CHANNEL}/1"])[f"{CHANNEL}/1"]
    assert status.kind == StatusKind.UNKNOWN and "channel check failed" in status.error


@pytest.mark.parametrize(
    "fault",
    [
        Fault("status", 500),
        Fault("status", 502),
        Fault("html", 200, body=CHALLENGE_PAGE),
        Fault("html", 200, body="<!DOCTYPE html><html><body><div class=tgme_widget_message_wrap>"),
        Fault("html", 403, body=CHALLENGE_PAGE),
        Fault("hang", seconds=2.0),
        Fault("reset"),
    ],
    ids=["500", "502", "challenge", "truncated", "403-challenge", "timeout", "reset"],
)
def test_lookup_failures_are_unknown_never_deleted(site, fault):
    world, server = site
    world.tg_messages = [message(1)]
    world.tg_messages[0].deleted = True
    world.inject(f"/{CHANNEL}/1", fault)
    status = make_watcher(server.base_url).lookup([f"{CHANNEL}/1"])[f"{CHANNEL}/1"]
    assert status.kind == StatusKind.UNKNOWN


def test_lookup_429_stops_the_run_and_answers_unknown(site):
    world, server = site
    world.tg_messages = [message(n) for n in (1, 2, 3)]
    world.inject(f"/{CHANNEL}/", Fault("status", 429, headers={"Retry-After": "30"}))
    w = make_watcher(server.base_url)
    answer = w.lookup([f"{CHANNEL}/{n}" for n in (1, 2, 3)])
    assert {s.kind for s in answer.values()} == {StatusKind.UNKNOWN}
    assert len(world.faults_served) == 1  # the other two were not asked while rate limited
    # the tracker asks one id per call: Retry-After still holds across calls, and for polls
    assert w.lookup([f"{CHANNEL}/1"])[f"{CHANNEL}/1"].kind == StatusKind.UNKNOWN
    with pytest.raises(RateLimited):
        w.poll(CHANNEL, None)
    assert len(world.faults_served) == 1
    w._limited_until = None  # Retry-After over
    assert w.lookup([f"{CHANNEL}/1"])[f"{CHANNEL}/1"].kind == StatusKind.ALIVE


# ----------------------------------------------------------------------------- configuration


def test_config_normalizes_channels_and_keeps_the_floor():
    cfg = parse_config("watchers:\n  telegram:\n    accounts: ['@mod_russia_en', 'https://t.me/idf_telegram']\n", environ={})
    assert cfg.watchers.telegram.accounts == ["mod_russia_en", "idf_telegram"]
    assert cfg.watchers.telegram.api_base == "https://t.me"
    with pytest.raises(ConfigError) as info:
        parse_config("watchers:\n  telegram:\n    accounts: [mod_russia]\n    interval: 10s\n", environ={}, source="c.yaml")
    assert info.value.problems == [
        "c.yaml: line 4: watchers.telegram.interval: 10s is below 60s, the shortest interval allowed for this "
        "platform's public service"
    ]
