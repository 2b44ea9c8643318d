"""State store: one interface (:class:`StateStore`), an embedded SQLite backend and a Redis backend."""

from __future__ import annotations

from bot.errors import StoreError
from bot.store.base import StateStore
from bot.store.queue import LEASE_SECONDS, WorkQueue


def open_store(url: str) -> StateStore:
    """Open the store a URL names: ``sqlite:///path/to/state.db`` or ``redis[s]://...``."""
    if url.startswith("sqlite:///"):
        from bot.store.sqlite import SqliteStore

        return SqliteStore(url[len("sqlite:///") :])
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


__all__ = ["StateStore", "WorkQueue", "open_store", "open_work_queue"]
