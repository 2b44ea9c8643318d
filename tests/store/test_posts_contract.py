"""The posts role's contract (:class:`bot.store.posts.PostStore`): posts, versions, cursors, rejected items.

Every backend passes exactly these tests (see ``conftest.store_opener``)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from bot.models import RejectedItem
from bot.store.records import Change
from tests.store.builders import assert_aware, at, make_post, photo
from bot.store.posts import AccountPoll


def test_new_post_is_stored_pending_with_verbatim_raw(store):
    post = make_post(media=[photo()])
    changes = store.record_poll(AccountPoll("x", "gov", [post], cursor="c1", at=at(0)))
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
    store.record_poll(AccountPoll("x", "gov", [make_post()], cursor=None, at=at(0)))
    (change,) = store.record_poll(AccountPoll("x", "gov", [make_post(likes=5)], cursor=None, at=at(10)))
    assert (change.change, change.version) == (Change.UNCHANGED, 1)
    assert len(store.get_versions("x", "1")) == 1
    assert store.get_post("x", "1").last_seen_alive == at(10)


def test_changed_text_is_edited_v2(store):
    store.record_poll(AccountPoll("x", "gov", [make_post(text="v1")], cursor=None, at=at(0)))
    (change,) = store.record_poll(AccountPoll("x", "gov", [make_post(text="v2")], cursor=None, at=at(60)))
    assert (change.change, change.version) == (Change.EDITED, 2)
    versions = store.get_versions("x", "1")
    assert [v.version for v in versions] == [1, 2]
    assert [v.post.text for v in versions] == ["v1", "v2"]
    assert versions[1].observed_at == at(60)
    stored = store.get_post("x", "1")
    assert stored.version == 2 and stored.post.text == "v2"
    assert stored.first_seen == at(0)


def test_changed_media_is_edited_but_url_query_change_is_not(store):
    store.record_poll(AccountPoll("x", "gov", [make_post(media=[photo("https://cdn/a.jpg?sig=1")])], cursor=None, at=at(0)))
    (same,) = store.record_poll(AccountPoll(
        "x", "gov", [make_post(media=[photo("https://cdn/a.jpg?sig=2")])], cursor=None, at=at(1)
    ))
    assert same.change is Change.UNCHANGED
    (edited,) = store.record_poll(AccountPoll(
        "x", "gov", [make_post(media=[photo("https://cdn/b.jpg?sig=2")])], cursor=None, at=at(2)
    ))
    assert (edited.change, edited.version) == (Change.EDITED, 2)


def test_same_post_twice_in_one_poll(store):
    changes = store.record_poll(AccountPoll("x", "gov", [make_post(text="a"), make_post(text="a")], cursor=None, at=at(0)))
    assert [c.change for c in changes] == [Change.NEW, Change.UNCHANGED]
    changes = store.record_poll(AccountPoll("x", "gov", [make_post(text="b"), make_post(text="c")], cursor=None, at=at(1)))
    assert [(c.change, c.version) for c in changes] == [(Change.EDITED, 2), (Change.EDITED, 3)]


def test_save_post_version_outside_a_poll(store):
    store.record_poll(AccountPoll("x", "gov", [make_post(text="a")], cursor=None, at=at(0)))
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
    store.record_poll(AccountPoll("x", "gov", [make_post("1"), make_post("2")], cursor=None, at=at(0)))
    store.record_poll(AccountPoll("x", "gov", [make_post("3")], cursor=None, at=at(10)))
    assert [s.post.post_id for s in store.pending_posts()] == ["1", "2", "3"]
    assert [s.post.post_id for s in store.pending_posts(limit=2)] == ["1", "2"]

    store.mark_processed("x", "1", 1)
    assert [s.post.post_id for s in store.pending_posts()] == ["2", "3"]
    assert store.get_post("x", "1").processed_version == 1

    # an edit makes it pending again; finishing the old version keeps the new one pending
    store.record_poll(AccountPoll("x", "gov", [make_post("2", text="edited")], cursor=None, at=at(20)))
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
    store.record_poll(AccountPoll("x", "gov", [make_post("1"), make_post("2")], cursor=None, at=at(0)))
    store.record_poll(AccountPoll("x", "pm", [make_post("3", account="pm")], cursor=None, at=at(1)))
    store.record_poll(AccountPoll("mastodon", "gov", [make_post("1", platform="mastodon")], cursor=None, at=at(2)))
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
    store.record_poll(AccountPoll("x", "gov", [make_post()], cursor=None, at=at(0)))
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
    store.record_poll(AccountPoll("x", "gov", [], cursor="c1", at=at(0)))
    assert store.get_cursor("x", "gov") == "c1"
    bad = RejectedItem("x", "gov", raw={"weird": [1, 2]}, error="no id", seen_at=at(1))
    store.record_poll(AccountPoll("x", "gov", [make_post()], cursor=None, rejected=[bad], at=at(1)))
    assert store.get_cursor("x", "gov") == "c1"
    assert store.get_cursor("x", "other") is None
    store.record_poll(AccountPoll("x", "gov", [], cursor="c2", rejected=[RejectedItem("x", "gov", "raw2", "bad", at(2))]))
    assert store.get_cursor("x", "gov") == "c2"
    rejected = store.list_rejected()
    assert rejected == [bad, RejectedItem("x", "gov", "raw2", "bad", at(2))]
    assert_aware(rejected[0].seen_at)
    assert store.list_rejected(limit=1) == [RejectedItem("x", "gov", "raw2", "bad", at(2))]  # the latest


def test_a_rejected_item_served_again_is_stored_once(store):
    """X and Graph items with no id or date cannot be placed before the cursor and come back every poll."""
    bad = RejectedItem("x", "gov", raw={"text": "no id"}, error="malformed tweet: no id", seen_at=at(1))
    for minute in range(3):
        store.record_poll(AccountPoll("x", "gov", [], cursor=None, rejected=[replace(bad, seen_at=at(minute))], at=at(minute)))
    other = RejectedItem("x", "gov", raw={"text": "other"}, error="malformed tweet: no id", seen_at=at(4))
    store.record_poll(AccountPoll("x", "gov", [], cursor=None, rejected=[other, other], at=at(4)))
    assert store.list_rejected() == [replace(bad, seen_at=at(0)), other]


def test_default_times_are_now_in_utc(store):
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    store.record_poll(AccountPoll("x", "gov", [make_post()], cursor=None))
    stored = store.get_post("x", "1")
    assert_aware(stored.first_seen)
    assert stored.first_seen >= before
