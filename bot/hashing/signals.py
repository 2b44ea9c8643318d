"""Signal types: each kind of hash is a small class that knows how to compute, serialize and compare itself.

Modelled on ThreatExchange's ``SignalType``: the matcher does not know what a PDQ hash is, it asks the
signal type for its hex form, its distance and the index that searches it (:mod:`bot.matching.index`).
All signals are computed from the working image of :func:`bot.hashing.decode.decode_image`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import imagehash
import numpy as np
import pdqhash
from PIL import Image

from bot.hashing.borders import strip_borders


class SignalType(ABC):
    """A fixed-length binary hash compared by Hamming distance."""

    #: name used in ``signals`` dicts, CSV files and match results
    name: ClassVar[str]
    #: hash length in bits
    bits: ClassVar[int]

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
    """ImageHash's DCT pHash (64 bits): cheap, widely used, kept for exports and as a second opinion."""

    name = "phash"
    bits = 64

    @classmethod
    def compute(cls, image: Image.Image) -> str:
        return str(imagehash.phash(image))


SIGNAL_TYPES: dict[str, type[SignalType]] = {s.name: s for s in (PdqSignal, PhashSignal)}

#: extra keys of a ``signals`` dict besides the signal types
PDQ_QUALITY = "pdq_quality"
PDQ_STRIPPED = "pdq_stripped"  # PDQ of the image with borders/caption bars removed, when they differ
ORB_DESCRIPTORS = "orb"  # base64 of a few spread-out ORB descriptors, for crop retrieval


def compute_signals(image: Image.Image, *, descriptors: bool = True) -> dict[str, str]:
    """Everything stored for a working image in ``MediaRecord.signals`` / ``KnownMedia.signals``.

    ``pdq`` and ``phash`` of the whole image, ``pdq_quality``, ``pdq_stripped`` when borders or caption bars
    were removed, and (``descriptors``) ``orb``: a few local-feature descriptors so that a crop of this image
    is retrieved by the descriptor index without comparing it against every stored image.
    """
    from bot.hashing.local import extract, retrieval_descriptors
    from bot.matching.descriptors import pack

    pdq, quality = PdqSignal.compute_with_quality(image)
    signals = {PdqSignal.name: pdq, PDQ_QUALITY: str(quality), PhashSignal.name: PhashSignal.compute(image)}
    stripped, box = strip_borders(image)
    if box != (0, 0, image.width, image.height):
        signals[PDQ_STRIPPED] = PdqSignal.compute(stripped)
    if descriptors:
        signals[ORB_DESCRIPTORS] = pack(retrieval_descriptors(extract(image)))
    return signals
