"""The posts role (:class:`~bot.store.posts.PostStore`) in SQLite: tables ``posts``, ``post_versions``,
``cursors`` and ``rejected``."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from bot.models import Post, RejectedItem, iso
from bot.store.common import dumps, loads, micros, plan_versions, resolve_at
from bot.store.posts import AccountPoll, PostStore
from bot.store.records import PostChange, PostVersion, StoredPost
from bot.store.sqlite_common import SqliteRole, equal_to


class SqlitePostsMixin(SqliteRole, PostStore):
    """Posts, versions, cursors and rejected items in the host store's database."""

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
                    (post.platform, post.post_id, version, dumps(plan.new_version.to_dict())),
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

    def record_poll(self, poll: AccountPoll) -> list[PostChange]:
        with self._write() as conn:
            changes = self._save_posts(conn, poll.posts, resolve_at(poll.at))
            if poll.cursor is not None:
                conn.execute(
                    "INSERT INTO cursors (platform, account, cursor) VALUES (?, ?, ?) "
                    "ON CONFLICT (platform, account) DO UPDATE SET cursor = excluded.cursor",
                    (poll.platform, poll.account, poll.cursor),
                )
            conn.executemany(
                "INSERT OR IGNORE INTO rejected (data, digest) VALUES (?, ?)",
                [(dumps(item.to_dict()), item.digest()) for item in poll.rejected],
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
        return StoredPost.from_stored(*row) if row else None

    def get_versions(self, platform: str, post_id: str) -> list[PostVersion]:
        rows = self._query(
            "SELECT data FROM post_versions WHERE platform = ? AND post_id = ? ORDER BY version", (platform, post_id)
        )
        return [PostVersion.from_dict(loads(r[0])) for r in rows]

    @staticmethod
    def _post_filter(platform: str | None, account: str | None) -> tuple[str, list[Any]]:
        clauses, params = equal_to(platform=platform, account=account)
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
                yield StoredPost.from_stored(*row[:6])
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
        return [StoredPost.from_stored(*r) for r in rows]

    def mark_processed(self, platform: str, post_id: str, version: int) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE posts SET processed_version = MAX(processed_version, ?) WHERE platform = ? AND post_id = ?",
                (version, platform, post_id),
            )

    def list_rejected(self, limit: int = 100) -> list[RejectedItem]:
        rows = self._query("SELECT data FROM rejected ORDER BY seq DESC LIMIT ?", (limit,))
        return [RejectedItem.from_dict(loads(r[0])) for r in reversed(rows)]

    def get_cursor(self, platform: str, account: str) -> str | None:
        row = self._one("SELECT cursor FROM cursors WHERE platform = ? AND account = ?", (platform, account))
        return row[0] if row else None
