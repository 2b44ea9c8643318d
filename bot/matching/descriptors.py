"""The descriptor index: crop-robust retrieval by voting with local-feature descriptors.

Why: a 75 % crop, a caption bar or a screenshot composite moves every whole-image hash far away, but most
of the crop's ORB descriptors are unchanged. Each stored image contributes a few spread-out descriptors
(:func:`bot.hashing.local.retrieval_descriptors`); the query's descriptors look up their nearest stored
descriptors and every close hit is a vote for the stored image it came from. The few images with most
votes go on to geometric verification.

Layout, chosen by measurement at 100 k stored images (16 M descriptors, 500 voting query descriptors, one
core; ``bench/speed.py``):

- up to :data:`FLAT_LIMIT` rows an exact flat scan;
- above, an inverted file with about :data:`LIST_ROWS` rows per list (65,536 lists at 16 M), whose list
  centres are stored descriptors drawn at random, found through a small second inverted file over those
  centres (``sqrt(nlist)`` groups, :data:`QUANTIZER_PROBE` probed). A vote costs ~25 ms where the former
  single-level file (4,000 k-means lists, all centres compared) cost ~62 ms, with the true image's votes
  nearly unchanged (median 83 vs 89 for copies; unrelated images' best stays <= 31). Building it needs
  no k-means over the descriptors: 71 s at 16 M where k-means training plus assignment took 175 s;
- descriptors added later go into the built file directly (assignment to existing lists costs
  microseconds); the file is rebuilt only when it has grown :data:`REBUILD_GROWTH` times since it was
  built, so the lists stay short;
- each descriptor's owner (the entry it came from) is its faiss id, and a rebuild reads the descriptors
  back out of the index: 40 bytes per descriptor in all (6.4 KB per stored image), no second copy.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import faiss
import numpy as np

#: a query descriptor votes for a stored one within this Hamming distance (of 256 bits)
VOTE_DISTANCE = 48
#: above this many rows the flat index gives way to an inverted file
FLAT_LIMIT = 50_000
#: average rows per inverted list
LIST_ROWS = 256
#: inverted lists probed per query descriptor
NPROBE = 8
#: groups of list centres probed to find a descriptor's nearest lists
QUANTIZER_PROBE = 4
#: the inverted file is rebuilt once it holds this many times the rows it was built with
REBUILD_GROWTH = 4
#: query descriptors that vote (the strongest ones): bounds the cost of a lookup in a large index
QUERY_VOTERS = 500


def _power_of_two(x: float) -> int:
    return 1 << max(0, round(float(np.log2(max(x, 1.0)))))


def _inverted_file(codes: np.ndarray, rng: np.random.Generator) -> tuple[faiss.IndexBinaryIVF, list[object]]:
    """An empty inverted file for ``codes`` with random stored descriptors as list centres, and the faiss
    objects it refers to (faiss does not own its quantizers: they must live as long as the index)."""
    n = len(codes)
    nlist = min(_power_of_two(n / LIST_ROWS), n)
    centres = np.ascontiguousarray(codes[rng.choice(n, size=nlist, replace=False)])
    groups = max(1, min(_power_of_two(np.sqrt(nlist)), nlist // 39))  # faiss wants >= 39 points per group
    flat = faiss.IndexBinaryFlat(256)
    quantizer = faiss.IndexBinaryIVF(flat, 256, groups)
    quantizer.train(centres)  # k-means over the centres only (small)
    quantizer.add(centres)
    quantizer.nprobe = QUANTIZER_PROBE
    index = faiss.IndexBinaryIVF(quantizer, 256, nlist)
    index.train(centres[:1])  # the quantizer already holds nlist centres: nothing to learn
    index.nprobe = NPROBE
    return index, [flat, quantizer]


def _contents(index: faiss.IndexBinary) -> tuple[np.ndarray, np.ndarray]:
    """Every descriptor held by ``index`` and its owner: what a rebuild starts from, so no second copy of
    16 M descriptors has to be kept beside the index."""
    if isinstance(index, faiss.IndexBinaryIDMap):
        codes = faiss.vector_to_array(faiss.downcast_IndexBinary(index.index).xb).reshape(-1, 32)
        return codes, faiss.vector_to_array(index.id_map)
    lists = index.invlists
    codes, owners = [np.zeros((0, 32), np.uint8)], [np.zeros(0, np.int64)]
    for i in range(index.nlist):
        n = lists.list_size(i)
        if n:
            codes.append(faiss.rev_swig_ptr(lists.get_codes(i), n * 32).copy().reshape(n, 32))
            owners.append(faiss.rev_swig_ptr(lists.get_ids(i), n).copy())
    return np.concatenate(codes), np.concatenate(owners)


class DescriptorIndex:
    """Stored descriptors, each with the entry (owner) it came from as its faiss id."""

    def __init__(self, seed: int = 0) -> None:
        self._index: faiss.IndexBinary | None = None
        self._keep: list[object] = []
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []  # added while no usable index exists
        self._built_rows = 0
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        held = int(self._index.ntotal) if self._index is not None else 0
        return held + sum(len(codes) for codes, _ in self._pending)

    def add(self, descriptors: np.ndarray, owner: int) -> None:
        self.add_many(descriptors, np.full(len(descriptors), owner, np.int64))

    def add_many(self, descriptors: np.ndarray, owners: np.ndarray) -> None:
        """Add descriptors: straight into the built index while it stays the right kind and size, else
        kept aside until the rebuild at the next vote."""
        if len(descriptors) == 0:
            return
        codes = np.ascontiguousarray(descriptors, dtype=np.uint8)
        ids = np.asarray(owners, np.int64)
        rows = len(self) + len(codes)
        flat = isinstance(self._index, faiss.IndexBinaryIDMap)
        stale = (flat and rows > FLAT_LIMIT) or (not flat and rows > REBUILD_GROWTH * self._built_rows)
        if self._index is None or self._pending or stale:
            self._pending.append((codes, ids))
        else:
            self._index.add_with_ids(codes, ids)

    def build(self) -> None:
        """(Re)build the faiss index from every descriptor held or added."""
        parts = [_contents(self._index)] if self._index is not None else []
        parts += self._pending
        codes = np.concatenate([c for c, _ in parts]) if parts else np.zeros((0, 32), np.uint8)
        owners = np.concatenate([o for _, o in parts]) if parts else np.zeros(0, np.int64)
        self._index, self._pending = None, []  # let the old index go before the new one is filled
        if len(codes) <= FLAT_LIMIT:
            index: faiss.IndexBinary = faiss.IndexBinaryIDMap(faiss.IndexBinaryFlat(256))
            self._keep = []
        else:
            index, self._keep = _inverted_file(codes, self._rng)
        index.add_with_ids(codes, owners)
        self._index, self._built_rows = index, len(codes)

    @property
    def inverted(self) -> bool:
        """True once the index is (or is due to become) an inverted file: slow to build, worth saving."""
        if self._index is None or self._pending:
            return len(self) > FLAT_LIMIT
        return isinstance(self._index, faiss.IndexBinaryIVF)

    def save(self, path: Path) -> None:
        """Write the index to ``path`` atomically (a reader never sees half a file)."""
        if self._index is None or self._pending:
            self.build()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        faiss.write_index_binary(self._index, str(tmp))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> DescriptorIndex:
        """An index saved by :meth:`save`. Raises ValueError for a file that is not one."""
        try:
            index = faiss.read_index_binary(str(path))
        except RuntimeError as e:
            raise ValueError(f"not a descriptor index: {path.name}: {str(e).splitlines()[0][:200]}") from None
        if not isinstance(index, (faiss.IndexBinaryIDMap, faiss.IndexBinaryIVF)) or index.d != 256:
            raise ValueError(f"not a descriptor index: {path.name}")
        loaded = cls()
        loaded._index, loaded._built_rows = index, int(index.ntotal)
        return loaded

    def memory_bytes(self) -> int:
        """Bytes per held descriptor: its 32-byte code and 8-byte id (the owner), in faiss."""
        return len(self) * (32 + 8)

    def vote(self, descriptors: np.ndarray, k: int = 2) -> Counter[int]:
        """Votes per owner: distinct query descriptors with a stored neighbour within VOTE_DISTANCE.

        Descriptors come strongest first (:func:`bot.hashing.local.extract`); only the first
        :data:`QUERY_VOTERS` vote."""
        descriptors = np.ascontiguousarray(descriptors[:QUERY_VOTERS], dtype=np.uint8)
        if self._index is None or self._pending:
            self.build()
        assert self._index is not None
        if len(descriptors) == 0 or self._index.ntotal == 0:
            return Counter()
        dist, owners = self._index.search(descriptors, k)
        close = (owners >= 0) & (dist <= VOTE_DISTANCE)
        voter = np.broadcast_to(np.arange(len(descriptors))[:, None], owners.shape)[close]
        # one vote per (query descriptor, owner): k neighbours of one descriptor in one image count once
        pairs = np.unique(voter.astype(np.int64) << 32 | owners[close])
        found, counts = np.unique(pairs & 0xFFFFFFFF, return_counts=True)
        return Counter(dict(zip(found.tolist(), counts.tolist())))
