"""Rendering: every field, excerpt truncation, neutralized mentions and markup, redaction, robustness."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from alert_helpers import T0

from bot.alerts.messages import EXCERPT_CHARS, excerpt, render, untrusted
from bot.alerts.payloads import event_alert
from bot.models import Post
from bot.redact import register_secret
from bot.store.records import OutboxAlert, PostEvent, StoredPost

POST = Post(
    platform="x",
    account="mod_gov",
    post_id="42",
    url="https://x.com/mod_gov/status/42",
    text="Original text",
    created_at=datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc),
)
#: the post as the store holds it when the tracker builds an alert (last seen alive 26 h after posting)
STORED = StoredPost(POST, 1, POST.created_at, datetime(2026, 11, 21, 10, 0, tzinfo=timezone.utc), 1, "deleted")


def test_excerpt_is_truncated_around_280_chars_on_a_word_boundary():
    text = " ".join(["word"] * 200)
    short = excerpt(text)
    assert len(short) <= EXCERPT_CHARS + 2 and short.endswith("…")
    assert short[:-2].endswith("word")
    assert excerpt("short") == "short"


def test_long_post_text_in_alert_is_an_excerpt(make_alert):
    alert = make_alert(text="A" * 1000, enqueue=False)
    _, body = render(alert)
    assert "A" * 280 in body and "A" * 281 not in body


def _as_html(markdown: str) -> str:
    """What apprise sends to HTML targets (Matrix, Telegram, email)."""
    from apprise import NotifyFormat
    from apprise.conversion import convert_between

    return convert_between(NotifyFormat.MARKDOWN, NotifyFormat.HTML, markdown)


@pytest.mark.parametrize(
    "text, forbidden",
    [
        ("@channel look", "@channel"),
        ("@here", "@here"),
        ("hey @everyone", "@everyone"),
        ("@room in matrix", "@room"),
        ("<!channel>", "<!channel>"),
        ("<@U123>", "<@U"),
        ("\u202eevil reversed", "\u202e"),
    ],
)
def test_untrusted_text_cannot_mention(text, forbidden):
    out = untrusted(text, one_line=False)
    assert forbidden not in out  # text targets (Mattermost, Slack, Discord, Teams)
    assert forbidden not in _as_html(out).replace("&lt;", "<")  # HTML targets, as displayed


@pytest.mark.parametrize(
    "text, forbidden_html",
    [
        ("<b>bold</b><script>x</script>", "<b>"),
        ("<script>x</script>", "<script"),
        ("[click](https://evil.example)", "<a "),
        ("*bold* _it_ ~~strike~~", "<em>"),
        ("*bold* **strong**", "<strong>"),
        ("`code`", "<code>"),
        ("```\nbreak out\n```", "<pre"),
        ("&#64;room", "&#64;"),
        ("&commat;room", "&commat;"),
    ],
)
def test_untrusted_text_cannot_inject_markup(text, forbidden_html):
    html = _as_html(untrusted(text, one_line=False))
    assert forbidden_html not in html


def test_match_alert_title_mentions_cannot_ping(make_alert):
    alert = make_alert(text="x", enqueue=False)
    alert = OutboxAlert(
        key=alert.key,
        kind=alert.kind,
        payload={**alert.payload, "account": "@channel", "known": {**alert.payload["known"], "label": "@here"}},
    )
    title, body = render(alert)
    for text in (title, body):
        assert "@channel" not in text and "@here" not in text


def test_rendering_redacts_registered_secrets(make_alert):
    register_secret("SuperSecretValue")
    title, body = render(make_alert(text="token SuperSecretValue", enqueue=False))
    assert "SuperSecretValue" not in title + body and "***" in body


def test_suggest_tier_is_marked_for_review(make_alert):
    title, body = render(make_alert(tier="suggest", enqueue=False))
    assert title.startswith("Possible") and "review" in title
    assert "POSSIBLE MATCH" in body


def test_deleted_alert_shows_lifetime_and_text():
    event = PostEvent("x", "mod_gov", "42", "deleted", detected_at=datetime(2026, 11, 21, 11, 30, tzinfo=timezone.utc), id="ev1")
    alert = event_alert(event, STORED, media=[{"sha256": "ab" * 32, "archive_path": "ab/ab/x.jpg"}])
    assert alert.key == "deleted:x:42:ev1"
    assert alert.payload["lifetime_seconds"] == 26 * 3600  # to the last sighting alive, not to the detection
    title, body = render(alert)
    assert title.startswith("Post deleted") and "mod_gov" in title
    assert "1d 2h" in body and "Original text" in body and "https://x.com/mod_gov/status/42" in body
    assert "1 file(s)" in body


def test_edited_alert_shows_before_and_after():
    event = PostEvent(
        "x", "mod_gov", "42", "edited", detected_at=T0, id="ev2",
        details={"before": {"text": "Old claim", "media": ["a"]}, "after": {"text": "New claim", "media": []}},
    )
    _, body = render(event_alert(event, STORED))
    assert body.index("Old claim") < body.index("New claim")
    assert "**Before:**" in body and "**After:**" in body


@pytest.mark.parametrize("kind", ["author_suspended", "author_protected", "author_deleted", "withheld", "restored"])
def test_every_event_kind_renders(kind):
    title, body = render(event_alert(PostEvent("x", "mod_gov", "42", kind, detected_at=T0, id="e"), STORED))
    assert "mod_gov" in title and "https://x.com/mod_gov/status/42" in body


def test_withheld_alert_says_the_platform_hid_the_post_not_that_it_was_deleted():
    said = "hidden by the Bluesky AppView (moderation); the record still exists on the author's PDS"
    event = PostEvent("x", "mod_gov", "42", "withheld", detected_at=T0, id="e", details={"platform_said": said})
    title, body = render(event_alert(event, STORED))
    assert title.startswith("Post withheld by the platform (not deleted)")
    assert "hidden by the Bluesky AppView (moderation); the record still exists" in body


def test_malformed_payload_renders_without_raising():
    for payload in ({}, {"known": "not a dict", "region": 5}, {"details": [1, 2]}):
        for kind in ("match", "deleted", "edited", "digest", "weird"):
            title, body = render(OutboxAlert(key=f"{kind}:k", kind=kind, payload=payload))
            assert title and body


def test_non_http_links_are_not_made_clickable(make_alert):
    alert = make_alert(enqueue=False)
    alert = OutboxAlert(key=alert.key, kind=alert.kind, payload={**alert.payload, "post_url": "javascript:alert(1)"})
    _, body = render(alert)
    assert "javascript:alert(1)" in body.replace("\\", "")
    assert "**Post:** javascript:alert\\(1\\)" in body or "**Post:** javascript:alert(1)" in body


def test_body_stays_under_discord_limit_even_for_huge_payloads():
    details = {f"k{i}": "v" * 300 for i in range(30)}
    event = PostEvent("x", "mod_gov", "42", "edited", detected_at=T0, id="e",
                      details={"before": {"text": "a " * 5000}, "after": {"text": "b " * 5000}, **details})
    title, body = render(event_alert(event, STORED))
    assert len(body) <= 1900 and len(title) <= 200
    event = PostEvent("x", "mod_gov", "42", "deleted", detected_at=T0, id="e", details=details)
    assert len(render(event_alert(event, STORED))[1]) <= 1900
