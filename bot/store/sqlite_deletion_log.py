"""The deletion-log role (:class:`~bot.store.deletion_log.DeletionLogStore`) in SQLite: tables ``rechecks``
and ``events``."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from bot.store.common import dumps, loads, micros, status_for_event, with_id
from bot.store.deletion_log import DeletionLogStore, EventFilter
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

    def start_recheck(self, recheck: Recheck) -> Recheck:
        with self._write() as conn:
            row = conn.execute(
                "SELECT data FROM rechecks WHERE platform = ? AND post_id = ?", (recheck.platform, recheck.post_id)
            ).fetchone()
            if row is not None:
                return Recheck.from_dict(loads(row[0]))
            self._put_recheck(conn, recheck)
        return recheck

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
        event = with_id(event)
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

    def list_events(self, where: EventFilter = EventFilter()) -> list[PostEvent]:
        if where.none_wanted:
            return []
        clauses, params = equal_to(platform=where.platform, account=where.account)
        if where.since is not None:
            clauses.append("detected_us >= ?")
            params.append(micros(where.since))
        if where.until is not None:
            clauses.append("detected_us < ?")
            params.append(micros(where.until))
        if where.kinds is not None:
            clauses.append(f"kind IN ({', '.join('?' * len(where.kinds))})")
            params.extend(sorted(where.kinds))
        where = " AND ".join(clauses) or "1"
        rows = self._query(f"SELECT data FROM events WHERE {where} ORDER BY detected_us, seq", params)
        return [PostEvent.from_dict(loads(r[0])) for r in rows]
