"""The Hamming index returns exactly what a brute-force scan returns (within its guaranteed radius once the
multi-index tables are in use), finds rows added after the tables were built, and stays within 64 bytes
per stored PDQ hash."""

from __future__ import annotations

import numpy as np
import pytest

from bot.hashing.signals import PdqSignal, PhashSignal
from bot.hashing.index import CHUNK_BYTES, HammingIndex

FLAT_MAX = 5_000
TAIL_ROWS = 1_000


def clustered_codes(rng: np.random.Generator, n: int, clusters: int = 40) -> np.ndarray:
    """Rows scattered around a few centres (each bit flipped with probability 3/256), so queries have many
    rows within a few bits, including ties."""
    centres = rng.integers(0, 256, (clusters, 32), dtype=np.uint8)
    flips = np.packbits(rng.random((n, 256)) < 3 / 256, axis=1)
    return centres[rng.integers(0, clusters, n)] ^ flips


def brute_force(codes: np.ndarray, owners: np.ndarray, queries: np.ndarray, k: int, radius: int) -> list[tuple[int, int, int]]:
    """The documented answer, the slow way: per query the k nearest rows within radius (ties by row), then
    the best per owner (ties by query number), nearest first (ties by query number, then owner)."""
    best: dict[int, tuple[int, int]] = {}
    for qi, q in enumerate(queries):
        distance = np.unpackbits(codes ^ q, axis=1).sum(1)
        order = np.lexsort((np.arange(len(codes)), distance))[:k]
        for row in order:
            d, owner = int(distance[row]), int(owners[row])
            if d <= radius and (owner not in best or (d, qi) < best[owner]):
                best[owner] = (d, qi)
    return sorted(((o, d, qi) for o, (d, qi) in best.items()), key=lambda t: (t[1], t[2], t[0]))


def queries_near(rng: np.random.Generator, codes: np.ndarray, m: int) -> np.ndarray:
    """Stored rows with 0-6 random bits flipped."""
    picked = codes[rng.integers(0, len(codes), m)].copy()
    for q in picked:
        bits = rng.choice(256, rng.integers(0, 7), replace=False)
        np.bitwise_xor.at(q, bits // 8, (128 >> (bits % 8)).astype(np.uint8))
    return picked


def small_index(nflip: int = 1) -> HammingIndex:
    return HammingIndex(PdqSignal, flat_max=FLAT_MAX, tail_rows=TAIL_ROWS, nflip=nflip)


@pytest.mark.parametrize("n", [3_000, 12_000])
@pytest.mark.parametrize("nflip", [1, 2])
def test_results_equal_brute_force_within_the_guaranteed_radius(n: int, nflip: int) -> None:
    rng = np.random.default_rng(n + nflip)
    codes = clustered_codes(rng, n)
    owners = np.arange(n) // 3  # several rows per owner
    index = small_index(nflip)
    index.add(codes, owners)
    assert (index.exact_radius == 256) == (n < FLAT_MAX)
    radius = min(index.exact_radius, 8 * (nflip + 1) - 1)
    queries = queries_near(rng, codes, 8)
    for k in (1, 8):
        found = index.search(queries, k, radius)
        assert found == brute_force(codes, owners, queries, k, radius)
        assert len({o for o, _, _ in found}) == len(found)
        assert 0 < len(found) <= k * len(queries)


def test_multi_index_finds_near_duplicates_beyond_the_guaranteed_radius() -> None:
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 256, (20_000, 32), dtype=np.uint8)
    index = small_index()
    index.add(codes, np.arange(len(codes)))
    assert index.exact_radius == 15
    rows = rng.integers(0, len(codes), 200)
    queries = codes[rows].copy()
    bits = np.stack([rng.choice(256, 20, replace=False) for _ in rows])  # 20 flipped bits each
    for q, b in zip(queries, bits):
        np.bitwise_xor.at(q, b // 8, (128 >> (b % 8)).astype(np.uint8))
    found = 0
    for start in range(0, 200, 8):
        hits = {(o, start + qi, d) for o, d, qi in index.search(queries[start : start + 8], 8, 31)}
        found += sum((int(rows[i]), i, 20) in hits for i in range(start, min(200, start + 8)))
    assert found >= 195


def test_hex_queries_and_empty_inputs() -> None:
    index = small_index()
    assert index.search(["00" * 32], 8, 31) == []
    rng = np.random.default_rng(4)
    codes = rng.integers(0, 256, (6_000, 32), dtype=np.uint8)
    index.add_hex([c.tobytes().hex() for c in codes], list(range(6_000)))
    assert index.exact_radius < 256
    assert index.search([], 8, 31) == []
    assert index.search(np.zeros((0, 32), np.uint8), 8, 31) == []
    assert index.search([codes[42].tobytes().hex()], 8, 31) == [(42, 0, 0)]
    index.add(np.zeros((0, 32), np.uint8), np.zeros(0, int))
    assert len(index) == 6_000


def test_rows_added_after_the_tables_are_found_before_and_after_the_merge() -> None:
    rng = np.random.default_rng(5)
    codes = clustered_codes(rng, 14_000)
    owners = np.arange(len(codes))
    index = small_index()
    index.add(codes[:8_000], owners[:8_000])
    added = 8_000
    for size in (1, 10, 300, 600):  # 911 rows: stay in the tail
        index.add(codes[added : added + size], owners[added : added + size])
        added += size
    assert index.tail == 911 and len(index) == added
    queries = np.concatenate([queries_near(rng, codes[8_000:added], 6), queries_near(rng, codes[:8_000], 2)])
    assert index.search(queries, 8, 15) == brute_force(codes[:added], owners[:added], queries, 8, 15)
    index.add(codes[added:], owners[added:])  # the tail outgrows TAIL_ROWS: merged into the tables
    assert index.tail == 0 and len(index) == len(codes)
    queries = queries_near(rng, codes[added:], 8)
    assert index.search(queries, 8, 15) == brute_force(codes, owners, queries, 8, 15)


def test_growing_across_the_threshold_one_small_add_at_a_time() -> None:
    rng = np.random.default_rng(6)
    codes = clustered_codes(rng, FLAT_MAX + 500)
    owners = np.arange(len(codes))
    index = small_index()
    index.add(codes[: FLAT_MAX - 2], owners[: FLAT_MAX - 2])
    assert index.exact_radius == 256
    for row in range(FLAT_MAX - 2, len(codes), 100):
        index.add(codes[row : row + 100], owners[row : row + 100])
    assert index.exact_radius == 15 and index.tail < TAIL_ROWS
    queries = queries_near(rng, codes, 8)
    assert index.search(queries, 8, 15) == brute_force(codes, owners, queries, 8, 15)


def test_signals_shorter_than_the_tables_stay_in_the_exact_scan() -> None:
    index = HammingIndex(PhashSignal, flat_max=10)
    codes = np.random.default_rng(7).integers(0, 256, (50, 8), dtype=np.uint8)
    index.add(codes, np.arange(50))
    assert index.exact_radius == 64
    assert index.search(codes[3:4], 1, 0) == [(3, 0, 0)]


def test_memory_stays_within_64_bytes_per_hash_with_the_tables() -> None:
    rng = np.random.default_rng(8)
    n = 310_000
    index = HammingIndex(PdqSignal)
    index.add(rng.integers(0, 256, (n, 32), dtype=np.uint8), np.arange(n))
    assert index.exact_radius < 256 and index.tail == 0
    assert 56 * n < index.memory_bytes() <= 64 * n  # codes 32 + owner 4 + 8 x 3-byte ids + offsets
    index.add(rng.integers(0, 256, (20_000, 32), dtype=np.uint8), np.arange(n, n + 20_000))
    assert index.tail == 20_000 and index.memory_bytes() <= 64 * len(index)


def test_many_rows_sharing_chunk_values_are_still_found() -> None:
    # blank or flat images share most of their hash: 70 k rows in one bucket of every table
    rng = np.random.default_rng(9)
    codes = rng.integers(0, 256, (70_000, 32), dtype=np.uint8)
    codes[:, CHUNK_BYTES] = 0
    index = small_index()
    index.add(codes, np.arange(len(codes)))
    assert index.exact_radius == 15
    query = codes[[123, 69_999]].copy()
    query[:, np.arange(32)[CHUNK_BYTES][3]] ^= 1
    assert index.search(query, 1, 15) == [(123, 1, 0), (69_999, 1, 1)]


def test_four_byte_row_ids_past_the_three_byte_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bot.hashing.index._THREE_BYTE_ROWS", 4_096)  # instead of 2^24 rows
    rng = np.random.default_rng(10)
    codes = clustered_codes(rng, 9_000)
    owners = np.arange(len(codes)) // 2
    index = small_index()
    index.add(codes, owners)
    assert index.memory_bytes() > 9_000 * (32 + 4 + 8 * 4)
    queries = queries_near(rng, codes, 8)
    assert index.search(queries, 8, 15) == brute_force(codes, owners, queries, 8, 15)
