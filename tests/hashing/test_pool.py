"""Hashing in worker processes gives exactly what hashing in the worker thread gives, and a hostile file is
refused with the same specific error."""

from __future__ import annotations

import numpy as np
import pytest

from bot.errors import MediaError
from bot.hashing.pool import InlineHasher, ProcessHasher, build_hasher
from tests.images import encode, post_screenshot, scene


@pytest.fixture(scope="module")
def pool():
    hasher = ProcessHasher(2)
    hasher.start()
    yield hasher
    hasher.close()


def test_processes_hash_a_still_exactly_as_the_thread_does(pool):
    data = encode(scene(11, 1600, 1200), quality=85)
    here, there = InlineHasher().file(data), pool.file(data)
    assert there.signals == here.signals
    assert there.queries == here.queries and there.quality == here.quality and there.size == here.size
    assert there.image.tobytes() == here.image.tobytes()
    assert np.array_equal(there.features.points, here.features.points)
    assert np.array_equal(there.features.descriptors, here.features.descriptors)
    assert there.data == data  # regions of a screenshot are cut from a sharper decode of the file


def test_a_frame_is_hashed_in_a_process_too(pool):
    frame, _ = post_screenshot(scene(12, 640, 400))
    assert pool.image(frame).signals == InlineHasher().image(frame).signals


def test_a_file_that_is_not_an_image_is_refused_with_its_reason(pool):
    with pytest.raises(MediaError) as refused:
        pool.file(b"<!doctype html><html><body>rate limited</body></html>")
    assert refused.value.reason == "not_an_image"
    assert "HTML" in str(refused.value)


def test_started_pool_has_one_process_per_worker(pool):
    assert len(pool.pids) == 2
    assert build_hasher("threads", 4).pids == []
