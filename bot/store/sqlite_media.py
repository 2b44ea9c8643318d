"""The media role (:class:`~bot.store.media.MediaStore`) in SQLite: tables ``media`` and ``post_media``."""

from __future__ import annotations

import sqlite3

from bot.store.common import dumps, loads
from bot.store.media import MediaStore
from bot.store.records import MediaRecord, PostMediaLink
from bot.store.sqlite_common import SqliteRole


class SqliteMediaMixin(SqliteRole, MediaStore):
    """Media records and post-media links in the host store's database."""

    def put_media(self, record: MediaRecord, link: PostMediaLink | None = None) -> MediaRecord:
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO media (sha256, data) VALUES (?, ?)", (record.sha256, dumps(record.to_dict()))
            )
            if record.signals:
                self._merge_signals(conn, record.sha256, record.signals)
            if link is not None:
                self._link(conn, link)
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
            self._link(conn, link)

    @staticmethod
    def _link(conn: sqlite3.Connection, link: PostMediaLink) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO post_media (platform, post_id, idx, data) VALUES (?, ?, ?, ?)",
            (link.platform, link.post_id, link.index, dumps(link.to_dict())),
        )

    def get_post_media(self, platform: str, post_id: str) -> list[PostMediaLink]:
        rows = self._query(
            "SELECT data FROM post_media WHERE platform = ? AND post_id = ? ORDER BY idx", (platform, post_id)
        )
        return [PostMediaLink.from_dict(loads(r[0])) for r in rows]
