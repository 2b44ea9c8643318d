"""The outbox role's contract (:class:`bot.store.outbox.OutboxStore`): FIFO delivery, parking, alert indexes.

Every backend passes exactly these tests (see ``conftest.store_opener``)."""

from __future__ import annotations

from datetime import timedelta, timezone

from bot.store.records import OutboxAlert
from tests.store.builders import alert, assert_aware, at, post_alert


def test_outbox_idempotent_fifo_and_delivery(store):
    assert store.enqueue_alert(alert("k1")) is True
    assert store.enqueue_alert(alert("k2")) is True
    assert store.enqueue_alert(alert("k3")) is True
    assert store.enqueue_alert(alert("k1")) is False
    assert store.outbox_size() == 3
    due = store.due_alerts(at(0))
    assert [a.key for a in due] == ["k1", "k2", "k3"]
    assert due[0].seq < due[1].seq < due[2].seq
    assert due[0].payload == {"post": "k1", "score": 0.9}
    assert [a.key for a in store.due_alerts(at(0), limit=2)] == ["k1", "k2"]

    store.mark_alert_sent("k1", at(5))
    assert store.enqueue_alert(alert("k1")) is False  # even after it was sent
    assert store.outbox_size() == 2
    assert [a.key for a in store.due_alerts(at(10))] == ["k2", "k3"]
    sent = store.get_alert("k1")
    assert sent.sent_at == at(5)
    assert_aware(sent.sent_at)
    assert store.get_alert("nope") is None


def test_outbox_failures_count_attempts_and_keep_the_head(store):
    store.enqueue_alert(alert("k1"))
    store.enqueue_alert(alert("k2"))
    store.mark_alert_failed("k1", "timeout", at(60))
    store.mark_alert_failed("k1", "500 from chat", at(120))
    failed = store.get_alert("k1")
    assert failed.attempts == 2 and failed.last_error == "500 from chat"
    assert failed.next_attempt_at == at(120) and failed.sent_at is None
    # the head is returned although not yet due: the caller sees it must wait
    head = store.due_alerts(at(1))
    assert [a.key for a in head] == ["k1", "k2"]
    assert head[0].next_attempt_at == at(120)
    assert store.outbox_size() == 2
    store.mark_alert_failed("missing", "x", at(1))
    store.mark_alert_sent("missing", at(1))
    assert store.get_alert("missing") is None


def test_parked_alert_leaves_the_queue_and_is_kept_with_its_error(store):
    for key in ("k1", "k2", "k3", "k4"):
        store.enqueue_alert(alert(key))
    store.mark_alert_failed("k2", "[delivered: console] 400 from chat", at(60))
    assert store.park_alert("k2", "[delivered: console] 400 from chat") is True
    assert store.park_alert("k2", "again") is False  # already parked
    store.mark_alert_sent("k4", at(5))
    assert store.park_alert("k4", "x") is False  # sent alerts are not parked
    assert store.park_alert("missing", "x") is False

    assert [a.key for a in store.due_alerts(at(0))] == ["k1", "k3"]  # the queue continues past it, in order
    assert store.outbox_size() == 2
    (parked,) = store.parked_alerts()
    assert parked.key == "k2" and parked.parked and parked.sent_at is None
    assert parked.attempts == 1 and parked.last_error == "[delivered: console] 400 from chat"
    assert store.get_alert("k2") == parked
    assert [a.key for a in store.alerts_between(at(-1), at(1))] == ["k1", "k2", "k3", "k4"]  # still listed
    store.mark_alert_failed("k2", "late failure", at(90))  # a stray failure record does not requeue it
    assert [a.key for a in store.due_alerts(at(0))] == ["k1", "k3"] and store.outbox_size() == 2


def test_parked_alerts_in_fifo_order_and_unparked_at_their_original_position(store_opener):
    store = store_opener()
    for key in ("k1", "k2", "k3", "k4"):
        store.enqueue_alert(alert(key))
    store.mark_alert_failed("k3", "400", at(60))
    store.mark_alert_failed("k3", "400", at(120))
    store.park_alert("k3", "400")
    store.park_alert("k1", "too long")
    assert [a.key for a in store.parked_alerts()] == ["k1", "k3"]
    assert store.parked_count() == 2

    reopened = store_opener()  # parking is persistent
    assert [a.key for a in reopened.parked_alerts()] == ["k1", "k3"]
    assert reopened.unpark_alert("k3") is True
    assert reopened.unpark_alert("k3") is False  # no longer parked
    assert reopened.unpark_alert("k2") is False  # never parked
    assert reopened.unpark_alert("missing") is False
    assert [a.key for a in reopened.due_alerts(at(0))] == ["k2", "k3", "k4"]  # back at its place, not the end
    back = reopened.get_alert("k3")
    assert back.attempts == 0 and back.next_attempt_at is None and not back.parked
    assert back.last_error == "400"  # kept: it records the targets that already accepted it
    assert reopened.outbox_size() == 3
    assert [a.key for a in reopened.parked_alerts()] == ["k1"]
    reopened.mark_alert_sent("k1", at(9))  # delivered some other way: no longer parked
    assert reopened.parked_alerts() == [] and reopened.outbox_size() == 3
    assert reopened.parked_count() == 0


def test_enqueue_keeps_a_parked_alert_parked(store):
    store.enqueue_alert(alert("k1", parked=True, last_error="400"))
    store.enqueue_alert(alert("k2"))
    assert [a.key for a in store.parked_alerts()] == ["k1"]
    assert [a.key for a in store.due_alerts(at(0))] == ["k2"]


def test_list_alerts_of_a_post_in_fifo_order_sent_ones_included(store):
    store.enqueue_alert(post_alert("m1"))
    store.enqueue_alert(post_alert("other-post", post_id="2"))
    store.enqueue_alert(post_alert("other-platform", platform="bluesky"))
    store.enqueue_alert(post_alert("d1", kind="deleted"))
    store.enqueue_alert(OutboxAlert(key="digest:2026-03-01", kind="digest", payload={"date": "2026-03-01"}))
    store.enqueue_alert(post_alert("r1", kind="recycled", post_id=1))  # a numeric id is listed as "1"
    store.enqueue_alert(post_alert("pre-sent", sent_at=at(1)))  # enqueued already delivered
    store.mark_alert_sent("m1", at(5))
    store.mark_alert_failed("d1", "timeout", at(60))

    listed = store.list_alerts("x", "1")
    assert [a.key for a in listed] == ["m1", "d1", "r1", "pre-sent"]
    assert listed[0].seq < listed[1].seq < listed[2].seq < listed[3].seq
    assert listed[0] == store.get_alert("m1") and listed[0].sent_at == at(5)  # sent alerts are kept and listed
    assert listed[1].attempts == 1 and listed[1].sent_at is None
    assert listed[0].payload == post_alert("m1").payload

    def keys(*args, **kw):
        return [a.key for a in store.list_alerts(*args, **kw)]

    assert keys("x", "1", kinds=["match", "recycled"]) == ["m1", "r1", "pre-sent"]
    assert keys("x", "1", kinds=("deleted",)) == ["d1"]
    assert keys("x", "1", kinds={"digest"}) == []
    assert keys("x", "1", kinds=[]) == []
    assert keys("x", "2") == ["other-post"]
    assert keys("bluesky", "1") == ["other-platform"]
    assert keys("x", "nope") == [] and keys("mastodon", "1") == []
    assert store.enqueue_alert(post_alert("m1")) is False
    assert keys("x", "1") == ["m1", "d1", "r1", "pre-sent"]  # a repeated key is not listed twice


def test_alerts_between_a_window_of_creation_times_in_fifo_order(store):
    def created(key: str, seconds: float, kind: str = "match", **kw) -> OutboxAlert:
        return OutboxAlert(key=key, kind=kind, payload={"k": key}, created_at=at(seconds), **kw)

    store.enqueue_alert(created("late", 30))  # enqueued first, created later: FIFO is by seq, not created_at
    store.enqueue_alert(created("at-since", 10))
    store.enqueue_alert(created("before", 10 - 1e-6))
    store.enqueue_alert(created("at-until", 20))
    store.enqueue_alert(created("last-us", 20 - 1e-6, kind="recycled"))
    store.enqueue_alert(created("del", 15, kind="deleted"))
    store.enqueue_alert(created("pre-sent", 12, sent_at=at(12)))
    store.enqueue_alert(created("sent", 11))
    store.mark_alert_sent("sent", at(13))
    store.mark_alert_failed("at-since", "timeout", at(60))
    store.enqueue_alert(
        OutboxAlert(key="digest:2026-03-01", kind="digest", payload={}, created_at=at(16).astimezone(timezone(timedelta(hours=5))))
    )  # a non-UTC created_at is compared as the same instant
    store.enqueue_alert(created("sent", 14))  # a repeated key changes nothing

    def keys(since: float, until: float, **kw):
        return [a.key for a in store.alerts_between(at(since), at(until), **kw)]

    window = store.alerts_between(at(10), at(20))
    assert [a.key for a in window] == ["at-since", "last-us", "del", "pre-sent", "sent", "digest:2026-03-01"]
    assert all(a.seq < b.seq for a, b in zip(window, window[1:]))
    assert window[0] == store.get_alert("at-since") and window[0].attempts == 1
    assert window[4].sent_at == at(13) and window[4].created_at == at(11)  # sent alerts are listed
    assert_aware(window[0].created_at)
    assert keys(10, 20, kinds=["match", "recycled"]) == ["at-since", "last-us", "pre-sent", "sent"]
    assert keys(10, 20, kinds=("deleted",)) == ["del"]
    assert keys(10, 20, kinds={"digest"}) == ["digest:2026-03-01"]
    assert keys(10, 20, kinds=[]) == []
    assert keys(0, 100) == ["late", "at-since", "before", "at-until", "last-us", "del", "pre-sent", "sent", "digest:2026-03-01"]
    assert keys(20, 30) == ["at-until"]  # since inclusive, until exclusive
    assert keys(30, 30) == [] and keys(31, 40) == [] and keys(20, 10) == []
