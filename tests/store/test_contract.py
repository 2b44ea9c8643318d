"""The state store as a whole (every role at once): what one backend wrote, a reopened store reads.

Every backend passes exactly these tests (see ``conftest.store_opener``)."""

from __future__ import annotations

from bot.models import RejectedItem
from bot.store.records import PostMediaLink
from tests.store.builders import alert, at, event, known, make_post, media_record, post_alert, recheck
from bot.store.posts import AccountPoll


def test_everything_persists_across_reopen(store_opener):
    first = store_opener()
    first.record_poll(AccountPoll("x", "gov", [make_post(text="a")], cursor="c9",
                      rejected=[RejectedItem("x", "gov", {"r": 1}, "bad", at(0))], at=at(0)))
    first.record_poll(AccountPoll("x", "gov", [make_post(text="b")], cursor=None, at=at(1)))
    first.mark_processed("x", "1", 1)
    first.put_media(media_record(signals={"pdq": "p"}))
    first.link_post_media(PostMediaLink("x", "1", 0, "https://cdn/a.jpg", "a" * 64))
    entry = first.add_known(known("k"))
    generation = first.known_generation()
    first.enqueue_alert(alert("k1"))
    first.schedule_recheck(recheck("1", 10))
    ev = first.record_event(event("edited", detected=2), recheck("1", 20))
    first.update_account_state("x", "gov", consecutive_errors=3)
    first.acquire_lock("daemon", "a", 60)
    first.close()

    second = store_opener()
    stored = second.get_post("x", "1")
    assert stored.version == 2 and stored.processed_version == 1 and stored.pending
    assert [v.post.text for v in second.get_versions("x", "1")] == ["a", "b"]
    assert second.get_cursor("x", "gov") == "c9"
    assert len(second.list_rejected()) == 1
    assert second.get_media("a" * 64).signals == {"pdq": "p"}
    assert len(second.get_post_media("x", "1")) == 1
    assert second.get_known(entry.id) == entry and second.known_generation() == generation
    assert second.enqueue_alert(alert("k1")) is False and second.outbox_size() == 1
    assert second.get_recheck("x", "1").due_at == at(20)
    assert second.list_events() == [ev]
    assert second.get_account_states()[0].consecutive_errors == 3
    assert second.acquire_lock("daemon", "b", 60) is False
    next_alert = alert("k2")
    second.enqueue_alert(next_alert)
    assert [a.key for a in second.due_alerts(at(0))] == ["k1", "k2"]
    second.enqueue_alert(post_alert("m1"))
    second.close()
    third = store_opener()
    assert [a.key for a in third.list_alerts("x", "1")] == ["m1"]
    assert [a.key for a in third.alerts_between(at(0), at(1))] == ["k1", "k2", "m1"]


def test_url_attribute(store):
    assert isinstance(store.url, str) and store.url
