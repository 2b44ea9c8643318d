"""What the SQLite role modules (``bot.store.sqlite_*``) share: they are mixed into
:class:`~bot.store.sqlite.SqliteStore` and use its one connection, lock and transactions, declared here so
each role module type-checks on its own."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.store.records import OutboxAlert


def equal_to(**values: Any) -> tuple[list[str], list[Any]]:
    """``column = ?`` conditions for the given column values that are not None, and their parameters."""
    given = {column: value for column, value in values.items() if value is not None}
    return [f"{column} = ?" for column in given], list(given.values())


class SqliteRole:
    """Base of the SQLite role mixins: ``_write()`` is one write transaction, ``_query``/``_one`` read."""

    if TYPE_CHECKING:  # provided by SqliteStore
        path: str

        def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...
        def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...
        def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None: ...

        # of the outbox role, for the deletion log (an event and its alert in one transaction)
        @staticmethod
        def _insert_alert(conn: sqlite3.Connection, alert: OutboxAlert) -> bool: ...
