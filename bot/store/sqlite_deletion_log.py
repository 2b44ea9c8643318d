"""The deletion-log role (:class:`~bot.store.deletion_log.DeletionLogStore`) in SQLite: tables ``rechecks``
and ``events``."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import datetime

from bot.store.common import dumps, loads, micros, new_id, status_for_event
from bot.store.deletion_log import DeletionLogStore
from bot.store.records import OutboxAlert, PostEvent, Recheck
from bot.store.sqlite_common import SqliteRole, equal_to


class SqliteDeletionLogMixin(SqliteRole, DeletionLogStore):
    """Re-checks and events in the host store's database."""

    @staticmethod
    def _put_recheck(conn: sqlite3.Connection, recheck: Recheck) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO rechecks (platform, post_id, due_us, data) VALUES (?, ?, ?, ?)",
            (recheck.platform, recheck.post_id, micros(recheck.due_at), dumps(recheck.to_dict())),
        )

    def schedule_recheck(self, recheck: Recheck) -> None:
        with self._write() as conn:
            self._put_recheck(conn, recheck)

    def get_recheck(self, platform: str, post_id: str) -> Recheck | None:
        row = self._one("SELECT data FROM rechecks WHERE platform = ? AND post_id = ?", (platform, post_id))
        return Recheck.from_dict(loads(row[0])) if row else None

    def due_rechecks(self, platform: str, now: datetime, limit: int = 1000) -> list[Recheck]:
        rows = self._query(
            "SELECT data FROM rechecks WHERE platform = ? AND due_us <= ? ORDER BY due_us, post_id LIMIT ?",
            (platform, micros(now), limit),
        )
        return [Recheck.from_dict(loads(r[0])) for r in rows]

    def count_rechecks(self, platform: str | None = None) -> int:
        if platform is None:
            return self._one("SELECT COUNT(*) FROM rechecks")[0]  # type: ignore[index]
        return self._one("SELECT COUNT(*) FROM rechecks WHERE platform = ?", (platform,))[0]  # type: ignore[index]

    def remove_recheck(self, platform: str, post_id: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM rechecks WHERE platform = ? AND post_id = ?", (platform, post_id))

    def record_event(
        self, event: PostEvent, next_recheck: Recheck | None, alert: OutboxAlert | None = None
    ) -> PostEvent:
        if not event.id:
            event = PostEvent.from_dict({**event.to_dict(), "id": new_id()})
        status = status_for_event(event.kind)
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO events (id, platform, account, post_id, kind, detected_us, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    event.id,
                    event.platform,
                    event.account,
                    event.post_id,
                    event.kind,
                    micros(event.detected_at),
                    dumps(event.to_dict()),
                ),
            )
            if status is not None:
                conn.execute(
                    "UPDATE posts SET status = ? WHERE platform = ? AND post_id = ?",
                    (status, event.platform, event.post_id),
                )
            if next_recheck is None:
                conn.execute(
                    "DELETE FROM rechecks WHERE platform = ? AND post_id = ?", (event.platform, event.post_id)
                )
            else:
                self._put_recheck(conn, next_recheck)
            if alert is not None:
                self._insert_alert(conn, alert)
        return event

    def list_events(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        platform: str | None = None,
        account: str | None = None,
        kinds: Iterable[str] | None = None,
    ) -> list[PostEvent]:
        clauses, params = equal_to(platform=platform, account=account)
        if since is not None:
            clauses.append("detected_us >= ?")
            params.append(micros(since))
        if until is not None:
            clauses.append("detected_us < ?")
            params.append(micros(until))
        if kinds is not None:
            kind_list = [str(k) for k in kinds]
            if not kind_list:
                return []
            clauses.append(f"kind IN ({', '.join('?' * len(kind_list))})")
            params.extend(kind_list)
        where = " AND ".join(clauses) or "1"
        rows = self._query(f"SELECT data FROM events WHERE {where} ORDER BY detected_us, seq", params)
        return [PostEvent.from_dict(loads(r[0])) for r in rows]
