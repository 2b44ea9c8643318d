"""The descriptor index: crop-robust retrieval by voting with local-feature descriptors.

Why: a 75 % crop, a caption bar or a screenshot composite moves every whole-image hash far away, but most
of the crop's ORB descriptors are unchanged. Each stored image contributes a few spread-out descriptors
(:func:`bot.hashing.local.retrieval_descriptors`); the query's descriptors look up their nearest stored
descriptors and every close hit is a vote for the stored image it came from. The few images with most
votes go on to geometric verification. Exact (flat) search while small, an inverted file (IVF) when the
index grows beyond :data:`FLAT_LIMIT` rows, so a check stays fast at 100 k stored images.
"""

from __future__ import annotations

import base64
from collections import Counter

import faiss
import numpy as np

#: a query descriptor votes for a stored one within this Hamming distance (of 256 bits)
VOTE_DISTANCE = 48
#: above this many rows the flat index gives way to an inverted file
FLAT_LIMIT = 50_000
#: inverted lists per row count (sqrt rule) and lists probed per query descriptor
NPROBE = 6
#: query descriptors that vote (the strongest ones): bounds the cost of a lookup in a large index
QUERY_VOTERS = 500


def pack(descriptors: np.ndarray) -> str:
    """Descriptors (n x 32 uint8) -> the text stored in ``signals["orb"]``."""
    return base64.b64encode(np.ascontiguousarray(descriptors, dtype=np.uint8).tobytes()).decode("ascii")


def unpack(text: str) -> np.ndarray:
    raw = base64.b64decode(text)
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, 32)


class DescriptorIndex:
    """Stored descriptors with the entry (owner) each came from."""

    def __init__(self) -> None:
        self._parts: list[np.ndarray] = []
        self._owner_parts: list[np.ndarray] = []
        self._index: faiss.IndexBinary | None = None
        self._owners = np.zeros(0, np.int32)

    def add(self, descriptors: np.ndarray, owner: int) -> None:
        if len(descriptors):
            self._parts.append(descriptors)
            self._owner_parts.append(np.full(len(descriptors), owner, np.int32))
            self._index = None

    def add_many(self, descriptors: np.ndarray, owners: np.ndarray) -> None:
        self._parts.append(np.ascontiguousarray(descriptors, dtype=np.uint8))
        self._owner_parts.append(np.asarray(owners, np.int32))
        self._index = None

    def __len__(self) -> int:
        return int(sum(len(p) for p in self._parts))

    def build(self) -> None:
        """(Re)build the faiss index from the added descriptors."""
        if not self._parts:
            self._index = faiss.IndexBinaryFlat(256)
            return
        codes = np.concatenate(self._parts)
        self._owners = np.concatenate(self._owner_parts)
        self._parts, self._owner_parts = [codes], [self._owners]
        n = len(codes)
        if n <= FLAT_LIMIT:
            index: faiss.IndexBinary = faiss.IndexBinaryFlat(256)
        else:
            nlist = int(np.sqrt(n))
            quantizer = faiss.IndexBinaryFlat(256)
            index = faiss.IndexBinaryIVF(quantizer, 256, nlist)
            rng = np.random.default_rng(0)
            sample = codes[rng.choice(n, size=min(n, nlist * 30), replace=False)]
            index.train(sample)
            index.nprobe = NPROBE
            self._quantizer = quantizer  # faiss does not own it: keep it alive as long as the index
        index.add(codes)
        self._index = index

    def memory_bytes(self) -> int:
        return len(self) * (32 + 4)

    def vote(self, descriptors: np.ndarray, k: int = 2) -> Counter[int]:
        """Votes per owner: distinct query descriptors with a stored neighbour within VOTE_DISTANCE.

        Descriptors come strongest first (:func:`bot.hashing.local.extract`); only the first
        :data:`QUERY_VOTERS` vote."""
        descriptors = descriptors[:QUERY_VOTERS]
        if self._index is None:
            self.build()
        assert self._index is not None
        votes: Counter[int] = Counter()
        if len(descriptors) == 0 or self._index.ntotal == 0:
            return votes
        dist, rows = self._index.search(np.ascontiguousarray(descriptors, dtype=np.uint8), k)
        for d_row, r_row in zip(dist, rows):
            owners = {int(self._owners[r]) for d, r in zip(d_row, r_row) if r >= 0 and d <= VOTE_DISTANCE}
            votes.update(owners)
        return votes
