"""The coordination role's contract (:class:`bot.store.coordination.CoordinationStore`): account states,
budgets, locks.

Every backend passes exactly these tests (see ``conftest.store_opener``)."""

from __future__ import annotations

import pytest
import threading
import time
from datetime import timedelta

from bot.store.records import AccountState
from tests.store.builders import assert_aware, at


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
