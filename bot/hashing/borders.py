"""Detect and remove uniform borders, letterbox bars and caption bars before hashing.

Why: a screenshot posted as "evidence" is typically padded to a square, letterboxed, or given a solid bar
with a caption. Those bars move every pixel of a global hash; removed, the rest hashes like the original.
A row (or column) belongs to a bar when most of its pixels have the bar's colour: caption text covers only
part of each row, so a captioned bar is still recognized. Known and query images are stripped the same way.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

#: a "clean" bar row: this share of its pixels within CLEAN_TOLERANCE grey levels of the bar colour
CLEAN_TOLERANCE = 6
CLEAN_SHARE = 0.97
#: grey levels a clean row's median may differ from the bar colour (a sky gradient drifts, a bar does not)
MAX_DRIFT = 2
#: caption text lines: runs of non-clean rows between clean ones, at most this share of the height
MAX_TEXT_RUN = 0.15
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
    """How many leading rows of ``rows`` form a bar (0 when shorter than :data:`MIN_BAR`).

    A bar starts with a clean row (one flat colour) and ends at its last clean row; runs of non-clean rows
    between clean ones are the caption's text lines, up to :data:`MAX_TEXT_RUN` of the height each."""
    n = rows.shape[0]
    limit = int(n * MAX_SIDE_SHARE)
    if limit < MIN_BAR:
        return 0
    colour = float(np.median(rows[0]))
    part = rows[:limit]
    clean = (np.abs(part - colour) <= CLEAN_TOLERANCE).mean(axis=1) >= CLEAN_SHARE
    clean &= np.abs(np.median(part, axis=1) - colour) <= MAX_DRIFT
    if not clean[0]:
        return 0
    max_gap = max(3, int(n * MAX_TEXT_RUN))
    last, gap = 0, 0
    for i in range(1, limit):
        if clean[i]:
            last, gap = i, 0
        else:
            gap += 1
            if gap > max_gap:
                break
    length = last + 1
    return length if length >= MIN_BAR else 0


#: grey levels from the stripped area's median that make a pixel a mark (a caption's letters, UI), and the
#: share of marked pixels above which the area holds marks: a dark or hazy sky taken for a bar has none
#: (its own faint detail, which CLAHE turns into real keypoints, stays within a few levels); caption and
#: meme bands measured 0.2-0.98, screenshot UI 0.03-0.05 (bench/disc.py)
MARK_LEVELS = 40
MARK_SHARE = 0.005


def marked(image: Image.Image, box: Box) -> bool:
    """Whether the part of ``image`` outside ``box`` (what :func:`strip_borders` cut off) holds marks such
    as a caption's words, whose keypoints are not the picture's; a uniform bar or a flat sky holds none."""
    gray = np.asarray(image.convert("L"), dtype=np.int16)
    left, top, right, bottom = box
    outside = np.ones(gray.shape, bool)
    outside[top:bottom, left:right] = False
    cut = gray[outside]
    if cut.size == 0:
        return False
    return bool((np.abs(cut - np.median(cut)) > MARK_LEVELS).mean() > MARK_SHARE)
