"""Fixtures shared by the whole suite.

Redis tests need a real redis-server: its URL comes from ``AFTERIMAGE_TEST_REDIS_URL`` (``.ci/run`` starts one
and sets it). Without it they are skipped locally, and fail under ``CI=true`` so CI can never pass them by
skipping. Each test gets its own key prefix, so tests never see each other's data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from bot.redact import clear_secrets
from tests.redis_keys import delete_prefix

REDIS_ENV = "AFTERIMAGE_TEST_REDIS_URL"


@pytest.fixture
def redis_url() -> Iterator[str]:
    """Base URL of the test redis-server, with a fresh key prefix for this test (its keys deleted after)."""
    url = os.environ.get(REDIS_ENV)
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{REDIS_ENV} is not set: CI must run the Redis tests against a real redis-server")
        pytest.skip(f"{REDIS_ENV} not set (start redis-server and export it to run Redis tests)")
    sep = "&" if "?" in url else "?"
    prefixed = f"{url}{sep}prefix=test-{uuid.uuid4().hex[:12]}"
    yield prefixed
    delete_prefix(prefixed)


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    """Secrets registered by one test must not mask text in another."""
    yield
    clear_secrets()
