"""Region proposals: the rectangles inside a query that may be a picture of their own.

Why: a recycled image mostly travels inside something else: a screenshot of a social post (the picture
fills a fifth of the screen, surrounded by UI text, avatars and other pictures), a meme panel, a collage,
a photo pasted onto another one. Checked whole, the picture's own detail is a minority of the query's
keypoints and its copy is matched at a fifth of its size; checked as a region of its own (cropped and
brought to working size) it is an ordinary copy.

Two cheap detectors, both on the working image (a few milliseconds together):

- *busy blocks on a flat page*: screenshots and memes put pictures on flat UI backgrounds; the areas of
  local detail, closed over small gaps, form solid blocks, and a block that fills its bounding box is a
  picture (a paragraph of text is a thin or ragged block);
- *straight frames*: a picture pasted onto another has straight, long edges; pairs of long horizontal
  edges joined by a long vertical one on either side outline a rectangle.

Proposals are ordered by size and capped; overlapping duplicates (same rectangle found twice) are merged.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

Box = tuple[int, int, int, int]  # left, top, right, bottom (working-image pixels)

#: a proposal covers at least / at most this share of the image (smaller: too few pixels to verify;
#: larger: the whole-image check already sees it)
MIN_AREA, MAX_AREA = 0.04, 0.8
#: and has sides of at least this many pixels, and an aspect ratio within these bounds
MIN_SIDE = 40
MAX_ASPECT = 4.0
#: local standard deviation (grey levels) below which a pixel is flat, and the share of the image a
#: connected flat area must reach to count as the page a picture sits on
FLAT_STD = 1.5
PAGE_AREA = 0.01
#: grey-level standard deviation over a whole flat area that still counts as one page colour
PAGE_SPREAD = 4.0
#: a block of detail is a picture when it fills this share of its bounding box
MIN_FILL = 0.75
#: longest side of the copy the page detector works on
PAGE_SIDE = 320
#: a straight edge is at least this share of the image side long
MIN_EDGE = 0.15
#: gaps (pixels) bridged within one straight edge: a pasted picture's border fades where its colour meets
#: a similar background, leaving a dashed edge
MAX_GAP = 16
#: a rectangle found from one corner is kept when this share of its outline runs along edges
MIN_OUTLINE = 0.85
#: two proposals overlapping by more than this (intersection over union) are one
SAME_BOX = 0.7


def propose(image: Image.Image, limit: int = 3) -> list[Box]:
    """Up to ``limit`` rectangles of ``image`` that may hold an embedded picture, largest first.

    The page detector runs on a copy at most :data:`PAGE_SIDE` pixels wide (a quarter of the work; block
    edges a pixel or two coarser), the straight-edge detector at full working size."""
    gray = np.asarray(image.convert("L"))
    h, w = gray.shape
    if min(h, w) < 2 * MIN_SIDE:
        return []
    f = min(1.0, PAGE_SIDE / max(w, h))
    small = cv2.resize(gray, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA) if f < 1 else gray
    blocks = [_snap((round(a / f), round(b / f), round(c / f), round(d / f)), gray, round(2 / f))
              for a, b, c, d in _busy_blocks(small)]
    boxes = [b for b in blocks + _frames(gray) if _plausible(b, w, h)]
    boxes.sort(key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))
    kept: list[Box] = []
    for b in boxes:
        if all(_iou(b, k) < SAME_BOX for k in kept):
            kept.append(b)
    return kept[:limit]


def _plausible(box: Box, w: int, h: int) -> bool:
    bw, bh = box[2] - box[0], box[3] - box[1]
    if bw < MIN_SIDE or bh < MIN_SIDE or max(bw / bh, bh / bw) > MAX_ASPECT:
        return False
    return MIN_AREA <= bw * bh / (w * h) <= MAX_AREA


def _busy_blocks(gray: np.ndarray) -> list[Box]:
    """Solid blocks of content on a flat page (screenshots, memes, collages on a plain background).

    The page is what is flat (no detail in a 7 x 7 window) over large connected areas; content is the
    rest, closed over small gaps. A block of content that fills its bounding box is a picture; a line of
    text or an icon row is thin or ragged and is dropped by the size and fill limits."""
    g = gray.astype(np.float32)
    mean = cv2.blur(g, (7, 7))
    std = np.sqrt(np.maximum(cv2.blur(g * g, (7, 7)) - mean * mean, 0))
    flat = (std < FLAT_STD).astype(np.uint8)
    h, w = gray.shape
    n, labels, stats, _ = cv2.connectedComponentsWithStats(flat, connectivity=4)
    # the page: large flat areas of one colour (a sky or a gradient is flat locally but drifts across);
    # only the large areas' colour spread is measured (a photograph has thousands of flat specks, and
    # weighing every pixel by its label cost a millisecond on each query that matches nothing)
    page = stats[:, cv2.CC_STAT_AREA] >= PAGE_AREA * h * w
    page[0] = False  # label 0 is everything that is not flat
    for label in np.flatnonzero(page):
        page[label] = float(g[labels == label].std(dtype=np.float64)) <= PAGE_SPREAD
    if not page.any():
        return []
    content = (~page[labels]).astype(np.uint8)
    k = max(3, min(h, w) // 60)
    content = cv2.morphologyEx(content, cv2.MORPH_OPEN, np.ones((k, k), np.uint8))  # drop text strokes
    n, _, stats, _ = cv2.connectedComponentsWithStats(content, connectivity=4)
    out = []
    for x, y, bw, bh, area in stats[1:]:
        if bw * bh and area / (bw * bh) >= MIN_FILL:
            out.append((int(x), int(y), int(x + bw), int(y + bh)))
    return out


def _frames(gray: np.ndarray) -> list[Box]:
    """Rectangles outlined by long straight edges: two parallel edges of about the same extent, closed by
    a perpendicular edge at either end (the fourth side often vanishes into a similar background)."""
    h, w = gray.shape
    edges = cv2.Canny(gray, 60, 180)
    lines = cv2.HoughLinesP(edges, 1, np.pi / 180, threshold=30, minLineLength=int(MIN_EDGE * min(w, h)), maxLineGap=MAX_GAP)
    if lines is None:
        return []
    horizontal, vertical = [], []  # (start, end, position) along / across the edge
    for x1, y1, x2, y2 in lines.reshape(-1, 4).astype(int):
        if abs(y2 - y1) <= 2:
            horizontal.append((min(x1, x2), max(x1, x2), (y1 + y2) / 2))
        elif abs(x2 - x1) <= 2:
            vertical.append((min(y1, y2), max(y1, y2), (x1 + x2) / 2))
    out = [(int(a), int(lo), int(b), int(hi)) for lo, hi, a, b in _closed_pairs(horizontal[:60], vertical)]
    out += [(int(lo), int(a), int(hi), int(b)) for lo, hi, a, b in _closed_pairs(vertical[:60], horizontal)]
    near = cv2.dilate(edges, np.ones((5, 5), np.uint8)) > 0
    out += [box for box in _corners(horizontal[:60], vertical[:60]) if _outlined(box, near) >= MIN_OUTLINE]
    return out


def _corners(horizontal: list[tuple[float, float, float]], vertical: list[tuple[float, float, float]]) -> list[Box]:
    """Rectangles spanned by a horizontal and a vertical edge that meet at one of their ends (a corner): a
    picture pasted onto a busy background keeps two sides intact where the other two break up."""
    tol = 6
    out = []
    for x0, x1, y in horizontal:
        for y0, y1, x in vertical:
            at_x = x0 if abs(x - x0) <= tol else x1 if abs(x - x1) <= tol else None
            at_y = y0 if abs(y - y0) <= tol else y1 if abs(y - y1) <= tol else None
            if at_x is None or at_y is None:
                continue
            left, right = (x, x1) if at_x == x0 else (x0, x)
            top, bottom = (y, y1) if at_y == y0 else (y0, y)
            out.append((int(left), int(top), int(right), int(bottom)))
    return out


def _outlined(box: Box, near_edge: np.ndarray) -> float:
    """Share of a box's outline that runs along detected edges."""
    left, top, right, bottom = box
    h, w = near_edge.shape
    left, right = max(0, min(left, w - 1)), max(0, min(right, w - 1))
    top, bottom = max(0, min(top, h - 1)), max(0, min(bottom, h - 1))
    sides = [near_edge[top, left:right + 1], near_edge[bottom, left:right + 1],
             near_edge[top:bottom + 1, left], near_edge[top:bottom + 1, right]]
    return float(sum(s.sum() for s in sides) / max(sum(s.size for s in sides), 1))


def _closed_pairs(parallel: list[tuple[float, float, float]], across: list[tuple[float, float, float]]) -> list[tuple[float, float, float, float]]:
    """Pairs of parallel edges spanning about the same extent with an edge across at one end, or starting and
    ending at the same place (a picture's top and bottom on a page of about its colour leave no edge):
    ``(position_a, position_b, extent_start, extent_end)``."""
    out = []
    tol = 6
    for i, (a0, a1, pa) in enumerate(parallel):
        for b0, b1, pb in parallel[i + 1 :]:
            lo_pos, hi_pos = min(pa, pb), max(pa, pb)
            if hi_pos - lo_pos < MIN_SIDE:
                continue
            lo, hi = max(a0, b0), min(a1, b1)
            if hi - lo < 0.6 * max(a1 - a0, b1 - b0):
                continue  # the two edges do not span the same stretch
            twins = abs(a0 - b0) <= tol and abs(a1 - b1) <= tol  # same start and end: a frame's two sides
            closers = [c for c in across if c[0] <= lo_pos + tol and c[1] >= hi_pos - tol
                       and (abs(c[2] - lo) <= tol or abs(c[2] - hi) <= tol)]
            if twins or closers:
                out.append((lo_pos, hi_pos, lo, hi))
            # an edge across that runs on past the pair: one of the two is an edge inside the picture (a
            # horizon), and the picture's own side reaches its far border
            for c0, c1, _ in closers:
                if c1 - hi_pos >= MIN_SIDE:
                    out.append((lo_pos, c1, lo, hi))
                if lo_pos - c0 >= MIN_SIDE:
                    out.append((c0, hi_pos, lo, hi))
    return out


def _snap(box: Box, gray: np.ndarray, reach: int) -> Box:
    """Move each side of a box found at low resolution onto the strongest straight edge within ``reach``
    pixels at full resolution (a picture's border on a page is the sharpest line around it)."""
    h, w = gray.shape
    g = gray.astype(np.int16)
    dx = np.abs(np.diff(g, axis=1))  # dx[:, x] is the step between columns x and x + 1
    dy = np.abs(np.diff(g, axis=0))
    left, top, right, bottom = box
    rows, cols = slice(max(top, 0), min(bottom, h)), slice(max(left, 0), min(right, w))

    def best(strength: np.ndarray, at: int, lo: int, hi: int) -> int:
        candidates = range(max(lo, at - reach), min(hi, at + reach + 1))
        return max(candidates, key=lambda i: strength[i], default=at)

    col_strength = dx[rows].mean(axis=0) if dx[rows].size else np.zeros(w - 1)
    row_strength = dy[:, cols].mean(axis=1) if dy[:, cols].size else np.zeros(h - 1)
    new_left = best(col_strength, left - 1, 0, w - 1) + 1
    new_right = best(col_strength, right - 1, 0, w - 1) + 1
    new_top = best(row_strength, top - 1, 0, h - 1) + 1
    new_bottom = best(row_strength, bottom - 1, 0, h - 1) + 1
    return (new_left, new_top, new_right, new_bottom) if new_right > new_left and new_bottom > new_top else box


def _iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0
