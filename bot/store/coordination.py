"""The coordination role of the store: what daemons sharing one store agree through it. Each account's poll
state (last error, pause), request budgets spent per minute (a platform's quota shared by every daemon, kept
across restarts) and named locks with an expiry.

Implemented by :mod:`bot.store.sqlite_coordination` and :mod:`bot.store.redis_coordination`; contract in
``tests/store/test_coordination_contract.py``. The work queue and the daemons' announcements are the separate
:class:`~bot.store.queue.WorkQueue`."""

from __future__ import annotations

from abc import abstractmethod
from datetime import datetime
from typing import Any, Protocol

from bot.store.records import AccountState


class CoordinationStore(Protocol):
    """Account poll states, request budgets and locks shared by the daemons of one store."""

    @abstractmethod
    def update_account_state(self, platform: str, account: str, **fields: Any) -> AccountState:
        """Merge the given AccountState fields into the stored state and return it."""

    @abstractmethod
    def get_account_states(self) -> list[AccountState]: ...

    @abstractmethod
    def get_account_state(self, platform: str, account: str) -> AccountState | None:
        """One account's state (None when never written), without reading every account's: a poll reads its
        own before each run, and with 1,000 accounts reading all of them per poll was a million reads a round."""

    @abstractmethod
    def spend_budget(self, name: str, at: datetime, requests: int = 1) -> None:
        """Add ``requests`` (a positive integer) to the spend of budget ``name`` in the minute of ``at``, as an
        atomic increment: two daemons spending at once both count. Storage stays bounded: minutes older than
        :data:`bot.store.common.BUDGET_KEEP_MINUTES` before ``at`` are dropped, and a budget nobody spends on
        any more goes within that time too (SQLite prunes every budget at each spend, Redis expires the key).

        Why in the store: a restarted daemon must still see the last hour's spend, and daemons sharing a
        store must share a platform's quota."""

    @abstractmethod
    def budget_spent(self, name: str, since: datetime) -> int:
        """Requests spent on budget ``name`` in the minute of ``since`` and after. Exact to the minute: spend
        from the first seconds of that minute still counts, so a sliding hour errs on the safe side (a spend
        counts for 60 to 61 minutes)."""

    @abstractmethod
    def acquire_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Take (or renew, when ``owner`` already holds it) a lock that expires after ``ttl_seconds``."""

    @abstractmethod
    def release_lock(self, name: str, owner: str) -> None:
        """Release the lock if ``owner`` holds it (someone else's lock is left alone)."""

    @abstractmethod
    def lock_owner(self, name: str) -> str | None:
        """Who holds the lock now (None when free or expired)."""
