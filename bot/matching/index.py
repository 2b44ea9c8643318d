"""A Hamming index over one binary signal type, backed by faiss.

Why faiss ``IndexBinaryFlat``: it is exact for every radius (the match *and* the suggest tier), needs 32
bytes per PDQ hash plus a 4-byte owner id (36 B/hash), and scans 1 M hashes x 8 dihedral variants in
15-20 ms on one core. faiss's multi-index hashing (``IndexBinaryMultiHash``) answers in ~3 ms but takes
~10x the memory and is exact only up to a few flipped bits per chunk (see ``bench/speed.py``). Rows map to
an *owner* (the position of a known-media entry) because one entry contributes up to two rows (the whole
image, and the image without its borders/caption bars).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import faiss
import numpy as np

from bot.hashing.signals import SignalType


@dataclass
class HammingIndex:
    """Rows of packed hashes of one :class:`SignalType`, each with an owner number."""

    signal: type[SignalType]
    _index: faiss.IndexBinaryFlat = field(init=False)
    _owners: list[np.ndarray] = field(init=False, default_factory=list)
    _owner_array: np.ndarray | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._index = faiss.IndexBinaryFlat(self.signal.bits)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, codes: np.ndarray, owners: np.ndarray) -> None:
        """Add packed codes (n x bits/8 uint8) owned by ``owners`` (n ints)."""
        if len(codes) == 0:
            return
        self._index.add(np.ascontiguousarray(codes, dtype=np.uint8))
        self._owners.append(np.asarray(owners, dtype=np.int32))
        self._owner_array = None

    def add_hex(self, hashes: list[str], owners: list[int]) -> None:
        if hashes:
            self.add(np.stack([self.signal.to_bytes(h) for h in hashes]), np.asarray(owners))

    def memory_bytes(self) -> int:
        """Bytes held for the rows: codes plus owner ids."""
        return len(self) * (self.signal.bits // 8 + 4)

    def search(self, queries: list[str] | np.ndarray, k: int, radius: int) -> list[tuple[int, int, int]]:
        """``(owner, distance, query_number)`` of the ``k`` nearest rows of each query within ``radius``,
        best per owner, nearest first."""
        if len(self) == 0 or len(queries) == 0:
            return []
        q = queries if isinstance(queries, np.ndarray) else np.stack([self.signal.to_bytes(h) for h in queries])
        if self._owner_array is None:
            self._owner_array = np.concatenate(self._owners) if self._owners else np.zeros(0, np.int32)
        distances, rows = self._index.search(np.ascontiguousarray(q), min(k, len(self)))
        best: dict[int, tuple[int, int]] = {}
        for qi in range(len(q)):
            for d, row in zip(distances[qi], rows[qi]):
                if row < 0 or d > radius:
                    continue
                owner = int(self._owner_array[row])
                if owner not in best or d < best[owner][0]:
                    best[owner] = (int(d), qi)
        return sorted(((o, d, qi) for o, (d, qi) in best.items()), key=lambda t: t[1])
