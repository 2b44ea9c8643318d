"""The matcher: is this image a (transformed) copy of something known or seen before?

Two stages, so a check costs about the same at 100 k known images as at 1 k:

1. Retrieval. The 8 dihedral PDQ variants of the query, with and without its borders/caption bars, go
   through the whole-image Hamming index (:mod:`bot.matching.index`); the query's ORB descriptors (as is,
   then mirrored unless that already found a match) vote in the descriptor index
   (:mod:`bot.matching.descriptors`), which finds crops and composites that no whole-image hash can. A
   few candidate entries come out.
2. Decision. A whole-image PDQ distance within ``pdq_match`` (both hashes of trustworthy quality) is a
   match on its own. Every other candidate is verified with local features and a RANSAC similarity
   (:mod:`bot.hashing.local`): ``match`` or ``suggest`` by inlier count; a whole-image PDQ distance within
   ``pdq_suggest`` that fails verification is still a ``suggest`` (for review, never an alert).

Local features of known images (1000 ORB keypoints) are cached under ``features_dir`` as .npz, 33 KB per
image (3.3 GB at 100 k): loading one takes 0.7 ms, recomputing it from the archive (read, verify the
SHA-256, decode, ORB) 14 ms, and a check verifies up to ``max_candidates`` of them. A missing or
unreadable cache file is simply recomputed, so the cache can be deleted at any time.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import fasteners
import numpy as np
from PIL import Image

from bot.archive import Archive
from bot.config import MatchingConfig
from bot.errors import AfterimageError
from bot.hashing.borders import strip_borders
from bot.hashing.decode import decode_image, prepare, upright_size
from bot.hashing.local import LocalFeatures, Verification, extract, verify
from bot.hashing.signals import MIRRORED_VARIANTS, ORB_DESCRIPTORS, PDQ_QUALITY, PDQ_STRIPPED, PdqSignal
from bot.hashing.signals import compute_signals as _compute_signals
from bot.matching.descriptors import DescriptorIndex, unpack
from bot.matching.index import HammingIndex
from bot.matching.snapshot import DescriptorSnapshots
from bot.store.base import StateStore
from bot.store.records import KnownKind, KnownMedia

log = logging.getLogger(__name__)

#: nearest rows fetched per query hash from each index
_K_GLOBAL = 8
#: a voted candidate needs at least this share of the best candidate's votes
_VOTE_SHARE = 0.5
#: votes from the image as is that make it worth verifying before voting with the mirrored image
_STRONG_VOTES = 40
#: the descriptor index is saved again once this many entries (or 5 %) were added since the last save
SNAPSHOT_EVERY = 1_000


def compute_signals(image: Image.Image | bytes) -> dict[str, str]:
    """The signals stored for an image (``MediaRecord.signals`` / ``KnownMedia.signals``); bytes are
    decoded safely first (:class:`~bot.errors.MediaError` on hostile input)."""
    work = decode_image(image) if isinstance(image, (bytes, bytearray)) else prepare(image)
    return _compute_signals(work)


@dataclass(frozen=True)
class Match:
    """One known entry the query matched. ``region`` is the known image's outline in the query's pixels."""

    known: KnownMedia
    tier: str  # "match" | "suggest"
    signal: str  # "pdq" (whole-image hash) | "orb" (local features + RANSAC)
    distance: int | None
    inliers: int | None
    region: list[tuple[float, float]] | None = None
    mirrored: bool = False

    @property
    def recycled(self) -> bool:
        """True when the match is an image archived earlier from a watched post."""
        return self.known.kind == KnownKind.SEEN

    def to_json(self) -> dict[str, Any]:
        """The ``match`` object of ``afterimage check --json``."""
        out: dict[str, Any] = {
            "known_id": self.known.id,
            "label": self.known.label,
            "source": self.known.source,
            "tier": self.tier,
            "signal": self.signal,
            "distance": self.distance,
            "inliers": self.inliers,
        }
        if self.known.frame_ts is not None:
            out["frame_ts"] = self.known.frame_ts
        if self.recycled:
            out["first_seen"] = self.known.origin
        return out


@dataclass
class _Candidate:
    owner: int
    distance: int  # PDQ distance that retrieved it
    variant: int  # dihedral variant of the query that retrieved it
    whole: bool  # retrieved by a whole-image hash (else by descriptor votes)
    votes: int = 0


class Matcher:
    """Matches images against the known-media store; reloads its indexes when known media change."""

    def __init__(
        self,
        store: StateStore,
        archive: Archive,
        config: MatchingConfig | None = None,
        *,
        features_dir: str | Path | None = None,
        index_dir: str | Path | None = None,
    ):
        self.store = store
        self.archive = archive
        self.config = config or MatchingConfig()
        self.features_dir = Path(features_dir) if features_dir is not None else Path(archive.root).parent / "features"
        index_dir = Path(index_dir) if index_dir is not None else Path(archive.root).parent / "index"
        self._snapshots = DescriptorSnapshots(index_dir, store.url)
        self._snapshot_count = 0  # store entries covered by the newest saved or loaded snapshot
        # checks run concurrently (the daemon's worker threads share one index: OpenCV, faiss and numpy
        # release the GIL); growing the indexes in place (refresh) needs them alone
        self._lock = fasteners.ReaderWriterLock()
        self._generation: int | None = None  # store state the indexes reflect (None: not loaded yet)
        self._epoch = 0
        self._last_seq = 0  # newest insertion number loaded
        self._stored = 0  # entries loaded from the store (benchmarks add synthetic ones after them)
        self._entries: list[KnownMedia] = []
        self._whole = HammingIndex(PdqSignal)
        self._descriptors = DescriptorIndex()
        self._quality: np.ndarray = np.zeros(0, np.int16)

    # ------------------------------------------------------------------ index
    def refresh(self, force: bool = False) -> bool:
        """Bring the indexes up to date with the store. True when anything changed.

        New entries are appended (the daemon adds a *seen* entry for every archived image, so a full reload
        per post would stall matching at 100 k entries); a replaced or removed entry, or a count that does
        not add up (a writer committed an older insertion number late), reloads everything."""
        if not force and self._generation is not None and self.store.known_state().generation == self._generation:
            return False  # the common case, without waiting for the checks in progress
        with self._lock.write_lock():
            if not force and self._generation is not None:
                state = self.store.known_state()
                if state.generation == self._generation:
                    return False
                if state.epoch == self._epoch:
                    new = list(self.store.iter_known_since(self._last_seq))
                    after = self.store.known_state()
                    if after.epoch == self._epoch and self._stored + len(new) == after.count:
                        self._append([entry for _, entry in new])
                        self._stored += len(new)
                        self._last_seq = max([self._last_seq, *(seq for seq, _ in new)])
                        self._generation = after.generation
                        log.debug("matching index: %d entries appended", len(new))
                        if self._snapshot_behind():
                            self._save_snapshot()
                        return True
            state = self.store.known_state()
            loaded = list(self.store.iter_known_since(0))
            snapshot = self._snapshots.load(state.epoch, [seq for seq, _ in loaded])
            self.load_entries([entry for _, entry in loaded], snapshot)
            self._generation, self._epoch, self._stored = state.generation, state.epoch, len(loaded)
            self._last_seq = max((seq for seq, _ in loaded), default=0)
            self._snapshot_count = snapshot[1] if snapshot else 0
            if snapshot is None or self._snapshot_behind():
                self._save_snapshot()  # after a full build, or when many entries were appended to the snapshot
        log.info("matching index: %d entries, %d descriptors", len(self._entries), len(self._descriptors))
        return True

    def _snapshot_behind(self) -> bool:
        """Whether enough entries were added since the last saved snapshot to save it again."""
        return self._stored - self._snapshot_count >= max(SNAPSHOT_EVERY, self._snapshot_count // 20)

    def _save_snapshot(self) -> None:
        """Save the descriptor index when rebuilding it would be slow (an inverted file) and it holds exactly
        the store's entries (benchmarks pad it with synthetic ones)."""
        if not self._descriptors.inverted or len(self._entries) != self._stored:
            return
        self._snapshots.save(self._descriptors, self._epoch, self._last_seq, self._stored)
        self._snapshot_count = self._stored

    def load_entries(self, entries: list[KnownMedia], snapshot: tuple[DescriptorIndex, int] | None = None) -> None:
        """Build the indexes from ``entries`` (used by :meth:`refresh`, and by benchmarks to skip a store);
        ``snapshot`` is a saved descriptor index that already holds the descriptors of the first entries."""
        self._entries, self._whole = [], HammingIndex(PdqSignal)
        self._descriptors, covered = snapshot if snapshot is not None else (DescriptorIndex(), 0)
        self._quality = np.zeros(0, np.int16)
        self._append(entries, descriptors_from=covered)

    def _append(self, entries: list[KnownMedia], descriptors_from: int = 0) -> None:
        """Add entries to the indexes; each one's owner number is its position in ``self._entries``. The
        descriptors of the first ``descriptors_from`` entries are in the index already (a snapshot)."""
        start = len(self._entries)
        whole, whole_owner, quality = [], [], []
        descriptors, descriptor_owners = [], []
        for i, entry in enumerate(entries, start):
            s = entry.signals
            quality.append(int(s.get(PDQ_QUALITY, 100)))
            for key in (PdqSignal.name, PDQ_STRIPPED):
                if s.get(key):
                    whole.append(s[key])
                    whole_owner.append(i)
            if s.get(ORB_DESCRIPTORS) and i - start >= descriptors_from:
                codes = unpack(s[ORB_DESCRIPTORS])
                descriptors.append(codes)
                descriptor_owners.append(np.full(len(codes), i, np.int32))
        if descriptors:
            self._descriptors.add_many(np.concatenate(descriptors), np.concatenate(descriptor_owners))
        self._whole.add_hex(whole, whole_owner)
        # the descriptors now live in the index: keeping their text too would double the memory (~7 KB each)
        self._entries.extend(
            replace(e, signals={k: v for k, v in e.signals.items() if k != ORB_DESCRIPTORS}) for e in entries
        )
        self._quality = np.concatenate([self._quality, np.asarray(quality, np.int16)])

    def add_synthetic(self, n: int, descriptor_pool: np.ndarray | None = None, seed: int = 0) -> None:
        """Benchmarks only: pad the indexes with ``n`` entries of random PDQ hashes and, when a pool of
        real descriptors is given, descriptors drawn from it with 1/8 of their bits flipped (realistic
        neighbours for the descriptor index, unlike uniform random bits)."""
        rng = np.random.default_rng(seed)
        start = len(self._entries)
        self._entries = self._entries + [KnownMedia(label=f"synthetic-{i}", signals={}, id=f"syn{i}") for i in range(n)]
        owners = np.arange(start, start + n)
        self._whole.add(rng.integers(0, 256, (n, 32), dtype=np.uint8), owners)
        if descriptor_pool is not None and len(descriptor_pool):
            from bot.hashing.local import RETRIEVAL_DESCRIPTORS as per

            for chunk in range(0, n, 10_000):
                m = min(10_000, n - chunk) * per
                picks = descriptor_pool[rng.integers(0, len(descriptor_pool), m)]
                # AND of three random bytes: each bit set with probability 1/8 (~32 of 256 bits flipped)
                flips = rng.integers(0, 256, (3, m, 32), dtype=np.uint8)
                flips = flips[0] & flips[1] & flips[2]
                self._descriptors.add_many(picks ^ flips, np.repeat(owners[chunk : chunk + m // per], per))
            self._descriptors.build()
        self._quality = np.concatenate([self._quality, np.full(n, 100, np.int16)])

    # ------------------------------------------------------------------ matching
    def match(
        self,
        image: Image.Image | bytes,
        *,
        exclude_sha256: str | None = None,
        exclude_origin: dict[str, Any] | None = None,
        limit: int = 5,
    ) -> list[Match]:
        """Known entries ``image`` is a copy of, best first (``match`` tier before ``suggest``).

        ``exclude_sha256`` / ``exclude_origin`` (platform + post_id) skip the entry of the very file or post
        being checked, so an archived image never reports itself as recycled. Raises
        :class:`~bot.errors.MediaError` for bytes that are not a safe, decodable image.
        """
        work = decode_image(image) if isinstance(image, (bytes, bytearray)) else prepare(image)
        out_size = image.size if isinstance(image, Image.Image) else upright_size(bytes(image))
        self.refresh()
        with self._lock.read_lock():  # a refresh (growing the indexes in place) waits for the checks
            return self._match(work, out_size, exclude_sha256, exclude_origin, limit)

    def _match(
        self,
        work: Image.Image,
        out_size: tuple[int, int] | None,
        exclude_sha256: str | None,
        exclude_origin: dict[str, Any] | None,
        limit: int,
    ) -> list[Match]:
        cfg = self.config
        stripped, box = strip_borders(work)
        variants, quality = PdqSignal.dihedral(work)
        if box != (0, 0, work.width, work.height):
            stripped_variants, _ = PdqSignal.dihedral(stripped)
        else:
            stripped_variants = []
        whole_hits = [
            _Candidate(owner, distance, qi % 8, True)
            for owner, distance, qi in self._whole.search(variants + stripped_variants, _K_GLOBAL, cfg.pdq_suggest)
            if not self._excluded(self._entries[owner], exclude_sha256, exclude_origin)
        ]
        results: list[Match] = []
        done: set[tuple[int, bool]] = set()  # (owner, mirrored) already decided
        features: dict[bool, LocalFeatures] = {}
        budget = [cfg.max_candidates]
        # whole-image hits first; then, unless a known item matched, descriptor votes (below). A
        # whole-image hit on a *seen* entry does not end the search: a re-post of an earlier post's crop of a
        # game frame must still name the game frame, not only the earlier post.
        # Whole-image hits beyond pdq_match are look-alike layouts as often as copies: verify the 3 closest.
        close = [c for c in whole_hits if c.distance <= cfg.pdq_match]
        near = sorted((c for c in whole_hits if c.distance > cfg.pdq_match), key=lambda c: c.distance)
        self._decide(close + near[:3], work, out_size, quality, features, results, done, budget)
        if not self._known_match(results) and len(self._descriptors):
            # the image as is first: a copy that is not mirrored usually gets a clear majority of votes,
            # and once it verifies the mirrored vote (a second ORB pass and index search) is not needed
            voted = self._vote(work, False, features)
            if max((c.votes for c in voted), default=0) >= _STRONG_VOTES:
                shortlist = self._shortlist(voted, results, exclude_sha256, exclude_origin)
                self._decide(shortlist, work, out_size, quality, features, results, done, budget)
            if not self._known_match(results):
                # both orientations together: a mirrored copy gets few, random votes as is, many mirrored
                voted += self._vote(work, True, features)
                shortlist = self._shortlist(voted, results, exclude_sha256, exclude_origin)
                self._decide(shortlist, work, out_size, quality, features, results, done, budget)
        # a near-identical whole-image hash is the strongest evidence, then the most inliers
        results.sort(key=lambda m: (m.tier != "match", m.signal != "pdq", -(m.inliers or 0), m.distance or 0))
        unique: dict[str, Match] = {}
        for m in results:  # one result per entry (its best), e.g. a suggestion as is and a match mirrored
            unique.setdefault(m.known.id, m)
        return list(unique.values())[:limit]

    @staticmethod
    def _known_match(results: list[Match]) -> bool:
        return any(m.tier == "match" and not m.recycled for m in results)

    def _vote(self, work: Image.Image, mirrored: bool, features: dict[bool, LocalFeatures]) -> list[_Candidate]:
        """The entries that the image's descriptors (mirrored or not) vote for, with their votes."""
        feats = self._features(work, mirrored, features)
        votes = self._descriptors.vote(feats.descriptors).most_common(self.config.max_candidates)
        return [_Candidate(owner, 999, 4 if mirrored else 0, False, n) for owner, n in votes]

    def _shortlist(
        self,
        voted: list[_Candidate],
        results: list[Match],
        exclude_sha256: str | None,
        exclude_origin: dict[str, Any] | None,
    ) -> list[_Candidate]:
        """The voted candidates worth a verification, most votes first.

        Copies get 40-140 votes, unrelated images a flat spread of 10-35 (measured at 1 k and 100 k
        entries): only candidates within half of the best vote count are worth a verification. Entries
        already decided (an identical earlier post matched whole gets every vote) must not set that bar."""
        cfg = self.config
        decided = {r.known.id for r in results}
        voted = [
            c
            for c in voted
            if self._entries[c.owner].id not in decided
            and not self._excluded(self._entries[c.owner], exclude_sha256, exclude_origin)
        ]
        top = max((c.votes for c in voted), default=0)
        bar = max(cfg.min_votes, top * _VOTE_SHARE)
        return [c for c in sorted(voted, key=lambda c: -c.votes) if c.votes >= bar][: max(1, cfg.max_candidates // 2)]

    def _decide(
        self,
        candidates: list[_Candidate],
        work: Image.Image,
        out_size: tuple[int, int] | None,
        quality: int,
        features: dict[bool, LocalFeatures],
        results: list[Match],
        done: set[tuple[int, bool]],
        budget: list[int],
    ) -> None:
        """Turn candidates into matches: trusted near-identical PDQ directly, the rest by verification."""
        cfg = self.config
        for cand in candidates:
            mirrored = cand.variant in MIRRORED_VARIANTS
            matched = {r.known.id for r in results if r.tier == "match"}
            if self._entries[cand.owner].id in matched or (cand.owner, mirrored) in done:
                continue
            done.add((cand.owner, mirrored))
            entry = self._entries[cand.owner]
            trusted = quality >= cfg.min_quality and int(self._quality[cand.owner]) >= cfg.min_quality
            if cand.whole and cand.distance <= cfg.pdq_match and trusted:
                results.append(Match(entry, "match", "pdq", cand.distance, None, None, mirrored))
                continue
            check = None
            if budget[0] > 0:
                budget[0] -= 1
                check = self._verify(entry, work, mirrored, features)
            distance = cand.distance if cand.whole else None
            if check is not None and check.passes(cfg.min_inliers_match):
                tier = "match"
            elif check is not None and check.passes(cfg.min_inliers_suggest):
                tier = "suggest"
            else:
                if cand.whole and cand.distance <= cfg.pdq_suggest and trusted:
                    results.append(Match(entry, "suggest", "pdq", cand.distance, None, None, mirrored))
                continue
            region = self._to_input_pixels(check.region, work, out_size, mirrored)
            results.append(Match(entry, tier, "orb", distance, check.inliers, region, mirrored))

    def _features(self, work: Image.Image, mirrored: bool, features: dict[bool, LocalFeatures]) -> LocalFeatures:
        """The query's local features in one orientation, extracted once per check (votes and every
        verification of that orientation share them)."""
        if mirrored not in features:
            features[mirrored] = extract(self._orient(work, mirrored))
        return features[mirrored]

    @staticmethod
    def _orient(work: Image.Image, mirrored: bool) -> Image.Image:
        return work.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if mirrored else work

    def best(self, image: Image.Image | bytes, **kwargs: Any) -> Match | None:
        found = self.match(image, limit=1, **kwargs)
        return found[0] if found else None

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _excluded(entry: KnownMedia, sha256: str | None, origin: dict[str, Any] | None) -> bool:
        if sha256 and entry.sha256 == sha256:
            return True
        if origin and entry.kind == KnownKind.SEEN:
            o = entry.origin
            return o.get("platform") == origin.get("platform") and str(o.get("post_id")) == str(origin.get("post_id"))
        return False

    def _verify(
        self, entry: KnownMedia, work: Image.Image, mirrored: bool, features: dict[bool, LocalFeatures]
    ) -> Verification | None:
        known = self.known_features(entry)
        if known is None:
            return None
        return verify(self._features(work, mirrored, features), known)

    def known_features(self, entry: KnownMedia) -> LocalFeatures | None:
        """Local features of a stored entry: from the cache, else recomputed from the archive and cached.
        None for entries without an archived file (imported hash lists)."""
        if not entry.sha256 or not entry.archive_path:
            return None
        cache = self.features_dir / entry.sha256[:2] / f"{entry.sha256}.npz"
        try:
            return LocalFeatures.from_bytes(cache.read_bytes())
        except (OSError, ValueError, KeyError):
            pass
        try:
            feats = extract(decode_image(self.archive.get(entry.archive_path)))
        except AfterimageError as e:
            log.warning("cannot compute local features of %s: %s", entry.id, e)
            return None
        self.cache_features(entry.sha256, feats)
        return feats

    def cache_features(self, sha256: str, feats: LocalFeatures) -> None:
        cache = self.features_dir / sha256[:2] / f"{sha256}.npz"
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{threading.get_ident()}.tmp")  # worker threads may cache one file at once
            tmp.write_bytes(feats.to_bytes())
            tmp.replace(cache)
        except OSError as e:  # a read-only data folder only costs speed
            log.debug("cannot cache features: %s", e)

    @staticmethod
    def _to_input_pixels(
        quad: list[tuple[float, float]], work: Image.Image, size: tuple[int, int] | None, mirrored: bool
    ) -> list[tuple[float, float]]:
        """Map a quadrilateral from (possibly mirrored) working-image pixels back to the input's pixels."""
        w, h = work.size
        sx = (size[0] / w) if size else 1.0
        sy = (size[1] / h) if size else 1.0
        return [(((w - x) if mirrored else x) * sx, y * sy) for x, y in quad]
