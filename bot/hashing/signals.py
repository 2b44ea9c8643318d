"""Signal types: each kind of hash is one class that computes, serializes and compares itself and names the
index that searches it; :data:`SIGNAL_TYPES` is the one registry.

Modelled on ThreatExchange's ``SignalType`` (``get_index_cls``): the matcher does not know what a PDQ hash
is. For every registered type it builds the type's index over the stored hashes (:attr:`SignalType.keys`
of each entry's ``signals``), searches it with the type's query hashes (:meth:`SignalType.query_hashes`,
e.g. PDQ's 8 rotations and mirrors) within the type's candidate radius, and verifies what comes out.
Adding a signal is one class here plus one line in :data:`SIGNAL_TYPES`.
All signals are computed from the working image of :func:`bot.hashing.decode.decode_image`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import imagehash
import numpy as np
import pdqhash
from PIL import Image

from bot.config import MatchingConfig
from bot.hashing.index import HammingIndex


class SignalType(ABC):
    """A fixed-length binary hash compared by Hamming distance."""

    #: name used in ``signals`` dicts, CSV files and match results
    name: ClassVar[str]
    #: hash length in bits
    bits: ClassVar[int]
    #: keys of a ``signals`` dict that hold hashes of this type (the whole image, and e.g. the image without
    #: its borders), all searched in the type's index
    keys: ClassVar[tuple[str, ...]]

    @classmethod
    def get_index_cls(cls) -> type[HammingIndex]:
        """The index class that searches stored hashes of this type (built with the type itself)."""
        return HammingIndex

    #: key of a ``signals`` dict holding the hash's quality (0-100), for types that score their hashes
    quality_key: ClassVar[str | None] = None
    #: as a second opinion on another signal's candidate, a distance within this agrees
    agree: ClassVar[int] = 0

    @classmethod
    def query_hashes(cls, image: Image.Image, variants: bool = True) -> tuple[list[tuple[str, int]], int | None]:
        """Hashes an image is searched with, each with the dihedral variant it stands for (0: as is, 4:
        mirrored; see :meth:`PdqSignal.dihedral`), and the quality of its hash (None: not scored). The
        variant-0 hash is the one stored. ``variants=False``: the image as is only (a picture embedded in a
        screenshot is checked upright, and every extra hash is one more index search)."""
        return [(cls.compute(image), 0)], None

    @classmethod
    def candidate_radius(cls, config: MatchingConfig) -> int:
        """Stored hashes within this distance of a query hash are candidates (verified before matching)."""
        return cls.bits // 10

    @classmethod
    def match_radius(cls, config: MatchingConfig) -> int | None:
        """Within this distance (both hashes of trusted quality) a hash alone is a match; None: never alone."""
        return None

    @classmethod
    def confirmed_radius(cls, config: MatchingConfig) -> int | None:
        """Within this distance a hash too unsure to trust alone (low quality) is a match when another
        signal type agrees (:attr:`agree`); None: never."""
        return None

    @classmethod
    @abstractmethod
    def compute(cls, image: Image.Image) -> str:
        """The serialized (lower-case hex) hash of a working image."""

    @classmethod
    def to_bytes(cls, hexstr: str) -> np.ndarray:
        """Hex -> packed uint8 bits (the layout faiss binary indexes use)."""
        raw = bytes.fromhex(hexstr)
        if len(raw) * 8 != cls.bits:
            raise ValueError(f"a {cls.name} hash has {cls.bits // 4} hex characters, got {len(hexstr)}")
        return np.frombuffer(raw, dtype=np.uint8)

    @classmethod
    def validate(cls, hexstr: str) -> str:
        """Normalized hex, or ValueError (for imports of third-party hash lists)."""
        hexstr = hexstr.strip().lower()
        cls.to_bytes(hexstr)
        return hexstr

    @classmethod
    def distance(cls, a: str, b: str) -> int:
        return int(np.unpackbits(cls.to_bytes(a) ^ cls.to_bytes(b)).sum())


def _bits_to_hex(bits: np.ndarray) -> str:
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex()


class PdqSignal(SignalType):
    """Facebook's PDQ (256 bits) with its quality score; the dihedral variants find mirrored/rotated copies.

    Quality below ~50 means a flat or nearly blank image whose hash collides with many others: such hashes
    are stored but never trusted alone.
    """

    name = "pdq"
    bits = 256
    keys = ("pdq", "pdq_stripped")  # the image, and the image without borders/caption bars when they differ
    quality_key = "pdq_quality"
    #: a hash within this distance that is not a match alone (low quality, or beyond ``pdq_match``) is a
    #: match when a second signal agrees (pHash within its ``agree``), never beyond ``pdq_suggest``: a JPEG
    #: q20 re-save of a quality-5 dark scene lands at 26 bits (pHash 4), its JPEG q15 re-save at 58 (pHash
    #: 6) and a noisy copy at 46 (pHash 2); a different dark scene at 118 (pHash 32). Over bench/disc.py's
    #: 1,080 queries x 30 originals, the closest pair that is not a copy is at 74 bits and pHash 16
    CONFIRMED = 63
    agree = CONFIRMED

    @classmethod
    def query_hashes(cls, image: Image.Image, variants: bool = True) -> tuple[list[tuple[str, int]], int | None]:
        """All 8 rotations/mirrors of the image (one DCT: about the cost of one hash)."""
        if not variants:
            hexstr, quality = cls.compute_with_quality(image)
            return [(hexstr, 0)], quality
        hashes, quality = cls.dihedral(image)
        return [(h, variant) for variant, h in enumerate(hashes)], quality

    @classmethod
    def candidate_radius(cls, config: MatchingConfig) -> int:
        return config.pdq_suggest

    @classmethod
    def match_radius(cls, config: MatchingConfig) -> int | None:
        return config.pdq_match

    @classmethod
    def confirmed_radius(cls, config: MatchingConfig) -> int | None:
        return min(cls.CONFIRMED, config.pdq_suggest)

    @classmethod
    def compute(cls, image: Image.Image) -> str:
        return cls.compute_with_quality(image)[0]

    @classmethod
    def compute_with_quality(cls, image: Image.Image) -> tuple[str, int]:
        bits, quality = pdqhash.compute(np.asarray(image.convert("RGB")))
        return _bits_to_hex(bits), int(quality)

    @classmethod
    def dihedral(cls, image: Image.Image) -> tuple[list[str], int]:
        """The 8 hashes of the image rotated by 0/90/180/270 degrees and mirrored, and the quality.

        Order (pdqhash): original, rot90, rot180, rot270, flip-x, flip-y, flip-plus1, flip-minus1; indexes
        4..7 are mirror images (the local-feature check must mirror the query for those)."""
        hashes, quality = pdqhash.compute_dihedral(np.asarray(image.convert("RGB")))
        return [_bits_to_hex(h) for h in hashes], int(quality)


#: dihedral variants of :meth:`PdqSignal.dihedral` that are mirror images
MIRRORED_VARIANTS = frozenset({4, 5, 6, 7})


class PhashSignal(SignalType):
    """ImageHash's DCT pHash (64 bits): widely used in exchanged hash lists, and an independent second
    opinion where PDQ is unsure: a low-detail image's PDQ hash has a low quality score and is not trusted
    alone, but a small PDQ distance that pHash confirms is a match (:mod:`bot.matching.matcher`). Its own
    near neighbours (as is and mirrored) are candidates for verification."""

    name = "phash"
    bits = 64
    keys = ("phash",)
    #: a pHash this close to a candidate's confirms its PDQ distance (:attr:`PdqSignal.CONFIRMED`), and a
    #: pHash candidate this close is a match when PDQ agrees
    agree = 6

    @classmethod
    def query_hashes(cls, image: Image.Image, variants: bool = True) -> tuple[list[tuple[str, int]], int | None]:
        as_is = [(cls.compute(image), 0)]
        if not variants:
            return as_is, None
        return as_is + [(cls.compute(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)), 4)], None

    @classmethod
    def candidate_radius(cls, config: MatchingConfig) -> int:
        return 6

    @classmethod
    def confirmed_radius(cls, config: MatchingConfig) -> int | None:
        return cls.agree

    @classmethod
    def compute(cls, image: Image.Image) -> str:
        return str(imagehash.phash(image))


#: the registry: every signal type computed, stored, exported and searched
SIGNAL_TYPES: dict[str, type[SignalType]] = {s.name: s for s in (PdqSignal, PhashSignal)}

#: key of a ``signals`` dict besides the signal types' own keys (:attr:`SignalType.keys`, ``quality_key``)
ORB_DESCRIPTORS = "orb"  # base64 of a few spread-out ORB descriptors, for crop retrieval
