"""Contract of the review roles (cases, dismissals, users): both backends pass exactly these tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bot.store.review import Case, CaseEvent, CaseNotFound, Dismissal, User
from bot.store.review import CaseQuery

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def make_case(post_id: str = "1", item: str = "trailer", tier: str = "match", account: str = "gov", **kw) -> Case:
    payload = {"platform": "x", "post_id": post_id, "known": {"id": "k1", "label": "<b>trailer</b>"}, "tier": tier}
    return Case(
        kind="match", tier=tier, platform="x", account=account, post_id=post_id, media_sha256="a" * 64,
        known_item=item, payload=payload, created_at=T0 + timedelta(seconds=int(post_id)),
        history=(CaseEvent(T0, "afterimage", "opened"),), **kw,
    )


def test_open_case_is_idempotent_by_key_and_round_trips(store) -> None:
    case, added = store.open_case(make_case())
    assert added and case.id
    again, added_again = store.open_case(make_case())  # a retried pipeline step
    assert not added_again and again.id == case.id
    loaded = store.get_case(case.id)
    assert loaded == case
    assert loaded.known["label"] == "<b>trailer</b>" and loaded.history[0].action == "opened"
    assert store.get_case("nope") is None
    other, added_other = store.open_case(make_case(item="stock-photo"))  # another known item: another case
    assert added_other and other.id != case.id
    assert store.count_cases() == 2 and store.count_cases("open") == 2


def test_list_cases_newest_first_with_filters_and_paging(store) -> None:
    ids = [store.open_case(make_case(post_id=str(i), tier="suggest" if i % 2 else "match"))[0].id for i in range(1, 6)]
    assert [c.id for c in store.list_cases()] == ids[::-1]
    assert [c.id for c in store.list_cases(CaseQuery(tier="suggest"))] == [ids[4], ids[2], ids[0]]
    assert [c.id for c in store.list_cases(CaseQuery(status="open", limit=2, offset=1))] == [ids[3], ids[2]]
    assert [c.id for c in store.list_cases(CaseQuery(platform="x", post_id="3"))] == [ids[2]]
    assert store.list_cases(CaseQuery(status="dismissed")) == []
    with pytest.raises(ValueError, match="status must be one of"):
        store.list_cases(CaseQuery(status="closed"))


def test_update_case_moves_status_and_keeps_the_one_dismissal_it_taught(store) -> None:
    case, _ = store.open_case(make_case())
    at = T0 + timedelta(minutes=5)
    dismissed = case.with_event(CaseEvent(at, "ana", "dismissed", "a stock photo, not the trailer", "account"),
                                status="dismissed", note="a stock photo, not the trailer", scope="account")
    dismissal = Dismissal(case.id, "trailer", "a" * 64, "f" * 64, "account", "x", "gov", "stock", "ana", at)
    assert store.update_case(dismissed, dismissal) == dismissed
    assert store.get_case(case.id).status == "dismissed"
    assert [c.id for c in store.list_cases(CaseQuery(status="dismissed"))] == [case.id]
    assert store.list_cases(CaseQuery(status="open")) == [] and store.count_cases("dismissed") == 1
    assert store.dismissals_for("trailer") == [dismissal]
    assert store.dismissals_for("other") == []
    reopened = dismissed.with_event(CaseEvent(at, "bo", "reopened"), status="open", scope=None)
    store.update_case(reopened, None)  # reopening lifts what the dismissal taught
    assert store.dismissals_for("trailer") == []
    loaded = store.get_case(case.id)
    assert [e.action for e in loaded.history] == ["opened", "dismissed", "reopened"]
    assert loaded.history[1].by == "ana" and loaded.history[1].scope == "account"
    with pytest.raises(CaseNotFound):
        store.update_case(make_case(id="missing"), None)


def test_cases_changed_since_reads_the_cases_opened_or_decided_from_a_time_on(store) -> None:
    """What the evidence job reads each run: only the cases that changed since, in the order they changed."""
    old, _ = store.open_case(make_case(post_id="1", updated_at=T0 + timedelta(seconds=1)))
    new, _ = store.open_case(make_case(post_id="2", updated_at=T0 + timedelta(seconds=2)))
    assert [c.id for c in store.cases_changed_since(None)] == [old.id, new.id]
    later = T0 + timedelta(minutes=10)
    assert [c.id for c in store.cases_changed_since(T0 + timedelta(seconds=2))] == [new.id]
    assert store.cases_changed_since(later) == []
    confirmed = old.with_event(CaseEvent(later, "ana", "confirmed", "same trailer"), status="confirmed", note="same trailer")
    store.update_case(confirmed, None)  # an old case decided now counts as changed now
    assert [c.id for c in store.cases_changed_since(later)] == [old.id]
    assert [c.id for c in store.cases_changed_since(None)] == [new.id, old.id]
    assert store.cases_changed_since(later)[0].history[-1].by == "ana"


def test_cases_survive_reopening_the_store(store_opener) -> None:
    first = store_opener()
    case, _ = first.open_case(make_case())
    first.close()
    assert store_opener().get_case(case.id) == case


def test_users_and_tokens(store) -> None:
    ana = User("ana", "reviewer", "$argon2id$hash", T0)
    store.put_user(ana)
    assert store.get_user("ana") == ana and store.get_user("bo") is None
    assert store.user_by_token("t1") is None
    with_token = User("ana", "reviewer", "$argon2id$hash", T0, token_hash="t1", token_created_at=T0)
    store.put_user(with_token)
    assert store.user_by_token("t1") == with_token
    store.put_user(User("ana", "admin", "$argon2id$hash", T0, token_hash="t2", token_created_at=T0))
    assert store.user_by_token("t1") is None  # a replaced token stops working at once
    assert store.user_by_token("t2").role == "admin"
    store.put_user(User("bo", "viewer", "$argon2id$x", T0))
    assert [u.name for u in store.list_users()] == ["ana", "bo"]
    assert store.remove_user("ana") and not store.remove_user("ana")
    assert store.user_by_token("t2") is None and [u.name for u in store.list_users()] == ["bo"]
