"""The deletion-log role's contract (:class:`bot.store.deletion_log.DeletionLogStore`): re-checks and events.

Every backend passes exactly these tests (see ``conftest.store_opener``)."""

from __future__ import annotations

import pytest

from bot.store.records import OutboxAlert, PostEvent
from tests.store.builders import assert_aware, at, event, make_post, post_alert, recheck
from bot.store.deletion_log import EventFilter
from bot.store.posts import AccountPoll


def test_rechecks(store):
    store.schedule_recheck(recheck("1", 300))
    store.schedule_recheck(recheck("2", 100))
    store.schedule_recheck(recheck("3", 200.5))
    store.schedule_recheck(recheck("4", 10, platform="bluesky"))
    assert [r.post_id for r in store.due_rechecks("x", at(250))] == ["2", "3"]
    assert [r.post_id for r in store.due_rechecks("x", at(300))] == ["2", "3", "1"]  # due at now included
    assert [r.post_id for r in store.due_rechecks("x", at(1000), limit=1)] == ["2"]
    assert store.due_rechecks("x", at(0)) == []
    assert store.count_rechecks() == 4 and store.count_rechecks("x") == 3 and store.count_rechecks("rss") == 0

    replaced = recheck("2", 900, step=3, deleted_streak=1, first_deleted_at=at(50), last_status="deleted")
    store.schedule_recheck(replaced)
    assert store.get_recheck("x", "2") == replaced
    assert_aware(store.get_recheck("x", "2").first_deleted_at)
    assert [r.post_id for r in store.due_rechecks("x", at(400))] == ["3", "1"]
    assert store.count_rechecks("x") == 3

    store.remove_recheck("x", "3")
    store.remove_recheck("x", "missing")
    assert store.get_recheck("x", "3") is None
    assert store.count_rechecks() == 3
    assert [r.post_id for r in store.due_rechecks("x", at(10_000))] == ["1", "2"]


def test_start_recheck_keeps_an_existing_schedule(store):
    first = recheck("1", 300)
    assert store.start_recheck(first) == first
    assert store.get_recheck("x", "1") == first and [r.post_id for r in store.due_rechecks("x", at(300))] == ["1"]
    assert store.count_rechecks("x") == 1
    advanced = recheck("1", 900, step=2)
    store.schedule_recheck(advanced)  # the post was re-checked meanwhile
    assert store.start_recheck(recheck("1", 100)) == advanced  # processed again: its schedule is kept
    assert store.get_recheck("x", "1") == advanced and store.due_rechecks("x", at(500)) == []
    assert store.count_rechecks() == 1


def test_record_event_sets_status_and_replaces_recheck(store):
    store.record_poll(AccountPoll("x", "gov", [make_post("1")], cursor=None, at=at(0)))
    store.schedule_recheck(recheck("1", 100))

    nxt = recheck("1", 400, step=2, deleted_streak=1)
    withheld = store.record_event(event("withheld", detected=100, country="DE"), nxt)
    assert withheld.id
    assert store.get_post("x", "1").status == "withheld"
    assert store.get_recheck("x", "1") == nxt

    edited = store.record_event(event("edited", detected=200, before="a", after="b"), nxt)
    assert store.get_post("x", "1").status == "withheld"  # edited is not a state

    store.record_event(event("restored", detected=300), nxt)
    assert store.get_post("x", "1").status == "alive"

    deleted = store.record_event(event("deleted", detected=400), None)
    assert store.get_post("x", "1").status == "deleted"
    assert store.get_recheck("x", "1") is None
    assert store.count_rechecks() == 0

    events = store.list_events()
    assert [e.kind for e in events] == ["withheld", "edited", "restored", "deleted"]
    assert events[0] == withheld and events[1] == edited and events[3] == deleted
    assert events[1].details == {"before": "a", "after": "b"}
    assert len({e.id for e in events}) == 4
    assert_aware(events[0].detected_at)

    for kind in ("author_suspended", "author_protected", "author_deleted"):
        store.record_event(event(kind, detected=500), None)
        assert store.get_post("x", "1").status == kind

    # an event for a post the store never saw is still logged, and creates no post
    store.record_event(event("deleted", post_id="ghost", detected=600), None)
    assert store.get_post("x", "ghost") is None
    assert store.list_events(EventFilter(kinds=["deleted"]))[-1].post_id == "ghost"


def test_record_event_with_its_alert_in_one_transaction_idempotent(store):
    store.record_poll(AccountPoll("x", "gov", [make_post("1")], cursor=None, at=at(0)))
    store.schedule_recheck(recheck("1", 100))
    deleted = PostEvent(platform="x", account="gov", post_id="1", kind="deleted", detected_at=at(100),
                        details={"n": 1}, id="ev1")
    alert_d = post_alert("deleted:x:1:ev1", kind="deleted")

    assert store.record_event(deleted, None, alert_d) == deleted  # a given id is kept
    assert store.get_post("x", "1").status == "deleted" and store.get_recheck("x", "1") is None
    assert store.list_events() == [deleted]
    stored = store.get_alert("deleted:x:1:ev1")
    assert stored.kind == "deleted" and stored.payload == alert_d.payload and stored.seq > 0
    assert store.outbox_size() == 1
    assert [a.key for a in store.due_alerts(at(100))] == ["deleted:x:1:ev1"]
    assert [a.key for a in store.list_alerts("x", "1")] == ["deleted:x:1:ev1"]

    # retried after a crash: neither the event nor the alert is there twice
    nxt = recheck("1", 400)
    store.record_event(deleted, nxt, alert_d)
    assert store.list_events() == [deleted]
    assert store.outbox_size() == 1 and store.get_alert("deleted:x:1:ev1") == stored
    assert [a.key for a in store.list_alerts("x", "1")] == ["deleted:x:1:ev1"]
    assert store.get_recheck("x", "1") == nxt

    # a key already delivered is not enqueued again either
    store.mark_alert_sent("deleted:x:1:ev1", at(150))
    restored = store.record_event(event("restored", detected=200), nxt, alert_d)
    assert store.outbox_size() == 0 and store.get_alert("deleted:x:1:ev1").sent_at == at(150)
    assert [e.id for e in store.list_events()] == ["ev1", restored.id]

    # without an alert (the two-argument call) nothing is enqueued
    store.record_event(event("edited", detected=300), nxt)
    assert [a.key for a in store.list_alerts("x", "1")] == ["deleted:x:1:ev1"]


class _Unwritable:
    """A payload value the store cannot serialize: the alert's write fails after the event's began."""

    def __str__(self) -> str:
        raise TypeError("not serializable")


def test_record_event_with_alert_is_all_or_nothing(store):
    store.record_poll(AccountPoll("x", "gov", [make_post("1")], cursor=None, at=at(0)))
    before = recheck("1", 100)
    store.schedule_recheck(before)
    broken = OutboxAlert(key="deleted:x:1:e", kind="deleted", created_at=at(0),
                         payload={"platform": "x", "post_id": "1", "bad": _Unwritable()})
    with pytest.raises(TypeError):
        store.record_event(event("deleted", detected=100), None, broken)
    assert store.list_events() == []
    assert store.get_post("x", "1").status == "alive"
    assert store.get_recheck("x", "1") == before
    assert store.get_alert("deleted:x:1:e") is None and store.outbox_size() == 0
    assert store.list_alerts("x", "1") == []


def test_list_events_filters(store):
    store.record_event(event("deleted", "1", detected=10), None)
    store.record_event(event("edited", "2", detected=20), None)
    store.record_event(event("deleted", "3", detected=30, platform="bluesky"), None)
    store.record_event(event("withheld", "4", detected=40, account="pm"), None)
    store.record_event(event("deleted", "5", detected=5), None)  # detected earlier, logged later

    def ids(**kw):
        return [e.post_id for e in store.list_events(EventFilter(**kw))]

    assert ids() == ["5", "1", "2", "3", "4"]
    assert ids(since=at(10)) == ["1", "2", "3", "4"]
    assert ids(until=at(30)) == ["5", "1", "2"]  # until is exclusive
    assert ids(since=at(10), until=at(30.5)) == ["1", "2", "3"]
    assert ids(platform="x") == ["5", "1", "2", "4"]
    assert ids(account="pm") == ["4"]
    assert ids(platform="x", account="gov") == ["5", "1", "2"]
    assert ids(kinds=["deleted"]) == ["5", "1", "3"]
    assert ids(kinds={"edited", "withheld"}) == ["2", "4"]
    assert ids(kinds=[]) == []
    assert ids(since=at(0), platform="x", kinds=["deleted"]) == ["5", "1"]
