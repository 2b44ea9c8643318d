"""Embedded SQLite backend (the default store).

One connection per store, guarded by a lock: the daemon's scheduler threads share it safely, and every
write runs in one ``BEGIN IMMEDIATE`` transaction. WAL mode lets CLI readers in other processes read while
the daemon writes; ``busy_timeout`` makes writers from other processes wait instead of failing.

Records are JSON columns next to indexed key columns. Times that are compared or ordered are stored as
integer microseconds (``*_us`` columns), times that are only shown as ISO strings inside the JSON.

The schema is versioned with ``PRAGMA user_version``: :data:`MIGRATIONS` is applied in order at open,
each step in its own transaction. A database newer than this code is refused with a :class:`StoreError`.

This module holds the connection, the transactions and the schema; each store role is implemented in its own
module (``bot.store.sqlite_posts``, ``sqlite_media``, ``sqlite_known_media``, ``sqlite_outbox``,
``sqlite_deletion_log``, ``sqlite_coordination``, ``sqlite_review``) mixed into :class:`SqliteStore`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bot.errors import StoreError
from bot.models import parse_iso
from bot.redact import redact_url
from bot.store.base import StateStore
from bot.store.sqlite_posts import SqlitePostsMixin
from bot.store.sqlite_media import SqliteMediaMixin
from bot.store.sqlite_known_media import SqliteKnownMediaMixin
from bot.store.sqlite_outbox import SqliteOutboxMixin
from bot.store.sqlite_deletion_log import SqliteDeletionLogMixin
from bot.store.sqlite_coordination import SqliteCoordinationMixin
from bot.store.sqlite_review import CASE_CHANGES_MIGRATION, REVIEW_MIGRATION, SqliteReviewMixin
from bot.store.common import micros

BUSY_TIMEOUT_MS = 10_000

#: Schema migrations, applied in order; ``PRAGMA user_version`` is the number applied so far.
#: Never edit a released step: append a new one.
MIGRATIONS: list[str] = [
    # 1: posts, versions, cursors, rejected items, media, known media, outbox, re-checks, events, accounts
    """
    CREATE TABLE posts (
        platform TEXT NOT NULL,
        post_id TEXT NOT NULL,
        account TEXT NOT NULL,
        version INTEGER NOT NULL,
        fingerprint TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        first_seen_us INTEGER NOT NULL,
        last_seen_alive TEXT NOT NULL,
        processed_version INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL DEFAULT 'alive',
        post TEXT NOT NULL,
        PRIMARY KEY (platform, post_id)
    );
    CREATE INDEX posts_account ON posts (platform, account);
    CREATE INDEX posts_first_seen ON posts (first_seen_us, platform, post_id);
    CREATE TABLE post_versions (
        platform TEXT NOT NULL,
        post_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (platform, post_id, version)
    );
    CREATE TABLE cursors (
        platform TEXT NOT NULL,
        account TEXT NOT NULL,
        cursor TEXT,
        PRIMARY KEY (platform, account)
    );
    CREATE TABLE rejected (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        data TEXT NOT NULL
    );
    CREATE TABLE media (
        sha256 TEXT PRIMARY KEY,
        data TEXT NOT NULL
    );
    CREATE TABLE post_media (
        platform TEXT NOT NULL,
        post_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (platform, post_id, idx)
    );
    CREATE TABLE known (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        sha256 TEXT,
        data TEXT NOT NULL
    );
    CREATE INDEX known_kind ON known (kind, seq);
    CREATE INDEX known_sha256 ON known (sha256);
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL UNIQUE,
        sent INTEGER NOT NULL DEFAULT 0,
        data TEXT NOT NULL
    );
    CREATE INDEX outbox_unsent ON outbox (sent, seq);
    CREATE TABLE rechecks (
        platform TEXT NOT NULL,
        post_id TEXT NOT NULL,
        due_us INTEGER NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (platform, post_id)
    );
    CREATE INDEX rechecks_due ON rechecks (platform, due_us, post_id);
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        platform TEXT NOT NULL,
        account TEXT NOT NULL,
        post_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        detected_us INTEGER NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX events_detected ON events (detected_us, seq);
    CREATE TABLE accounts (
        platform TEXT NOT NULL,
        account TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (platform, account)
    );
    """,
    # 2: locks shared by several daemons on one database; index to list a post's events
    """
    CREATE TABLE locks (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE INDEX events_post ON events (platform, post_id, seq);
    """,
    # 3: list a post's alerts (list_alerts): kind and the payload's platform/post_id as indexed columns,
    # backfilled from the JSON of existing rows with the rule of bot.store.common.alert_post
    """
    ALTER TABLE outbox ADD COLUMN kind TEXT;
    ALTER TABLE outbox ADD COLUMN platform TEXT;
    ALTER TABLE outbox ADD COLUMN post_id TEXT;
    UPDATE outbox SET
        kind = json_extract(data, '$.kind'),
        platform = CASE WHEN json_type(data, '$.payload.platform') = 'text'
                             AND json_type(data, '$.payload.post_id') IN ('text', 'integer')
                        THEN json_extract(data, '$.payload.platform') END,
        post_id = CASE WHEN json_type(data, '$.payload.platform') = 'text'
                            AND json_type(data, '$.payload.post_id') IN ('text', 'integer')
                       THEN CAST(json_extract(data, '$.payload.post_id') AS TEXT) END;
    CREATE INDEX outbox_post ON outbox (platform, post_id, seq);
    """,
    # 4: list alerts by creation time (alerts_between): created_at as indexed integer microseconds, backfilled
    # from the JSON of existing rows with bot.store.common.micros (the SQL function afterimage_micros)
    """
    ALTER TABLE outbox ADD COLUMN created_us INTEGER;
    UPDATE outbox SET created_us = afterimage_micros(json_extract(data, '$.created_at'));
    CREATE INDEX outbox_created ON outbox (created_us, seq);
    """,
    # 5: a rejected item is stored once (a malformed item served again at every poll is the same evidence)
    """
    ALTER TABLE rejected ADD COLUMN digest TEXT;
    CREATE UNIQUE INDEX rejected_digest ON rejected (digest);
    """,
    # 6: parked alerts (a target refused them): kept, out of the delivery queue; no row was parked before
    """
    ALTER TABLE outbox ADD COLUMN parked INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX outbox_parked ON outbox (parked, seq);
    """,
    # 7: request budgets shared by every daemon on the database (spend_budget): requests per budget and
    # minute (whole minutes since the epoch), pruned as they age out
    """
    CREATE TABLE budget_spend (
        name TEXT NOT NULL,
        minute INTEGER NOT NULL,
        requests INTEGER NOT NULL,
        PRIMARY KEY (name, minute)
    ) WITHOUT ROWID;
    """,
    # 8: the entries of one known-media item (a video's keyframes share ``group``): an indexed column,
    # backfilled from the JSON of existing rows, so an item is listed and removed without a scan
    """
    ALTER TABLE known ADD COLUMN grp TEXT;
    UPDATE known SET grp = json_extract(data, '$.group');
    CREATE INDEX known_group ON known (grp, seq);
    """,
    # 9: the review loop: cases, the dismissals they teach, console users (bot.store.sqlite_review)
    REVIEW_MIGRATION,
    # 10: the work queue (bot.store.sqlite_queue): items claimed one at a time under a lease, and the daemons'
    # announcements (workers per daemon, for status)
    """
    CREATE TABLE work_items (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        topic TEXT NOT NULL,
        item TEXT NOT NULL,
        enqueued_us INTEGER NOT NULL,
        consumer TEXT,
        lease_until_us INTEGER NOT NULL DEFAULT 0,
        lease_us INTEGER NOT NULL DEFAULT 0,
        deliveries INTEGER NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX work_items_item ON work_items (topic, item);
    CREATE INDEX work_items_lease ON work_items (topic, lease_until_us, seq);
    CREATE TABLE daemons (
        name TEXT PRIMARY KEY,
        info TEXT NOT NULL,
        seen_us INTEGER NOT NULL,
        expires_us INTEGER NOT NULL
    );
    """,
    # 11: when each case last changed, for the evidence job's incremental read (bot.store.sqlite_review)
    CASE_CHANGES_MIGRATION,
    # 12: failures of work items (bot.store.sqlite_queue): counted per item, parked at the maximum
    """
    CREATE TABLE work_failures (
        topic TEXT NOT NULL,
        item TEXT NOT NULL,
        failures INTEGER NOT NULL,
        error TEXT NOT NULL,
        failed_us INTEGER NOT NULL,
        parked INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (topic, item)
    );
    CREATE INDEX work_failures_parked ON work_failures (topic, parked, failed_us);
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


def _split_statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _iso_micros(value: Any) -> int | None:
    """SQL function ``afterimage_micros(iso_text)``: :func:`micros` of a stored ISO time, NULL when the value
    is not one (so migrations convert stored times exactly as the Python code does)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = parse_iso(value)
    except ValueError:
        return None
    return micros(parsed) if parsed is not None else None


class SqliteStore(
    SqlitePostsMixin,
    SqliteMediaMixin,
    SqliteKnownMediaMixin,
    SqliteOutboxMixin,
    SqliteDeletionLogMixin,
    SqliteCoordinationMixin,
    SqliteReviewMixin,
    StateStore,
):
    """State store in one SQLite file (WAL mode)."""

    def __init__(self, path: str):
        self.path = str(path)
        self.url = redact_url(f"sqlite:///{self.path}")
        self._connect()
        try:
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    # ----------------------------------------------------------------- plumbing
    def _connect(self) -> None:
        self._lock = threading.RLock()
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._enable_wal()
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._conn.create_function("afterimage_micros", 1, _iso_micros, deterministic=True)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open SQLite store {self.path}: {exc}") from exc

    def after_fork(self) -> None:
        """A connection must not be used on both sides of a fork (SQLite's rule): open one of our own. The
        inherited one is kept, never used nor closed (closing it could disturb the parent's file state)."""
        self._inherited = self._conn
        self._connect()

    def _enable_wal(self) -> None:
        """Switch to WAL. While another process converts the same new file, SQLite answers "locked" at once
        instead of waiting (the busy handler is not used for this step): retry within the busy timeout."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _migrate(self) -> None:
        """Apply the missing migrations, one transaction each. The version is read again inside each write
        transaction, so two processes opening a new database at once do not both apply a step."""
        while True:
            with self._lock:
                try:
                    self._conn.execute("BEGIN IMMEDIATE")
                    try:
                        current = self._conn.execute("PRAGMA user_version").fetchone()[0]
                        if current > SCHEMA_VERSION:
                            raise StoreError(
                                f"{self.path} has schema version {current}, newer than this afterimage knows "
                                f"({SCHEMA_VERSION}): upgrade afterimage or use another store"
                            )
                        if current < SCHEMA_VERSION:
                            for statement in _split_statements(MIGRATIONS[current]):
                                self._conn.execute(statement)
                            self._conn.execute(f"PRAGMA user_version = {current + 1}")
                        self._conn.execute("COMMIT")
                    except BaseException:
                        if self._conn.in_transaction:
                            self._conn.execute("ROLLBACK")
                        raise
                except sqlite3.Error as exc:
                    raise StoreError(f"{self.path}: cannot open or migrate the schema: {exc}") from exc
            if current >= SCHEMA_VERSION:
                return

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (taken immediately, so concurrent writers queue on busy_timeout)."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                    self._conn.execute("COMMIT")
                except BaseException:
                    if self._conn.in_transaction:  # SQLite may already have rolled back (disk full, ...)
                        self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite store {self.path}: {exc}") from exc

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: its statements see the same committed state (WAL keeps it for the reader while
        writers go on), where separate statements could each see another writer's commit."""
        with self._lock:
            try:
                self._conn.execute("BEGIN")
                try:
                    yield self._conn
                finally:
                    if self._conn.in_transaction:
                        self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite store {self.path}: {exc}") from exc

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row | tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite store {self.path}: {exc}") from exc

    def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        rows = self._query(sql, params)
        return rows[0] if rows else None

    # ----------------------------------------------------------------- lifecycle
    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        return f"SqliteStore({self.url!r})"
