"""Parking refused alerts: a message a chat rejects for good must not hold up the alerts behind it, while an
outage (everything refused) still keeps the order and loses nothing."""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from alert_helpers import T0, alerts_config
from pydantic import SecretStr
from werkzeug import Request, Response

from bot.alerts.sender import AlertSender, DeliveryReport, delivered_targets
from bot.alerts.targets import DeliveryError
from bot.config import AlertsConfig

POISON = "POISON-PILL"


@dataclass
class FakeChat:
    """A target that refuses messages containing ``refuse`` (all of them while ``down``) and records the
    post ids it accepted."""

    id: str = "fake"
    label: str = "fake-chat"
    refuse: str = POISON
    down: bool = False
    up_after: int | None = None  # comes back after this many tries (an outage ending mid-run)
    tried: list[str] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)

    def send(self, title: str, body: str, attachment: Path | None = None) -> None:
        post_id = body.split("status/")[1].split(">")[0].split(")")[0]
        self.tried.append(post_id)
        if self.up_after is not None and len(self.tried) > self.up_after:
            self.down = False
        if self.down:
            raise DeliveryError(f"{self.label}: not accepted (503 down)")
        if self.refuse in body:
            raise DeliveryError(f"{self.label}: not accepted (400 message too long)")
        self.accepted.append(post_id)


def sender_for(store, archive, *targets: FakeChat, park_after: int = 3) -> AlertSender:
    config = AlertsConfig(targets=[], console=False, max_backoff=60.0, park_after=park_after)
    return AlertSender(store, archive, config, targets=list(targets), rng=random.Random(1))


def run_until_quiet(sender: AlertSender, now: datetime, runs: int = 50) -> tuple[list[DeliveryReport], datetime]:
    """Run the sender as the daemon would (each run when the head is due) until nothing is left to try."""
    reports = []
    for _ in range(runs):
        report = sender.deliver_due(now)
        reports.append(report)
        if report.retry_at is None:
            break
        now = report.retry_at
    return reports, now


def test_refused_alert_is_parked_and_the_rest_go_out_in_order_once(store, archive, make_alert, caplog):
    caplog.set_level(logging.WARNING, logger="bot.alerts.sender")
    chat = FakeChat()
    keys = [make_alert(post_id=str(i), text=f"{POISON} x" if i == 1 else "ok").key for i in range(5)]
    sender = sender_for(store, archive, chat, park_after=3)

    first = sender.deliver_due(T0)
    assert first.sent == [keys[0]] and first.failed == keys[1] and first.parked == []
    now = first.retry_at
    second = sender.deliver_due(now)  # 2 failures: not parked yet, nothing behind it was tried
    assert second.failed == keys[1] and chat.tried == ["0", "1", "1"]

    third = sender.deliver_due(second.retry_at)  # 3rd failure: the next alert is accepted, so park the head
    assert third.parked == [keys[1]] and third.sent == keys[2:] and third.ok and third.pending == 0
    assert chat.accepted == ["0", "2", "3", "4"]  # in order, each once (the probe "2" was not resent)
    assert chat.tried.count("1") == 4  # 3 failures, and once more right after the next alert was accepted
    assert store.get_alert(keys[2]).sent_at is not None

    (parked,) = store.parked_alerts()
    assert parked.key == keys[1] and parked.attempts == 4 and "400 message too long" in parked.last_error
    assert store.outbox_size() == 0
    warning = [r.getMessage() for r in caplog.records if "parked" in r.getMessage()]
    assert len(warning) == 1 and keys[1] in warning[0] and "400 message too long" in warning[0]

    later = sender.deliver_due(third.retry_at or T0 + timedelta(hours=1))
    assert later.sent == [] and chat.tried.count("1") == 4  # a parked alert is not retried by itself


def test_alerts_enqueued_after_a_park_keep_flowing(store, archive, make_alert):
    chat = FakeChat()
    make_alert(post_id="1", text=POISON)
    make_alert(post_id="2")
    reports, now = run_until_quiet(sender_for(store, archive, chat, park_after=2), T0)
    assert reports[-1].parked and chat.accepted == ["2"]
    make_alert(post_id="3")
    assert sender_for(store, archive, chat, park_after=2).deliver_due(now).sent and chat.accepted == ["2", "3"]


def test_an_outage_never_parks_and_the_backlog_arrives_in_order_once(store, archive, make_alert):
    chat = FakeChat(down=True)
    keys = [make_alert(post_id=str(i)).key for i in range(4)]
    sender = sender_for(store, archive, chat, park_after=2)

    now = T0
    for _ in range(12):  # many attempts past park_after
        report = sender.deliver_due(now)
        assert report.parked == [] and report.sent == [] and report.failed == keys[0]
        now = report.retry_at
    assert store.parked_alerts() == [] and store.outbox_size() == 4
    assert set(chat.tried) == {"0", "1"}  # the head, and the next alert as a probe; nothing further

    chat.down = False
    recovered = sender.deliver_due(now)
    assert recovered.sent == keys and recovered.parked == []
    assert chat.accepted == ["0", "1", "2", "3"]


def test_a_probe_accepted_by_one_target_during_an_outage_is_not_resent_to_it(store, archive, make_alert):
    up, down = FakeChat(id="up", label="up-chat"), FakeChat(id="down", label="down-chat", down=True)
    keys = [make_alert(post_id=str(i)).key for i in range(3)]
    reports, now = run_until_quiet(sender_for(store, archive, up, down, park_after=2), T0, runs=4)
    assert all(r.parked == [] for r in reports)
    assert up.accepted == ["0", "1"]  # the head, and the probe (refused by the other target: not a park)
    assert delivered_targets(store.get_alert(keys[1])) == {"up"}

    down.down = False
    recovered = sender_for(store, archive, up, down, park_after=2).deliver_due(now + timedelta(minutes=5))
    assert recovered.sent == keys
    assert up.accepted == ["0", "1", "2"] and down.accepted == ["0", "1", "2"]  # each target got each alert once


def test_an_outage_ending_between_the_head_and_the_probe_parks_nothing(store, archive, make_alert):
    chat = FakeChat(down=True, up_after=3)  # the head fails 3 times, then the chat is back for the probe
    keys = [make_alert(post_id=str(i)).key for i in range(3)]
    reports, _ = run_until_quiet(sender_for(store, archive, chat, park_after=3), T0)
    assert all(r.parked == [] for r in reports) and store.parked_alerts() == []
    assert [k for r in reports for k in r.sent] == [keys[1], keys[0], keys[2]]
    assert chat.accepted == ["1", "0", "2"]  # the head is confirmed before parking: delivered, just after the probe
    assert store.outbox_size() == 0


def test_a_lone_refused_alert_is_not_parked(store, archive, make_alert):
    chat = FakeChat()
    make_alert(post_id="1", text=POISON)
    reports, _ = run_until_quiet(sender_for(store, archive, chat, park_after=2), T0, runs=6)
    assert all(r.parked == [] for r in reports) and store.outbox_size() == 1  # nothing waits behind it


def test_retried_alert_goes_back_to_the_head_with_a_fresh_count(store, archive, make_alert):
    chat = FakeChat()
    keys = [make_alert(post_id=str(i), text=POISON if i == 0 else "ok").key for i in range(3)]
    _, now = run_until_quiet(sender_for(store, archive, chat, park_after=2), T0)
    assert store.parked_alerts()[0].key == keys[0] and chat.accepted == ["1", "2"]

    chat.refuse = "nothing refused now"  # e.g. the chat's limit was raised
    assert store.unpark_alert(keys[0])
    assert store.get_alert(keys[0]).attempts == 0 and store.outbox_size() == 1
    report = sender_for(store, archive, chat, park_after=2).deliver_due(now)
    assert report.sent == [keys[0]] and chat.accepted == ["1", "2", "0"]


# ----------------------------------------------------------------------------- the real apprise path


@dataclass
class PickyWebhook:
    """A JSON webhook answering 400 to any message containing ``POISON``, 200 otherwise."""

    accepted: list[str] = field(default_factory=list)
    refused: int = 0

    def handler(self, request: Request) -> Response:
        body = json.loads(request.get_data() or b"{}")
        if POISON in body.get("message", ""):
            self.refused += 1
            return Response('{"error": "bad request"}', status=400, content_type="application/json")
        self.accepted.append(body["message"].split("status/")[1].split(">")[0].split(")")[0])
        return Response("{}", status=200, content_type="application/json")


def test_webhook_answering_400_to_one_message_gets_it_parked(httpserver, store, archive, make_alert):
    hook = PickyWebhook()
    httpserver.expect_request("/hook", method="POST").respond_with_handler(hook.handler)
    keys = [make_alert(post_id=str(i), text=POISON if i == 1 else "ok").key for i in range(4)]
    config = alerts_config(f"json://127.0.0.1:{httpserver.port}/hook", max_backoff=60.0)
    config = config.model_copy(update={"park_after": 2})
    sender = AlertSender(store, archive, config, rng=random.Random(1), timeout=5.0)

    reports, _ = run_until_quiet(sender, T0)
    assert [k for r in reports for k in r.parked] == [keys[1]]
    assert hook.accepted == ["0", "2", "3"] and hook.refused == 3  # 2 failures, 1 confirmation
    (parked,) = store.parked_alerts()
    assert parked.key == keys[1] and parked.last_error
    assert store.outbox_size() == 0 and [a.key for a in store.alerts_between(T0, T0 + timedelta(1))] == keys


def test_secret_in_a_target_url_stays_out_of_the_park_warning(httpserver, store, archive, make_alert, caplog):
    caplog.set_level(logging.WARNING, logger="bot.alerts.sender")
    token = "parkSecretToken987654"
    hook = PickyWebhook()
    httpserver.expect_request(f"/hooks/{token}", method="POST").respond_with_handler(hook.handler)
    make_alert(post_id="1", text=POISON)
    make_alert(post_id="2")
    config = AlertsConfig(
        targets=[SecretStr(f"json://127.0.0.1:{httpserver.port}/hooks/{token}")], console=False, park_after=1
    )
    run_until_quiet(AlertSender(store, archive, config, rng=random.Random(1), timeout=5.0), T0)
    assert store.parked_alerts() and hook.accepted == ["2"]
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "parked" in text and token not in text
