"""Embedded SQLite backend (the default store).

One connection per store, guarded by a lock: the daemon's scheduler threads share it safely, and every
write runs in one ``BEGIN IMMEDIATE`` transaction. WAL mode lets CLI readers in other processes read while
the daemon writes; ``busy_timeout`` makes writers from other processes wait instead of failing.

Records are JSON columns next to indexed key columns. Times that are compared or ordered are stored as
integer microseconds (``*_us`` columns), times that are only shown as ISO strings inside the JSON.

The schema is versioned with ``PRAGMA user_version``: :data:`MIGRATIONS` is applied in order at open,
each step in its own transaction. A database newer than this code is refused with a :class:`StoreError`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.errors import StoreError
from bot.models import Post, RejectedItem, iso, parse_iso
from bot.redact import redact_url
from bot.store.base import StateStore
from bot.store.sqlite_review import REVIEW_MIGRATION, SqliteReviewMixin
from bot.store.common import (
    BUDGET_KEEP_MINUTES,
    account_from_dict,
    alert_post,
    budget_minute,
    check_account_fields,
    check_budget_spend,
    dumps,
    loads,
    micros,
    new_id,
    plan_versions,
    rejected_digest,
    rejected_from_dict,
    rejected_to_dict,
    resolve_at,
    status_for_event,
    stored_post,
    version_from_dict,
    version_to_dict,
)
from bot.store.records import (
    AccountState,
    KnownKind,
    KnownMedia,
    KnownState,
    MediaRecord,
    OutboxAlert,
    PostChange,
    PostEvent,
    PostMediaLink,
    PostVersion,
    Recheck,
    StoredPost,
)

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
    # 11: failures of work items (bot.store.sqlite_queue): counted per item, parked at the maximum
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


class SqliteStore(SqliteReviewMixin, StateStore):
    """State store in one SQLite file (WAL mode)."""

    def __init__(self, path: str):
        self.path = str(path)
        self.url = redact_url(f"sqlite:///{self.path}")
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
        try:
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    # ----------------------------------------------------------------- plumbing
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

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row | tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite store {self.path}: {exc}") from exc

    def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        rows = self._query(sql, params)
        return rows[0] if rows else None

    # ----------------------------------------------------------------- posts
    _POST_COLUMNS = "post, version, first_seen, last_seen_alive, processed_version, status"

    def _save_posts(self, conn: sqlite3.Connection, posts: Sequence[Post], at: datetime) -> list[PostChange]:
        def current(post: Post) -> tuple[int, str] | None:
            row = conn.execute(
                "SELECT version, fingerprint FROM posts WHERE platform = ? AND post_id = ?",
                (post.platform, post.post_id),
            ).fetchone()
            return (row[0], row[1]) if row else None

        at_iso = iso(at)
        changes = []
        for plan in plan_versions(posts, current, at):
            post, version = plan.change.post, plan.change.version
            if plan.new_version is not None:
                conn.execute(
                    "INSERT INTO post_versions (platform, post_id, version, data) VALUES (?, ?, ?, ?)",
                    (post.platform, post.post_id, version, dumps(version_to_dict(plan.new_version))),
                )
                conn.execute(
                    """INSERT INTO posts (platform, post_id, account, version, fingerprint, first_seen, first_seen_us,
                                          last_seen_alive, processed_version, status, post)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 'alive', ?)
                       ON CONFLICT (platform, post_id) DO UPDATE SET
                           account = excluded.account, version = excluded.version,
                           fingerprint = excluded.fingerprint, last_seen_alive = excluded.last_seen_alive,
                           post = excluded.post""",
                    (
                        post.platform,
                        post.post_id,
                        post.account,
                        version,
                        plan.fingerprint,
                        at_iso,
                        micros(at),
                        at_iso,
                        dumps(post.to_dict()),
                    ),
                )
            else:
                conn.execute(
                    "UPDATE posts SET last_seen_alive = ? WHERE platform = ? AND post_id = ?",
                    (at_iso, post.platform, post.post_id),
                )
            changes.append(plan.change)
        return changes

    def record_poll(
        self,
        platform: str,
        account: str,
        posts: Sequence[Post],
        cursor: str | None,
        rejected: Sequence[RejectedItem] = (),
        at: datetime | None = None,
    ) -> list[PostChange]:
        at = resolve_at(at)
        with self._write() as conn:
            changes = self._save_posts(conn, posts, at)
            if cursor is not None:
                conn.execute(
                    "INSERT INTO cursors (platform, account, cursor) VALUES (?, ?, ?) "
                    "ON CONFLICT (platform, account) DO UPDATE SET cursor = excluded.cursor",
                    (platform, account, cursor),
                )
            conn.executemany(
                "INSERT OR IGNORE INTO rejected (data, digest) VALUES (?, ?)",
                [(dumps(rejected_to_dict(item)), rejected_digest(item)) for item in rejected],
            )
        return changes

    def save_post_version(self, post: Post, at: datetime | None = None) -> PostChange:
        at = resolve_at(at)
        with self._write() as conn:
            return self._save_posts(conn, [post], at)[0]

    def get_post(self, platform: str, post_id: str) -> StoredPost | None:
        row = self._one(
            f"SELECT {self._POST_COLUMNS} FROM posts WHERE platform = ? AND post_id = ?", (platform, post_id)
        )
        return stored_post(*row) if row else None

    def get_versions(self, platform: str, post_id: str) -> list[PostVersion]:
        rows = self._query(
            "SELECT data FROM post_versions WHERE platform = ? AND post_id = ? ORDER BY version", (platform, post_id)
        )
        return [version_from_dict(loads(r[0])) for r in rows]

    @staticmethod
    def _post_filter(platform: str | None, account: str | None) -> tuple[str, list[Any]]:
        clauses, params = [], []
        if platform is not None:
            clauses.append("platform = ?")
            params.append(platform)
        if account is not None:
            clauses.append("account = ?")
            params.append(account)
        return (" AND ".join(clauses) or "1"), params

    def iter_posts(self, platform: str | None = None, account: str | None = None) -> Iterator[StoredPost]:
        where, params = self._post_filter(platform, account)
        last: tuple[int, str, str] = (-(2**62), "", "")
        while True:  # keyset pagination: memory stays bounded, no lock held between pages
            rows = self._query(
                f"SELECT {self._POST_COLUMNS}, first_seen_us, platform, post_id FROM posts "
                f"WHERE {where} AND (first_seen_us, platform, post_id) > (?, ?, ?) "
                "ORDER BY first_seen_us, platform, post_id LIMIT 500",
                [*params, *last],
            )
            for row in rows:
                yield stored_post(*row[:6])
            if len(rows) < 500:
                return
            last = tuple(rows[-1][6:9])  # type: ignore[assignment]

    def count_posts(self, platform: str | None = None, account: str | None = None) -> int:
        where, params = self._post_filter(platform, account)
        return self._one(f"SELECT COUNT(*) FROM posts WHERE {where}", params)[0]  # type: ignore[index]

    def mark_seen_alive(self, platform: str, post_id: str, at: datetime) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE posts SET last_seen_alive = ? WHERE platform = ? AND post_id = ?", (iso(at), platform, post_id)
            )

    def set_post_status(self, platform: str, post_id: str, status: str) -> None:
        with self._write() as conn:
            conn.execute("UPDATE posts SET status = ? WHERE platform = ? AND post_id = ?", (status, platform, post_id))

    def pending_posts(self, limit: int = 100) -> list[StoredPost]:
        rows = self._query(
            f"SELECT {self._POST_COLUMNS} FROM posts WHERE processed_version < version "
            "ORDER BY first_seen_us, platform, post_id LIMIT ?",
            (limit,),
        )
        return [stored_post(*r) for r in rows]

    def mark_processed(self, platform: str, post_id: str, version: int) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE posts SET processed_version = MAX(processed_version, ?) WHERE platform = ? AND post_id = ?",
                (version, platform, post_id),
            )

    def list_rejected(self, limit: int = 100) -> list[RejectedItem]:
        rows = self._query("SELECT data FROM rejected ORDER BY seq DESC LIMIT ?", (limit,))
        return [rejected_from_dict(loads(r[0])) for r in reversed(rows)]

    # ----------------------------------------------------------------- cursors
    def get_cursor(self, platform: str, account: str) -> str | None:
        row = self._one("SELECT cursor FROM cursors WHERE platform = ? AND account = ?", (platform, account))
        return row[0] if row else None

    # ----------------------------------------------------------------- media
    def put_media(self, record: MediaRecord) -> MediaRecord:
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO media (sha256, data) VALUES (?, ?)", (record.sha256, dumps(record.to_dict()))
            )
            if record.signals:
                self._merge_signals(conn, record.sha256, record.signals)
            row = conn.execute("SELECT data FROM media WHERE sha256 = ?", (record.sha256,)).fetchone()
        return MediaRecord.from_dict(loads(row[0]))

    @staticmethod
    def _merge_signals(conn: sqlite3.Connection, sha256: str, signals: dict[str, str]) -> None:
        row = conn.execute("SELECT data FROM media WHERE sha256 = ?", (sha256,)).fetchone()
        if row is None:
            return
        data = loads(row[0])
        data["signals"] = {**(data.get("signals") or {}), **signals}
        conn.execute("UPDATE media SET data = ? WHERE sha256 = ?", (dumps(data), sha256))

    def get_media(self, sha256: str) -> MediaRecord | None:
        row = self._one("SELECT data FROM media WHERE sha256 = ?", (sha256,))
        return MediaRecord.from_dict(loads(row[0])) if row else None

    def set_media_signals(self, sha256: str, signals: dict[str, str]) -> None:
        with self._write() as conn:
            self._merge_signals(conn, sha256, signals)

    def link_post_media(self, link: PostMediaLink) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO post_media (platform, post_id, idx, data) VALUES (?, ?, ?, ?)",
                (link.platform, link.post_id, link.index, dumps(link.to_dict())),
            )

    def get_post_media(self, platform: str, post_id: str) -> list[PostMediaLink]:
        rows = self._query(
            "SELECT data FROM post_media WHERE platform = ? AND post_id = ? ORDER BY idx", (platform, post_id)
        )
        return [PostMediaLink.from_dict(loads(r[0])) for r in rows]

    # ----------------------------------------------------------------- known media
    @staticmethod
    def _bump(conn: sqlite3.Connection, counter: str) -> None:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, '1') "
            "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
            (counter,),
        )

    def add_known_many(self, entries: Sequence[KnownMedia]) -> list[KnownMedia]:
        stored = [e if e.id else replace(e, id=new_id()) for e in entries]
        if not stored:
            return []
        with self._write() as conn:
            replaced = False
            for entry in stored:
                if conn.execute("SELECT 1 FROM known WHERE id = ?", (entry.id,)).fetchone():
                    replaced = True
                conn.execute(
                    "INSERT INTO known (id, kind, sha256, grp, data) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, sha256 = excluded.sha256, "
                    "grp = excluded.grp, data = excluded.data",
                    (entry.id, entry.kind.value, entry.sha256, entry.group, dumps(entry.to_dict())),
                )
            if replaced:
                self._bump(conn, "known_epoch")  # replaced in place: indexes must reload
            self._bump(conn, "known_generation")
        return stored

    def add_seen(self, entry: KnownMedia) -> tuple[KnownMedia, bool]:
        if not entry.sha256 or entry.kind != KnownKind.SEEN:
            raise ValueError("add_seen takes a seen entry with the file's sha256")
        stored = entry if entry.id else replace(entry, id=new_id())
        with self._write() as conn:  # BEGIN IMMEDIATE: a second writer waits for this check and insert
            row = conn.execute(
                "SELECT data FROM known WHERE sha256 = ? AND kind = ? ORDER BY seq LIMIT 1",
                (entry.sha256, KnownKind.SEEN.value),
            ).fetchone()
            if row is not None:
                return KnownMedia.from_dict(loads(row[0])), False
            conn.execute(
                "INSERT INTO known (id, kind, sha256, grp, data) VALUES (?, ?, ?, ?, ?)",
                (stored.id, KnownKind.SEEN.value, stored.sha256, stored.group, dumps(stored.to_dict())),
            )
            self._bump(conn, "known_generation")
        return stored, True

    def get_known(self, known_id: str) -> KnownMedia | None:
        row = self._one("SELECT data FROM known WHERE id = ?", (known_id,))
        return KnownMedia.from_dict(loads(row[0])) if row else None

    def find_known_by_sha256(self, sha256: str) -> list[KnownMedia]:
        rows = self._query("SELECT data FROM known WHERE sha256 = ? ORDER BY seq", (sha256,))
        return [KnownMedia.from_dict(loads(r[0])) for r in rows]

    def find_known_by_group(self, group: str, kind: KnownKind | None = None) -> list[KnownMedia]:
        where, params = ("AND kind = ?", [KnownKind(kind).value]) if kind is not None else ("", [])
        rows = self._query(f"SELECT data FROM known WHERE grp = ? {where} ORDER BY seq", [group, *params])
        return [KnownMedia.from_dict(loads(r[0])) for r in rows]

    def list_known(self, kind: KnownKind | None = None, limit: int | None = None, offset: int = 0) -> list[KnownMedia]:
        where, params = ("kind = ?", [KnownKind(kind).value]) if kind is not None else ("1", [])
        rows = self._query(
            f"SELECT data FROM known WHERE {where} ORDER BY seq LIMIT ? OFFSET ?",
            [*params, -1 if limit is None else limit, offset],
        )
        return [KnownMedia.from_dict(loads(r[0])) for r in rows]

    def iter_known(self, kind: KnownKind | None = None) -> Iterator[KnownMedia]:
        return (entry for _, entry in self._iter_known(kind, 0))

    def _iter_known(self, kind: KnownKind | None, after: int) -> Iterator[tuple[int, KnownMedia]]:
        """Entries with insertion number above ``after``, paged so a large store is never held twice."""
        where, params = ("kind = ?", [KnownKind(kind).value]) if kind is not None else ("1", [])
        last = after
        while True:
            rows = self._query(
                f"SELECT seq, data FROM known WHERE {where} AND seq > ? ORDER BY seq LIMIT 1000", [*params, last]
            )
            for row in rows:
                yield int(row[0]), KnownMedia.from_dict(loads(row[1]))
            if len(rows) < 1000:
                return
            last = rows[-1][0]

    def count_known(self, kind: KnownKind | None = None) -> int:
        where, params = ("kind = ?", [KnownKind(kind).value]) if kind is not None else ("1", [])
        return self._one(f"SELECT COUNT(*) FROM known WHERE {where}", params)[0]  # type: ignore[index]

    def remove_known(self, known_id: str) -> bool:
        with self._write() as conn:
            removed = conn.execute("DELETE FROM known WHERE id = ?", (known_id,)).rowcount > 0
            if removed:
                self._bump(conn, "known_generation")
                self._bump(conn, "known_epoch")
        return removed

    def remove_known_group(self, group: str, kind: KnownKind | None = None) -> int:
        where, params = ("AND kind = ?", [KnownKind(kind).value]) if kind is not None else ("", [])
        with self._write() as conn:
            removed = conn.execute(f"DELETE FROM known WHERE grp = ? {where}", [group, *params]).rowcount
            if removed:
                self._bump(conn, "known_generation")
                self._bump(conn, "known_epoch")
        return removed

    def known_state(self) -> KnownState:
        row = self._one(  # one statement: one consistent snapshot
            "SELECT (SELECT value FROM meta WHERE key = 'known_generation'), "
            "(SELECT value FROM meta WHERE key = 'known_epoch'), (SELECT COUNT(*) FROM known)"
        )
        assert row is not None
        return KnownState(int(row[0] or 0), int(row[1] or 0), int(row[2]))

    def iter_known_since(self, seq: int) -> Iterator[tuple[int, KnownMedia]]:
        return self._iter_known(None, seq)

    # ----------------------------------------------------------------- alert outbox
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

    # ----------------------------------------------------------------- re-checks
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

    # ----------------------------------------------------------------- deletion log
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
        clauses, params = [], []
        if since is not None:
            clauses.append("detected_us >= ?")
            params.append(micros(since))
        if until is not None:
            clauses.append("detected_us < ?")
            params.append(micros(until))
        if platform is not None:
            clauses.append("platform = ?")
            params.append(platform)
        if account is not None:
            clauses.append("account = ?")
            params.append(account)
        if kinds is not None:
            kind_list = [str(k) for k in kinds]
            if not kind_list:
                return []
            clauses.append(f"kind IN ({', '.join('?' * len(kind_list))})")
            params.extend(kind_list)
        where = " AND ".join(clauses) or "1"
        rows = self._query(f"SELECT data FROM events WHERE {where} ORDER BY detected_us, seq", params)
        return [PostEvent.from_dict(loads(r[0])) for r in rows]

    # ----------------------------------------------------------------- accounts
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

    # ----------------------------------------------------------------- request budgets
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

    # ----------------------------------------------------------------- locks
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

    # ----------------------------------------------------------------- lifecycle
    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        return f"SqliteStore({self.url!r})"
