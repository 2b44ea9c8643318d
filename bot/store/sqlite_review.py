"""The SQLite implementation of the review roles (:class:`~bot.store.review.CaseStore`,
:class:`~bot.store.review.UserStore`), mixed into :class:`~bot.store.sqlite.SqliteStore` so they share its
connection, lock and transactions. Tables ``cases``, ``dismissals`` and ``users`` (:data:`REVIEW_MIGRATION`);
the cases' change time (:data:`CASE_CHANGES_MIGRATION`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.store.common import dumps, loads, micros, with_id
from bot.store.sqlite_common import equal_to
from bot.store.review import Case, CaseNotFound, CaseQuery, CaseStore, Dismissal, User, UserStore

#: appended to :data:`bot.store.sqlite.MIGRATIONS`
REVIEW_MIGRATION = """
CREATE TABLE cases (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    key TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    tier TEXT NOT NULL,
    platform TEXT NOT NULL,
    post_id TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX cases_status ON cases (status, seq);
CREATE INDEX cases_post ON cases (platform, post_id, seq);
CREATE TABLE dismissals (
    case_id TEXT PRIMARY KEY,
    known_item TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX dismissals_item ON dismissals (known_item);
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    token_hash TEXT UNIQUE,
    data TEXT NOT NULL
);
"""

#: appended to :data:`bot.store.sqlite.MIGRATIONS`: when each case last changed, indexed, so the evidence job
#: reads only the cases decided since its last run. Existing rows get their opening time: the job's first run
#: reads every case anyway (it has chained none yet), so an older decision is not missed.
CASE_CHANGES_MIGRATION = """
ALTER TABLE cases ADD COLUMN updated_us INTEGER NOT NULL DEFAULT 0;
UPDATE cases SET updated_us = created_us;
CREATE INDEX cases_updated ON cases (updated_us, seq);
"""


class SqliteReviewMixin(CaseStore, UserStore):
    """Needs the host store's ``_write()`` transaction and ``_query()`` reader."""

    if TYPE_CHECKING:  # provided by SqliteStore

        def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...
        def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

    # ----------------------------------------------------------------- cases
    def open_case(self, case: Case) -> tuple[Case, bool]:
        case = with_id(case)
        with self._write() as conn:
            row = conn.execute("SELECT data FROM cases WHERE key = ?", (case.key,)).fetchone()
            if row:
                return Case.from_dict(loads(row[0])), False
            conn.execute(
                "INSERT INTO cases (id, key, status, tier, platform, post_id, created_us, updated_us, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (case.id, case.key, case.status, case.tier, case.platform, case.post_id, micros(case.created_at),
                 micros(case.changed_at), dumps(case.to_dict())),
            )
        return case, True

    def get_case(self, case_id: str) -> Case | None:
        rows = self._query("SELECT data FROM cases WHERE id = ?", (case_id,))
        return Case.from_dict(loads(rows[0][0])) if rows else None

    @staticmethod
    def _case_where(query: CaseQuery) -> tuple[str, list[Any]]:
        clauses, params = equal_to(**query.equal_to())
        return (" AND ".join(clauses) or "1"), params

    def list_cases(self, query: CaseQuery = CaseQuery()) -> list[Case]:
        where, params = self._case_where(query)
        rows = self._query(
            f"SELECT data FROM cases WHERE {where} ORDER BY seq DESC LIMIT ? OFFSET ?", [*params, query.limit, query.offset]
        )
        return [Case.from_dict(loads(r[0])) for r in rows]

    def count_cases(self, status: str | None = None) -> int:
        where, params = self._case_where(CaseQuery(status=status))
        return int(self._query(f"SELECT COUNT(*) FROM cases WHERE {where}", params)[0][0])

    def update_case(self, case: Case, dismissal: Dismissal | None) -> Case:
        with self._write() as conn:
            updated = conn.execute(
                "UPDATE cases SET status = ?, tier = ?, updated_us = ?, data = ? WHERE id = ?",
                (case.status, case.tier, micros(case.changed_at), dumps(case.to_dict()), case.id),
            ).rowcount
            if not updated:
                raise CaseNotFound(case.id)
            conn.execute("DELETE FROM dismissals WHERE case_id = ?", (case.id,))
            if dismissal is not None:
                conn.execute(
                    "INSERT INTO dismissals (case_id, known_item, data) VALUES (?, ?, ?)",
                    (case.id, dismissal.known_item, dumps(dismissal.to_dict())),
                )
        return case

    def dismissals_for(self, known_item: str) -> list[Dismissal]:
        rows = self._query("SELECT data FROM dismissals WHERE known_item = ? ORDER BY rowid", (known_item,))
        return [Dismissal.from_dict(loads(r[0])) for r in rows]

    def cases_changed_since(self, since: datetime | None) -> list[Case]:
        rows = self._query("SELECT data FROM cases WHERE updated_us >= ? ORDER BY updated_us, seq",
                           (micros(since) if since is not None else -(2**62),))
        return [Case.from_dict(loads(r[0])) for r in rows]

    # ----------------------------------------------------------------- users
    def put_user(self, user: User) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO users (name, token_hash, data) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "token_hash = excluded.token_hash, data = excluded.data",
                (user.name, user.token_hash, dumps(user.to_dict())),
            )

    def get_user(self, name: str) -> User | None:
        rows = self._query("SELECT data FROM users WHERE name = ?", (name,))
        return User.from_dict(loads(rows[0][0])) if rows else None

    def user_by_token(self, token_hash: str) -> User | None:
        rows = self._query("SELECT data FROM users WHERE token_hash = ?", (token_hash,))
        return User.from_dict(loads(rows[0][0])) if rows else None

    def list_users(self) -> list[User]:
        return [User.from_dict(loads(r[0])) for r in self._query("SELECT data FROM users ORDER BY name")]

    def remove_user(self, name: str) -> bool:
        with self._write() as conn:
            return conn.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount > 0


