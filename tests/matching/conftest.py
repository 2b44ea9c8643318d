from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.archive import Archive
from bot.store.sqlite import SqliteStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "state.db"))
    yield s
    s.close()


@pytest.fixture
def archive(tmp_path: Path) -> Archive:
    return Archive(tmp_path / "archive")
