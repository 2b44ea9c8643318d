"""State store: one interface (:class:`StateStore`), an embedded SQLite backend and a Redis backend."""

from __future__ import annotations

from bot.errors import StoreError
from bot.store.base import StateStore


def open_store(url: str) -> StateStore:
    """Open the store a URL names: ``sqlite:///path/to/state.db`` or ``redis[s]://...``."""
    if url.startswith("sqlite:///"):
        from bot.store.sqlite import SqliteStore

        return SqliteStore(url[len("sqlite:///") :])
    if url.startswith(("redis://", "rediss://", "unix://")):
        from bot.store.redis import RedisStore

        return RedisStore(url)
    raise StoreError("store URL must start with sqlite:///, redis:// or rediss://")


__all__ = ["StateStore", "open_store"]
