"""The matcher: is this image a (transformed) copy of something known or seen before?

Two stages, so a check costs about the same at 100 k known images as at 1 k:

1. Retrieval. Every registered signal type (:data:`bot.hashing.signals.SIGNAL_TYPES`: PDQ in its 8
   rotations/mirrors, pHash as is and mirrored) searches its own index (the class the type names) with
   the query's hashes, with and without borders/caption bars; the query's ORB descriptors (spread over the
   image; as is, then mirrored unless that already found a match) vote in the descriptor index
   (:mod:`bot.matching.descriptors`), which finds crops and composites no whole-image hash can.
2. Decision. A hash within its type's match radius (PDQ: ``pdq_match``, both hashes of trustworthy
   quality) is a match on its own; a low-quality hash (a smooth, dark or blurred picture), or one beyond
   the match radius, is a match within ``pdq_suggest`` when a second signal type agrees (pHash within 6
   bits; a pHash candidate likewise when PDQ agrees). Every other candidate is verified
   with local features and RANSAC (:mod:`bot.hashing.local`: a similarity, or a sane homography for
   perspective): ``match`` or ``suggest`` by inlier count; a fit short of the match bar whose inliers
   bunch on part of the picture is also judged on its pixels (:mod:`bot.hashing.agreement`: the known
   image laid over the query where the fit puts it); a hash within the candidate radius that fails
   verification is still a ``suggest`` (for review, never an alert).
3. Regions. When the whole image matched nothing known, the embedded pictures proposed by
   :mod:`bot.hashing.regions` (a picture inside a screenshot of a post, a meme panel, a paste) are checked
   the same way, each as an image of its own, and a match outlines that region in the query.

Local features of known images (1000 ORB keypoints) are cached under ``features_dir`` as raw arrays, at most
40 KB per image (26 KB on bench/speed.py's images, 2.6 GB at 100 k): parsing one takes 0.02 ms (an .npz took
0.6 ms, paid by every verification), recomputing it from the archive (read, verify the SHA-256, decode, ORB)
14 ms, and a check verifies up to ``max_candidates`` of them. A missing or unreadable cache file is simply
recomputed, so the cache can be deleted at any time; files of an older format are deleted by
:meth:`Matcher.sweep_feature_cache`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import fasteners
import numpy as np
from PIL import Image

from bot.archive import Archive
from bot.config import MatchingConfig
from bot.errors import AfterimageError
from bot.hashing.agreement import pixel_agreement
from bot.hashing.decode import decode_image
from bot.hashing.local import (
    FEATURES_VERSION, FEW_KEYPOINTS, GRAIN, LocalFeatures, Verification, extract, extract_coarse, grain, unpack, verify, within,
)
from bot.hashing.index import HammingIndex
from bot.hashing.regions import Box, propose
from bot.hashing.signals import MIRRORED_VARIANTS, ORB_DESCRIPTORS, SIGNAL_TYPES, SignalType
from bot.hashing.stage import REGION_SOURCE_SIDE, HashedImage, hash_image, hash_region
from bot.matching.descriptors import DescriptorIndex
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
#: query descriptors (a prefix of the spread order) that vote mirrored: the mirrored vote runs for every
#: query that matched nothing as is, so mostly for unrelated images, and its cost grows with the voters; a
#: mirrored copy's votes concentrate on one entry, so half the voters still put it first
MIRRORED_VOTERS = 250
#: proposed regions (embedded pictures) checked when the whole image matched nothing known, and the
#: candidates verified per region
MAX_REGIONS = 3
REGION_CANDIDATES = 3
#: share of a region view that a known outline must fill (and lie within) to count as that region
FILLS = 0.85
#: a verification whose scale (query / known) is at least this is retried at the known image's scale
RESCALE_ABOVE = 1.5
#: ... when it found at least this many inliers (an unrelated image's random fit finds about 10: retrying
#: every one of them would double the cost of a check that finds nothing)
RESCALE_MIN_INLIERS = 18
#: a verification at about the known image's scale (at least COARSE_ABOVE) that fails with enough inliers is
#: retried with the view shrunk COARSE times: noise grain, JPEG blocks and blur take the fine corners, and
#: the coarse structure the known image's pyramid also holds survives them
COARSE_ABOVE, COARSE = 0.75, 2.0
#: a known image's source at least this many times the working size holds detail its working image lost:
#: a low-texture view (fewer than FEW_KEYPOINTS keypoints: a magnified crop of sky, haze or a blurred
#: scene) that fails verification is verified once more against the known source's sharper keypoints,
#: for at most SHARP_CANDIDATES candidates per view (each decodes a source the first time; the first
#: candidates verified are often a hash's near neighbours, the voted true entry comes after them)
SHARP_ABOVE = 1.25
SHARP_CANDIDATES = 2
#: a failing fit with at least this many inliers is checked on the pixels too (an unrelated image's random
#: fit finds about 10; 2 of bench/speed.py's 20 unrelated 12 MP queries ran the check, each a decode of
#: a known working image and ~3 ms), when its overlap holds at least PIXELS_MIN_CELLS textured cells
PIXELS_MIN_INLIERS, PIXELS_MIN_CELLS = 20, 16
#: the descriptor index is saved again once this many entries (or 5 %) were added since the last save
SNAPSHOT_EVERY = 1_000
#: entries appended from one read of the store at a refresh (more, rarer: read page by page)
_APPEND_PAGE = 200
#: how a cached features file of this code's format ends (:func:`~bot.hashing.local.LocalFeatures.to_bytes`)
_CACHE_SUFFIX = f".v{FEATURES_VERSION}.orb"


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
    #: the query's (or the matched region's) outline in the known image, as fractions of its width and
    #: height: where a crop came from
    known_region: list[tuple[float, float]] | None = None

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
    distance: int  # distance of the hash that retrieved it (999: retrieved by descriptor votes)
    variant: int  # dihedral variant of the query that retrieved it
    signal: str | None  # signal type whose index retrieved it (None: descriptor votes)
    votes: int = 0

    @property
    def whole(self) -> bool:
        return self.signal is not None


@dataclass
class _View:
    """What one pass of a check looks at: the whole working image, or a proposed region of it (an embedded
    picture) brought to working size. Its hashes and local features are computed once per pass."""

    image: Image.Image
    box: Box | None  # where the view lies in the working image (None: all of it)
    hashes: dict[str, list[tuple[str, int]]]  # signal type -> (hash, dihedral variant) of the query
    quality: dict[str, int | None]  # signal type -> quality of the query's hash
    #: the part of the view that is picture, not bars or a caption band (None: all of it): only its
    #: keypoints vote and are verified
    content: Box | None = None
    features: dict[bool, LocalFeatures] = field(default_factory=dict)
    #: verifications against a known source's sharper keypoints spent on this view
    sharpened: int = 0
    #: features of the view brought down to a candidate's scale, by (mirrored, scale in quarter steps)
    rescaled: dict[tuple[bool, int], LocalFeatures] = field(default_factory=dict)

    def picture(self, feats: LocalFeatures, mirrored: bool, scale: float = 1.0) -> LocalFeatures:
        """The keypoints of the view's content (features of the view mirrored or shrunk ``scale`` times)."""
        if self.content is None:
            return feats
        left, top, right, bottom = self.content
        if mirrored:
            left, right = self.image.width - right, self.image.width - left
        return within(feats, (left / scale, top / scale, right / scale, bottom / scale))

    def hash_of(self, signal: str, variant: int) -> str | None:
        return next((h for h, v in self.hashes.get(signal, ()) if v == variant), None)

    def to_work(self, quad: list[tuple[float, float]], mirrored: bool) -> list[tuple[float, float]]:
        """A quadrilateral from (possibly mirrored) view pixels to working-image pixels."""
        w, h = self.image.size
        points = [((w - x) if mirrored else x, y) for x, y in quad]
        if self.box is None:
            return points
        left, top, right, bottom = self.box
        sx, sy = (right - left) / w, (bottom - top) / h
        return [(left + x * sx, top + y * sy) for x, y in points]


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
        self._indexes: dict[str, HammingIndex] = {}
        self._descriptors = DescriptorIndex()
        self._quality: dict[str, np.ndarray] = {}
        self._reset_hash_indexes()

    # ------------------------------------------------------------------ index
    def refresh(self, force: bool = False) -> bool:
        """Bring the indexes up to date with the store. True when anything changed.

        New entries are appended (the daemon adds a *seen* entry for every archived image, so a full reload
        per post would stall matching at 100 k entries); a replaced or removed entry, or a count that does
        not add up (a writer committed an older insertion number late), reloads everything."""
        read_after, read = self._last_seq, None
        if not force and self._generation is not None:
            # one read, without waiting for the checks in progress: mostly unchanged, or an entry or two to add
            read = self.store.known_since(read_after, _APPEND_PAGE)
            if read[0].generation == self._generation:
                return False
        with self._lock.write_lock():
            if not force and self._generation is not None:
                if read is None or self._last_seq != read_after:  # another thread moved the index meanwhile
                    read = self.store.known_since(self._last_seq, _APPEND_PAGE)
                after, new = read
                if after.generation == self._generation:
                    return False
                if after.epoch == self._epoch:
                    if new is None:  # many at once: read them all, then check that nothing else moved
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
        self._entries = []
        self._reset_hash_indexes()
        self._descriptors, covered = snapshot if snapshot is not None else (DescriptorIndex(), 0)
        self._append(entries, descriptors_from=covered)

    def _reset_hash_indexes(self) -> None:
        """One empty index per registered signal type (the type names its index class), and quality arrays
        for the types that score their hashes."""
        self._indexes = {name: sig.get_index_cls()(sig) for name, sig in SIGNAL_TYPES.items()}
        self._quality = {name: np.zeros(0, np.int16) for name, sig in SIGNAL_TYPES.items() if sig.quality_key}

    def _append(self, entries: list[KnownMedia], descriptors_from: int = 0) -> None:
        """Add entries to the indexes; each one's owner number is its position in ``self._entries``. The
        descriptors of the first ``descriptors_from`` entries are in the index already (a snapshot)."""
        start = len(self._entries)
        hashes: dict[str, tuple[list[str], list[int]]] = {name: ([], []) for name in SIGNAL_TYPES}
        quality: dict[str, list[int]] = {name: [] for name in self._quality}
        descriptors, descriptor_owners = [], []
        for i, entry in enumerate(entries, start):
            s = entry.signals
            for name, sig in SIGNAL_TYPES.items():
                for key in sig.keys:
                    if s.get(key):
                        hashes[name][0].append(s[key])
                        hashes[name][1].append(i)
                if sig.quality_key:
                    quality[name].append(int(s.get(sig.quality_key, 100)))
            if s.get(ORB_DESCRIPTORS) and i - start >= descriptors_from:
                codes = unpack(s[ORB_DESCRIPTORS])
                descriptors.append(codes)
                descriptor_owners.append(np.full(len(codes), i, np.int32))
        if descriptors:
            self._descriptors.add_many(np.concatenate(descriptors), np.concatenate(descriptor_owners))
        for name, (hexes, owners) in hashes.items():
            self._indexes[name].add_hex(hexes, owners)
        for name, values in quality.items():
            self._quality[name] = np.concatenate([self._quality[name], np.asarray(values, np.int16)])
        # the descriptors now live in the index: keeping their text too would double the memory (~7 KB each)
        self._entries.extend(
            replace(e, signals={k: v for k, v in e.signals.items() if k != ORB_DESCRIPTORS}) for e in entries
        )

    # ------------------------------------------------------------------ matching
    def match(
        self,
        image: Image.Image | bytes | HashedImage,
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
        hashed = image if isinstance(image, HashedImage) else hash_image(image)
        self.refresh()
        with self._lock.read_lock():  # a refresh (growing the indexes in place) waits for the checks
            return self._match(hashed, exclude_sha256, exclude_origin, limit)

    def _match(
        self,
        hashed: HashedImage,
        exclude_sha256: str | None,
        exclude_origin: dict[str, Any] | None,
        limit: int,
    ) -> list[Match]:
        results: list[Match] = []
        excluded = (exclude_sha256, exclude_origin)
        work, out_size = hashed.image, hashed.size
        self._check(self._view(hashed, None), work, out_size, excluded, results, [self.config.max_candidates], True)
        if not self._known_match(results):
            # an embedded picture (a screenshot of a post, a meme panel, a paste): each proposed region is
            # checked as an image of its own, as is only (a mirrored picture inside a screenshot is rare)
            for box in propose(work, MAX_REGIONS):
                view = self._view(hash_region(hashed.region(box)), box)
                self._check(view, work, out_size, excluded, results, [REGION_CANDIDATES], False)
                if self._known_match(results):
                    break
        if not self._known_match(results) and grain(work) >= GRAIN:
            # a grainy copy (a noisy photo of a screen): its keypoints are grain; voted and verified again
            # with the keypoints of a smoothed-out copy. Only as a retry: at full size the grain-free part
            # of a noisy copy often matches already, and smoothing would lose it
            view = _View(work, None, {name: [] for name in SIGNAL_TYPES}, {}, hashed.content)
            view.features[False] = view.picture(extract_coarse(work), False)
            self._check(view, work, out_size, excluded, results, [REGION_CANDIDATES], False)
        # a near-identical whole-image hash is the strongest evidence, then the most inliers
        results.sort(key=lambda m: (m.tier != "match", m.signal == "orb", -(m.inliers or 0), m.distance or 0))
        unique: dict[str, Match] = {}
        for m in results:  # one result per entry (its best), e.g. a suggestion as is and a match mirrored
            unique.setdefault(m.known.id, m)
        return list(unique.values())[:limit]

    @staticmethod
    def _view(hashed: HashedImage, box: Box | None) -> _View:
        """A view of a hashed image (the whole query, or a region of it hashed on its own)."""
        view = _View(hashed.image, box, hashed.queries, hashed.quality, hashed.content)
        view.features[False] = view.picture(hashed.features, False)
        return view

    def _check(
        self,
        view: _View,
        work: Image.Image,
        out_size: tuple[int, int] | None,
        excluded: tuple[str | None, dict[str, Any] | None],
        results: list[Match],
        budget: list[int],
        mirrored_votes: bool,
    ) -> None:
        """One pass over a view: hash-index candidates, then (unless a known item matched) descriptor votes.

        A whole-image hit on a *seen* entry does not end the search: a re-post of an earlier post's crop of
        a game frame must still name the game frame, not only the earlier post. Hash hits beyond a type's
        match radius are look-alike layouts as often as copies: only the 3 closest are verified."""
        cfg = self.config
        done: set[tuple[int, bool]] = set()  # (owner, mirrored) decided in this view
        close: list[_Candidate] = []
        near: list[_Candidate] = []
        for name, sig in SIGNAL_TYPES.items():
            queries = view.hashes[name]
            if not queries:
                continue
            radius = sig.match_radius(cfg)
            for owner, distance, qi in self._indexes[name].search([h for h, _ in queries], _K_GLOBAL,
                                                                   sig.candidate_radius(cfg)):
                if self._excluded(self._entries[owner], *excluded):
                    continue
                cand = _Candidate(owner, distance, queries[qi][1], name)
                (close if radius is not None and distance <= radius else near).append(cand)
        near.sort(key=lambda c: c.distance)
        self._decide(close + near[:3], view, work, out_size, results, done, budget)
        if self._known_match(results) or not len(self._descriptors):
            return
        # the image as is first: a copy that is not mirrored usually gets a clear majority of votes, and
        # once it verifies the mirrored vote (a second ORB pass and index search) is not needed
        voted = self._vote(view, False)
        if max((c.votes for c in voted), default=0) >= _STRONG_VOTES or not mirrored_votes:
            self._decide(self._shortlist(voted, results, done, *excluded), view, work, out_size, results, done, budget)
        if mirrored_votes and not self._known_match(results):
            # both orientations together: a mirrored copy gets few, random votes as is, many mirrored
            voted += self._vote(view, True)
            self._decide(self._shortlist(voted, results, done, *excluded), view, work, out_size, results, done, budget)

    @staticmethod
    def _known_match(results: list[Match]) -> bool:
        return any(m.tier == "match" and not m.recycled for m in results)

    def _vote(self, view: _View, mirrored: bool) -> list[_Candidate]:
        """The entries that the view's descriptors (mirrored or not) vote for, with their votes."""
        descriptors = self._features(view, mirrored).descriptors
        votes = self._descriptors.vote(descriptors[:MIRRORED_VOTERS] if mirrored else descriptors)
        votes = votes.most_common(self.config.max_candidates)
        return [_Candidate(owner, 999, 4 if mirrored else 0, None, n) for owner, n in votes]

    def _shortlist(
        self,
        voted: list[_Candidate],
        results: list[Match],
        done: set[tuple[int, bool]],
        exclude_sha256: str | None,
        exclude_origin: dict[str, Any] | None,
    ) -> list[_Candidate]:
        """The voted candidates worth a verification, most votes first.

        Copies get 40-140 votes, unrelated images a flat spread of 10-35 (measured at 1 k and 100 k
        entries): only candidates within half of the best vote count are worth a verification. Entries
        already matched (an identical earlier post matched whole gets every vote) or verified in this view
        must not set that bar; an entry suggested by another view stays a candidate (a picture under big
        text is suggested whole and matched as the region a proposal cuts out)."""
        cfg = self.config
        decided = {r.known.id for r in results if r.tier == "match"}
        voted = [
            c
            for c in voted
            if self._entries[c.owner].id not in decided and (c.owner, c.variant in MIRRORED_VARIANTS) not in done
            and not self._excluded(self._entries[c.owner], exclude_sha256, exclude_origin)
        ]
        top = max((c.votes for c in voted), default=0)
        bar = max(cfg.min_votes, top * _VOTE_SHARE)
        return [c for c in sorted(voted, key=lambda c: -c.votes) if c.votes >= bar][: max(1, cfg.max_candidates // 2)]

    def _trusted(self, signal: str, owner: int, view: _View) -> bool:
        """Both the query's and the entry's hash of ``signal`` are of trustworthy quality (or unscored)."""
        q = view.quality.get(signal)
        stored = self._quality.get(signal)
        minimum = self.config.min_quality
        return (q is None or q >= minimum) and (stored is None or int(stored[owner]) >= minimum)

    def _confirmed(self, cand: _Candidate, view: _View) -> tuple[str, int] | None:
        """Another signal type that agrees the candidate is the same picture (same orientation), and its
        distance; None when none does."""
        entry = self._entries[cand.owner]
        for name, sig in SIGNAL_TYPES.items():
            if name == cand.signal or not sig.agree:
                continue
            mine = view.hash_of(name, cand.variant)
            stored = [entry.signals[k] for k in sig.keys if entry.signals.get(k)]
            agree = min(sig.agree, sig.candidate_radius(self.config))  # a stricter profile narrows it
            distance = min((sig.distance(mine, theirs) for theirs in stored), default=None) if mine else None
            if distance is not None and distance <= agree:
                return name, distance
        return None

    def _decide(
        self,
        candidates: list[_Candidate],
        view: _View,
        work: Image.Image,
        out_size: tuple[int, int] | None,
        results: list[Match],
        done: set[tuple[int, bool]],
        budget: list[int],
    ) -> None:
        """Turn candidates into matches: a near-identical trusted hash directly (or a very close unsure one
        that a second signal confirms), the rest by local-feature verification."""
        cfg = self.config
        for cand in candidates:
            mirrored = cand.variant in MIRRORED_VARIANTS
            matched = {r.known.id for r in results if r.tier == "match"}
            if self._entries[cand.owner].id in matched or (cand.owner, mirrored) in done:
                continue
            done.add((cand.owner, mirrored))
            entry = self._entries[cand.owner]
            sig: type[SignalType] | None = SIGNAL_TYPES.get(cand.signal) if cand.signal else None
            trusted = sig is not None and self._trusted(sig.name, cand.owner, view)
            if sig is not None:
                alone, confirmed = sig.match_radius(cfg), sig.confirmed_radius(cfg)
                agreeing = self._confirmed(cand, view) if confirmed is not None and cand.distance <= confirmed else None
                if (alone is not None and cand.distance <= alone and trusted) or agreeing is not None:
                    # reported as the signal with a match radius of its own (PDQ for a pHash candidate), so
                    # an item's stricter ``pdq_match`` applies to the distance it is written for
                    name, distance = (sig.name, cand.distance) if alone is not None or agreeing is None else agreeing
                    results.append(Match(entry, "match", name, distance, None, self._box_region(view, work, out_size), mirrored))
                    continue
            check = None
            if budget[0] > 0:
                budget[0] -= 1
                check = self._verify(entry, view, mirrored)
            distance = cand.distance if sig is not None else None
            if check is not None and (check.passes(cfg.min_inliers_match) or (
                    self._fills_region(check, view) and check.passes(cfg.min_inliers_suggest))):
                tier = "match"
            elif check is not None and check.passes(cfg.min_inliers_suggest):
                tier = "suggest"
            else:
                if sig is not None and sig.match_radius(cfg) is not None and trusted:  # within its candidate radius
                    results.append(Match(entry, "suggest", sig.name, cand.distance, None, self._box_region(view, work, out_size), mirrored))
                continue
            region = self._to_input_pixels(view.to_work(check.region, mirrored), work, out_size)
            # (a mirrored view's outline is the same rectangle in the known image: no unmirroring needed)
            results.append(Match(entry, tier, "orb", distance, check.inliers, region, mirrored, check.known_region))

    @staticmethod
    def _fills_region(check: Verification, view: _View) -> bool:
        """A region view whose verified known outline is the proposed rectangle itself: the proposal (a
        framed picture) and the geometry agree independently, so the suggest tier's inliers are enough.
        (A picture inside a phone screenshot is small: its copy keeps fewer keypoints than a whole image.)"""
        if view.box is None:
            return False
        w, h = view.image.size
        quad = np.asarray(check.region, np.float32)
        inside = np.clip(quad, 0, [w, h]).astype(np.float32)  # (clipped corners: close enough for a check)
        area = abs(float(cv2.contourArea(quad)))
        return area > 0 and abs(float(cv2.contourArea(inside))) / area >= FILLS and area / (w * h) >= FILLS

    def _features(self, view: _View, mirrored: bool) -> LocalFeatures:
        """The view's local features in one orientation, extracted once per check (votes and every
        verification of that orientation share them)."""
        if mirrored not in view.features:
            view.features[mirrored] = view.picture(extract(self._orient(view.image, mirrored)), mirrored)
        return view.features[mirrored]

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

    def _verify(self, entry: KnownMedia, view: _View, mirrored: bool) -> Verification | None:
        """Verify the view against an entry. A small crop shown larger than in the known image (scale >=
        :data:`RESCALE_ABOVE`) has most of its keypoints at a finer scale than any of the known image's:
        when it fails, it is verified again brought down to the known image's scale; a degraded copy at
        about the known image's scale is verified again at a coarser one (:data:`COARSE`). A low-texture view
        that still fails is verified once against the known source's sharper keypoints
        (:meth:`sharp_known_features`): :data:`SHARP_CANDIDATES` such retries per view, since each decodes a
        source the first time."""
        return self._pixels_checked(entry, view, mirrored, self._verify_sharp(entry, view, mirrored))

    def _verify_sharp(self, entry: KnownMedia, view: _View, mirrored: bool) -> Verification | None:
        """:meth:`_verify_scaled`, retried against the known source's sharper keypoints for a low-texture view."""
        check = self._verify_scaled(entry, view, mirrored)
        if (check is not None and check.passes(self.config.min_inliers_match)) or view.sharpened >= SHARP_CANDIDATES:
            return check
        query = self._features(view, mirrored)
        if len(query) >= FEW_KEYPOINTS:
            return check
        view.sharpened += 1
        known = self.sharp_known_features(entry)
        if known is None:
            return check
        again = verify(query, known, self.config.min_inliers_match)
        if again is None or (check is not None and again.inliers <= check.inliers):
            return check
        return again

    def _pixels_checked(self, entry: KnownMedia, view: _View, mirrored: bool, check: Verification | None) -> Verification | None:
        """A fit that falls short of the match bar with at least :data:`PIXELS_MIN_INLIERS` inliers (bunched
        on part of a dark, blurred or heavily compressed copy) is measured once more on the pixels: the known
        working image laid over the view where the fit puts it (:func:`pixel_agreement`). Unrelated images'
        random fits mostly stay under that many inliers, so a check that finds nothing rarely pays the decode."""
        if check is None or check.inliers < PIXELS_MIN_INLIERS or check.passes(self.config.min_inliers_match):
            return check
        known = self.known_image(entry)
        if known is None:
            return check
        agreement, cells = pixel_agreement(self._orient(view.image, mirrored), known, check.region)
        log.debug("%s: %d inliers, pixels agree over %.2f of %d cells", entry.id, check.inliers, agreement, cells)
        return replace(check, agreement=agreement) if cells >= PIXELS_MIN_CELLS else check

    def known_image(self, entry: KnownMedia) -> Image.Image | None:
        """An entry's working image, decoded from the archive (None when it has no archived file or it does
        not decode)."""
        if not entry.sha256 or not entry.archive_path:
            return None
        try:
            return decode_image(self.archive.get(entry.archive_path))
        except AfterimageError as e:
            log.warning("cannot decode %s: %s", entry.id, e)
            return None

    def _verify_scaled(self, entry: KnownMedia, view: _View, mirrored: bool) -> Verification | None:
        """Verify the view against the entry's cached keypoints, retried at another scale of the view."""
        known = self.known_features(entry)
        if known is None:
            return None
        enough = self.config.min_inliers_match
        check = verify(self._features(view, mirrored), known, enough)
        if check is None or check.inliers < RESCALE_MIN_INLIERS or check.passes(self.config.min_inliers_match):
            return check
        if check.scale >= RESCALE_ABOVE:
            f = check.scale
        elif check.scale >= COARSE_ABOVE:
            f = COARSE * check.scale
        else:
            return check
        key = (mirrored, round(f * 4))  # one extraction per quarter step of scale, shared by candidates
        if key not in view.rescaled:
            image = self._orient(view.image, mirrored)
            size = (max(1, round(image.width / f)), max(1, round(image.height / f)))
            view.rescaled[key] = view.picture(extract(image.resize(size, Image.Resampling.BILINEAR)), mirrored, f)
        again = verify(view.rescaled[key], known, enough)
        if again is None or again.inliers <= check.inliers and not again.passes(self.config.min_inliers_match):
            return check
        # back to the view's pixels
        return replace(again, region=[(x * f, y * f) for x, y in again.region], scale=again.scale * f)

    def known_features(self, entry: KnownMedia) -> LocalFeatures | None:
        """Local features of a stored entry: from the cache, else recomputed from the archive and cached.
        None for entries without an archived file (imported hash lists)."""
        if not entry.sha256 or not entry.archive_path:
            return None
        cache = self._cache_path(entry.sha256)
        try:
            return LocalFeatures.from_bytes(cache.read_bytes())
        except (OSError, ValueError, KeyError):
            pass
        image = self.known_image(entry)
        if image is None:
            return None
        feats = extract(image)
        self.cache_features(entry.sha256, feats)
        return feats

    def sharp_known_features(self, entry: KnownMedia) -> LocalFeatures | None:
        """Keypoints of an entry's archived source decoded at up to :data:`REGION_SOURCE_SIDE` (positions in
        its working image's pixels, like :meth:`known_features`), or None when the source is not
        :data:`SHARP_ABOVE` times larger than the working image (it holds no finer detail) or not archived.

        A magnified crop of a low-texture picture (30 % of a hazy sky) shows detail finer than the known
        working image kept: its corners have no counterpart among the known image's, at any scale of the
        crop, but the source's own pixels have them. Cached beside the working features (an empty file
        marks a source with nothing finer)."""
        if not entry.sha256 or not entry.archive_path:
            return None
        cache = self._cache_path(entry.sha256, "sharp")
        try:
            feats = LocalFeatures.from_bytes(cache.read_bytes())
            return feats if len(feats) else None
        except (OSError, ValueError, KeyError):
            pass
        try:
            source = decode_image(self.archive.get(entry.archive_path), max_side=REGION_SOURCE_SIDE)
        except AfterimageError as e:
            log.warning("cannot compute sharp local features of %s: %s", entry.id, e)
            return None
        working = self.known_features(entry)
        if working is None:
            return None
        f = working.size[0] / source.width  # source pixels -> working-image pixels
        feats = LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), working.size)
        if f * SHARP_ABOVE <= 1:
            sharp = extract(source)
            feats = LocalFeatures((sharp.points * f).astype(np.float32), sharp.descriptors, working.size)
        self.cache_features(entry.sha256, feats, "sharp")
        return feats if len(feats) else None

    def cache_features(self, sha256: str, feats: LocalFeatures, kind: str = "") -> None:
        cache = self._cache_path(sha256, kind)
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{threading.get_ident()}.tmp")  # worker threads may cache one file at once
            tmp.write_bytes(feats.to_bytes())
            tmp.replace(cache)
        except OSError as e:  # a read-only data folder only costs speed
            log.debug("cannot cache features: %s", e)

    def _cache_path(self, sha256: str, kind: str = "") -> Path:
        suffix = f".{kind}" if kind else ""
        return self.features_dir / sha256[:2] / f"{sha256}{suffix}{_CACHE_SUFFIX}"

    def sweep_feature_cache(self, older_than: float = 3600.0) -> int:
        """Delete cached features this version does not read (an older format's: after an upgrade they
        would otherwise stay, ~30 KB per known image, 3 GB at 100,000) and temporary files a
        killed write left (only those older than ``older_than`` seconds, so a write in progress in another
        process is left alone). Returns how many files were removed; a file that cannot be removed is
        skipped (a read-only data folder only keeps the space)."""
        cutoff = time.time() - older_than
        removed = 0
        for path in self.features_dir.glob("??/*"):
            try:
                stale = not path.name.endswith(_CACHE_SUFFIX) and (
                    not path.name.endswith(".tmp") or path.stat().st_mtime < cutoff
                )
                if stale:
                    path.unlink()
                    removed += 1
            except OSError:
                continue
        return removed

    def _box_region(self, view: _View, work: Image.Image, size: tuple[int, int] | None) -> list[tuple[float, float]] | None:
        """The outline of a region view in the input's pixels (None for the whole image: nothing to outline)."""
        if view.box is None:
            return None
        left, top, right, bottom = view.box
        return self._to_input_pixels([(left, top), (right, top), (right, bottom), (left, bottom)], work, size)

    @staticmethod
    def _to_input_pixels(
        quad: list[tuple[float, float]], work: Image.Image, size: tuple[int, int] | None
    ) -> list[tuple[float, float]]:
        """Map a quadrilateral from working-image pixels back to the input's pixels."""
        w, h = work.size
        sx = (size[0] / w) if size else 1.0
        sy = (size[1] / h) if size else 1.0
        return [(x * sx, y * sy) for x, y in quad]
