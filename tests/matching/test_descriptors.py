"""The descriptor index votes for the stored image a query's descriptors came from, whether it is a flat
scan or an inverted file, and whichever way the descriptors arrived (one build, or added later)."""

from __future__ import annotations

import numpy as np
import pytest

from bot.matching import descriptors as module
from bot.matching.descriptors import DescriptorIndex

PER_IMAGE = 40


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, PER_IMAGE, 32), dtype=np.uint8)


def noisy(codes: np.ndarray, seed: int = 1) -> np.ndarray:
    """The same descriptors with ~16 of 256 bits flipped (a recompressed copy)."""
    rng = np.random.default_rng(seed)
    flips = rng.integers(0, 256, (4, *codes.shape), dtype=np.uint8)
    return codes ^ (flips[0] & flips[1] & flips[2] & flips[3])


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """An inverted file from 2,000 rows on, so the tests stay fast."""
    monkeypatch.setattr(module, "FLAT_LIMIT", 2_000)
    monkeypatch.setattr(module, "LIST_ROWS", 64)


def build(stored: np.ndarray, index: DescriptorIndex | None = None, start: int = 0) -> DescriptorIndex:
    index = index or DescriptorIndex()
    for i, codes in enumerate(stored, start):
        index.add(codes, i)
    return index


@pytest.mark.parametrize("count", [20, 400])  # flat scan, inverted file
def test_a_copy_gets_most_votes(small_limits: None, count: int) -> None:
    stored = images(count)
    index = build(stored)
    for target in (0, count // 2, count - 1):
        votes = index.vote(noisy(stored[target]))
        assert votes.most_common(1)[0][0] == target
        assert votes[target] >= PER_IMAGE * 0.6  # random codes: the inverted file's worst case
        assert sum(v for o, v in votes.items() if o != target) <= 2
    assert max(index.vote(images(1, seed=99)[0]).values(), default=0) <= 2  # unrelated descriptors


def test_descriptors_added_after_the_inverted_file_was_built_vote_too(small_limits: None) -> None:
    stored = images(600)
    index = build(stored[:300])
    index.vote(stored[0])  # builds the inverted file (12,000 rows)
    built = index._index
    build(stored[300:400], index, start=300)  # 4,000 more rows: added to the built file
    assert index._index is built
    assert index.vote(noisy(stored[350])).most_common(1)[0][0] == 350
    build(stored[400:], index, start=400)  # grows past REBUILD_GROWTH x: rebuilt at the next vote
    assert index.vote(noisy(stored[599])).most_common(1)[0][0] == 599
    assert index.vote(noisy(stored[5])).most_common(1)[0][0] == 5


def test_growing_from_flat_to_an_inverted_file_keeps_every_owner(small_limits: None) -> None:
    stored = images(120)
    index = build(stored[:10])
    assert index.vote(noisy(stored[3])).most_common(1)[0][0] == 3  # flat, 400 rows
    build(stored[10:], index, start=10)  # 4,800 rows: past FLAT_LIMIT
    assert index.vote(noisy(stored[3])).most_common(1)[0][0] == 3
    assert index.vote(noisy(stored[111])).most_common(1)[0][0] == 111
    assert len(index) == 120 * PER_IMAGE
