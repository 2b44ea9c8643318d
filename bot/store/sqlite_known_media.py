"""The known-media role (:class:`~bot.store.known_media.KnownMediaStore`) in SQLite: table ``known`` and
the ``known_generation``/``known_epoch`` counters in ``meta``."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence

from bot.store.common import dumps, loads, with_id
from bot.store.known_media import KnownMediaStore
from bot.store.records import KnownKind, KnownMedia, KnownState
from bot.store.sqlite_common import SqliteRole


class SqliteKnownMediaMixin(SqliteRole, KnownMediaStore):
    """Known-media entries in the host store's database."""

    @staticmethod
    def _bump(conn: sqlite3.Connection, counter: str) -> None:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, '1') "
            "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
            (counter,),
        )

    def add_known_many(self, entries: Sequence[KnownMedia]) -> list[KnownMedia]:
        stored = [with_id(e) for e in entries]
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
        stored = with_id(entry)
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
        row = self._one(_KNOWN_STATE)  # one statement: one consistent snapshot
        assert row is not None
        return KnownState(int(row[0] or 0), int(row[1] or 0), int(row[2]))

    def known_since(self, seq: int, limit: int) -> tuple[KnownState, list[tuple[int, KnownMedia]] | None]:
        """The state and the entries after ``seq`` in one read transaction: a matcher refreshes before every
        check, so the default's state, entries, state again would be three reads per post."""
        with self._snapshot() as conn:
            generation, epoch, count = conn.execute(_KNOWN_STATE).fetchone()
            rows = conn.execute("SELECT seq, data FROM known WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit + 1)).fetchall()
        state = KnownState(int(generation or 0), int(epoch or 0), int(count))
        if len(rows) > limit:
            return state, None
        return state, [(int(row[0]), KnownMedia.from_dict(loads(row[1]))) for row in rows]

    def iter_known_since(self, seq: int) -> Iterator[tuple[int, KnownMedia]]:
        return self._iter_known(None, seq)


#: the known-media generation, epoch and entry count, in one statement
_KNOWN_STATE = (
    "SELECT (SELECT value FROM meta WHERE key = 'known_generation'), "
    "(SELECT value FROM meta WHERE key = 'known_epoch'), (SELECT COUNT(*) FROM known)"
)
