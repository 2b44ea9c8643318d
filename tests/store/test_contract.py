"""The state-store contract: every backend passes exactly these tests (see ``conftest.store_opener``)."""

from __future__ import annotations

from dataclasses import replace

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from bot.models import Media, MediaKind, Post, RejectedItem
from bot.store.records import (
    AccountState,
    Change,
    KnownKind,
    KnownMedia,
    MediaRecord,
    OutboxAlert,
    PostEvent,
    PostMediaLink,
    Recheck,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make_post(post_id: str = "1", text: str = "hello", media=(), account: str = "gov", platform: str = "x", **raw):
    return Post(
        platform=platform,
        account=account,
        post_id=post_id,
        url=f"https://example.org/{account}/{post_id}",
        text=text,
        created_at=T0 - timedelta(hours=1),
        media=tuple(media),
        raw={"id": post_id, "text": text, "zeta": 1, "alpha": [1, 2, {"b": None, "a": "é"}], **raw},
        author_id="42",
    )


def photo(url: str = "https://cdn.example.org/a.jpg?sig=1", media_id: str | None = None) -> Media:
    return Media(url=url, kind=MediaKind.PHOTO, alt_text="alt", media_id=media_id)


def assert_aware(value: datetime | None) -> None:
    assert value is not None and value.tzinfo is not None and value.utcoffset() == timedelta(0)


# --------------------------------------------------------------------------- posts and versions


def test_new_post_is_stored_pending_with_verbatim_raw(store):
    post = make_post(media=[photo()])
    changes = store.record_poll("x", "gov", [post], cursor="c1", at=at(0))
    assert [(c.change, c.version) for c in changes] == [(Change.NEW, 1)]
    assert changes[0].post == post

    stored = store.get_post("x", "1")
    assert stored.post == post
    assert stored.post.raw == post.raw and list(stored.post.raw) == list(post.raw)  # key order kept
    assert stored.version == 1 and stored.processed_version == 0 and stored.pending
    assert stored.status == "alive"
    assert stored.first_seen == at(0) and stored.last_seen_alive == at(0)
    assert_aware(stored.first_seen)
    assert_aware(stored.post.created_at)

    (version,) = store.get_versions("x", "1")
    assert version.version == 1 and version.observed_at == at(0)
    assert version.post == post
    assert version.raw_sha256 == post.raw_sha256()
    assert version.fingerprint == post.content_fingerprint()
    assert store.get_post("x", "nope") is None
    assert store.get_versions("x", "nope") == []


def test_same_content_twice_is_unchanged(store):
    store.record_poll("x", "gov", [make_post()], cursor=None, at=at(0))
    (change,) = store.record_poll("x", "gov", [make_post(likes=5)], cursor=None, at=at(10))
    assert (change.change, change.version) == (Change.UNCHANGED, 1)
    assert len(store.get_versions("x", "1")) == 1
    assert store.get_post("x", "1").last_seen_alive == at(10)


def test_changed_text_is_edited_v2(store):
    store.record_poll("x", "gov", [make_post(text="v1")], cursor=None, at=at(0))
    (change,) = store.record_poll("x", "gov", [make_post(text="v2")], cursor=None, at=at(60))
    assert (change.change, change.version) == (Change.EDITED, 2)
    versions = store.get_versions("x", "1")
    assert [v.version for v in versions] == [1, 2]
    assert [v.post.text for v in versions] == ["v1", "v2"]
    assert versions[1].observed_at == at(60)
    stored = store.get_post("x", "1")
    assert stored.version == 2 and stored.post.text == "v2"
    assert stored.first_seen == at(0)


def test_changed_media_is_edited_but_url_query_change_is_not(store):
    store.record_poll("x", "gov", [make_post(media=[photo("https://cdn/a.jpg?sig=1")])], cursor=None, at=at(0))
    (same,) = store.record_poll(
        "x", "gov", [make_post(media=[photo("https://cdn/a.jpg?sig=2")])], cursor=None, at=at(1)
    )
    assert same.change is Change.UNCHANGED
    (edited,) = store.record_poll(
        "x", "gov", [make_post(media=[photo("https://cdn/b.jpg?sig=2")])], cursor=None, at=at(2)
    )
    assert (edited.change, edited.version) == (Change.EDITED, 2)


def test_same_post_twice_in_one_poll(store):
    changes = store.record_poll("x", "gov", [make_post(text="a"), make_post(text="a")], cursor=None, at=at(0))
    assert [c.change for c in changes] == [Change.NEW, Change.UNCHANGED]
    changes = store.record_poll("x", "gov", [make_post(text="b"), make_post(text="c")], cursor=None, at=at(1))
    assert [(c.change, c.version) for c in changes] == [(Change.EDITED, 2), (Change.EDITED, 3)]


def test_save_post_version_outside_a_poll(store):
    store.record_poll("x", "gov", [make_post(text="a")], cursor=None, at=at(0))
    store.mark_processed("x", "1", 1)
    same = store.save_post_version(make_post(text="a"), at=at(100))
    assert (same.change, same.version) == (Change.UNCHANGED, 1)
    assert store.get_post("x", "1").last_seen_alive == at(100)
    assert not store.get_post("x", "1").pending
    edited = store.save_post_version(make_post(text="b"), at=at(200))
    assert (edited.change, edited.version) == (Change.EDITED, 2)
    stored = store.get_post("x", "1")
    assert stored.pending and stored.last_seen_alive == at(200)
    new = store.save_post_version(make_post("2"), at=at(300))
    assert new.change is Change.NEW


def test_pending_and_mark_processed(store):
    store.record_poll("x", "gov", [make_post("1"), make_post("2")], cursor=None, at=at(0))
    store.record_poll("x", "gov", [make_post("3")], cursor=None, at=at(10))
    assert [s.post.post_id for s in store.pending_posts()] == ["1", "2", "3"]
    assert [s.post.post_id for s in store.pending_posts(limit=2)] == ["1", "2"]

    store.mark_processed("x", "1", 1)
    assert [s.post.post_id for s in store.pending_posts()] == ["2", "3"]
    assert store.get_post("x", "1").processed_version == 1

    # an edit makes it pending again; finishing the old version keeps the new one pending
    store.record_poll("x", "gov", [make_post("2", text="edited")], cursor=None, at=at(20))
    store.mark_processed("x", "2", 1)
    stored = store.get_post("x", "2")
    assert stored.version == 2 and stored.processed_version == 1 and stored.pending
    store.mark_processed("x", "2", 2)
    store.mark_processed("x", "2", 1)  # a late, stale mark does not go backwards
    assert not store.get_post("x", "2").pending
    assert [s.post.post_id for s in store.pending_posts()] == ["3"]
    store.mark_processed("x", "missing", 1)  # harmless
    assert store.get_post("x", "missing") is None


def test_iter_and_count_posts(store):
    store.record_poll("x", "gov", [make_post("1"), make_post("2")], cursor=None, at=at(0))
    store.record_poll("x", "pm", [make_post("3", account="pm")], cursor=None, at=at(1))
    store.record_poll("mastodon", "gov", [make_post("1", platform="mastodon")], cursor=None, at=at(2))
    assert store.count_posts() == 4
    assert store.count_posts(platform="x") == 3
    assert store.count_posts(platform="x", account="gov") == 2
    assert store.count_posts(account="gov") == 3
    assert store.count_posts(platform="rss") == 0
    assert [(s.post.platform, s.post.post_id) for s in store.iter_posts()] == [
        ("x", "1"),
        ("x", "2"),
        ("x", "3"),
        ("mastodon", "1"),
    ]
    assert [s.post.post_id for s in store.iter_posts(platform="x", account="pm")] == ["3"]
    assert [s.post.platform for s in store.iter_posts(platform="mastodon")] == ["mastodon"]


def test_mark_seen_alive_and_status(store):
    store.record_poll("x", "gov", [make_post()], cursor=None, at=at(0))
    store.mark_seen_alive("x", "1", at(500))
    store.set_post_status("x", "1", "deleted")
    stored = store.get_post("x", "1")
    assert stored.last_seen_alive == at(500) and stored.status == "deleted"
    store.mark_seen_alive("x", "missing", at(1))
    store.set_post_status("x", "missing", "deleted")
    assert store.get_post("x", "missing") is None
    assert store.count_posts() == 1


def test_cursor_kept_when_none_and_rejected_items_kept(store):
    assert store.get_cursor("x", "gov") is None
    store.record_poll("x", "gov", [], cursor="c1", at=at(0))
    assert store.get_cursor("x", "gov") == "c1"
    bad = RejectedItem("x", "gov", raw={"weird": [1, 2]}, error="no id", seen_at=at(1))
    store.record_poll("x", "gov", [make_post()], cursor=None, rejected=[bad], at=at(1))
    assert store.get_cursor("x", "gov") == "c1"
    assert store.get_cursor("x", "other") is None
    store.record_poll("x", "gov", [], cursor="c2", rejected=[RejectedItem("x", "gov", "raw2", "bad", at(2))])
    assert store.get_cursor("x", "gov") == "c2"
    rejected = store.list_rejected()
    assert rejected == [bad, RejectedItem("x", "gov", "raw2", "bad", at(2))]
    assert_aware(rejected[0].seen_at)
    assert store.list_rejected(limit=1) == [RejectedItem("x", "gov", "raw2", "bad", at(2))]  # the latest


def test_a_rejected_item_served_again_is_stored_once(store):
    """X and Graph items with no id or date cannot be placed before the cursor and come back every poll."""
    bad = RejectedItem("x", "gov", raw={"text": "no id"}, error="malformed tweet: no id", seen_at=at(1))
    for minute in range(3):
        store.record_poll("x", "gov", [], cursor=None, rejected=[replace(bad, seen_at=at(minute))], at=at(minute))
    other = RejectedItem("x", "gov", raw={"text": "other"}, error="malformed tweet: no id", seen_at=at(4))
    store.record_poll("x", "gov", [], cursor=None, rejected=[other, other], at=at(4))
    assert store.list_rejected() == [replace(bad, seen_at=at(0)), other]


def test_default_times_are_now_in_utc(store):
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    store.record_poll("x", "gov", [make_post()], cursor=None)
    stored = store.get_post("x", "1")
    assert_aware(stored.first_seen)
    assert stored.first_seen >= before


# --------------------------------------------------------------------------- media


def media_record(sha: str = "a" * 64, **kw) -> MediaRecord:
    fields = dict(size=10, content_type="image/jpeg", archive_path=f"media/{sha[:2]}/{sha}.jpg",
                  first_url="https://cdn/a.jpg", first_seen=at(0))
    fields.update(kw)
    return MediaRecord(sha256=sha, **fields)


def test_media_first_wins_and_signals_merge(store):
    first = store.put_media(media_record(signals={"pdq": "p1"}))
    assert first == media_record(signals={"pdq": "p1"})
    assert_aware(first.first_seen)
    again = store.put_media(media_record(first_url="https://other/b.jpg", signals={"phash": "h1"}))
    assert again.first_url == "https://cdn/a.jpg"
    assert again.signals == {"pdq": "p1", "phash": "h1"}
    store.set_media_signals("a" * 64, {"pdq": "p2", "dhash": "d"})
    assert store.get_media("a" * 64).signals == {"pdq": "p2", "phash": "h1", "dhash": "d"}
    assert store.get_media("b" * 64) is None
    store.set_media_signals("b" * 64, {"pdq": "x"})  # no such record: nothing created
    assert store.get_media("b" * 64) is None


def test_post_media_links(store):
    store.link_post_media(PostMediaLink("x", "1", 1, "https://cdn/2.jpg", None, error="http_404"))
    store.link_post_media(PostMediaLink("x", "1", 0, "https://cdn/1.jpg", "a" * 64))
    store.link_post_media(PostMediaLink("x", "2", 0, "https://cdn/3.jpg", "c" * 64))
    links = store.get_post_media("x", "1")
    assert [link.index for link in links] == [0, 1]
    assert links[1].error == "http_404" and links[1].sha256 is None
    store.link_post_media(PostMediaLink("x", "1", 1, "https://cdn/2.jpg", "b" * 64))  # replaces
    assert store.get_post_media("x", "1")[1] == PostMediaLink("x", "1", 1, "https://cdn/2.jpg", "b" * 64)
    assert store.get_post_media("x", "none") == []


# --------------------------------------------------------------------------- known media


def known(label: str, kind=KnownKind.KNOWN, sha: str | None = None, **kw) -> KnownMedia:
    return KnownMedia(label=label, signals={"pdq": f"pdq-{label}"}, kind=kind, sha256=sha, added_at=at(0), **kw)


def test_known_media(store):
    gen0 = store.known_generation()
    a = store.add_known(known("a", sha="1" * 64, source="game", note="n", frame_ts=1.5))
    assert a.id and len(a.id) <= 32
    assert store.known_generation() != gen0
    b = store.add_known(known("b", kind=KnownKind.SEEN, sha="1" * 64, origin={"platform": "x", "post_id": "9"}))
    c = store.add_known(known("c"))
    assert len({a.id, b.id, c.id}) == 3
    assert store.get_known(a.id) == a
    assert store.get_known(b.id).origin == {"platform": "x", "post_id": "9"}
    assert store.get_known("nope") is None
    assert_aware(store.get_known(a.id).added_at)

    assert [k.label for k in store.list_known()] == ["a", "b", "c"]
    assert [k.label for k in store.list_known(kind=KnownKind.KNOWN)] == ["a", "c"]
    assert [k.label for k in store.list_known(limit=1, offset=1)] == ["b"]
    assert [k.label for k in store.list_known(offset=2)] == ["c"]
    assert [k.label for k in store.iter_known()] == ["a", "b", "c"]
    assert [k.label for k in store.iter_known(KnownKind.SEEN)] == ["b"]
    assert store.count_known() == 3
    assert store.count_known(KnownKind.SEEN) == 1
    assert {k.id for k in store.find_known_by_sha256("1" * 64)} == {a.id, b.id}
    assert store.find_known_by_sha256("2" * 64) == []

    gen1 = store.known_generation()
    assert store.remove_known(a.id) is True
    gen2 = store.known_generation()
    assert gen2 != gen1
    assert store.remove_known(a.id) is False
    assert store.get_known(a.id) is None
    assert [k.label for k in store.list_known()] == ["b", "c"]
    assert [k.id for k in store.find_known_by_sha256("1" * 64)] == [b.id]
    assert store.count_known() == 2 and store.count_known(KnownKind.KNOWN) == 1


def test_add_seen_is_an_atomic_insert_or_get_per_file(store_opener):
    """Two daemons remembering the same file at the same instant: one entry, and both get that one."""
    first = store_opener()
    first.add_known(known("a known copy", sha="5" * 64))  # a known entry of the same file is not a seen one
    entry, added = first.add_seen(known("seen in post 1", kind=KnownKind.SEEN, sha="5" * 64, origin={"post_id": "1"}))
    assert added and entry.id and first.get_known(entry.id) == entry
    again, added = first.add_seen(known("seen in post 2", kind=KnownKind.SEEN, sha="5" * 64, origin={"post_id": "2"}))
    assert not added and again == entry

    stores = [store_opener() for _ in range(6)]
    start = threading.Barrier(len(stores))
    results: list[tuple[object, bool]] = []

    def remember(n: int) -> None:
        start.wait()
        results.append(stores[n].add_seen(known(f"seen in post {n}", kind=KnownKind.SEEN, sha="6" * 64, origin={"post_id": str(n)})))

    threads = [threading.Thread(target=remember, args=(n,)) for n in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(added for _, added in results) == 1
    assert len({e.id for e, _ in results}) == 1  # every daemon got the one entry that was added
    assert [e.kind for e in first.find_known_by_sha256("6" * 64)] == [KnownKind.SEEN]
    assert first.count_known(KnownKind.SEEN) == 2


def test_known_media_keeps_a_given_id(store):
    entry = store.add_known(known("x", id="myid"))
    assert entry.id == "myid" and store.get_known("myid") == entry


def test_known_items_are_added_and_removed_whole(store):
    frames = [known(f"trailer @ {i}s", sha=f"{i}" * 64, group="v" * 64, frame_ts=float(i)) for i in range(3)]
    single = store.add_known(known("photo", sha="f" * 64))
    seen_frame = store.add_known(known("seen frame", kind=KnownKind.SEEN, group="v" * 64))
    gen = store.known_generation()
    added = store.add_known_many(frames)
    assert store.known_generation() != gen
    assert [e.label for e in added] == [e.label for e in frames] and all(e.id for e in added)
    assert len({e.id for e in added}) == 3
    assert [e.id for e in store.iter_known()] == [single.id, seen_frame.id, *[e.id for e in added]]
    assert [e.frame_ts for e in store.find_known_by_group("v" * 64, KnownKind.KNOWN)] == [0.0, 1.0, 2.0]
    assert len(store.find_known_by_group("v" * 64)) == 4  # the same video seen in a post is another item
    assert store.find_known_by_group("w" * 64) == []
    assert store.add_known_many([]) == []

    # replacing entries in place keeps their insertion order and moves them between groups
    moved = store.add_known_many([KnownMedia.from_dict({**added[0].to_dict(), "group": "w" * 64})])
    assert store.get_known(added[0].id) == moved[0]
    assert [e.id for e in store.find_known_by_group("w" * 64)] == [added[0].id]
    assert [e.id for e in store.iter_known()][2] == added[0].id

    state = store.known_state()
    assert store.remove_known_group("v" * 64, KnownKind.KNOWN) == 2
    after = store.known_state()
    assert after.epoch != state.epoch and after.count == state.count - 2
    assert [e.id for e in store.find_known_by_group("v" * 64)] == [seen_frame.id]  # the seen item stays
    assert store.remove_known_group("v" * 64, KnownKind.KNOWN) == 0
    assert store.remove_known(added[0].id) and store.find_known_by_group("w" * 64) == []
    assert [e.id for e in store.iter_known()] == [single.id, seen_frame.id]


def test_add_known_many_keeps_thousands_in_order(store):
    entries = [known(f"row {i}", source="list") for i in range(2500)]
    since = store.known_state()
    added = store.add_known_many(entries)
    assert store.count_known() == 2500
    assert [e.label for e in store.iter_known()] == [f"row {i}" for i in range(2500)]
    appended = list(store.iter_known_since(0))
    assert [e.id for _, e in appended] == [e.id for e in added]
    assert [seq for seq, _ in appended] == sorted(seq for seq, _ in appended)
    assert store.known_state().count == since.count + 2500


# --------------------------------------------------------------------------- alert outbox


def alert(key: str, **kw) -> OutboxAlert:
    return OutboxAlert(key=key, kind="match", payload={"post": key, "score": 0.9}, created_at=at(0), **kw)


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


def post_alert(key: str, kind: str = "match", platform: str = "x", post_id="1", **kw) -> OutboxAlert:
    payload = {"platform": platform, "post_id": post_id, "media_sha256": "a" * 64, "known": {"id": "k1"}}
    return OutboxAlert(key=key, kind=kind, payload=payload, created_at=at(0), **kw)


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


# --------------------------------------------------------------------------- re-checks


def recheck(post_id: str, due: float, platform: str = "x", **kw) -> Recheck:
    return Recheck(platform=platform, post_id=post_id, account="gov", posted_at=at(-3600), due_at=at(due), **kw)


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


# --------------------------------------------------------------------------- deletion log


def event(kind: str, post_id: str = "1", detected: float = 0, platform: str = "x", account: str = "gov", **details):
    return PostEvent(platform=platform, account=account, post_id=post_id, kind=kind, detected_at=at(detected),
                     details=details)


def test_record_event_sets_status_and_replaces_recheck(store):
    store.record_poll("x", "gov", [make_post("1")], cursor=None, at=at(0))
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
    assert store.list_events(kinds=["deleted"])[-1].post_id == "ghost"


def test_record_event_with_its_alert_in_one_transaction_idempotent(store):
    store.record_poll("x", "gov", [make_post("1")], cursor=None, at=at(0))
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


def test_record_event_with_alert_is_all_or_nothing(store):
    store.record_poll("x", "gov", [make_post("1")], cursor=None, at=at(0))
    before = recheck("1", 100)
    store.schedule_recheck(before)
    broken = OutboxAlert(key="deleted:x:1:e", kind="deleted", created_at=at(0),
                         payload={"platform": "x", "post_id": "1", "bad": (i for i in ())})  # cannot be copied
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
        return [e.post_id for e in store.list_events(**kw)]

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


# --------------------------------------------------------------------------- accounts


def test_account_state_merge(store):
    assert store.get_account_states() == []
    state = store.update_account_state("x", "gov", last_poll_at=at(0), consecutive_errors=0)
    assert state == AccountState("x", "gov", last_poll_at=at(0))
    state = store.update_account_state("x", "gov", last_error="boom", last_error_at=at(5), consecutive_errors=2)
    assert state.last_poll_at == at(0) and state.last_error == "boom" and state.consecutive_errors == 2
    state = store.update_account_state("x", "gov", paused_until=at(900))
    state = store.update_account_state("x", "gov", paused_until=None, last_error=None)
    assert state.paused_until is None and state.last_error is None and state.last_error_at == at(5)
    store.update_account_state("bluesky", "gov.bsky.social", next_poll_at=at(60))
    states = store.get_account_states()
    assert [(s.platform, s.account) for s in states] == [("bluesky", "gov.bsky.social"), ("x", "gov")]
    assert states[1] == state
    assert_aware(states[0].next_poll_at)
    assert store.get_account_state("x", "gov") == state  # one account, without reading the others
    assert store.get_account_state("bluesky", "gov.bsky.social") == states[0]
    assert store.get_account_state("x", "nobody") is None
    with pytest.raises(TypeError):
        store.update_account_state("x", "gov", nonsense=1)


# --------------------------------------------------------------------------- locks


def test_locks(store):
    assert store.acquire_lock("poll:x", "daemon-a", 30) is True
    assert store.acquire_lock("poll:x", "daemon-b", 30) is False
    assert store.acquire_lock("poll:x", "daemon-a", 30) is True  # renew
    assert store.acquire_lock("other", "daemon-b", 30) is True
    store.release_lock("poll:x", "daemon-b")  # not the owner: ignored
    assert store.acquire_lock("poll:x", "daemon-b", 30) is False
    store.release_lock("poll:x", "daemon-a")
    assert store.acquire_lock("poll:x", "daemon-b", 30) is True


def test_lock_expires(store):
    assert store.acquire_lock("short", "a", 0.2) is True
    assert store.acquire_lock("short", "b", 0.2) is False
    time.sleep(0.35)
    assert store.acquire_lock("short", "b", 10) is True
    assert store.acquire_lock("short", "a", 10) is False


def test_renewal_extends_the_lock(store):
    assert store.acquire_lock("r", "a", 0.3) is True
    time.sleep(0.2)
    assert store.acquire_lock("r", "a", 1.0) is True
    time.sleep(0.2)
    assert store.acquire_lock("r", "b", 1.0) is False


# --------------------------------------------------------------------------- request budgets


def test_budget_spend_is_counted_per_minute_and_survives_a_reopen(store_opener):
    first = store_opener()
    first.spend_budget("recheck:x", at(10), 2)
    first.spend_budget("recheck:x", at(50))  # same minute as the first
    first.spend_budget("recheck:x", at(65), 3)  # next minute
    reopened = store_opener()  # a restarted daemon
    # exact to the minute: the whole minute of `since` counts (the sliding hour errs on the safe side)
    assert reopened.budget_spent("recheck:x", at(30)) == 6
    assert reopened.budget_spent("recheck:x", at(60)) == 3
    assert reopened.budget_spent("recheck:x", at(119)) == 3
    assert reopened.budget_spent("recheck:x", at(120)) == 0


def test_budget_spend_older_than_the_hour_no_longer_counts(store):
    store.spend_budget("recheck:x", at(0), 4)
    store.spend_budget("recheck:x", at(30 * 60), 1)
    now = at(59 * 60)
    assert store.budget_spent("recheck:x", now - timedelta(hours=1)) == 5
    now = at(61 * 60)
    assert store.budget_spent("recheck:x", now - timedelta(hours=1)) == 1


def test_budgets_are_independent_by_name(store):
    store.spend_budget("recheck:x", at(0), 2)
    store.spend_budget("recheck:bluesky", at(0), 7)
    assert store.budget_spent("recheck:x", at(0)) == 2
    assert store.budget_spent("recheck:bluesky", at(0)) == 7
    assert store.budget_spent("recheck:mastodon", at(0)) == 0


def test_budget_spends_at_once_from_two_stores_all_count(store_opener):
    stores = [store_opener(), store_opener()]  # two daemons on one store

    def spend(s, n: int) -> None:
        for _ in range(n):
            s.spend_budget("recheck:x", at(5))

    threads = [threading.Thread(target=spend, args=(s, 25)) for s in stores for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stores[0].budget_spent("recheck:x", at(0)) == 100


def test_budget_spend_is_pruned_as_it_ages_out(store):
    store.spend_budget("recheck:x", at(0), 5)
    store.spend_budget("recheck:x", at(26 * 3600), 1)  # 26 hours later: past a UTC day of spend (daily budgets)
    assert store.budget_spent("recheck:x", at(-60)) == 1  # the old minute is gone, not only out of the window


@pytest.mark.parametrize("requests", [0, -3, 1.5])
def test_budget_spend_must_be_a_positive_integer(store, requests):
    store.spend_budget("recheck:x", at(0), 2)
    with pytest.raises(ValueError):
        store.spend_budget("recheck:x", at(0), requests)
    assert store.budget_spent("recheck:x", at(0)) == 2


# --------------------------------------------------------------------------- persistence


def test_everything_persists_across_reopen(store_opener):
    first = store_opener()
    first.record_poll("x", "gov", [make_post(text="a")], cursor="c9",
                      rejected=[RejectedItem("x", "gov", {"r": 1}, "bad", at(0))], at=at(0))
    first.record_poll("x", "gov", [make_post(text="b")], cursor=None, at=at(1))
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


def test_known_state_lets_an_index_append_new_entries_and_notice_replacements(store):
    a = store.add_known(known("a"))
    first = store.known_state()
    assert first.count == 1
    seqs = [seq for seq, _ in store.iter_known_since(0)]
    assert len(seqs) == 1

    b = store.add_known(known("b"))
    c = store.add_known(known("c"))
    appended = store.known_state()
    assert appended.generation != first.generation and appended.epoch == first.epoch and appended.count == 3
    new = list(store.iter_known_since(seqs[-1]))
    assert [e.id for _, e in new] == [b.id, c.id]
    assert new[0][0] < new[1][0]
    assert list(store.iter_known_since(new[-1][0])) == []

    store.add_known(KnownMedia.from_dict({**b.to_dict(), "label": "b2"}))  # replaced in place
    replaced = store.known_state()
    assert replaced.epoch != appended.epoch and replaced.count == 3
    assert list(store.iter_known_since(new[-1][0])) == []  # keeps its insertion number

    store.remove_known(a.id)
    removed = store.known_state()
    assert removed.epoch != replaced.epoch and removed.count == 2


def test_iter_known_since_pages_through_a_large_store(store):
    added = [store.add_known(known(f"k{i}")) for i in range(2_050)]
    got = list(store.iter_known_since(0))
    assert [e.id for _, e in got] == [e.id for e in added]
    assert [e.id for _, e in store.iter_known_since(got[1_500][0])] == [e.id for e in added[1_501:]]
