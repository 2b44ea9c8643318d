"""The one state-store interface. Two backends implement it (SQLite embedded default, Redis for production
and several daemons) and pass the same contract suite in ``tests/store/``.

Design rules every backend keeps:
- Writes that belong together happen in one transaction (SQLite) or one MULTI/EXEC or Lua script (Redis):
  ``record_poll`` (posts + cursor), ``record_event`` (event + recheck update + its alert), ``enqueue_alert``
  (alert + the per-post and creation-time alert indexes).
- Every method that adds something is idempotent, so a pipeline step retried after a crash is harmless.
- Times go in and come out as timezone-aware UTC datetimes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime
from typing import Any

from bot.store.posts import PostStore
from bot.store.media import MediaStore
from bot.store.known_media import KnownMediaStore
from bot.store.outbox import OutboxStore
from bot.store.deletion_log import DeletionLogStore
from bot.store.records import AccountState


class StateStore(DeletionLogStore, OutboxStore, KnownMediaStore, MediaStore, PostStore, ABC):
    """Everything afterimage remembers between runs, except the media bytes (those are in the archive)."""

    url: str  # the store URL with any password redacted, for status and logs

    # ----------------------------------------------------------------- posts

    # ----------------------------------------------------------------- cursors

    # ----------------------------------------------------------------- media

    # ----------------------------------------------------------------- known media

    # ----------------------------------------------------------------- alert outbox

    # ----------------------------------------------------------------- re-checks

    # ----------------------------------------------------------------- deletion log


    # ----------------------------------------------------------------- accounts
    @abstractmethod
    def update_account_state(self, platform: str, account: str, **fields: Any) -> AccountState:
        """Merge the given AccountState fields into the stored state and return it."""

    @abstractmethod
    def get_account_states(self) -> list[AccountState]: ...

    @abstractmethod
    def get_account_state(self, platform: str, account: str) -> AccountState | None:
        """One account's state (None when never written), without reading every account's: a poll reads its
        own before each run, and with 1,000 accounts reading all of them per poll was a million reads a round."""

    # ----------------------------------------------------------------- request budgets (several daemons)
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

    # ----------------------------------------------------------------- locks (several daemons)
    @abstractmethod
    def acquire_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Take (or renew, when ``owner`` already holds it) a lock that expires after ``ttl_seconds``."""

    @abstractmethod
    def release_lock(self, name: str, owner: str) -> None:
        """Release the lock if ``owner`` holds it (someone else's lock is left alone)."""

    @abstractmethod
    def lock_owner(self, name: str) -> str | None:
        """Who holds the lock now (None when free or expired)."""

    # ----------------------------------------------------------------- lifecycle
    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
