"""End-to-end delivery through apprise to local receivers (generic JSON webhook and Mattermost), with the real
stores (SQLite; Redis when configured): fields, attachment, outage and recovery, exactly-once, restart, secrets,
mentions."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import pytest
from alert_helpers import BLUE, RED, T0, alerts_config, decode_attachment, make_sender
from werkzeug import Response

from bot.alerts.sender import AlertSender, delivered_targets
from bot.alerts.targets import AppriseTarget
from bot.errors import ConfigError
from bot.redact import RedactingFilter, register_secret
from bot.store.records import KnownKind


def json_url(httpserver, path: str, auth: str = "") -> str:
    return f"json://{auth}127.0.0.1:{httpserver.port}{path}"


def test_match_alert_reaches_json_webhook_with_fields_and_comparison_picture(httpserver, receiver, store, archive, make_alert):
    hook = receiver("/hook")
    alert = make_alert()
    report = make_sender(store, archive, json_url(httpserver, "/hook")).deliver_due(T0)

    assert report.sent == [alert.key] and report.ok and report.pending == 0
    (body,) = hook.received
    title, text = body["title"], body["message"]
    assert "mod\\_gov" in text or "mod_gov" in text
    assert "Arma 3 gameplay footage" in title + text
    for expected in (
        "https://x.com/mod_gov/status/1001",  # post link
        "2026-11-24 10:30 UTC",  # posted time
        "Our forces destroyed the target today.",  # excerpt
        "https://www.youtube.com/watch?v=abc",  # known source
        "viral in 2022",  # known note
        "2024-05-06 07:08 UTC",  # known item first added
        "**Tier:** match",
        "**Distance:** 12",
        "**Inliers:** 87",
        "**Signal:** pdq",
    ):
        assert expected in text, expected

    png = decode_attachment(body)
    assert png.format == "JPEG"
    width, height = png.size
    assert 480 <= height <= 520  # panels scaled to the same height, plus a label strip
    # posted (400x300 red) scaled to 480 high is 640 wide on the left; known (300x300 blue) 480 wide on the right
    assert width == 640 + 8 + 480
    rgb = png.convert("RGB")
    y = height // 2
    left, right = rgb.getpixel((320, y + 60)), rgb.getpixel((width - 100, y))
    assert left[0] > 180 and left[2] < 80, left  # red
    assert right[2] > 180 and right[0] < 80, right  # blue
    # the matched region (x=40..360 in the posted image, scale 1.6) is outlined on the posted panel
    outline = rgb.getpixel((round(40 * 1.6), y))
    assert outline[0] > 200 and outline[2] > 200 and outline[1] < 80, outline  # magenta


def test_recycled_alert_says_where_it_was_seen_first(httpserver, receiver, store, archive, make_alert):
    hook = receiver("/hook")
    make_alert(kind=KnownKind.SEEN)
    make_sender(store, archive, json_url(httpserver, "/hook")).deliver_due(T0)
    text = hook.received[0]["message"]
    assert hook.received[0]["title"].startswith("Recycled image")
    assert "othergov" in text and "https://x.com/othergov/status/77" in text and "2025-01-02 03:04 UTC" in text


def test_mattermost_webhook_gets_the_text(httpserver, receiver, store, archive, make_alert):
    mm = receiver("/hooks/mattermosttoken123")
    make_alert()
    report = make_sender(store, archive, f"mmost://127.0.0.1:{httpserver.port}/mattermosttoken123").deliver_due(T0)
    assert report.ok and report.pending == 0
    (body,) = mm.received
    assert "https://x.com/mod_gov/status/1001" in body["text"]
    assert "Our forces destroyed the target today." in body["text"]
    assert "Arma 3 gameplay footage" in body["text"]


def test_outage_then_recovery_delivers_backlog_in_order_exactly_once(httpserver, receiver, store, archive, make_alert):
    hook = receiver("/hook")
    hook.status = 500
    keys = [make_alert(post_id=str(2000 + i), created_at=T0 + timedelta(seconds=i)).key for i in range(5)]
    sender = make_sender(store, archive, json_url(httpserver, "/hook"))

    first = sender.deliver_due(T0)
    assert first.sent == [] and first.failed == keys[0] and first.pending == 5
    assert T0 < first.retry_at <= T0 + timedelta(seconds=60)
    assert len(hook.received) == 1  # stopped at the first failure, did not try the others

    # still down, several retries as they come due; backoff grows but stays capped at max_backoff (60 s)
    now = first.retry_at
    for _ in range(4):
        report = sender.deliver_due(now)
        assert report.failed == keys[0] and report.sent == []
        assert report.retry_at - now <= timedelta(seconds=60)
        now = report.retry_at
    assert store.get_alert(keys[0]).attempts == 5
    # not yet due: nothing is attempted, the run returns at once
    calls = len(hook.received)
    waiting = sender.deliver_due(now - timedelta(seconds=1))
    assert waiting.waiting and waiting.sent == [] and len(hook.received) == calls

    hook.status = 200
    recovered = sender.deliver_due(now)
    assert recovered.sent == keys and recovered.pending == 0
    delivered_posts = [b["message"].split("status/")[1].split(">")[0] for b in hook.accepted]
    assert delivered_posts == ["2000", "2001", "2002", "2003", "2004"]

    again = sender.deliver_due(now + timedelta(hours=1))
    assert again.sent == [] and len(hook.accepted) == 5


def test_restart_resends_nothing_and_loses_nothing(httpserver, receiver, reopen, store, archive, make_alert):
    hook = receiver("/hook")
    a1, a2 = make_alert(post_id="1"), make_alert(post_id="2")
    assert make_sender(store, archive, json_url(httpserver, "/hook"), max_per_run=1).deliver_due(T0).sent == [a1.key]
    store.close()

    # "restart": a new store connection and a new sender; the producer also re-enqueues a1 after a crash
    reopened = reopen()
    assert reopened.enqueue_alert(a1) is False
    assert reopened.outbox_size() == 1
    report = make_sender(reopened, archive, json_url(httpserver, "/hook")).deliver_due(T0)
    assert report.sent == [a2.key]
    assert make_sender(reopened, archive, json_url(httpserver, "/hook")).deliver_due(T0).sent == []
    assert len(hook.accepted) == 2


def test_partial_multi_target_success_is_not_resent_to_the_target_that_got_it(
    httpserver, receiver, reopen, store, archive, make_alert
):
    good, flaky = receiver("/good"), receiver("/flaky")
    flaky.status = 503
    alert = make_alert()
    urls = (json_url(httpserver, "/good"), json_url(httpserver, "/flaky"))
    report = make_sender(store, archive, *urls, console=True).deliver_due(T0)
    assert report.failed == alert.key
    stored = store.get_alert(alert.key)
    assert delivered_targets(stored) == {"console", AppriseTarget(urls[0]).id}
    assert len(good.accepted) == 1 and len(flaky.accepted) == 0

    flaky.status = 200
    store.close()
    reopened = reopen()  # the progress survives a restart
    report = make_sender(reopened, archive, *urls, console=True).deliver_due(report.retry_at)
    assert report.sent == [alert.key]
    assert len(good.accepted) == 1 and len(flaky.accepted) == 1


@pytest.fixture
def redacting_caplog(caplog):
    """caplog with the redacting filter setup_logging installs in the daemon (pytest reuses the handler, so
    the filter is removed afterwards)."""
    redacting = RedactingFilter()
    caplog.handler.addFilter(redacting)
    yield caplog
    caplog.handler.removeFilter(redacting)


def client_side_log(caplog) -> str:
    """Log text of everything but the fake chat server (werkzeug logs the request paths it receives)."""
    return "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("werkzeug"))


def test_target_secrets_never_reach_logs_or_delivered_text(httpserver, receiver, store, archive, make_alert, redacting_caplog):
    caplog = redacting_caplog
    token = "mmTok3nSecretValue9876"
    password = "hunter2Secret!"
    mm = receiver(f"/hooks/{token}")
    js = receiver("/secure")
    js.status = 500  # a failure path too: errors are logged and stored
    # a post quoting the token (or the text of an error) must not leak it either
    make_alert(text=f"leaked {token} and {password} here")
    caplog.set_level(logging.DEBUG)
    urls = (
        f"mmost://127.0.0.1:{httpserver.port}/{token}",
        json_url(httpserver, "/secure", auth=f"user:{password.replace('!', '%21')}@"),
    )
    sender = make_sender(store, archive, *urls, console=True)
    report = sender.deliver_due(T0)
    assert report.failed

    js.status = 200
    sender.deliver_due(report.retry_at)
    assert mm.received and js.accepted
    everything = caplog.text
    for secret in (token, password, "hunter2Secret%21"):
        assert secret not in everything
        assert secret not in repr(mm.received) + repr(js.received)
        assert secret not in (store.get_alert(report.failed).last_error or "")
    assert "***" in mm.received[0]["text"]


def test_own_log_lines_are_clean_even_without_the_redacting_filter(httpserver, receiver, store, archive, make_alert, caplog):
    token = "anotherSecretTok3n42"
    receiver(f"/hooks/{token}").status = 500
    make_alert()
    caplog.set_level(logging.INFO)
    make_sender(store, archive, f"mmost://127.0.0.1:{httpserver.port}/{token}").deliver_due(T0)
    assert "not accepted" in client_side_log(caplog)
    assert token not in client_side_log(caplog)


def test_mentions_in_post_text_are_neutralized(httpserver, receiver, store, archive, make_alert):
    hook = receiver("/hook")
    mm = receiver("/hooks/tok12345")
    make_alert(text="@channel @here @everyone @all <!channel> <!here|here> <@U024BE7LH> *bold* [x](http://evil) `c`")
    make_sender(store, archive, json_url(httpserver, "/hook"), f"mmost://127.0.0.1:{httpserver.port}/tok12345").deliver_due(T0)
    for text in (hook.received[0]["message"], mm.received[0]["text"]):
        for mention in ("@channel", "@here", "@everyone", "@all", "<!channel>", "<!here", "<@U024"):
            assert mention not in text
        assert "@\u2060channel" in text  # still readable
        assert "[x](http://evil)" not in text


def test_timeout_counts_as_failure_and_returns_promptly(httpserver, store, archive, make_alert):
    def slow(request):
        time.sleep(3)
        return Response("{}", status=200)

    httpserver.expect_request("/slow", method="POST").respond_with_handler(slow)
    make_alert()
    started = time.monotonic()
    report = make_sender(store, archive, json_url(httpserver, "/slow"), timeout=1.0).deliver_due(T0)
    assert report.failed and time.monotonic() - started < 2.9
    assert store.outbox_size() == 1


def test_unusable_target_url_is_a_config_error_without_the_secret(store, archive):
    with pytest.raises(ConfigError) as e:
        make_sender(store, archive, "nosuchscheme://user:topSecretPw@host/tokenTOKENtoken")
    assert "topSecretPw" not in str(e.value) and "tokenTOKENtoken" not in str(e.value)
    assert "alerts.targets.0" in str(e.value)


def test_another_sender_holding_the_lock_skips_the_run(httpserver, receiver, store, archive, make_alert):
    hook = receiver("/hook")
    make_alert()
    assert store.acquire_lock("alerts:sender", "other-daemon", 60)
    report = make_sender(store, archive, json_url(httpserver, "/hook")).deliver_due(T0)
    assert report.locked and report.sent == [] and not hook.received
    store.release_lock("alerts:sender", "other-daemon")
    assert make_sender(store, archive, json_url(httpserver, "/hook")).deliver_due(T0).sent


def test_console_target_logs_the_rendered_alert(store, archive, make_alert, caplog):
    register_secret("consoleSecret123")
    make_alert(text="hello consoleSecret123 world")
    caplog.set_level(logging.INFO, logger="bot.alerts.console")
    sender = AlertSender(store, archive, alerts_config(console=True))
    assert sender.deliver_due(T0).sent
    console = [r.getMessage() for r in caplog.records if r.name == "bot.alerts.console"]
    assert len(console) == 1 and "hello *** world" in console[0] and "Arma 3 gameplay footage" in console[0]


def test_no_targets_keeps_alerts_queued(store, archive, make_alert):
    make_alert()
    report = AlertSender(store, archive, alerts_config(console=False)).deliver_due(T0)
    assert report.sent == [] and report.pending == 1


def test_missing_images_still_deliver_with_placeholder_panels(httpserver, receiver, store, archive, make_alert, images):
    hook = receiver("/hook")
    (archive.root / images.known).unlink()
    (archive.root / images.posted).write_bytes(b"tampered")  # hash mismatch: corrupt evidence
    make_alert()
    assert make_sender(store, archive, json_url(httpserver, "/hook")).deliver_due(T0).ok
    png = decode_attachment(hook.received[0])
    assert png.size[1] > 400
    colors = {c for _, c in png.convert("RGB").getcolors(1 << 22)}
    assert RED not in colors and BLUE not in colors


def test_mattermost_bot_mode_uploads_the_comparison_picture(httpserver, store, archive, make_alert):
    uploads, posts = [], []

    def upload(request):
        uploads.append((request.headers.get("Authorization"), request.form.get("channel_id"), request.files["files"]))
        uploads[-1] = (*uploads[-1][:2], request.files["files"].filename, request.files["files"].read())
        return Response('{"file_infos": [{"id": "file-1"}]}', status=201, content_type="application/json")

    def post(request):
        posts.append(request.get_json())
        return Response("{}", status=201, content_type="application/json")

    httpserver.expect_request("/api/v4/files", method="POST").respond_with_handler(upload)
    httpserver.expect_request("/api/v4/posts", method="POST").respond_with_handler(post)
    make_alert()
    url = f"mmost://127.0.0.1:{httpserver.port}/botTokenSecret123?mode=bot&to=chan1234567890"
    assert make_sender(store, archive, url).deliver_due(T0).ok
    ((auth, channel, filename, data),) = uploads
    assert auth == "Bearer botTokenSecret123" and channel == "chan1234567890"
    assert filename.startswith("comparison-") and filename.endswith(".jpg")
    assert data.startswith(b"\xff\xd8\xff")  # a JPEG
    (message,) = posts
    assert message["channel_id"] == "chan1234567890" and message["file_ids"] == ["file-1"]
    assert "https://x.com/mod_gov/status/1001" in message["message"]


def test_temporary_attachment_files_are_removed(httpserver, receiver, store, archive, make_alert, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    hook = receiver("/hook")
    hook.status = 500
    make_alert()
    sender = make_sender(store, archive, json_url(httpserver, "/hook"))
    report = sender.deliver_due(T0)
    hook.status = 200
    sender.deliver_due(report.retry_at)
    assert len(hook.received) == 2 and all(b["attachments"] for b in hook.received)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_two_daemons_on_one_store_deliver_each_alert_once(httpserver, receiver, reopen, store, archive, make_alert):
    import threading

    hook = receiver("/hook")
    keys = [make_alert(post_id=str(i)).key for i in range(8)]
    stores = [reopen(), reopen()]
    senders = [make_sender(s, archive, json_url(httpserver, "/hook"), owner=f"daemon-{i}") for i, s in enumerate(stores)]
    reports = [None, None]
    start = threading.Barrier(2)

    def run(i):
        start.wait()
        reports[i] = senders[i].deliver_due(T0)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for s in senders:  # whoever was locked out catches up; nothing is left to send twice
        s.deliver_due(T0)
    sent = [k for r in reports for k in r.sent]
    assert sorted(sent) == sorted(keys)
    posts = [b["message"].split("status/")[1].split(">")[0] for b in hook.accepted]
    assert posts == [str(i) for i in range(8)]


def test_without_an_explicit_now_the_real_time_is_recorded(httpserver, receiver, store, archive, make_alert):
    from bot.models import utcnow

    receiver("/hook")
    alert = make_alert(created_at=utcnow())
    before = utcnow()
    assert make_sender(store, archive, json_url(httpserver, "/hook")).deliver_due().sent == [alert.key]
    assert before <= store.get_alert(alert.key).sent_at <= utcnow()


def test_deletion_alert_carries_the_archived_picture(httpserver, receiver, store, archive, images):
    from bot.alerts.payloads import event_alert
    from bot.models import Post
    from bot.store.common import new_id
    from bot.store.records import PostEvent, StoredPost

    hook = receiver("/hook")
    post = Post(platform="x", account="mod_gov", post_id="1001", url="https://x.com/mod_gov/status/1001", text="gone",
                created_at=T0 - timedelta(hours=2))
    event = PostEvent("x", "mod_gov", "1001", "deleted", detected_at=T0, id=new_id())
    media = [{"sha256": "00" * 32, "archive_path": "missing/file.jpg"}, {"sha256": images.posted_sha, "archive_path": images.posted}]
    stored = StoredPost(post, 1, post.created_at, T0 - timedelta(hours=1), 1, "deleted")
    store.enqueue_alert(event_alert(event, stored, media=media, created_at=T0))
    assert make_sender(store, archive, json_url(httpserver, "/hook")).deliver_due(T0).ok
    png = decode_attachment(hook.received[0])
    assert png.size == (400, 300)  # the first picture the archive holds (the missing one is skipped)
    assert png.convert("RGB").getpixel((200, 150))[0] > 180  # the red posted picture


def test_a_slow_chat_call_keeps_the_short_sender_lock_renewed(httpserver, store, archive, make_alert):
    """The lock's TTL is short (a dead sender holds the outbox back only that long) and is renewed while a call
    to the chat takes longer than the TTL: no other daemon may start sending the same alert meanwhile."""
    seen_by_other: list[bool] = []

    def slow(request):
        time.sleep(1.2)  # four TTLs of 0.3 s
        seen_by_other.append(store.acquire_lock("alerts:sender", "other-daemon", 0.3))
        return Response("{}", status=200, content_type="application/json")

    httpserver.expect_request("/hook", method="POST").respond_with_handler(slow)
    make_alert()
    report = make_sender(store, archive, json_url(httpserver, "/hook"), lock_ttl=0.3).deliver_due(T0)
    assert report.sent and seen_by_other == [False]
    assert store.lock_owner("alerts:sender") is None  # released at the end of the run


def test_a_dead_senders_lock_holds_the_outbox_back_only_for_its_short_ttl(httpserver, receiver, store, archive, make_alert):
    hook = receiver("/hook")
    make_alert()
    assert store.acquire_lock("alerts:sender", "killed-daemon", 0.5)  # taken, then never renewed: a kill -9
    sender = make_sender(store, archive, json_url(httpserver, "/hook"), lock_ttl=0.5)
    assert sender.deliver_due(T0).locked
    time.sleep(0.7)
    assert sender.deliver_due(T0).sent and len(hook.received) == 1
