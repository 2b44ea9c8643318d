"""Store fixtures: every contract test runs once per backend (``sqlite`` in tmp_path, ``redis`` on the test
server under a fresh key prefix, deleted afterwards)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from bot.store.base import StateStore

Opener = Callable[[], StateStore]


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store_opener(request: pytest.FixtureRequest, tmp_path) -> Iterator[Opener]:
    """A function opening (again) the same store: a second call sees what the first one wrote."""
    if request.param == "sqlite":
        from bot.store.sqlite import SqliteStore

        path = tmp_path / "nested" / "state.db"  # parent folder does not exist yet

        def make() -> StateStore:
            return SqliteStore(str(path))

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


@pytest.fixture
def store(store_opener: Opener) -> StateStore:
    return store_opener()
