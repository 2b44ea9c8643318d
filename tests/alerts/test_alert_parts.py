"""Payload builders and keys, backoff, the comparison picture, the digest."""

from __future__ import annotations

import io
import random
from datetime import date, datetime, timedelta, timezone

import pytest
from alert_helpers import BLUE, RED, T0, png_bytes
from PIL import Image

from bot.alerts.digest import build_digest, digest_window, enqueue_digest_if_due
from bot.alerts.payloads import alert_key, event_alert, match_alert
from bot.alerts.picture import comparison_picture
from bot.alerts.sender import backoff_delay, delivered_targets, progress_error
from bot.config import DigestConfig
from bot.models import Post
from bot.store.records import KnownKind, KnownMedia, OutboxAlert, PostEvent
from bot.store.sqlite import SqliteStore

POST = Post("x", "mod_gov", "42", "https://x.com/mod_gov/status/42", "text", datetime(2026, 11, 24, 6, tzinfo=timezone.utc))


# ------------------------------------------------------------------ payloads and keys
def test_match_alert_kind_and_key_follow_the_known_entry():
    known = KnownMedia(label="stock", signals={}, id="k1")
    seen = KnownMedia(label="earlier post", signals={}, id="k2", kind=KnownKind.SEEN, origin={"platform": "x"})
    common = dict(media_sha256="ab" * 32, media_archive_path=None, media_url=None, tier="match", signal="pdq")
    m = match_alert(POST, known=known, **common)
    r = match_alert(POST, known=seen, **common)
    assert (m.kind, m.key) == ("match", f"match:x:42:{'ab' * 32}:k1")
    assert (r.kind, r.key) == ("recycled", f"recycled:x:42:{'ab' * 32}:k2")
    assert m.payload["known"]["kind"] == "known" and r.payload["known"]["origin"] == {"platform": "x"}
    assert m.payload["posted_at"] == "2026-11-24T06:00:00Z" and m.payload["region"] is None
    with pytest.raises(ValueError):
        match_alert(POST, known=known, **{**common, "tier": "maybe"})


def test_payloads_are_json_round_trippable(make_alert, store):
    alert = make_alert()
    assert store.get_alert(alert.key).payload == alert.payload


def test_alert_key_rejects_unknown_kinds_and_empty_parts():
    assert alert_key("deleted", "x", "42", "ev1") == "deleted:x:42:ev1"
    assert alert_key("digest", "2026-11-24") == "digest:2026-11-24"
    with pytest.raises(ValueError):
        alert_key("nope", "x")
    with pytest.raises(ValueError):
        alert_key("deleted", "x", "42", "")
    with pytest.raises(ValueError):
        event_alert(PostEvent("x", "a", "42", "deleted"), None)  # the event was not recorded (no id)


# ------------------------------------------------------------------ backoff and progress
def test_backoff_is_exponential_jittered_and_capped():
    rng = random.Random(7)
    for attempts in range(12):
        d = backoff_delay(attempts, 5.0, 900.0, rng)
        expected = min(900.0, 5.0 * 2**attempts)
        assert expected / 2 <= d <= expected
    assert backoff_delay(100, 5.0, 900.0, rng) <= 900.0
    assert len({round(backoff_delay(3, 5.0, 900.0, rng), 6) for _ in range(10)}) > 1  # jitter


def test_progress_marker_round_trips():
    alert = OutboxAlert(key="k", kind="match", payload={}, last_error=progress_error({"console", "tabc"}, "tdef: down"))
    assert delivered_targets(alert) == {"console", "tabc"}
    assert delivered_targets(OutboxAlert(key="k", kind="match", payload={}, last_error="plain error")) == set()


# ------------------------------------------------------------------ picture
def _open(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    assert im.format == "JPEG"
    return im.convert("RGB")


def test_picture_scales_both_to_the_same_height(archive):
    tall = archive.put(png_bytes((100, 400), RED), "png")
    wide = archive.put(png_bytes((1000, 250), BLUE), "png")
    im = _open(comparison_picture(archive, {"media_archive_path": tall.relpath, "known": {"archive_path": wide.relpath}}))
    assert im.size == (120 + 8 + 1600, 480 + 22) or im.width <= 1800
    # both panels fill the full height (same height)
    assert im.getpixel((10, im.height - 2))[0] > 180
    assert im.getpixel((im.width - 2, im.height - 2))[2] > 180


def test_picture_survives_video_files_and_bogus_regions(archive):
    video = archive.put(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100, "mp4")
    img = archive.put(png_bytes((50, 50), RED), "png")
    for region in (None, [[1, 2]], "nonsense", [[0, 0], [10, 0], ["a", "b"]], [[-5, -5], [9999, 0], [9999, 9999]]):
        data = comparison_picture(
            archive, {"media_archive_path": img.relpath, "known": {"archive_path": video.relpath}, "region": region}
        )
        assert _open(data).height > 100
    assert _open(comparison_picture(archive, {})).height > 100
    assert _open(comparison_picture(archive, {"media_archive_path": "../../etc/passwd", "known": None})).height > 100


# ------------------------------------------------------------------ digest
def _event(store, account, kind, at):
    return store.record_event(PostEvent("x", account, f"p-{account}-{kind}-{at.timestamp()}", kind, detected_at=at), None)


def test_digest_counts_events_per_account_in_the_window(store):
    day = date(2026, 11, 24)
    since, until = digest_window(day, "08:00")
    assert until == datetime(2026, 11, 24, 8, tzinfo=timezone.utc) and until - since == timedelta(hours=24)
    _event(store, "mod_gov", "deleted", until - timedelta(hours=1))
    _event(store, "mod_gov", "deleted", until - timedelta(hours=2))
    _event(store, "mod_gov", "edited", until - timedelta(hours=3))
    _event(store, "pm_office", "author_suspended", since + timedelta(minutes=1))
    _event(store, "pm_office", "deleted", until)  # next window
    _event(store, "pm_office", "deleted", since - timedelta(seconds=1))  # previous window
    alerts = [
        OutboxAlert(key="a", kind="match", payload={"platform": "x", "account": "mod_gov", "tier": "match"}, created_at=until - timedelta(hours=5)),
        OutboxAlert(key="b", kind="recycled", payload={"platform": "x", "account": "pm_office", "tier": "match"}, created_at=since),
        OutboxAlert(key="c", kind="match", payload={"platform": "x", "account": "pm_office", "tier": "suggest"}, created_at=since),
        OutboxAlert(key="d", kind="match", payload={"platform": "x", "account": "mod_gov", "tier": "match"}, created_at=until),  # next window
        OutboxAlert(key="e", kind="match", payload={"platform": "x", "account": "mod_gov", "tier": "match"}, created_at=since - timedelta(microseconds=1)),
        OutboxAlert(key="f", kind="deleted", payload={"platform": "x", "account": "mod_gov"}, created_at=until - timedelta(hours=1)),  # counted as an event, not an alert
    ]
    for alert in alerts:
        assert store.enqueue_alert(alert)
    store.mark_alert_sent("a", until - timedelta(hours=4))  # sent alerts are counted too
    digest = build_digest(store, day, "08:00")
    assert digest.kind == "digest" and digest.key == "digest:2026-11-24"
    p = digest.payload
    assert p["totals"] == {"match": 1, "recycled": 1, "suggest": 1, "deleted": 2, "edited": 1, "other_events": 1}
    by = {a["account"]: a for a in p["accounts"]}
    assert by["mod_gov"]["deleted"] == 2 and by["mod_gov"]["match"] == 1 and by["pm_office"]["other_events"] == 1
    assert by["pm_office"]["recycled"] == 1 and by["pm_office"]["suggest"] == 1
    assert "alerts_counted" not in p  # the digest always counts the alerts now


def test_digest_reads_match_alerts_of_its_window_from_the_store(db_path):
    seen = {}

    class SpyStore(SqliteStore):
        def alerts_between(self, since, until, kinds=None):
            seen.update(since=since, until=until, kinds=tuple(kinds))
            return super().alerts_between(since, until, kinds)

    s = SpyStore(db_path)
    try:
        s.enqueue_alert(OutboxAlert(key="a", kind="recycled", payload={"platform": "x", "account": "mod_gov"}, created_at=datetime(2026, 11, 24, 7, tzinfo=timezone.utc)))
        _event(s, "mod_gov", "deleted", datetime(2026, 11, 24, 7, tzinfo=timezone.utc))
        p = build_digest(s, date(2026, 11, 24), "08:00").payload
    finally:
        s.close()
    assert p["totals"]["recycled"] == 1 and p["totals"]["deleted"] == 1
    assert seen == {
        "since": datetime(2026, 11, 23, 8, tzinfo=timezone.utc),
        "until": datetime(2026, 11, 24, 8, tzinfo=timezone.utc),
        "kinds": ("match", "recycled"),
    }


def test_enqueue_digest_once_per_day_after_its_time(store, httpserver, receiver, archive):
    from alert_helpers import make_sender

    config = DigestConfig(enabled=True, at="08:00")
    assert enqueue_digest_if_due(store, config, datetime(2026, 11, 24, 7, 59, tzinfo=timezone.utc)) is None
    first = enqueue_digest_if_due(store, config, datetime(2026, 11, 24, 8, 0, tzinfo=timezone.utc))
    assert first is not None and first.key == "digest:2026-11-24"
    assert enqueue_digest_if_due(store, config, datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)) is None
    assert enqueue_digest_if_due(store, DigestConfig(enabled=False), datetime(2026, 11, 25, 9, tzinfo=timezone.utc)) is None
    hook = receiver("/hook")
    assert make_sender(store, archive, f"json://127.0.0.1:{httpserver.port}/hook").deliver_due(T0).sent == [first.key]
    assert hook.received[0]["title"] == "Daily digest 2026-11-24"
    assert hook.received[0]["attachments"] == []


def test_target_problems_for_config_check():
    from bot.alerts.targets import target_problems

    assert target_problems(["json://127.0.0.1:9/hook", "mmost://host/token123"]) == []
    problems = target_problems(["json://127.0.0.1:9/hook", "bogus://secretish/abc", "json://127.0.0.1:9/hook"])
    assert len(problems) == 2 and problems[0].startswith("alerts.targets.1:") and "secretish" not in problems[0]
    assert problems[1].startswith("alerts.targets.2:")


@pytest.mark.parametrize(
    "url, secret",
    [
        ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#alerts", "TIiajkdnlazkcOXrIdevi7FQ"),
        ("mmosts://chat.example.org/8j4kd0s9fh3ud7s6dk2m4l1a0p", "8j4kd0s9fh3ud7s6dk2m4l1a0p"),
        ("workflows://prod-12.westus.logic.azure.com:443/6d2a3a9e8f/sigSECRETsig123", "sigSECRETsig123"),
        ("discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js", "JHMHI8qBe7bk2ZwO5U711o3dV_js"),
        ("matrixs://bot:matrixPassw0rd@matrix.example.org/#newsroom", "matrixPassw0rd"),
        ("tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/-100123", "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"),
        ("json://hooks.example.org/ingest?token=jsonTokenValue99", "jsonTokenValue99"),
        # a generic webhook whose secret is its path: apprise's privacy form shows the path
        ("jsons://hooks.example.org/services/T0001/B0002/pathTokenXyz123", "pathTokenXyz123"),
        ("form://127.0.0.1:8080/hook/f0rmT0ken42", "f0rmT0ken42"),
    ],
)
def test_every_supported_chat_url_is_accepted_and_its_secret_registered(url, secret):
    from bot.alerts.targets import AppriseTarget
    from bot.redact import redact

    target = AppriseTarget(url)
    assert secret not in target.label
    assert redact(f"error talking to {secret}") == "error talking to ***"


def _two_colour_video() -> bytes:
    """2 s of 64x48 video at 10 fps: red for the first second, blue for the second."""
    import av
    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(20):
            arr = np.zeros((48, 64, 3), dtype=np.uint8)
            arr[:] = RED if i < 10 else BLUE
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def test_picture_shows_the_matched_frame_of_videos(archive):
    video = archive.put(_two_colour_video(), "mp4")
    payload = {
        "media_archive_path": video.relpath,
        "media_frame_ts": 0.2,
        "known": {"archive_path": video.relpath, "frame_ts": 1.5, "label": "clip"},
    }
    im = _open(comparison_picture(archive, payload))
    left, right = im.getpixel((20, im.height // 2)), im.getpixel((im.width - 20, im.height // 2))
    assert left[0] > 180 and left[2] < 80, left
    assert right[2] > 180 and right[0] < 80, right


def test_digest_counts_every_case_a_post_message_lists(store):
    until = datetime(2026, 11, 24, 8, tzinfo=timezone.utc)
    also = [{"kind": "recycled", "tier": "match"}, {"kind": "match", "tier": "suggest"}]
    store.enqueue_alert(OutboxAlert(key="m", kind="match", created_at=until - timedelta(hours=1),
                                    payload={"platform": "x", "account": "mod_gov", "tier": "match", "also": also}))
    p = build_digest(store, date(2026, 11, 24), "08:00").payload
    assert (p["totals"]["match"], p["totals"]["recycled"], p["totals"]["suggest"]) == (1, 1, 1)
