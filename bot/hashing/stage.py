"""The hashing stage: every still is hashed once, and its signals go to the store, the matcher and the
"seen" memory from that one computation.

Why: a posted image used to be hashed by the matcher (to search) and again by the "seen" memory (to
store), and the media record kept no signals at all. :func:`hash_image` computes, from one working image:
the signals that are stored (``MediaRecord.signals`` / ``KnownMedia.signals``: every registered signal
type's hash of the image and of the image without its borders, hash qualities, a few spread-out ORB
descriptors for crop retrieval), the query hashes the matcher searches with (PDQ's 8 rotations/mirrors,
pHash as is and mirrored), and the local features verification uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

from bot.hashing.borders import marked, strip_borders
from bot.hashing.decode import WORK_SIDE, decode_image, prepare, upright_size
from bot.hashing.local import LocalFeatures, extract, pack, retrieval_descriptors
from bot.hashing.signals import ORB_DESCRIPTORS, SIGNAL_TYPES

#: signals kept on a media record: the hashes and their qualities, not the descriptors (they live in the
#: known-media entry and its index; 7 KB of text per media record would only be duplicated)
RECORD_EXCLUDES = frozenset({ORB_DESCRIPTORS})
#: longest side of the sharper decode regions are cut from
REGION_SOURCE_SIDE = 1280


@dataclass(frozen=True)
class HashedImage:
    """One still, hashed once."""

    #: the working image every signal was computed from (:func:`bot.hashing.decode.decode_image`)
    image: Image.Image
    #: the source image's upright size: match regions are reported in its pixels
    size: tuple[int, int]
    #: what the store keeps for the image (``signals`` of a media record or known-media entry)
    signals: dict[str, str]
    #: per signal type: the query hashes with their dihedral variant (0: as is, 4: mirrored, ...)
    queries: dict[str, list[tuple[str, int]]]
    #: per signal type: the quality of the image's hash (None: the type does not score its hashes)
    quality: dict[str, int | None]
    #: ORB keypoints of the working image as is, spread over it
    features: LocalFeatures
    #: the encoded source, when known: an embedded picture is cut from a sharper decode of it
    data: bytes | None = field(default=None, repr=False)
    #: the working image without its uniform bars and caption bars (:func:`strip_borders`), None when it
    #: has none or they hold no marks (:func:`bot.hashing.borders.marked`: a dark sky taken for a bar keeps
    #: its keypoints): a caption's or meme band's words are not the picture's keypoints, and letters in one
    #: font resemble letters in a logo
    content: tuple[int, int, int, int] | None = None
    _sharp: list[Image.Image] = field(default_factory=list, repr=False, compare=False)

    def region(self, box: tuple[int, int, int, int]) -> Image.Image:
        """The pixels of ``box`` (working-image coordinates) at working size: cut from a decode of the source
        at up to :data:`REGION_SOURCE_SIDE` when the source is available and larger than the working image
        (a picture filling a fifth of a screenshot keeps its detail), else upscaled from the working image."""
        source = self.image
        if self.data is not None and max(self.size) > max(self.image.size):
            if not self._sharp:
                self._sharp.append(decode_image(self.data, max_side=REGION_SOURCE_SIDE))
            source = self._sharp[0]
        sx, sy = source.width / self.image.width, source.height / self.image.height
        left, top, right, bottom = box
        region = source.crop((round(left * sx), round(top * sy), round(right * sx), round(bottom * sy)))
        scale = WORK_SIDE / max(region.size)
        if scale > 1:  # ORB then sees the picture at about the known image's scale
            region = region.resize((round(region.width * scale), round(region.height * scale)), Image.Resampling.BICUBIC)
        return prepare(region)

    @property
    def record_signals(self) -> dict[str, str]:
        """The signals stored on the media record (:data:`RECORD_EXCLUDES` left out)."""
        return {k: v for k, v in self.signals.items() if k not in RECORD_EXCLUDES}


def hash_image(image: Image.Image | bytes, *, size: tuple[int, int] | None = None, data: bytes | None = None) -> HashedImage:
    """Hash a still: bytes are decoded safely (:class:`~bot.errors.MediaError` on hostile input), an image is
    brought to working size. ``size``: the source's upright size when ``image`` is already a working image
    decoded from a larger file (default: the file's or the image's own size); ``data``: that file."""
    if isinstance(image, (bytes, bytearray)):
        data = bytes(image)
        work = decode_image(data)
        size = size or upright_size(data) or work.size
    else:
        work = prepare(image)
        size = size or (upright_size(data) if data is not None else None) or image.size
    stripped, box = strip_borders(work)
    borderless = stripped if box != (0, 0, work.width, work.height) else None
    signals: dict[str, str] = {}
    queries: dict[str, list[tuple[str, int]]] = {}
    quality: dict[str, int | None] = {}
    for name, sig in SIGNAL_TYPES.items():
        hashes, quality[name] = sig.query_hashes(work)
        queries[name] = list(hashes)
        signals[sig.keys[0]] = next(h for h, variant in hashes if variant == 0)
        if sig.quality_key and quality[name] is not None:
            signals[sig.quality_key] = str(quality[name])
        if borderless is not None:
            more, _ = sig.query_hashes(borderless)
            queries[name] += more
            if len(sig.keys) > 1:
                signals[sig.keys[1]] = next(h for h, variant in more if variant == 0)
    features = extract(work)
    signals[ORB_DESCRIPTORS] = pack(retrieval_descriptors(features))
    content = box if borderless is not None and marked(work, box) else None
    return HashedImage(work, size, signals, queries, quality, features, data, content)


def hash_region(image: Image.Image) -> HashedImage:
    """What checking an embedded picture (a region of a query, already at working size) needs, and nothing
    else: each signal type's hash as is (no mirrored or rotated variants: a picture inside a screenshot is
    checked upright, and each extra hash is one more index search), of the region with its borders
    stripped too (a letterboxed picture inside a screenshot), and the local features; no stored signals: a
    region is never stored. This keeps the region pass, which only a query that matched nothing whole
    runs, cheap."""
    stripped, box = strip_borders(image)
    bars = box != (0, 0, image.width, image.height)
    queries: dict[str, list[tuple[str, int]]] = {}
    quality: dict[str, int | None] = {}
    for name, sig in SIGNAL_TYPES.items():
        queries[name], quality[name] = sig.query_hashes(image, variants=False)
        if bars:
            queries[name] += sig.query_hashes(stripped, variants=False)[0]
    return HashedImage(image, image.size, {}, queries, quality, extract(image), content=box if bars and marked(image, box) else None)


def compute_signals(image: Image.Image | bytes) -> dict[str, str]:
    """The signals stored for an image (``KnownMedia.signals``): :func:`hash_image`'s ``signals``."""
    return hash_image(image).signals
