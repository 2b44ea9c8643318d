"""Store fixtures shared by the deletion-tracker and export tests (imported by both conftests)."""

from __future__ import annotations

import pytest
from scripted import open_store_factory


@pytest.fixture
def open_store(tmp_path):
    """Opens stores on one database in ``tmp_path`` (a second call is a "restart"); closes them after."""
    opened = []
    factory = open_store_factory(tmp_path)

    def _open():
        s = factory()
        opened.append(s)
        return s

    yield _open
    for s in opened:
        s.close()


@pytest.fixture
def store(open_store):
    return open_store()
