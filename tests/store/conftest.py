"""Store fixtures: every contract test runs once per backend (``sqlite`` in tmp_path, ``redis`` on the test
server under a fresh key prefix, deleted afterwards)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from bot.store.base import StateStore

Opener = Callable[[], StateStore]


def _delete_prefix(url: str) -> None:
    import redis

    parts = urlsplit(url)
    prefix = parse_qs(parts.query)["prefix"][0]
    client = redis.Redis.from_url(url.split("?", 1)[0])
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store_opener(request: pytest.FixtureRequest, tmp_path) -> Iterator[Opener]:
    """A function opening (again) the same store: a second call sees what the first one wrote."""
    if request.param == "sqlite":
        from bot.store.sqlite import SqliteStore

        path = tmp_path / "nested" / "state.db"  # parent folder does not exist yet

        def make() -> StateStore:
            return SqliteStore(str(path))

        url = None
    else:
        url = request.getfixturevalue("redis_url")  # skips (or fails under CI) without a test server
        from bot.store.redis import RedisStore

        def make() -> StateStore:
            return RedisStore(url)

    opened: list[StateStore] = []

    def opener() -> StateStore:
        store = make()
        opened.append(store)
        return store

    yield opener
    for store in opened:
        try:
            store.close()
        except Exception:
            pass
    if url is not None:
        _delete_prefix(url)


@pytest.fixture
def store(store_opener: Opener) -> StateStore:
    return store_opener()
