"""Region hashes: PDQ hashes of sub-windows of a stored image, so a crop of it is retrieved by lookup.

Why: a global hash of a 75 % crop is far from the hash of the original. Hashing a small fixed set of
windows of every *stored* image (several scales, several positions) puts one window close to almost any
large crop a propagandist makes; the crop is then found with the same Hamming index as whole images and
confirmed by local features (:mod:`bot.hashing.local`), never by the region hash alone.
"""

from __future__ import annotations

from collections.abc import Iterator

from PIL import Image

from bot.hashing.signals import PdqSignal

#: (window size as a share of each side, positions per axis)
WINDOWS: tuple[tuple[float, int], ...] = ((0.85, 3), (0.7, 3), (0.55, 3))


def windows(width: int, height: int) -> Iterator[tuple[int, int, int, int]]:
    """The sub-window boxes hashed for an image of this size."""
    for share, steps in WINDOWS:
        ww, wh = round(width * share), round(height * share)
        for iy in range(steps):
            for ix in range(steps):
                x = round((width - ww) * ix / (steps - 1)) if steps > 1 else (width - ww) // 2
                y = round((height - wh) * iy / (steps - 1)) if steps > 1 else (height - wh) // 2
                yield (x, y, x + ww, y + wh)


def region_hashes(image: Image.Image) -> list[str]:
    """PDQ hex of every window of :func:`windows`."""
    return [PdqSignal.compute(image.crop(box)) for box in windows(image.width, image.height)]
