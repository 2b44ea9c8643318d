"""A Hamming index over one binary signal type: an exact faiss flat scan while small, a compact multi-index
hash above ``FLAT_MAX`` rows.

Target: 8 dihedral query variants in <= 5 ms at 1 M stored PDQ hashes on one core, <= 64 bytes per hash.
faiss ``IndexBinaryFlat`` is exact at 36 B/hash but scans 1 M hashes in ~15 ms; faiss
``IndexBinaryMultiHash`` answers in ~2 ms but takes ~650 B/hash; exact multi-index hashing over all 256
bits needs 16 tables (>= 16 x 17 bits of row id + 32 B of code: over 64 B). So:

- Up to ``FLAT_MAX`` (300 k) rows: the exact faiss flat scan (~3.5 ms at 300 k). The multi-index's fixed
  offset tables (1.06 MB) fit the 64 B budget only above ~265 k rows.
- Above: :class:`MultiIndex`, 8 tables over 8 chunks of 16 bits covering half the code: bytes 16-31,
  which flip least between real copies (``bench/pdq_layout.py``: 2.6 % of those bits vs 3.8 % of bytes
  0-15; the probes find 37 of 44 copies at 32-63 bits vs 21 of 44 with bytes 0-15).
  Memory: codes 32 B + owner 4 B + 8 x 3-byte row ids 24 B + offsets = 61.1 B/hash at 1 M (row ids take
  4 bytes from 2^24 rows on: ~68 B/hash there). A query probes its chunk and every value within ``nflip``
  bits of it in each table and computes the full 256-bit distance of each candidate.
- Exactness: if the indexed 128 bits differ in at most ``8 * (nflip + 1) - 1`` bits, some chunk differs in
  at most ``nflip`` (pigeonhole), so every row within that distance (15 for nflip 1) is found. Beyond,
  rows are found with high probability; measured with random bit flips at 1 M rows (``bench/speed.py``,
  2,000 per bucket): distance 16-23 100 %, 24-31 99.85 %, 32-47 92.3 %, 48-63 60 %; on real copies
  (``bench/pdq_layout.py``), 799 of 799 pairs within 31 bits and 37 of 44 within 32-63. ``nflip`` 2 (137
  probes per table instead of 17) finds 99.9 % at 32-47 and 96 % at 48-63 (800 planted each) but takes ~8 ms at 1 M (random
  reads of ~134 k candidate codes dominate), so the default is 1: ~1 ms at 1 M, ~6 ms at 10 M.
- Rows added after the tables were built go to a flat tail scanned exactly; at ``TAIL_ROWS`` (50 k, ~1 ms
  more per 8 queries at 1 M) the tail is merged and the tables rebuilt (a stable radix argsort per table:
  0.4 s at 1 M, 7 s at 10 M), so adding stays cheap and a rebuild happens at most once per 50 k rows.

Rows map to an *owner* (the position of a known-media entry) because one entry contributes up to two rows
(the whole image, and the image without its borders/caption bars).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

from typing import TYPE_CHECKING

import faiss
import numpy as np

if TYPE_CHECKING:  # signal types name this index as theirs (SignalType.get_index_cls): no import cycle
    from bot.hashing.signals import SignalType

#: rows up to which every row stays in the exact flat scan
FLAT_MAX = 300_000
#: rows appended after the tables were built that are scanned exactly before they are merged in
TAIL_ROWS = 50_000
#: bits flipped around each query chunk when probing the tables
NFLIP = 1
#: bytes of a 256-bit code that the tables index, two per 16-bit chunk: the second half of pdqhash's bits
#: flips least between real copies (``bench/pdq_layout.py``)
CHUNK_BYTES = slice(16, 32)
#: row ids take 3 bytes each below this many rows, 4 from there on
_THREE_BYTE_ROWS = 1 << 24


def flip_masks(nflip: int) -> np.ndarray:
    """Every 16-bit mask with at most ``nflip`` bits set (1, 17, 137 masks for nflip 0, 1, 2)."""
    masks = [sum(1 << b for b in bits) for r in range(nflip + 1) for bits in combinations(range(16), r)]
    return np.asarray(masks, np.int64)


def chunk_values(codes: np.ndarray) -> np.ndarray:
    """The 8 indexed 16-bit chunks of packed 256-bit codes (n x 32 uint8 -> n x 8 int64)."""
    return np.ascontiguousarray(codes[:, CHUNK_BYTES]).view("<u2").astype(np.int64)


@dataclass(frozen=True)
class MultiIndex:
    """Codes, owners and 8 tables of row ids sorted by chunk value (multi-index hashing, Norouzi et al.).

    A table's bucket for chunk value ``v`` is ``ids[t*n + offset(t, v) : t*n + offset(t, v + 1)]`` with
    ``offset(t, v) = base[t, v >> 8] + rel[t, v]``: uint16 offsets relative to every 256th bucket halve
    the fixed 2 MB of uint32 offsets. Ids are 3 bytes each, read through a uint32 view with a 3-byte
    stride (masked to 24 bits)."""

    codes: np.ndarray  # n x 32 uint8
    owners: np.ndarray  # n int32
    ids: np.ndarray  # 8 * n * width + 1 uint8
    base: np.ndarray  # 8 x 257 int64 (small)
    rel: np.ndarray  # 8 x 65537 uint16 (uint32 if a block of 256 buckets holds 65536 rows or more)
    width: int

    @classmethod
    def build(cls, codes: np.ndarray, owners: np.ndarray) -> MultiIndex:
        n = len(codes)
        width = 3 if n < _THREE_BYTE_ROWS else 4
        chunks = chunk_values(codes)
        ids = np.zeros(8 * n * width + 1, np.uint8)
        offsets = np.zeros((8, 65537), np.int64)
        for t in range(8):
            order = np.argsort(chunks[:, t].astype(np.uint16), kind="stable").astype("<u4")
            ids[t * n * width : (t + 1) * n * width] = order.view(np.uint8).reshape(n, 4)[:, :width].ravel()
            np.cumsum(np.bincount(chunks[:, t], minlength=65536), out=offsets[t, 1:])
        base = offsets[:, ::256].copy()
        rel = offsets - np.repeat(base, 256, axis=1)[:, :65537]
        rel_type = np.uint16 if rel.max() < 65536 else np.uint32
        return cls(np.ascontiguousarray(codes), np.asarray(owners, np.int32), ids, base, rel.astype(rel_type), width)

    def __len__(self) -> int:
        return len(self.codes)

    def nbytes(self) -> int:
        return self.codes.nbytes + self.owners.nbytes + self.ids.nbytes + self.base.nbytes + self.rel.nbytes

    def _offset(self, values: np.ndarray) -> np.ndarray:
        """Bucket starts for chunk values laid out as (..., 8 tables, probes)."""
        t = np.arange(8)[:, None]
        return self.base[t, values >> 8] + self.rel[t, values]

    def candidates(self, queries: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(query number, row)`` of every row sharing a chunk with a query up to the flip masks;
        a row found by several chunks appears several times."""
        probes = chunk_values(queries)[:, :, None] ^ masks  # queries x 8 x probes
        starts = self._offset(probes)
        lengths = (self._offset(probes + 1) - starts).ravel()
        starts = (starts + (np.arange(8) * len(self))[:, None]).ravel()
        total = int(lengths.sum())
        # range expansion: position i of the output reads ids[start of its range + i - range's output start]
        shift = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
        shift += np.arange(total)
        rows = self._id_view()[shift]  # (np.take would copy the strided view first)
        if self.width == 3:
            rows &= 0xFFFFFF
        query_number = np.repeat(np.arange(len(queries)), 8 * len(masks))
        return np.repeat(query_number, lengths), rows

    def _id_view(self) -> np.ndarray:
        return np.ndarray((8 * len(self),), "<u4", buffer=self.ids, strides=(self.width,))

    def pairs(self, queries: np.ndarray, radius: int, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(query number, row, distance)`` of candidates within ``radius`` on all 256 bits."""
        qn, rows = self.candidates(queries, masks)
        # np.take is ~10x faster than fancy indexing of rows here; summing 4 columns beats .sum(axis=1)
        diff = np.take(self.codes.view(np.uint64), rows, axis=0)
        diff ^= np.take(queries.view(np.uint64), qn, axis=0)
        counts = np.bitwise_count(diff)
        distance = (counts[:, 0] + counts[:, 1] + counts[:, 2] + counts[:, 3]).astype(np.int32)
        keep = distance <= radius
        return qn[keep], rows[keep], distance[keep]


def nearest_per_owner(
    qn: np.ndarray, rows: np.ndarray, distance: np.ndarray, owner: np.ndarray, k: int
) -> list[tuple[int, int, int]]:
    """The ``k`` nearest distinct rows of each query (ties by row), then the best per owner (ties by query
    number), nearest first: the same answer whichever structure found the pairs."""
    order = np.lexsort((rows, distance, qn))
    qn, rows, distance, owner = qn[order], rows[order], distance[order], owner[order]
    fresh = np.ones(len(rows), bool)
    fresh[1:] = (qn[1:] != qn[:-1]) | (rows[1:] != rows[:-1])
    qn, rows, distance, owner = qn[fresh], rows[fresh], distance[fresh], owner[fresh]
    keep = np.arange(len(qn)) - np.searchsorted(qn, qn) < k
    qn, owner, distance = qn[keep], owner[keep], distance[keep]
    order = np.lexsort((qn, distance, owner))
    qn, owner, distance = qn[order], owner[order], distance[order]
    first = np.ones(len(owner), bool)
    first[1:] = owner[1:] != owner[:-1]
    best = sorted(zip(distance[first].tolist(), qn[first].tolist(), owner[first].tolist()))
    return [(o, d, q) for d, q, o in best]


@dataclass
class HammingIndex:
    """Rows of packed hashes of one :class:`SignalType`, each with an owner number.

    Rows live in a faiss flat index until there are ``flat_max`` of them; from then on (256-bit signals
    only) in a :class:`MultiIndex`, with rows added later kept in the flat index (the tail) until there are
    ``tail_rows`` of them, when they are merged into rebuilt tables."""

    signal: type[SignalType]
    flat_max: int = FLAT_MAX
    tail_rows: int = TAIL_ROWS
    nflip: int = NFLIP
    _flat: faiss.IndexBinaryFlat = field(init=False)
    _flat_owners: np.ndarray = field(init=False)
    _tables: MultiIndex | None = field(init=False, default=None)
    _masks: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self._flat = faiss.IndexBinaryFlat(self.signal.bits)
        self._flat_owners = np.zeros(0, np.int32)
        self._masks = flip_masks(self.nflip)

    def __len__(self) -> int:
        return int(self._flat.ntotal) + (len(self._tables) if self._tables is not None else 0)

    @property
    def exact_radius(self) -> int:
        """Results are exact for rows within this distance of a query: every distance while all rows are in
        the flat scan, ``8 * (nflip + 1) - 1`` once the tables are in use."""
        return self.signal.bits if self._tables is None else 8 * (self.nflip + 1) - 1

    @property
    def tail(self) -> int:
        """Rows added since the tables were last built, scanned exactly (0 while there are no tables)."""
        return int(self._flat.ntotal) if self._tables is not None else 0

    def add(self, codes: np.ndarray, owners: np.ndarray) -> None:
        """Add packed codes (n x bits/8 uint8) owned by ``owners`` (n ints). Cheap: rows go to the flat
        tail; the tables are (re)built only when the tail outgrows its bound."""
        if len(codes) == 0:
            return
        self._flat.add(np.ascontiguousarray(codes, dtype=np.uint8))
        self._flat_owners = np.concatenate([self._flat_owners, np.asarray(owners, np.int32)])
        bound = self.flat_max if self._tables is None else self.tail_rows
        if self.signal.bits == 256 and self._flat.ntotal >= bound and len(self) >= self.flat_max:
            self._merge()

    def add_hex(self, hashes: list[str], owners: list[int]) -> None:
        if hashes:
            self.add(np.stack([self.signal.to_bytes(h) for h in hashes]), np.asarray(owners))

    def _merge(self) -> None:
        """Rebuild the tables from every row (tables first, then the tail) and empty the tail."""
        tail = faiss.vector_to_array(self._flat.xb).reshape(-1, self.signal.bits // 8)
        codes, owners = tail, self._flat_owners
        if self._tables is not None:
            codes = np.concatenate([self._tables.codes, tail])
            owners = np.concatenate([self._tables.owners, owners])
        self._tables = None  # free the old tables before building the new ones
        self._tables = MultiIndex.build(codes, owners)
        self._flat.reset()
        self._flat_owners = np.zeros(0, np.int32)

    def memory_bytes(self) -> int:
        """Bytes of every array held: flat codes and owners, and the tables' codes, owners, ids, offsets."""
        flat = int(self._flat.ntotal) * self._flat.code_size + self._flat_owners.nbytes
        return flat + (self._tables.nbytes() if self._tables is not None else 0)

    def search(self, queries: list[str] | np.ndarray, k: int, radius: int) -> list[tuple[int, int, int]]:
        """``(owner, distance, query_number)`` of the ``k`` nearest rows of each query within ``radius``,
        best per owner, nearest first. Exact while all rows are in the flat scan; in the tables exact for
        rows within ``8 * (nflip + 1) - 1`` bits on the indexed half of the code (see the module docstring)."""
        if len(self) == 0 or len(queries) == 0:
            return []
        q = queries if isinstance(queries, np.ndarray) else np.stack([self.signal.to_bytes(h) for h in queries])
        q = np.ascontiguousarray(q, dtype=np.uint8)
        lims, distance, rows = self._flat.range_search(q, radius + 1)  # faiss: distances < radius
        qn = np.repeat(np.arange(len(q)), np.diff(lims.astype(np.int64)))
        owner = self._flat_owners[rows]
        if self._tables is not None:  # number the tables' rows first, the tail's after them
            t_qn, t_rows, t_distance = self._tables.pairs(q, radius, self._masks)
            qn = np.concatenate([t_qn, qn])
            rows = np.concatenate([t_rows.astype(np.int64), rows + len(self._tables)])
            distance = np.concatenate([t_distance, distance.astype(np.int32)])
            owner = np.concatenate([self._tables.owners[t_rows], owner])
        return nearest_per_owner(qn, rows, distance.astype(np.int32), owner, k)
