"""The outbox role (:class:`~bot.store.outbox.OutboxStore`) in SQLite: table ``outbox``."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from bot.models import iso
from bot.store.common import alert_post, dumps, loads, micros
from bot.store.outbox import OutboxStore
from bot.store.records import OutboxAlert
from bot.store.sqlite_common import SqliteRole


class SqliteOutboxMixin(SqliteRole, OutboxStore):
    """The alert outbox in the host store's database."""

    @staticmethod
    def _alert(seq: int, data: str) -> OutboxAlert:
        return OutboxAlert.from_dict({**loads(data), "seq": seq})

    @staticmethod
    def _insert_alert(conn: sqlite3.Connection, alert: OutboxAlert) -> bool:
        platform, post_id = alert_post(alert.payload) or (None, None)
        cur = conn.execute(
            "INSERT OR IGNORE INTO outbox (key, sent, parked, kind, platform, post_id, created_us, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                alert.key,
                1 if alert.sent_at else 0,
                1 if alert.parked and not alert.sent_at else 0,
                alert.kind,
                platform,
                post_id,
                micros(alert.created_at),
                dumps(alert.to_dict()),
            ),
        )
        return cur.rowcount > 0

    def enqueue_alert(self, alert: OutboxAlert) -> bool:
        with self._write() as conn:
            return self._insert_alert(conn, alert)

    def due_alerts(self, now: datetime, limit: int = 50) -> list[OutboxAlert]:
        rows = self._query("SELECT seq, data FROM outbox WHERE sent = 0 AND parked = 0 ORDER BY seq LIMIT ?", (limit,))
        return [self._alert(*r) for r in rows]

    def _update_alert(
        self, key: str, update: Callable[[dict[str, Any]], None], when: Callable[[dict[str, Any]], bool] | None = None
    ) -> bool:
        """Apply ``update`` to the alert's JSON (only if ``when`` holds for it) and keep the indexed ``sent`` and
        ``parked`` columns in step with it, in one transaction. True when the alert was updated."""
        with self._write() as conn:
            row = conn.execute("SELECT data FROM outbox WHERE key = ?", (key,)).fetchone()
            if row is None:
                return False
            data = loads(row[0])
            if when is not None and not when(data):
                return False
            update(data)
            if data.get("sent_at"):
                data["parked"] = False  # delivered after all: no longer waiting for an operator
            conn.execute(
                "UPDATE outbox SET data = ?, sent = ?, parked = ? WHERE key = ?",
                (dumps(data), 1 if data.get("sent_at") else 0, 1 if data.get("parked") else 0, key),
            )
            return True

    def mark_alert_sent(self, key: str, at: datetime) -> None:
        self._update_alert(key, lambda data: data.update(sent_at=iso(at)))

    def mark_alert_failed(self, key: str, error: str, next_attempt_at: datetime) -> None:
        def update(data: dict[str, Any]) -> None:
            data.update(
                attempts=int(data.get("attempts") or 0) + 1, last_error=error, next_attempt_at=iso(next_attempt_at)
            )

        self._update_alert(key, update)

    def get_alert(self, key: str) -> OutboxAlert | None:
        row = self._one("SELECT seq, data FROM outbox WHERE key = ?", (key,))
        return self._alert(*row) if row else None

    def outbox_size(self) -> int:
        return self._one("SELECT COUNT(*) FROM outbox WHERE sent = 0 AND parked = 0")[0]  # type: ignore[index]

    def park_alert(self, key: str, error: str) -> bool:
        def queued(data: dict[str, Any]) -> bool:
            return not data.get("sent_at") and not data.get("parked")

        return self._update_alert(key, lambda data: data.update(parked=True, last_error=error), queued)

    def parked_alerts(self) -> list[OutboxAlert]:
        rows = self._query("SELECT seq, data FROM outbox WHERE parked = 1 AND sent = 0 ORDER BY seq")
        return [self._alert(*r) for r in rows]

    def parked_count(self) -> int:
        return self._one("SELECT COUNT(*) FROM outbox WHERE parked = 1 AND sent = 0")[0]  # type: ignore[index]

    def unpark_alert(self, key: str) -> bool:
        def parked(data: dict[str, Any]) -> bool:
            return bool(data.get("parked")) and not data.get("sent_at")

        return self._update_alert(key, lambda data: data.update(parked=False, attempts=0, next_attempt_at=None), parked)

    def list_alerts(self, platform: str, post_id: str, kinds: Iterable[str] | None = None) -> list[OutboxAlert]:
        return self._alerts_where("platform = ? AND post_id = ?", [platform, str(post_id)], kinds)

    def alerts_between(
        self, since: datetime, until: datetime, kinds: Iterable[str] | None = None
    ) -> list[OutboxAlert]:
        return self._alerts_where("created_us >= ? AND created_us < ?", [micros(since), micros(until)], kinds)

    def _alerts_where(self, where: str, params: list[Any], kinds: Iterable[str] | None) -> list[OutboxAlert]:
        """Alerts matching an indexed condition, optionally of some kinds (none given: nothing), FIFO."""
        if kinds is not None:
            kind_list = [str(k) for k in kinds]
            if not kind_list:
                return []
            where += f" AND kind IN ({', '.join('?' * len(kind_list))})"
            params = [*params, *kind_list]
        rows = self._query(f"SELECT seq, data FROM outbox WHERE {where} ORDER BY seq", params)
        return [self._alert(*r) for r in rows]
