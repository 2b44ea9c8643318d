from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from bot.config import RecheckConfig
from bot.deletions import RecheckTracker
from bot.errors import StoreError
from bot.models import PostStatus, StatusKind
from bot.store.records import PostMediaLink, MediaRecord
from scripted import T0, ScriptedWatcher, make_post, minutes
from bot.store.deletion_log import EventFilter
from bot.store.posts import AccountPoll

FAR = T0 + timedelta(days=400)
ALIVE = "alive"


def setup(store, *posts, first_seen=T0 + timedelta(seconds=30), **cfg):
    tracker = RecheckTracker(store, {"x": RecheckConfig(**cfg)})
    for p in posts or (make_post(),):
        store.record_poll(AccountPoll(p.platform, p.account, [p], None, at=first_seen))
        tracker.schedule_new(p, first_seen)
    return tracker


def next_due(store, platform="x") -> datetime | None:
    due = store.due_rechecks(platform, FAR, limit=1)
    return due[0].due_at if due else None


def drive(tracker, watcher, store, until: datetime, platform="x"):
    """Run the tracker at every due time until ``until``; returns all events."""
    events = []
    while (when := next_due(store, platform)) is not None and when <= until:
        events += tracker.run(platform, watcher, when).events
    return events


def alive(post):
    return PostStatus.alive(post)


# ---------------------------------------------------------------- confirmation


def test_deletion_recorded_only_after_second_answer_a_minute_later(store):
    post = make_post()
    tracker = setup(store, post)
    w = ScriptedWatcher({"100": [alive(post), PostStatus.deleted()]})
    assert next_due(store) == T0 + minutes(2)
    r1 = tracker.run("x", w, T0 + minutes(2))  # alive
    assert r1.events == [] and r1.answers == {"alive": 1}
    r2 = tracker.run("x", w, T0 + minutes(5))  # first "deleted": not yet
    assert r2.events == []
    rc = store.get_recheck("x", "100")
    assert rc.deleted_streak == 1 and rc.due_at == T0 + minutes(6)
    assert tracker.run("x", w, T0 + minutes(5, ) + timedelta(seconds=59)).checked == 0  # not due before a minute
    r3 = tracker.run("x", w, T0 + minutes(6))
    assert [e.kind for e in r3.events] == ["deleted"]
    ev = r3.events[0]
    assert ev.details["first_answer_at"] == "2026-03-01T12:05:00Z"
    assert ev.details["confirmed_at"] == "2026-03-01T12:06:00Z"
    assert ev.details["last_seen_alive"] == "2026-03-01T12:02:00Z"
    assert ev.details["raw_sha256"] == post.raw_sha256()
    assert store.get_post("x", "100").status == "deleted"
    assert store.list_events(EventFilter(kinds=["deleted"])) == [ev]


def test_confirm_after_is_configurable(store):
    tracker = setup(store, confirm_after="10m")
    w = ScriptedWatcher({"100": [PostStatus.deleted()]})
    tracker.run("x", w, T0 + minutes(2))
    assert store.get_recheck("x", "100").due_at == T0 + minutes(12)
    assert [e.kind for e in tracker.run("x", w, T0 + minutes(12)).events] == ["deleted"]


def test_unknown_between_two_deleted_neither_counts_nor_resets(store):
    post = make_post()
    tracker = setup(store, post)
    w = ScriptedWatcher({"100": [PostStatus.deleted(), PostStatus.unknown("429"), PostStatus.deleted()]})
    events = drive(tracker, w, store, T0 + minutes(10))
    assert [e.kind for e in events] == ["deleted"]
    assert events[0].details["answers"] == 2


def test_pending_confirmation_retried_soon_after_unknown(store):
    post = make_post(created_at=T0 - timedelta(days=3))
    tracker = setup(store, post, first_seen=T0)
    w = ScriptedWatcher({"100": [PostStatus.deleted(), PostStatus.unknown("503"), PostStatus.deleted()]})
    first_due = next_due(store)
    assert first_due == T0 + timedelta(days=1)  # daily tail
    tracker.run("x", w, first_due)
    tracker.run("x", w, first_due + minutes(1))  # the confirmation check answers unknown
    assert next_due(store) == first_due + minutes(16)  # retried in 15 minutes, not tomorrow
    assert [e.kind for e in tracker.run("x", w, first_due + minutes(16)).events] == ["deleted"]


def test_alive_between_two_deleted_resets_the_streak(store):
    post = make_post()
    tracker = setup(store, post)
    w = ScriptedWatcher({"100": lambda pid, n: PostStatus.deleted() if n % 2 == 0 else alive(post)})
    assert drive(tracker, w, store, T0 + timedelta(days=31)) == []


class Boom(ScriptedWatcher):
    def _lookup_batch(self, post_ids, authors, state):
        self.calls.append(list(post_ids))
        raise TimeoutError("read timed out")


FAILURES = {
    "rate_limited_429": lambda post: PostStatus.unknown("429 Too Many Requests"),
    "server_error_500": lambda post: PostStatus.unknown("500 Internal Server Error"),
    "timeout": lambda post: PostStatus.unknown("timed out"),
    "malformed_object": lambda post: {"errors": [{"title": "Not Found Error"}]},
    "malformed_kind": lambda post: PostStatus.of("deleted"),  # a str, not a StatusKind
    "alive_without_post": lambda post: PostStatus(StatusKind.ALIVE),
    "alive_other_post": lambda post: PostStatus.alive(make_post("999")),
    "missing_from_answer": None,
}


@pytest.mark.parametrize("failure", [*FAILURES, "lookup_raises"])
def test_failures_at_every_recheck_never_produce_a_deletion(store, failure):
    post = make_post()
    tracker = setup(store, post)
    if failure == "lookup_raises":
        w = Boom()
    else:
        make = FAILURES[failure]
        w = ScriptedWatcher({"100": (lambda pid, n: make(post)) if make else None})
    events = drive(tracker, w, store, T0 + timedelta(days=31))
    assert events == []
    assert len(w.calls) == 38  # every step of the 30-day schedule was tried
    assert store.get_recheck("x", "100") is None  # horizon reached
    assert store.get_post("x", "100").status == "alive"
    assert store.outbox_size() == 0


@pytest.mark.parametrize("failure", list(FAILURES))
def test_one_deleted_among_failures_is_not_a_deletion(store, failure):
    post = make_post()
    tracker = setup(store, post)
    make = FAILURES[failure]

    def answer(pid, n):
        if n == 3:
            return PostStatus.deleted()
        if n == 4:
            return alive(post)
        return make(post) if make else None

    w = ScriptedWatcher({"100": answer})
    assert drive(tracker, w, store, T0 + timedelta(days=31)) == []


# ---------------------------------------------------------------- account-level states


def test_suspension_protection_and_deletion_told_apart(store):
    posts = [
        make_post("1", account="deleter"),
        make_post("2", account="suspended"),
        make_post("3", account="suspended"),
        make_post("4", account="protected"),
        make_post("5", account="gone"),
        make_post("6", account="geo"),
    ]
    tracker = setup(store, *posts)
    w = ScriptedWatcher(
        {
            "1": [PostStatus.deleted()],
            "2": [PostStatus.of(StatusKind.AUTHOR_SUSPENDED, "User has been suspended")],
            "3": [PostStatus.of(StatusKind.AUTHOR_SUSPENDED)],
            "4": [PostStatus.of(StatusKind.AUTHOR_PROTECTED)],
            "5": [PostStatus.of(StatusKind.AUTHOR_DELETED)],
            "6": [PostStatus.of(StatusKind.WITHHELD)],
        }
    )
    events = drive(tracker, w, store, T0 + timedelta(days=31))
    by_account = {(e.account, e.kind) for e in events}
    assert by_account == {
        ("deleter", "deleted"),
        ("suspended", "author_suspended"),
        ("protected", "author_protected"),
        ("gone", "author_deleted"),
        ("geo", "withheld"),
    }
    assert len(events) == 5  # one suspension event for the account, not one per post or per check
    susp = next(e for e in events if e.kind == "author_suspended")
    assert susp.details["scope"] == "account" and susp.details["platform_said"] == "User has been suspended"
    assert next(e for e in events if e.kind == "deleted").details["scope"] == "post"
    assert {store.get_post("x", i).status for i in ("2", "3")} == {"author_suspended"}
    assert store.get_post("x", "1").status == "deleted"
    # every post stayed on its schedule until the horizon (a restore would have been noticed)
    assert store.count_rechecks() == 0


def test_post_hidden_by_moderation_is_a_withheld_event_not_a_deletion(store):
    """Bluesky's answer for a post the AppView hides while the author's PDS still has it."""
    said = "hidden by the Bluesky AppView (moderation); the record still exists on the author's PDS"
    post = make_post()
    tracker = setup(store, post)
    w = ScriptedWatcher({"100": [alive(post), PostStatus.of(StatusKind.WITHHELD, said)]})
    events = drive(tracker, w, store, T0 + timedelta(days=31))
    assert [e.kind for e in events] == ["withheld"]
    assert events[0].details["scope"] == "post" and events[0].details["platform_said"] == said
    assert store.get_post("x", "100").status == "withheld" and store.list_events(EventFilter(kinds=["deleted"])) == []


def test_withheld_and_deleted_answers_do_not_confirm_each_other(store):
    """A PDS flapping between "record there" and an unconfirmed "deleted" records neither."""
    post = make_post()
    tracker = setup(store, post)
    kinds = [PostStatus.of(StatusKind.WITHHELD), PostStatus.of(StatusKind.DELETED, "not confirmed at the author's PDS")]
    w = ScriptedWatcher({"100": lambda pid, n: kinds[n % 2]})
    assert drive(tracker, w, store, T0 + timedelta(days=31)) == []


def test_mixed_gone_answers_do_not_confirm_each_other(store):
    post = make_post()
    tracker = setup(store, post)
    kinds = [PostStatus.deleted(), PostStatus.of(StatusKind.AUTHOR_SUSPENDED)]
    w = ScriptedWatcher({"100": lambda pid, n: kinds[n % 2]})
    assert drive(tracker, w, store, T0 + timedelta(days=31)) == []
    assert len(w.calls) <= 40  # flapping does not turn into a look-up every minute for 30 days


def test_suspended_account_comes_back_once(store):
    posts = [make_post("1", account="acc"), make_post("2", account="acc")]
    tracker = setup(store, *posts)
    back = {p.post_id: p for p in posts}
    w = ScriptedWatcher(
        {pid: (lambda pid, n: PostStatus.of(StatusKind.AUTHOR_SUSPENDED) if n < 3 else alive(back[pid])) for pid in back}
    )
    events = drive(tracker, w, store, T0 + timedelta(days=2))
    assert [(e.kind, e.details["scope"]) for e in events] == [("author_suspended", "account"), ("restored", "account")]
    assert events[1].details["previous"] == "author_suspended"
    assert {store.get_post("x", i).status for i in back} <= {"alive", "restored"}


# ---------------------------------------------------------------- edits and restores


def test_edit_recorded_with_before_and_after_and_post_pending(store):
    post = make_post(text="Flood relief arrives", media=("m1",))
    tracker = setup(store, post)
    store.mark_processed("x", "100", 1)
    edited = make_post(text="Flood relief arrives (corrected)", media=("m1", "m2"))
    w = ScriptedWatcher({"100": [alive(post), alive(edited)]})
    events = drive(tracker, w, store, T0 + minutes(6))
    assert [e.kind for e in events] == ["edited"]
    d = events[0].details
    assert d["before"]["text"] == "Flood relief arrives" and d["before"]["media"] == ["id:m1"]
    assert d["after"]["text"] == "Flood relief arrives (corrected)" and d["after"]["media"] == ["id:m1", "id:m2"]
    assert d["before"]["version"] == 1 and d["after"]["version"] == 2
    assert d["before"]["raw_sha256"] == post.raw_sha256() and d["after"]["raw_sha256"] == edited.raw_sha256()
    stored = store.get_post("x", "100")
    assert stored.pending and stored.version == 2  # the pipeline will archive and match m2
    assert stored.status == "alive"
    assert stored.last_seen_alive == T0 + minutes(5)


def test_same_content_with_new_signed_url_is_not_an_edit(store):
    post = make_post()
    tracker = setup(store, post)
    again = post.with_raw({"id": "100", "text": post.text, "fetched": "later"})
    w = ScriptedWatcher({"100": [alive(again)]})
    assert drive(tracker, w, store, T0 + timedelta(days=2)) == []
    assert store.get_post("x", "100").last_seen_alive == T0 + timedelta(days=2)


def test_restored_post_keeps_both_events(store):
    post = make_post()
    tracker = setup(store, post)
    w = ScriptedWatcher({"100": [alive(post), PostStatus.deleted(), PostStatus.deleted(), alive(post)]})
    events = drive(tracker, w, store, T0 + timedelta(days=8))
    assert [e.kind for e in events] == ["deleted", "restored"]
    # once confirmed deleted, the post is looked at again only after deleted_every (default 7 days)
    assert events[1].detected_at >= events[0].detected_at + timedelta(days=7)
    assert events[1].details["previous"] == "deleted"
    assert [e.kind for e in store.list_events()] == ["deleted", "restored"]
    assert store.get_post("x", "100").status != "deleted"
    assert store.get_recheck("x", "100") is not None  # still on its schedule


def test_deleted_post_is_not_logged_twice(store):
    tracker = setup(store)
    w = ScriptedWatcher({"100": [PostStatus.deleted()]})
    events = drive(tracker, w, store, T0 + timedelta(days=31))
    assert [e.kind for e in events] == ["deleted"]
    assert store.get_recheck("x", "100") is None


# ---------------------------------------------------------------- persistence, budget, batches, alerts


def test_restart_in_the_middle_of_the_schedule_continues(open_store):
    post = make_post()
    store = open_store()
    tracker = setup(store, post)
    w = ScriptedWatcher({"100": [alive(post), alive(post), alive(post), PostStatus.deleted(), PostStatus.deleted()]})
    drive(tracker, w, store, T0 + minutes(30))  # 2m, 5m, 15m alive; 30m deleted (first answer)
    before = store.get_recheck("x", "100")
    assert before.step == 3 and before.deleted_streak == 1 and before.due_at == T0 + minutes(31)
    store.close()

    store2 = open_store()  # a restarted daemon
    tracker2 = RecheckTracker(store2, {"x": RecheckConfig()})
    assert store2.get_recheck("x", "100") == before
    assert tracker2.schedule_new(post, T0 + minutes(30, )) == before  # idempotent: does not restart it
    events = drive(tracker2, w, store2, T0 + minutes(31))
    assert [e.kind for e in events] == ["deleted"]
    after = store2.get_recheck("x", "100")
    # the schedule goes on (step 4, the 1 h look) but, the post being confirmed deleted, a week later
    assert after.step == 4 and after.due_at == T0 + minutes(31) + timedelta(days=7)


def test_post_first_seen_late_skips_past_steps(store):
    post = make_post()
    setup(store, post, first_seen=T0 + minutes(40))
    assert store.get_recheck("x", "100").due_at == T0 + timedelta(hours=1)


def test_post_older_than_horizon_is_not_scheduled(store):
    post = make_post()
    tracker = RecheckTracker(store, {"x": RecheckConfig()})
    assert tracker.schedule_new(post, T0 + timedelta(days=40)) is None
    assert store.count_rechecks() == 0


def test_batches_respect_lookup_batch_size(store):
    posts = [make_post(str(i)) for i in range(250)]
    tracker = setup(store, *posts)
    w = ScriptedWatcher({p.post_id: [alive(p)] for p in posts})
    r = tracker.run("x", w, T0 + minutes(2))
    assert [len(c) for c in w.calls] == [100, 100, 50]
    assert r.requests == 3 and r.checked == 250 and r.deferred == 0


def test_budget_short_favours_young_posts(store):
    old = [make_post(f"old{i}", created_at=T0 - timedelta(minutes=50 + i)) for i in range(3)]
    young = [make_post(f"young{i}", created_at=T0 - timedelta(minutes=1)) for i in range(3)]
    tracker = setup(store, *old, *young, first_seen=T0, budget_per_hour=2)
    w = ScriptedWatcher({p.post_id: [alive(p)] for p in old + young}, batch_size=2)
    now = T0 + timedelta(hours=1, minutes=30)
    assert len(store.due_rechecks("x", now)) == 6
    r = tracker.run("x", w, now)
    assert r.requests == 2 and r.checked == 4 and r.deferred == 2
    assert w.calls == [["young0", "young1"], ["young2", "old0"]]
    # the budget is spent for this hour: the two oldest wait
    assert tracker.run("x", w, now + minutes(1)).requests == 0
    assert {rc.post_id for rc in store.due_rechecks("x", now + minutes(1))} == {"old1", "old2"}
    r2 = tracker.run("x", w, now + timedelta(minutes=61))
    assert w.calls[2:] == [["young0", "young1"], ["young2", "old1"]] and r2.deferred == 1  # old2 waits again


def test_pending_confirmation_goes_first_when_budget_is_short(store):
    posts = [make_post("a", created_at=T0 - timedelta(hours=3)), make_post("b"), make_post("c")]
    tracker = setup(store, *posts, first_seen=T0, budget_per_hour=1)
    w = ScriptedWatcher({"a": [PostStatus.deleted()], "b": [alive(posts[1])], "c": [alive(posts[2])]}, batch_size=1)
    tracker.run("x", w, T0 + timedelta(hours=3, minutes=30))
    assert w.calls == [["b"]]  # young first (b and c posted at T0, b first by due order)
    rc = store.get_recheck("x", "a")
    store.schedule_recheck(replace(rc, deleted_streak=1, first_deleted_at=T0, last_status="deleted", due_at=T0))
    tracker.run("x", w, T0 + timedelta(days=2))
    assert w.calls[-1] == ["a"]
    assert [e.kind for e in store.list_events()] == ["deleted"]


def alive_watcher(posts, batch_size=1):
    return ScriptedWatcher({p.post_id: [alive(p)] for p in posts}, batch_size=batch_size)


def test_restarted_tracker_sees_the_last_hours_spend(open_store):
    early = [make_post(f"e{i}") for i in range(3)]
    late = [make_post(f"l{i}", created_at=T0 + minutes(10)) for i in range(3)]
    store = open_store()
    setup(store, *early, first_seen=T0, budget_per_hour=4)
    w = alive_watcher(early + late)
    r1 = RecheckTracker(store, {"x": RecheckConfig(budget_per_hour=4)}).run("x", w, T0 + minutes(2))
    assert r1.requests == 3 and r1.deferred == 0
    store.close()

    store2 = open_store()  # a restarted daemon
    tracker2 = setup(store2, *late, first_seen=T0 + minutes(10), budget_per_hour=4)
    now = T0 + minutes(12)
    due = len(store2.due_rechecks("x", now))
    assert due == 6  # the early posts' 5-minute step and the late posts' first one
    r2 = tracker2.run("x", w, now)
    assert r2.requests == 1 and r2.deferred == due - 1  # 3 of 4 were spent before the restart
    # an hour after the first run its spend no longer counts; the request at 12m still does
    assert tracker2.budget.available("x", 4, T0 + minutes(2 + 61)) == 3


def test_daily_budget_caps_rechecks_until_the_utc_day_ends(open_store):
    posts = [make_post(str(i)) for i in range(6)]
    store = open_store()
    tracker = setup(store, *posts, first_seen=T0, budget_per_hour=100, budget_per_day=4)
    w = alive_watcher(posts)
    r1 = tracker.run("x", w, T0 + minutes(2))
    assert r1.requests == 4 and r1.deferred == 2  # the day's 4 requests, though the hour allows 100
    later = T0 + timedelta(hours=3)  # the hourly window has passed, the day has not
    assert tracker.run("x", w, later).requests == 0
    assert tracker.budget.spent("x", later) == (0, 4)
    store.close()
    restarted = RecheckTracker(open_store(), {"x": RecheckConfig(budget_per_hour=100, budget_per_day=4)})
    assert restarted.run("x", w, later).requests == 0  # the day's spend is in the store
    midnight = T0.replace(hour=0, minute=0) + timedelta(days=1)
    assert restarted.run("x", w, midnight + minutes(1)).requests == 4  # a new UTC day


def test_confirmed_deleted_post_is_looked_up_only_every_deleted_every(store):
    tracker = setup(store, deleted_every="7d")
    w = ScriptedWatcher({"100": [PostStatus.deleted()]})
    events = drive(tracker, w, store, T0 + minutes(10))
    assert [e.kind for e in events] == ["deleted"]
    confirmed = events[0].detected_at
    assert next_due(store) >= confirmed + timedelta(days=7)  # not at the 15 min, 30 min, ... steps
    calls = len(w.calls)
    drive(tracker, w, store, T0 + timedelta(days=31))
    assert len(w.calls) - calls <= 4  # at most weekly until the 30-day horizon, instead of ~37 looks


def test_two_trackers_on_one_store_share_the_budget(open_store):
    posts = [make_post(str(i)) for i in range(8)]
    store_a, store_b = open_store(), open_store()  # two daemons on one database
    setup(store_a, *posts, first_seen=T0)
    cfg = {"x": RecheckConfig(budget_per_hour=5)}
    tracker_a, tracker_b = RecheckTracker(store_a, cfg), RecheckTracker(store_b, cfg)
    w = alive_watcher(posts)
    r_a = tracker_a.run("x", w, T0 + minutes(2), limit=3)
    assert r_a.requests == 3
    r_b = tracker_b.run("x", w, T0 + minutes(2) + timedelta(seconds=20))
    assert r_b.requests == 2 and r_b.deferred == 3  # only what the first one left
    assert tracker_a.run("x", w, T0 + minutes(3)).requests == 0


def test_unreadable_budget_defers_every_recheck_and_logs_once(store, monkeypatch, caplog):
    posts = [make_post(str(i)) for i in range(3)]
    tracker = setup(store, *posts, first_seen=T0, budget_per_hour=10)
    w = alive_watcher(posts)
    readable = store.budget_spent
    caplog.set_level(logging.INFO, logger="bot.deletions.tracker")

    def unreadable(name, since):
        raise StoreError("disk I/O error")

    monkeypatch.setattr(store, "budget_spent", unreadable)
    for n in range(3):
        r = tracker.run("x", w, T0 + minutes(2 + n))
        assert r.requests == 0 and r.deferred == 3  # treated as spent: never unbounded
    assert w.calls == []
    warnings = [m for m in caplog.messages if "cannot read the re-check budget" in m]
    assert len(warnings) == 1
    monkeypatch.setattr(store, "budget_spent", readable)  # the store is back: re-checks resume
    assert tracker.run("x", w, T0 + minutes(5)).requests == 3
    assert any("can read the re-check budget again" in m for m in caplog.messages)


def test_spend_the_store_did_not_take_still_counts_for_the_hour(store, monkeypatch):
    posts = [make_post(str(i)) for i in range(5)]
    tracker = setup(store, *posts, first_seen=T0, budget_per_hour=2)
    w = alive_watcher(posts)

    def full_disk(name, at, requests=1):
        raise StoreError("database or disk is full")

    monkeypatch.setattr(store, "spend_budget", full_disk)
    r1 = tracker.run("x", w, T0 + minutes(2))
    assert r1.requests == 2 and r1.checked == 2 and r1.errors == []  # the answers are applied
    assert store.budget_spent("recheck:x", T0) == 0
    assert tracker.run("x", w, T0 + minutes(3)).requests == 0  # not the same quota again
    assert tracker.run("x", w, T0 + minutes(2 + 60)).requests == 2  # the hour has passed


def test_alert_enqueued_per_event_with_payload(store):
    post = make_post()
    tracker = setup(store, post)
    store.put_media(MediaRecord("ab" * 32, 10, "image/jpeg", f"ab/ab/{'ab' * 32}.jpg", "https://pbs.example/m1.jpg"))
    store.link_post_media(PostMediaLink("x", "100", 0, "https://pbs.example/m1.jpg", "ab" * 32))
    w = ScriptedWatcher({"100": [alive(post), PostStatus.deleted()]})
    events = drive(tracker, w, store, T0 + minutes(6))
    ev = events[0]
    alert = store.get_alert(f"deleted:x:100:{ev.id}")
    assert alert is not None and alert.kind == "deleted"
    p = alert.payload
    assert set(p) == {"platform", "account", "post_id", "post_url", "posted_at", "text", "detected_at",
                      "lifetime_seconds", "details", "media"}
    assert p["lifetime_seconds"] == 120 and p["posted_at"] == "2026-03-01T12:00:00Z"
    assert p["detected_at"] == "2026-03-01T12:06:00Z"
    assert p["media"] == [{"sha256": "ab" * 32, "archive_path": f"ab/ab/{'ab' * 32}.jpg"}]
    assert store.enqueue_alert(alert) is False  # idempotent key


def test_deletion_alert_as_sent_reads_in_plain_words(store):
    """The chat message rendered from the alert the tracker queued (not a hand-built payload): the lifetime
    runs to the last sighting alive, and the desk sees what it needs, not the event's bookkeeping fields."""
    from bot.alerts.messages import render
    from bot.alerts.payloads import event_alert

    post = make_post()
    tracker = setup(store, post)
    w = ScriptedWatcher({"100": [alive(post), PostStatus.deleted()]})
    [ev] = drive(tracker, w, store, T0 + minutes(6))
    sent = store.get_alert(f"deleted:x:100:{ev.id}")
    assert sent.payload == event_alert(ev, store.get_post("x", "100")).payload  # the one builder
    title, body = render(sent)
    assert title == "Post deleted: x/MinistryOfInfo"
    assert "**Lifetime:** 2m" in body  # posted 12:00, last seen alive 12:02 (not 6m: detection is later)
    assert "**Last seen online:** 2026-03-01 12:02 UTC" in body
    assert "same answer 2 times in a row, from 2026-03-01 12:05 UTC to 2026-03-01 12:06 UTC" in body
    for internal in ("confirmed", "scope", "version", "first\\_answer", "raw\\_sha256", "answers:"):
        assert internal not in body.lower(), internal


def test_event_and_its_alert_are_one_store_write(store, monkeypatch):
    """The alert goes into record_event (one transaction), never through a separate enqueue_alert."""
    post = make_post()
    tracker = setup(store, post)

    def separate_enqueue(alert):
        raise AssertionError("the tracker must not enqueue event alerts separately")

    monkeypatch.setattr(store, "enqueue_alert", separate_enqueue)
    w = ScriptedWatcher({"100": [alive(post), PostStatus.deleted()]})
    report_alerts = []
    events = []
    while (when := next_due(store)) is not None and when <= T0 + minutes(6):
        report = tracker.run("x", w, when)
        events += report.events
        report_alerts.append(report.alerts)
    (ev,) = events
    assert sum(report_alerts) == 1
    assert [a.key for a in store.list_alerts("x", "100")] == [f"deleted:x:100:{ev.id}"]


def test_edit_found_by_a_poll_is_logged_too(store):
    post = make_post()
    tracker = setup(store, post)
    before = store.get_recheck("x", "100")
    edited = make_post(text="Corrected caption")
    [change] = store.record_poll(AccountPoll("x", post.account, [edited], None, at=T0 + minutes(3)))
    event = tracker.record_edit(change, T0 + minutes(3))
    assert event.kind == "edited" and event.details["before"]["text"] == post.text
    assert event.details["after"]["text"] == "Corrected caption"
    assert store.get_recheck("x", "100") == before  # schedule untouched
    assert store.get_alert(f"edited:x:100:{event.id}") is not None
    [same] = store.record_poll(AccountPoll("x", post.account, [edited], None, at=T0 + minutes(4)))
    assert tracker.record_edit(same, T0 + minutes(4)) is None


def test_alive_without_a_post_marks_seen_alive_and_never_records_an_edit(store):
    """An RSS item whose page still answers after it left the feed: alive, content unseen."""
    post = make_post()
    tracker = setup(store, post)
    w = ScriptedWatcher({"100": [PostStatus.alive(None), PostStatus.alive(None)]})
    assert tracker.run("x", w, T0 + minutes(2)).events == []
    assert tracker.run("x", w, T0 + minutes(5)).events == []
    stored = store.get_post("x", "100")
    assert stored.last_seen_alive == T0 + minutes(5)
    assert stored.version == 1 and store.list_events() == []


def test_lookup_gets_the_stored_author_of_each_post(store):
    """X cannot name the author of a tweet it refuses to show: the stored author id tells a suspended
    author from a deletion even after a restart."""
    post = replace(make_post(), author_id="783214")
    tracker = setup(store, post)
    w = ScriptedWatcher({"100": [alive(post)]})
    tracker.run("x", w, T0 + minutes(2))
    assert w.authors == {"100": "783214"}
