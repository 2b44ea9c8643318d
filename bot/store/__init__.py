"""State store: one interface (:class:`StateStore`), an embedded SQLite backend and a Redis backend."""

from __future__ import annotations

from pathlib import Path

from bot.errors import StoreError
from bot.store.base import StateStore
from bot.store.queue import LEASE_SECONDS, WorkQueue


class NoStoreHere(StoreError):
    """A command that only reads found no store where the configuration points (nothing was created)."""


def open_store(url: str, *, create: bool = True) -> StateStore:
    """Open the store a URL names: ``sqlite:///path/to/state.db`` or ``redis[s]://...``.

    ``create=False`` is for commands that only read: a SQLite file that does not exist raises
    :class:`NoStoreHere` naming where it was looked for, instead of creating an empty store (and its folder)
    and reporting zeros from it."""
    if url.startswith("sqlite:///"):
        from bot.store.sqlite import SqliteStore

        path = url[len("sqlite:///") :]
        if not create and path != ":memory:" and not Path(path).is_file():
            raise NoStoreHere(
                f"no afterimage data at {Path(path).resolve().parent} (looked for {Path(path).resolve()}; nothing was created). The data "
                "folder is data_dir in the config (-c FILE), else $AFTERIMAGE_DATA, else ./afterimage-data"
            )
        return SqliteStore(path)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from bot.store.redis import RedisStore

        return RedisStore(url)
    raise StoreError("store URL must start with sqlite:///, redis:// or rediss://")


def open_work_queue(store: StateStore, lease_seconds: float = LEASE_SECONDS) -> WorkQueue:
    """The work queue living in ``store`` (Redis Streams on a Redis store, leased rows in SQLite), whose
    claims are taken over ``lease_seconds`` after their holder last extended them."""
    from bot.store.redis import RedisStore
    from bot.store.sqlite import SqliteStore

    if isinstance(store, RedisStore):
        from bot.store.redis_queue import RedisWorkQueue

        return RedisWorkQueue(store, lease_seconds)
    if isinstance(store, SqliteStore):
        from bot.store.sqlite_queue import SqliteWorkQueue

        return SqliteWorkQueue(store, lease_seconds)
    raise StoreError(f"no work queue for {type(store).__name__}")


__all__ = ["NoStoreHere", "StateStore", "WorkQueue", "open_store", "open_work_queue"]
