"""The coordination role (:class:`~bot.store.coordination.CoordinationStore`) in SQLite: tables
``accounts``, ``budget_spend`` and ``locks``."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from bot.store.common import (
    BUDGET_KEEP_MINUTES,
    account_from_dict,
    budget_minute,
    check_account_fields,
    check_budget_spend,
    dumps,
    loads,
)
from bot.store.coordination import CoordinationStore
from bot.store.records import AccountState
from bot.store.sqlite_common import SqliteRole


class SqliteCoordinationMixin(SqliteRole, CoordinationStore):
    """Account states, budgets and locks in the host store's database."""

    def update_account_state(self, platform: str, account: str, **fields: Any) -> AccountState:
        values = check_account_fields(fields)
        with self._write() as conn:
            row = conn.execute(
                "SELECT data FROM accounts WHERE platform = ? AND account = ?", (platform, account)
            ).fetchone()
            data = {**(loads(row[0]) if row else {}), **values}
            conn.execute(
                "INSERT OR REPLACE INTO accounts (platform, account, data) VALUES (?, ?, ?)",
                (platform, account, dumps(data)),
            )
        return account_from_dict(platform, account, data)

    def get_account_state(self, platform: str, account: str) -> AccountState | None:
        row = self._one("SELECT data FROM accounts WHERE platform = ? AND account = ?", (platform, account))
        return account_from_dict(platform, account, loads(row[0])) if row else None

    def get_account_states(self) -> list[AccountState]:
        rows = self._query("SELECT platform, account, data FROM accounts ORDER BY platform, account")
        return [account_from_dict(r[0], r[1], loads(r[2])) for r in rows]

    def spend_budget(self, name: str, at: datetime, requests: int = 1) -> None:
        check_budget_spend(requests)
        minute = budget_minute(at)
        with self._write() as conn:
            conn.execute(
                "INSERT INTO budget_spend (name, minute, requests) VALUES (?, ?, ?) "
                "ON CONFLICT (name, minute) DO UPDATE SET requests = requests + excluded.requests",
                (name, minute, requests),
            )
            conn.execute("DELETE FROM budget_spend WHERE minute < ?", (minute - BUDGET_KEEP_MINUTES,))

    def budget_spent(self, name: str, since: datetime) -> int:
        row = self._one(
            "SELECT COALESCE(SUM(requests), 0) FROM budget_spend WHERE name = ? AND minute >= ?",
            (name, budget_minute(since)),
        )
        return int(row[0])  # type: ignore[index]

    def acquire_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        now = time.time()
        with self._write() as conn:
            row = conn.execute("SELECT owner, expires_at FROM locks WHERE name = ?", (name,)).fetchone()
            if row is not None and row[0] != owner and row[1] > now:
                return False
            conn.execute(
                "INSERT OR REPLACE INTO locks (name, owner, expires_at) VALUES (?, ?, ?)",
                (name, owner, now + ttl_seconds),
            )
            return True

    def release_lock(self, name: str, owner: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM locks WHERE name = ? AND owner = ?", (name, owner))

    def lock_owner(self, name: str) -> str | None:
        row = self._one("SELECT owner, expires_at FROM locks WHERE name = ?", (name,))
        return row[0] if row is not None and row[1] > time.time() else None
