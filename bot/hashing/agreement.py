"""Pixel agreement: does the known image, laid over the query where a geometric fit puts it, look like it?

Keypoint inliers are sparse evidence: a copy under JPEG q15, a dark or blurred crop, or a crop whose
keypoints cluster on one object keeps 24-39 inliers bunched on a patch, which is also what a shared logo
or HUD element gives a look-alike. The pixels themselves are evidence of another kind: warped by the fit,
a true copy's detail lines up with the known image's over the whole overlap (apart from what an overlay
covers), while a look-alike (the neighbouring half of a photograph, another scene behind the same HUD)
agrees at most where they share pixels. Cells that are flat in the known image say nothing and are left
out, so a low-detail picture is judged on the detail it has.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from bot.hashing.local import normalized_gray

#: side of the square cells (working-image pixels) correlated one by one
CELL = 32
#: band-pass of the grey levels compared (difference of Gaussians, sigmas in pixels): the fine detail
#: and edges, without the smooth gradients that two different skies share
BAND = (1.5, 6.0)
#: a cell agrees when the correlation of the two band-passed patches is at least this
CELL_AGREES = 0.5
#: a cell whose known patch varies less than this (band-passed grey levels) is flat: no evidence
FLAT = 2.0


def _band(gray: np.ndarray) -> np.ndarray:
    g = gray.astype(np.float32)
    return cv2.GaussianBlur(g, (0, 0), BAND[0]) - cv2.GaussianBlur(g, (0, 0), BAND[1])


def pixel_agreement(query: Image.Image, known: Image.Image, quad: list[tuple[float, float]]) -> tuple[float, int]:
    """Share of the overlap's textured cells where the known image, mapped onto ``quad`` (its corners in
    the query's pixels, as :class:`bot.hashing.local.Verification` gives them), correlates with the query;
    and how many such cells there are. Both images are working images, the query oriented as verified."""
    qw, qh = query.size
    kw, kh = known.size
    corners = np.float32([[0, 0], [kw, 0], [kw, kh], [0, kh]])
    h = cv2.getPerspectiveTransform(corners, np.float32(quad))
    warped = cv2.warpPerspective(normalized_gray(known), h, (qw, qh), flags=cv2.INTER_LINEAR)
    inside = cv2.warpPerspective(np.full((kh, kw), 255, np.uint8), h, (qw, qh), flags=cv2.INTER_NEAREST)
    ny, nx = qh // CELL, qw // CELL
    if ny == 0 or nx == 0:
        return 0.0, 0

    def cells(a: np.ndarray) -> np.ndarray:  # (cells, pixels per cell)
        return a[: ny * CELL, : nx * CELL].reshape(ny, CELL, nx, CELL).swapaxes(1, 2).reshape(ny * nx, CELL * CELL)

    a = cells(_band(normalized_gray(query)))
    b = cells(_band(warped))
    whole = cells(inside).min(axis=1) > 0
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    sa, sb = np.sqrt((a * a).mean(axis=1)), np.sqrt((b * b).mean(axis=1))
    textured = whole & (sb >= FLAT)
    n = int(textured.sum())
    if n == 0:
        return 0.0, 0
    r = (a * b).mean(axis=1) / np.maximum(sa * sb, 1e-6)
    return float((r[textured] >= CELL_AGREES).sum() / n), n
