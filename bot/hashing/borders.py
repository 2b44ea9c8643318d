"""Detect and remove uniform borders, letterbox bars and caption bars before hashing.

Why: a screenshot posted as "evidence" is typically padded to a square, letterboxed, or given a solid bar
with a caption. Those bars move every pixel of a global hash; removed, the rest hashes like the original.
A row (or column) belongs to a bar when most of its pixels have the bar's colour: caption text covers only
part of each row, so a captioned bar is still recognized. Known and query images are stripped the same way.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

#: grey-level distance to the bar colour that still counts as the bar (JPEG noise, anti-aliasing)
TOLERANCE = 10
#: share of a row's pixels that must have the bar colour (the rest may be caption text)
BAR_SHARE = 0.55
#: never remove more than this share of a dimension per side, nor leave less than MIN_KEEP of it
MAX_SIDE_SHARE = 0.45
MIN_KEEP = 0.35
#: bars thinner than this many pixels are ignored (a 1-2 px frame line changes nothing)
MIN_BAR = 3

Box = tuple[int, int, int, int]


def strip_borders(image: Image.Image) -> tuple[Image.Image, Box]:
    """The image without its uniform bars, and the kept box ``(left, top, right, bottom)`` in its pixels."""
    gray = np.asarray(image.convert("L"), dtype=np.int16)
    h, w = gray.shape
    left, top, right, bottom = 0, 0, w, h
    if h < 16 or w < 16:
        return image, (left, top, right, bottom)
    for _ in range(2):  # a caption bar inside a letterboxed frame: strip twice
        part = gray[top:bottom, left:right]
        ph, pw = part.shape
        t, b = _bar_length(part), _bar_length(part[::-1])
        lft, rgt = _bar_length(part.T), _bar_length(part.T[::-1])
        if ph - t - b < h * MIN_KEEP:
            t = b = 0
        if pw - lft - rgt < w * MIN_KEEP:
            lft = rgt = 0
        if not (t or b or lft or rgt):
            break
        left, top, right, bottom = left + lft, top + t, right - rgt, bottom - b
    box = (left, top, right, bottom)
    if box == (0, 0, w, h):
        return image, box
    return image.crop(box), box


def _bar_length(rows: np.ndarray) -> int:
    """How many leading rows of ``rows`` form a uniform bar (0 when shorter than :data:`MIN_BAR`)."""
    n, width = rows.shape
    limit = int(n * MAX_SIDE_SHARE)
    if limit < MIN_BAR:
        return 0
    colour = int(np.median(rows[0]))
    close = np.abs(rows[:limit] - colour) <= TOLERANCE
    share = close.mean(axis=1)
    bad = np.nonzero(share < BAR_SHARE)[0]
    length = int(bad[0]) if bad.size else limit
    # the outermost row must be almost entirely the bar colour (a bar starts with its empty margin),
    # otherwise this is picture content that happens to be flat-ish
    if length < MIN_BAR or share[0] < 0.97:
        return 0
    return length
