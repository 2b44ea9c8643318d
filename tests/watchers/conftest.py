"""Fixtures shared by the watcher tests (no __init__.py here: it would shadow the real ``watchers`` package)."""

from __future__ import annotations

import pytest
from pytest_httpserver import HTTPServer


@pytest.fixture(scope="module")
def threaded_server():
    """A threaded fake server per test module, so a deliberately slow answer never blocks the next test."""
    httpserver = HTTPServer(threaded=True)
    httpserver.start()
    yield httpserver
    httpserver.stop()
