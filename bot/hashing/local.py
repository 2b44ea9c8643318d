"""Local features (ORB) and the geometric check that confirms a candidate: how crops are proven.

Why ORB plus a similarity transform: a crop, a rescale, a 3-degree rotation and a caption bar are all
similarity transforms of the original (mirroring is undone before the check), so the inlier set of a
RANSAC-estimated similarity is a strong, explainable proof. Sanity limits keep textures, logos and HUD
overlays from matching on their own: enough inliers, a plausible scale, and inliers spread over a
sufficient share of the overlapping area (a HUD shares only its corners with another screenshot).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import faiss
import numpy as np
from PIL import Image

#: keypoints per image; 1000 on a 640 px image keeps extraction ~10 ms and matching ~2 ms per candidate
N_FEATURES = 1000
#: Lowe's ratio test: the best descriptor match must be clearly better than the second best
RATIO = 0.8
#: query keypoints (strongest first) matched against a candidate
VERIFY_QUERY_FEATURES = 1000
#: fewer ratio-test matches than this cannot pass any tier (half of the smallest inlier threshold)
MIN_GOOD = 10
#: RANSAC reprojection threshold in working-image pixels
REPROJ = 4.0
#: accepted scale between the known image and the query (both at working size)
MIN_SCALE, MAX_SCALE = 0.2, 5.0
#: grid for the coverage check, and the share of overlap cells that must hold inliers
GRID = 8
MIN_COVERAGE = 0.3
#: below the inlier threshold, a check still passes with half the inliers when they are this share of the
#: query keypoints in the overlap (small or low-detail copies; HUD look-alikes stay under 0.12)
MIN_SHARE = 0.2
#: the inliers' convex hull must span this share of the overlap: the same word, logo or HUD element in
#: two different pictures gives many inliers in a small patch (look-alikes measured <= 0.016, copies >= 0.09)
MIN_SPREAD = 0.05
#: ... unless the inliers are this share of all query keypoints in the overlap (a small image whose few
#: keypoints sit on one object, and all of them agree; look-alikes measured <= 0.23)
OWN_SHARE = 0.35


@dataclass(frozen=True)
class LocalFeatures:
    """Keypoint positions (N x 2, working-image pixels), ORB descriptors (N x 32) and the image size."""

    points: np.ndarray
    descriptors: np.ndarray
    size: tuple[int, int]
    responses: np.ndarray | None = None

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, points=self.points, descriptors=self.descriptors, size=np.array(self.size))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> LocalFeatures:
        with np.load(io.BytesIO(data)) as z:
            return cls(z["points"], z["descriptors"], (int(z["size"][0]), int(z["size"][1])))

    def __len__(self) -> int:
        return len(self.points)


_orb = None


def extract(image: Image.Image) -> LocalFeatures:
    """ORB keypoints of a working image (see :func:`bot.hashing.decode.decode_image`)."""
    global _orb
    if _orb is None:
        _orb = cv2.ORB_create(nfeatures=N_FEATURES, fastThreshold=12)
    gray = np.asarray(image.convert("L"))
    kps, desc = _orb.detectAndCompute(gray, None)
    if desc is None or not kps:
        return LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), image.size)
    responses = np.array([k.response for k in kps], dtype=np.float32)
    order = np.argsort(-responses, kind="stable")  # strongest first: voting uses a prefix
    pts = np.array([k.pt for k in kps], dtype=np.float32)[order]
    return LocalFeatures(pts, desc[order], image.size, responses[order])


#: descriptors per stored image kept for retrieval (the descriptor index), spread over the image
RETRIEVAL_DESCRIPTORS = 160
_SPREAD_GRID = 8


def retrieval_descriptors(feats: LocalFeatures, n: int = RETRIEVAL_DESCRIPTORS) -> np.ndarray:
    """The ``n`` descriptors of a stored image that go into the descriptor index.

    Strongest per grid cell first, round-robin over cells, so every part of the image is represented and
    any large crop keeps a good share of them (the strongest overall tend to cluster on one busy object)."""
    if len(feats) <= n:
        return feats.descriptors
    w, h = feats.size
    cell = (np.clip((feats.points[:, 1] * _SPREAD_GRID / h).astype(int), 0, _SPREAD_GRID - 1) * _SPREAD_GRID
            + np.clip((feats.points[:, 0] * _SPREAD_GRID / w).astype(int), 0, _SPREAD_GRID - 1))
    resp = feats.responses if feats.responses is not None else np.zeros(len(feats), np.float32)
    order = np.lexsort((-resp, cell))  # by cell, strongest first within a cell
    rank = np.zeros(len(feats), int)
    sorted_cells = cell[order]
    starts = np.r_[0, np.nonzero(np.diff(sorted_cells))[0] + 1]
    for a, b in zip(starts, np.r_[starts[1:], len(order)]):
        rank[order[a:b]] = np.arange(b - a)
    chosen = np.lexsort((-resp, rank))[:n]
    return feats.descriptors[chosen]


@dataclass(frozen=True)
class Verification:
    """Result of :func:`verify`: inliers, the similarity's scale, coverage, and the known image's outline
    mapped into query working-image pixels (4 corners)."""

    inliers: int
    scale: float
    coverage: float
    region: list[tuple[float, float]]
    #: inliers / query keypoints inside the overlap: a copy shares most of its keypoints, a HUD or logo few
    share: float = 0.0
    #: area of the inliers' convex hull / area of the overlap: a shared word or logo is a small patch
    spread: float = 0.0

    def passes(self, min_inliers: int) -> bool:
        """Enough inliers (or half as many that make up most of the overlap), a plausible scale, and
        inliers spread over the overlap rather than bunched on one logo or overlay element."""
        spread_ok = self.spread >= MIN_SPREAD or self.share >= OWN_SHARE
        if not (MIN_SCALE <= self.scale <= MAX_SCALE and self.coverage >= MIN_COVERAGE and spread_ok):
            return False
        return self.inliers >= min_inliers or (self.inliers * 2 >= min_inliers and self.share >= MIN_SHARE)


def _two_nearest(descriptors: np.ndarray, among: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hamming distances and positions of the two nearest of ``among`` for each of ``descriptors``.

    faiss's flat binary scan: 3 ms for 1000 x 1000 descriptors where OpenCV's ``BFMatcher.knnMatch`` took
    16 ms (most of it building a Python object per match), and verification runs for every candidate."""
    index = faiss.IndexBinaryFlat(256)
    index.add(np.ascontiguousarray(among, dtype=np.uint8))
    return index.search(np.ascontiguousarray(descriptors, dtype=np.uint8), 2)


def verify(query: LocalFeatures, known: LocalFeatures) -> Verification | None:
    """Match descriptors, estimate a similarity known -> query with RANSAC, measure it. None: no model."""
    if len(query) < 8 or len(known) < 8:
        return None
    # (a cap on the query's keypoints would halve the matching cost, but caption text then takes the
    # strongest slots and mirrored crops are lost: measured, so the cap is all of them)
    q_desc = query.descriptors[:VERIFY_QUERY_FEATURES]
    q_pts = query.points[:VERIFY_QUERY_FEATURES]
    distance, nearest = _two_nearest(known.descriptors, q_desc)
    good = (nearest[:, 1] >= 0) & (distance[:, 0] < RATIO * distance[:, 1])
    if int(good.sum()) < MIN_GOOD:
        return None
    src = known.points[good]
    dst = q_pts[nearest[good, 0]]
    model, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=REPROJ,
                                              maxIters=1000, confidence=0.995)
    if model is None or mask is None:
        return None
    inl = mask.ravel().astype(bool)
    # one query keypoint can be the match of several known keypoints: count distinct positions only
    inlier_dst = np.unique(np.round(dst[inl]).astype(np.int32), axis=0)
    n = len(inlier_dst)
    scale = float(np.sqrt(abs(np.linalg.det(model[:, :2]))))
    kw, kh = known.size
    corners = np.array([[0, 0], [kw, 0], [kw, kh], [0, kh]], dtype=np.float32)
    quad = corners @ model[:, :2].T + model[:, 2]
    mask = _overlap_mask(quad, query.size)
    coverage = _coverage(inlier_dst, query.points, mask, query.size)
    share = n / max(int(mask[_cells(query.points, query.size)].sum()), 1)
    hull = cv2.contourArea(cv2.convexHull(inlier_dst.astype(np.float32))) if n >= 3 else 0.0
    overlap = mask.mean() * query.size[0] * query.size[1]
    spread = float(hull / overlap) if overlap > 0 else 0.0
    return Verification(n, scale, coverage, [(float(x), float(y)) for x, y in quad], share, spread)


def _cells(points: np.ndarray, size: tuple[int, int], grid: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of each point on a ``grid`` x ``grid`` raster of the image."""
    w, h = size
    cx = np.clip((points[:, 0] * grid / w).astype(int), 0, grid - 1)
    cy = np.clip((points[:, 1] * grid / h).astype(int), 0, grid - 1)
    return cy, cx


def _overlap_mask(quad: np.ndarray, size: tuple[int, int], grid: int = 64) -> np.ndarray:
    """64 x 64 raster of the query: True where the known image's outline covers it."""
    w, h = size
    mask = np.zeros((grid, grid), np.uint8)
    pts = np.round(quad * [grid / w, grid / h]).astype(np.int32)
    cv2.fillConvexPoly(mask, pts, 1)
    return mask.astype(bool)


def _coverage(inliers: np.ndarray, points: np.ndarray, mask: np.ndarray, size: tuple[int, int]) -> float:
    """Share of the GRID x GRID cells that hold query keypoints inside the overlap and also hold an inlier.

    Normalized by where the query has keypoints at all, so a copy of a sparse image (flat sky, a diagram)
    scores as high as a busy one, while a HUD or logo shared by two different scenes covers few of the
    cells that the scenes' own detail fills."""
    step = mask.shape[0] // GRID
    fine = _cells(points, size)
    inside = mask[fine]
    has_points = np.zeros((GRID, GRID), bool)
    has_points[fine[0][inside] // step, fine[1][inside] // step] = True
    cells = int(has_points.sum())
    if cells == 0:
        return 0.0
    hit = np.zeros((GRID, GRID), bool)
    hit[_cells(inliers, size, GRID)] = True
    return float((hit & has_points).sum() / cells)
