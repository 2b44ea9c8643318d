from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scripted import open_store_factory  # noqa: E402


@pytest.fixture
def open_store(tmp_path):
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
