"""The matcher: is this image a (transformed) copy of something known or seen before?

Two stages, so a check costs the same at 100 k known images as at 1 k:

1. Retrieval (Hamming indexes, :mod:`bot.matching.index`): the 8 dihedral PDQ variants of the query, with
   and without its borders/caption bars, against the whole-image hashes; the same against the *region*
   hashes of stored images (crop retrieval). A few candidate entries come out.
2. Decision: a whole-image PDQ distance within ``pdq_match`` (and a trustworthy quality) is a match on
   its own. Every other candidate is verified with local features and a RANSAC similarity
   (:mod:`bot.hashing.local`); verified candidates are ``match`` or ``suggest`` by their inlier count, and a
   whole-image PDQ distance within ``pdq_suggest`` alone is a ``suggest``.

Local features of known images are cached under ``features_dir`` (about 33 KB each): recomputing them from
the archive costs a decode and an ORB extraction per candidate (~25 ms), loading the cache ~1 ms.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bot.archive import Archive
from bot.config import MatchingConfig
from bot.errors import AfterimageError
from bot.hashing.borders import strip_borders
from bot.hashing.decode import decode_image, prepare
from bot.hashing.local import LocalFeatures, Verification, extract, verify
from bot.hashing.signals import MIRRORED_VARIANTS, PDQ_QUALITY, PDQ_REGIONS, PDQ_STRIPPED, PdqSignal
from bot.hashing.signals import compute_signals as _compute_signals
from bot.matching.index import HammingIndex
from bot.store.base import StateStore
from bot.store.records import KnownKind, KnownMedia

log = logging.getLogger(__name__)

#: nearest rows fetched per query hash from each index
_K_GLOBAL = 8
_K_REGION = 16


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
    whole: bool  # retrieved by a whole-image hash (not a region)


class Matcher:
    """Matches images against the known-media store; reloads its indexes when known media change."""

    def __init__(
        self,
        store: StateStore,
        archive: Archive,
        config: MatchingConfig | None = None,
        *,
        features_dir: str | Path | None = None,
    ):
        self.store = store
        self.archive = archive
        self.config = config or MatchingConfig()
        self.features_dir = Path(features_dir) if features_dir is not None else Path(archive.root).parent / "features"
        self._lock = threading.Lock()
        self._generation: int | None = None
        self._entries: list[KnownMedia] = []
        self._whole = HammingIndex(PdqSignal)
        self._regions = HammingIndex(PdqSignal)
        self._quality: np.ndarray = np.zeros(0, np.int16)

    # ------------------------------------------------------------------ index
    def refresh(self, force: bool = False) -> bool:
        """Rebuild the indexes if the store's known-media generation changed. True when rebuilt."""
        generation = self.store.known_generation()
        with self._lock:
            if not force and generation == self._generation:
                return False
            entries = list(self.store.iter_known())
            self.load_entries(entries)
            self._generation = generation
        log.info("matching index: %d entries, %d region hashes", len(entries), len(self._regions))
        return True

    def load_entries(self, entries: list[KnownMedia]) -> None:
        """Build the indexes from ``entries`` (used by :meth:`refresh`, and by benchmarks to skip a store)."""
        whole, whole_owner, regions, region_owner, quality = [], [], [], [], []
        for i, entry in enumerate(entries):
            s = entry.signals
            quality.append(int(s.get(PDQ_QUALITY, 100)))
            for key in (PdqSignal.name, PDQ_STRIPPED):
                if s.get(key):
                    whole.append(s[key])
                    whole_owner.append(i)
            for h in filter(None, (s.get(PDQ_REGIONS) or "").split(",")):
                regions.append(h)
                region_owner.append(i)
        self._entries = entries
        self._whole = HammingIndex(PdqSignal)
        self._whole.add_hex(whole, whole_owner)
        self._regions = HammingIndex(PdqSignal)
        self._regions.add_hex(regions, region_owner)
        self._quality = np.asarray(quality, np.int16)

    def add_random_hashes(self, n: int, seed: int = 0) -> None:
        """Benchmarks only: pad the index with ``n`` random entries (whole + region hashes)."""
        rng = np.random.default_rng(seed)
        start = len(self._entries)
        self._entries.extend(KnownMedia(label=f"random-{i}", signals={}, id=f"rnd{i}") for i in range(n))
        owners = np.arange(start, start + n)
        self._whole.add(rng.integers(0, 256, (n, 32), dtype=np.uint8), owners)
        from bot.hashing.regions import windows

        per = sum(1 for _ in windows(100, 100))
        self._regions.add(rng.integers(0, 256, (n * per, 32), dtype=np.uint8), np.repeat(owners, per))
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
        self.refresh()
        work = decode_image(image) if isinstance(image, (bytes, bytearray)) else prepare(image)
        out_size = image.size if isinstance(image, Image.Image) else None
        cfg = self.config
        stripped, box = strip_borders(work)
        variants, quality = PdqSignal.dihedral(work)
        if box != (0, 0, work.width, work.height):
            stripped_variants, _ = PdqSignal.dihedral(stripped)
        else:
            stripped_variants = []
        candidates: dict[int, _Candidate] = {}

        def consider(hits: list[tuple[int, int, int]], n_variants: int, whole: bool) -> None:
            for owner, distance, qi in hits:
                if self._excluded(self._entries[owner], exclude_sha256, exclude_origin):
                    continue
                old = candidates.get(owner)
                if old is None or (whole and not old.whole) or (whole == old.whole and distance < old.distance):
                    candidates[owner] = _Candidate(owner, distance, qi % n_variants, whole)

        all_variants = variants + stripped_variants
        consider(self._whole.search(all_variants, _K_GLOBAL, cfg.region_radius), 8, True)
        consider(self._regions.search(stripped_variants or variants, _K_REGION, cfg.region_radius), 8, False)

        results: list[Match] = []
        features: dict[bool, LocalFeatures] = {}
        ranked = sorted(candidates.values(), key=lambda c: (not (c.whole and c.distance <= cfg.pdq_match), c.distance))
        verified = 0
        for cand in ranked:
            entry = self._entries[cand.owner]
            mirrored = cand.variant in MIRRORED_VARIANTS
            trusted = quality >= cfg.min_quality and int(self._quality[cand.owner]) >= cfg.min_quality
            if cand.whole and cand.distance <= cfg.pdq_match and trusted:
                results.append(Match(entry, "match", "pdq", cand.distance, None, None, mirrored))
                continue
            if verified >= cfg.max_candidates:
                continue
            check = self._verify(entry, work, mirrored, features)
            verified += 1
            if check is None and not mirrored:
                pass
            if check is not None and check.passes(cfg.min_inliers_match):
                tier = "match"
            elif check is not None and check.passes(cfg.min_inliers_suggest):
                tier = "suggest"
            elif cand.whole and cand.distance <= cfg.pdq_suggest and trusted:
                results.append(Match(entry, "suggest", "pdq", cand.distance, None, None, mirrored))
                continue
            else:
                continue
            region = self._to_input_pixels(check.region, work, out_size, mirrored)
            results.append(Match(entry, tier, "orb", cand.distance, check.inliers, region, mirrored))
        results.sort(key=lambda m: (m.tier != "match", -(m.inliers or 0), m.distance if m.distance is not None else 999))
        return results[:limit]

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
        if mirrored not in features:
            features[mirrored] = extract(work.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if mirrored else work)
        return verify(features[mirrored], known)

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
            tmp = cache.with_suffix(".tmp")
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
