"""The work queue in the SQLite store: leased rows (table ``work_items``), for one machine's daemons.

An item is a row; a claim sets its ``consumer`` and ``lease_until_us`` in one write transaction (SQLite
serializes writers, so two workers never claim the same row); a row whose lease ran out is claimable again
(taken over, its ``deliveries`` counted: a claim given ``max_deliveries`` takes over one row at a time and
parks a row taken over that often instead, its holders having died with it); acknowledging deletes the row. Failures of an item are counted in
``work_failures`` (a row per item, ``parked`` once it reached the maximum; a parked item is not inserted
again by ``put``). Times are the wall clock, as for the store's locks.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from bot.store.queue import DIED_ERROR, LEASE_SECONDS, Backlog, Claim, DaemonInfo, FailedItem, WorkQueue, report_died
from bot.store.sqlite import SqliteStore


def _now_us() -> int:
    return int(time.time() * 1_000_000)


def _dt(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, timezone.utc)


class SqliteWorkQueue(WorkQueue):
    """Work queue in the SQLite store's database (shares its connection and lock)."""

    def __init__(self, store: SqliteStore, lease_seconds: float = LEASE_SECONDS):
        self.lease_seconds = lease_seconds
        self._store = store

    def put(self, topic: str, items: Sequence[str]) -> int:
        if not items:
            return 0
        now = _now_us()
        with self._store._write() as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO work_items (topic, item, enqueued_us) SELECT ?, ?, ? WHERE NOT EXISTS "
                "(SELECT 1 FROM work_failures WHERE topic = ? AND item = ? AND parked = 1)",
                [(topic, item, now, topic, item) for item in items],
            )
            return conn.total_changes - before

    def claim(self, topic: str, consumer: str, count: int = 1, max_deliveries: int | None = None) -> list[Claim]:
        now, lease = _now_us(), int(self.lease_seconds * 1_000_000)
        died: list[tuple[str, int, str]] = []
        with self._store._write() as conn:
            if max_deliveries:
                rows = self._take_over_one(conn, topic, now, max_deliveries, died)
                rows += conn.execute(
                    "SELECT seq, item, enqueued_us, deliveries FROM work_items "
                    "WHERE topic = ? AND lease_until_us = 0 AND consumer IS NULL ORDER BY seq LIMIT ?",  # never claimed
                    (topic, count - len(rows)),
                ).fetchall()
            else:  # taken-over claims (a consumer set, its lease run out) first, then never-claimed rows, oldest first
                rows = conn.execute(
                    "SELECT seq, item, enqueued_us, deliveries FROM work_items "
                    "WHERE topic = ? AND lease_until_us < ? ORDER BY consumer IS NULL, seq LIMIT ?",
                    (topic, now, count),
                ).fetchall()
            conn.executemany(
                "UPDATE work_items SET consumer = ?, lease_until_us = ?, lease_us = ?, deliveries = deliveries + 1 "
                "WHERE seq = ?",
                [(consumer, now + lease, lease, seq) for seq, *_ in rows],
            )
        for item, deaths, holder in died:
            report_died(topic, item, deaths, holder)
        return [Claim(topic, item, str(seq), _dt(enq), deliveries + 1) for seq, item, enq, deliveries in rows]

    @staticmethod
    def _take_over_one(
        conn: sqlite3.Connection, topic: str, now: int, limit: int, died: list[tuple[str, int, str]]
    ) -> list[Any]:
        """At most one row whose holder died, and none while another taken-over row is being worked on (so a
        death is blamed on that row alone); rows taken over ``limit`` times already are parked on the way
        (appended to ``died``)."""
        if conn.execute(
            "SELECT 1 FROM work_items WHERE topic = ? AND lease_until_us >= ? AND deliveries > 1 LIMIT 1", (topic, now)
        ).fetchone():
            return []
        while True:
            row = conn.execute(
                "SELECT seq, item, enqueued_us, deliveries, consumer FROM work_items "
                "WHERE topic = ? AND lease_until_us < ? AND consumer IS NOT NULL ORDER BY seq LIMIT 1",
                (topic, now),
            ).fetchone()
            if row is None:
                return []
            seq, item, _, deliveries, holder = row
            if deliveries < limit:
                return [row[:4]]
            conn.execute("DELETE FROM work_items WHERE seq = ?", (seq,))
            conn.execute(
                "INSERT INTO work_failures (topic, item, failures, error, failed_us, parked) VALUES (?, ?, ?, ?, ?, 1) "
                "ON CONFLICT (topic, item) DO UPDATE SET failures = excluded.failures, error = excluded.error, "
                "failed_us = excluded.failed_us, parked = 1",
                (topic, item, deliveries, DIED_ERROR % (deliveries, holder), now),
            )
            died.append((item, deliveries, holder))

    def extend(self, claim: Claim, consumer: str) -> bool:
        with self._store._write() as conn:
            cur = conn.execute(
                "UPDATE work_items SET lease_until_us = ? + lease_us WHERE seq = ? AND consumer = ?",
                (_now_us(), int(claim.token), consumer),
            )
            return cur.rowcount > 0

    def ack(self, claim: Claim) -> None:
        with self._store._write() as conn:
            conn.execute("DELETE FROM work_items WHERE seq = ?", (int(claim.token),))
            conn.execute("DELETE FROM work_failures WHERE topic = ? AND item = ? AND parked = 0", (claim.topic, claim.item))

    def fail(self, claim: Claim, error: str, max_attempts: int) -> bool:
        with self._store._write() as conn:
            conn.execute("DELETE FROM work_items WHERE seq = ?", (int(claim.token),))
            conn.execute(
                "INSERT INTO work_failures (topic, item, failures, error, failed_us) VALUES (?, ?, 1, ?, ?) "
                "ON CONFLICT (topic, item) DO UPDATE SET failures = failures + 1, error = excluded.error, "
                "failed_us = excluded.failed_us",
                (claim.topic, claim.item, error, _now_us()),
            )
            conn.execute(
                "UPDATE work_failures SET parked = 1 WHERE topic = ? AND item = ? AND failures >= ?",
                (claim.topic, claim.item, max_attempts),
            )
            (parked,) = conn.execute(
                "SELECT parked FROM work_failures WHERE topic = ? AND item = ?", (claim.topic, claim.item)
            ).fetchone()
            return bool(parked)

    def failed(self, topic: str) -> list[FailedItem]:
        rows = self._store._query(
            "SELECT item, failures, error, failed_us FROM work_failures WHERE topic = ? AND parked = 1 "
            "ORDER BY failed_us, item",
            (topic,),
        )
        return [FailedItem(topic, item, int(n), error, _dt(us)) for item, n, error, us in rows]

    def retry(self, topic: str, item: str) -> bool:
        with self._store._write() as conn:
            cur = conn.execute("DELETE FROM work_failures WHERE topic = ? AND item = ? AND parked = 1", (topic, item))
            if cur.rowcount == 0:
                return False
            conn.execute(
                "INSERT OR IGNORE INTO work_items (topic, item, enqueued_us) VALUES (?, ?, ?)", (topic, item, _now_us())
            )
            return True

    def expire_claims(self, topic: str, consumer: str) -> int:
        with self._store._write() as conn:
            cur = conn.execute(
                "UPDATE work_items SET lease_until_us = 0 WHERE topic = ? AND consumer = ?", (topic, consumer)
            )
            return cur.rowcount

    def prune_consumers(self, topic: str, idle_seconds: float) -> int:
        return 0  # a consumer here is only a name on the rows it claims: nothing is kept once they are done

    def backlog(self, topic: str) -> Backlog:
        now = _now_us()
        rows = self._store._query(
            "SELECT consumer, COUNT(*), MIN(enqueued_us) FROM work_items WHERE topic = ? AND lease_until_us >= ? "
            "GROUP BY consumer",
            (topic, now),
        )
        waiting, oldest = self._store._one(
            "SELECT COUNT(*), MIN(enqueued_us) FROM work_items WHERE topic = ? AND lease_until_us < ?", (topic, now)
        ) or (0, None)
        (failed,) = self._store._one(
            "SELECT COUNT(*) FROM work_failures WHERE topic = ? AND parked = 1", (topic,)
        ) or (0,)
        claims = {consumer: int(n) for consumer, n, _ in rows}
        firsts = [first for *_, first in rows] + ([oldest] if oldest is not None else [])
        return Backlog(
            waiting=int(waiting),
            in_progress=sum(claims.values()),
            oldest_enqueued_at=_dt(min(firsts)) if firsts else None,
            claims=claims,
            failed=int(failed),
        )

    def announce(self, name: str, info: dict[str, Any], ttl_seconds: float) -> None:
        now = _now_us()
        with self._store._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO daemons (name, info, seen_us, expires_us) VALUES (?, ?, ?, ?)",
                (name, json.dumps(info), now, now + int(ttl_seconds * 1_000_000)),
            )

    def daemons(self) -> list[DaemonInfo]:
        rows = self._store._query(
            "SELECT name, info, seen_us FROM daemons WHERE expires_us >= ? ORDER BY name", (_now_us(),)
        )
        return [DaemonInfo(name, json.loads(info), _dt(seen)) for name, info, seen in rows]

    def withdraw(self, name: str) -> None:
        with self._store._write() as conn:
            conn.execute("DELETE FROM daemons WHERE name = ? OR expires_us < ?", (name, _now_us()))
