"""``afterimage status`` and the health endpoint show what the daemon is doing, from the store alone."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.health import HealthServer
from bot.models import Post
from bot.status import render_prometheus, take_snapshot
from bot.store.records import OutboxAlert, Recheck
from bot.store.sqlite import SqliteStore
from bot.store.posts import AccountPoll

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def seeded(tmp_path):
    db = tmp_path / "state.db"
    store = SqliteStore(str(db))
    post = Post("x", "MinistryOfDefence", "1", "https://x.com/m/status/1", "t", NOW - timedelta(hours=1), raw={})
    store.record_poll(AccountPoll("x", "MinistryOfDefence", [post], "1", at=NOW - timedelta(minutes=5)))
    store.update_account_state("x", "MinistryOfDefence", last_poll_at=NOW - timedelta(minutes=5))
    store.update_account_state(
        "x", "ArmyPress", last_error="x: HTTP 503", last_error_at=NOW, consecutive_errors=3, paused_until=NOW + timedelta(minutes=20)
    )
    store.schedule_recheck(Recheck("x", "1", "MinistryOfDefence", post.created_at, NOW + timedelta(minutes=2)))
    store.enqueue_alert(OutboxAlert("match:x:1:a:b", "match", {"platform": "x", "post_id": "1"}, created_at=NOW))
    config = tmp_path / "cfg.yaml"
    config.write_text(
        f"data_dir: {tmp_path}\nwatchers:\n  x:\n    bearer_token: ${{T}}\n    accounts: [MinistryOfDefence, ArmyPress]\n"
    )
    yield store, config
    store.close()


def test_status_lists_every_account_with_errors_rechecks_and_outbox(seeded):
    _, config = seeded
    result = CliRunner().invoke(main, ["status", "-c", str(config)], env={"T": "token-value-1"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    ok = next(line for line in lines if line.startswith("x/MinistryOfDefence"))
    assert "2026-11-24T11:55:00Z" in ok and " 1 " in ok
    failing = next(line for line in lines if line.startswith("x/ArmyPress"))
    assert "never" in failing and "x: HTTP 503 (3 in a row" in failing
    assert "pending re-checks: x 1" in result.output
    assert "alert outbox: 1 not yet delivered" in result.output


def test_metrics_are_prometheus_text(seeded):
    store, _ = seeded
    text = render_prometheus(take_snapshot(store, {"x": ["MinistryOfDefence", "ArmyPress"]}, NOW))
    assert 'afterimage_posts_seen{platform="x",account="MinistryOfDefence"} 1' in text
    assert 'afterimage_consecutive_poll_errors{platform="x",account="ArmyPress"} 3' in text
    assert "afterimage_alert_outbox 1" in text and 'afterimage_pending_rechecks{platform="x"} 1' in text
    assert "# TYPE afterimage_posts_seen gauge" in text
    # timestamps at full precision: %g would print 1.79999e+09, about 10,000 s off
    last_poll = (NOW - timedelta(minutes=5, microseconds=-250000)).timestamp()
    store.update_account_state("x", "MinistryOfDefence", last_poll_at=NOW - timedelta(minutes=5, microseconds=-250000))
    text = render_prometheus(take_snapshot(store, {"x": ["MinistryOfDefence"]}, NOW))
    [sample] = [line for line in text.splitlines() if line.startswith("afterimage_last_poll_timestamp_seconds{")]
    assert float(sample.split()[-1]) == last_poll and "e+" not in sample


def test_parked_alerts_are_counted_in_status_and_metrics_not_in_the_outbox(seeded):
    store, config = seeded
    store.enqueue_alert(OutboxAlert("match:x:1:a:c", "match", {"platform": "x", "post_id": "1"}, created_at=NOW))
    assert store.park_alert("match:x:1:a:b", "fake-chat: not accepted (400)")
    result = CliRunner().invoke(main, ["status", "-c", str(config)], env={"T": "token-value-1"})
    assert result.exit_code == 0, result.output
    assert "alert outbox: 1 not yet delivered" in result.output
    assert "parked alerts: 1 (refused by a target: see `afterimage alerts parked`)" in result.output
    text = render_prometheus(take_snapshot(store, {"x": ["MinistryOfDefence"]}, NOW))
    assert "afterimage_alerts_parked 1" in text and "afterimage_alert_outbox 1" in text
    assert "# TYPE afterimage_alerts_parked gauge" in text


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_health_endpoint_reports_ok_then_unhealthy_when_the_store_fails(seeded):
    store, _ = seeded
    healthy = {"up": True}

    def snapshot():
        if not healthy["up"]:
            raise ConnectionError("store unreachable")
        return take_snapshot(store, {"x": ["MinistryOfDefence"]}, NOW)

    server = HealthServer("127.0.0.1:0", snapshot, lambda: True)
    server.start()
    try:
        base = "http://%s:%d" % server.address
        code, body = get(base + "/healthz")
        assert code == 200 and json.loads(body) == {"status": "ok", "outbox": 1, "accounts": 1}
        code, body = get(base + "/metrics")
        assert code == 200 and "afterimage_known_media 0" in body
        healthy["up"] = False
        code, body = get(base + "/healthz")
        assert code == 503 and json.loads(body)["status"] == "error"
        assert get(base + "/nope")[0] == 404
    finally:
        server.stop()


@pytest.mark.parametrize(
    "args, code",
    [
        (["status"], 1),
        (["deletions", "list"], 1),
        (["deletions", "export", "--format", "csv"], 1),
        (["known", "list"], 1),
        (["known", "export", "-"], 1),
        (["check", "suspicious.jpg"], 1),  # no known media to check against
        (["alerts", "parked"], 0),  # nothing can be parked where nothing was ever stored
    ],
)
def test_read_only_commands_in_a_folder_without_data_create_nothing_and_say_where_they_looked(tmp_path, monkeypatch, args, code):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AFTERIMAGE_DATA", raising=False)
    monkeypatch.delenv("AFTERIMAGE_CONFIG", raising=False)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == code, result.output
    assert f"no afterimage data at {tmp_path / 'afterimage-data'}" in result.output
    assert "0 posts" not in result.output and "alert outbox" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_status_and_metrics_show_the_queue_backlog_workers_and_recheck_spend(seeded):
    from bot.config import RecheckConfig
    from bot.store import open_work_queue

    store, config = seeded
    queue = open_work_queue(store)
    queue.put("posts", ["x:1:1", "x:1:2", "x:1:3"])
    queue.claim("posts", "host:7:abc/w0")
    queue.announce("host:7:abc", {"workers": 2, "busy": 1, "done": 5}, ttl_seconds=60)
    store.spend_budget("recheck:x", NOW - timedelta(hours=3), 7)  # today, not this hour
    store.spend_budget("recheck:x", NOW - timedelta(minutes=5), 2)
    later = datetime.now(timezone.utc) + timedelta(seconds=90)
    snap = take_snapshot(store, {"x": ["MinistryOfDefence"]}, later, {"x": RecheckConfig(budget_per_day=500)})
    assert (snap.backlog.waiting, snap.backlog.in_progress) == (2, 1)
    assert 89 <= snap.oldest_waiting_seconds <= 120
    text = render_prometheus(snap)
    assert "afterimage_posts_waiting 2" in text and "afterimage_posts_in_progress 1" in text
    assert 'afterimage_daemon_workers{daemon="host:7:abc"} 2' in text
    assert 'afterimage_daemon_workers_busy{daemon="host:7:abc"} 1' in text
    assert "# TYPE afterimage_oldest_waiting_post_seconds gauge" in text

    result = CliRunner().invoke(main, ["status", "-c", str(config)], env={"T": "token-value-1"})
    assert result.exit_code == 0, result.output
    assert "posts queued for processing: 2 waiting, 1 in progress, oldest waiting" in result.output
    assert "daemon host:7:abc: 1/2 worker(s) busy, 5 post(s) done" in result.output
    assert "re-check spend x:" in result.output

    spend = take_snapshot(store, {"x": []}, NOW, {"x": RecheckConfig(budget_per_day=500)}).budgets[0]
    assert (spend.spent_hour, spend.per_hour, spend.spent_today, spend.per_day) == (2, 600, 9, 500)
