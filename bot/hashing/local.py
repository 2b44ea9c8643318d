"""Local features (ORB) and the geometric check that confirms a candidate: how crops are proven.

Why ORB plus a similarity transform: a crop, a rescale, a 3-degree rotation and a caption bar are all
similarity transforms of the original (mirroring is undone before the check), so the inlier set of a
RANSAC-estimated similarity is a strong, explainable proof. Sanity limits keep textures, logos and HUD
overlays from matching on their own: enough inliers, a plausible scale, and inliers spread over a
sufficient share of the overlapping area (a HUD shares only its corners with another screenshot).
"""

from __future__ import annotations

import base64
import threading
from dataclasses import dataclass

import cv2
import faiss
import numpy as np
from PIL import Image

#: version of :func:`extract`'s output and of :meth:`LocalFeatures.to_bytes`: cached features of another
#: version are recomputed
FEATURES_VERSION = 4
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
#: with at least this many inliers, a smaller share of the overlap's cells must hold one
STRONG_INLIERS, MIN_COVERAGE_STRONG = 100, 0.2
#: below the inlier threshold, a check still passes with half the inliers when they are this share of the
#: query keypoints in the overlap (small or low-detail copies; HUD look-alikes stay under 0.12)
MIN_SHARE = 0.2
#: the inliers' convex hull must span this share of the overlap: the same word, logo or HUD element in
#: two different pictures gives many inliers in a small patch (look-alikes measured <= 0.016, copies >= 0.09)
MIN_SPREAD = 0.05
#: ... unless the inliers are this share of all query keypoints in the overlap (a small image whose few
#: keypoints sit on one object, and all of them agree; look-alikes measured <= 0.23)
OWN_SHARE = 0.35
#: inliers spread over the known image pass with fewer of them: (share of the inlier threshold, least spread,
#: least coverage of the known image's keypoint cells). A copy under big text, noise or a perspective warp
#: keeps its own structure spread over the known image while the query's clutter (text, noise grain, other
#: pictures) fills the query's cells. Look-alikes (the same HUD, the neighbouring half of a scene) measured
#: <= 45 inliers after guided matching; those with >= 25 inliers spread <= 0.044, and of those above 10
#: inliers one spread wider (18 inliers, spread 0.16, known-image coverage 0.12) (bench/disc.py, 210
#: distractor queries, all 1,615 verifications their checks ran). Bars of 0.06 spread and 0.2 known
#: coverage for half the inliers found 5 more DISC copies but let two bench/robustness.py look-alikes match.
#: Many inliers over half of the known image's keypoint cells pass with a narrow spread: a low-detail
#: original (a sunset gradient) has its keypoints along one ridge, so even a true copy's inliers form a
#: thin hull (spread 0.025-0.06, known coverage 0.53-0.75); look-alikes with >= 25 inliers reached known
#: coverage <= 0.42 (bench/disc.py), those with >= 40 <= 0.10
WIDE_TIERS = ((1.0, 0.08, 0.2), (0.5, 0.08, 0.3), (0.4, 0.1, 0.3), (0.8, 0.02, 0.5))
#: a fit passes whatever its spread when it has (share of the inlier threshold) inliers and the known
#: image's pixels, warped by it, agree with the query's over (least share) of the overlap's textured cells
#: (see :mod:`bot.hashing.agreement`). Measured on bench/disc.py: copies whose inliers bunch (dark, blurred,
#: JPEG q15 crops) 0.77-1.0, a copy under big text 0.54 (the text's cells disagree), and of the 210
#: distractor queries' fits with 24+ inliers (the same HUD, the neighbouring half of a photograph) none
#: above 0.15; unrelated queries of bench/speed.py 0.06-0.10
PIXEL_TIERS = ((0.48, 0.5), (0.4, 0.75))


_FEATURES_MAGIC = b"AIORB\x00"


@dataclass(frozen=True)
class LocalFeatures:
    """Keypoint positions (N x 2, working-image pixels), ORB descriptors (N x 32) and the image size."""

    points: np.ndarray
    descriptors: np.ndarray
    size: tuple[int, int]
    responses: np.ndarray | None = None

    def to_bytes(self) -> bytes:
        """A header (magic, keypoint count, image size) and the raw arrays: every verification of a check
        that finds nothing reads one of these, and parsing an .npz (a zip of three .npy files) took 0.6 ms
        of the ~4 ms a verification costs; this layout reads in a few microseconds."""
        n = len(self.points)
        header = np.array([n, *self.size], "<u4").tobytes()
        return (_FEATURES_MAGIC + header + np.ascontiguousarray(self.points, "<f4").tobytes()
                + np.ascontiguousarray(self.descriptors, np.uint8).tobytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> LocalFeatures:
        """Features written by :meth:`to_bytes`. Raises ValueError for anything else (a truncated file)."""
        start = len(_FEATURES_MAGIC) + 12
        if data[: len(_FEATURES_MAGIC)] != _FEATURES_MAGIC or len(data) < start:
            raise ValueError("not a local-features file")
        n, w, h = (int(v) for v in np.frombuffer(data, "<u4", 3, len(_FEATURES_MAGIC)))
        if len(data) != start + n * (8 + 32):
            raise ValueError(f"local-features file of {len(data)} bytes for {n} keypoints")
        points = np.frombuffer(data, "<f4", 2 * n, start).reshape(n, 2).astype(np.float32)
        descriptors = np.frombuffer(data, np.uint8, 32 * n, start + 8 * n).reshape(n, 32).copy()
        return cls(points, descriptors, (w, h))

    def __len__(self) -> int:
        return len(self.points)


#: keypoints detected before the spread selection keeps N_FEATURES of them
DETECT_FEATURES = 2000
#: FAST thresholds: the usual one, and the lower one retried on low-contrast images with few corners
FAST_THRESHOLD, FAST_THRESHOLD_LOW = 12, 5
#: fewer keypoints than this at the usual threshold: the image is low-contrast, retry with the low one
FEW_KEYPOINTS = 400
#: an image whose longest side is under this is upscaled to UPSCALE_TO before detection: ORB's pyramid only
#: goes down, and a small image's detail is finer than its 31-pixel patches (a small re-encoded crop)
UPSCALE_BELOW, UPSCALE_TO = 560, 640
#: cells per side of the grid over which keypoints are spread (strongest per cell first, round-robin)
SPREAD_GRID = 8

#: OpenCV's CLAHE and ORB objects, one set per thread: a CLAHE object keeps buffers sized to its last image,
#: so two worker threads sharing one corrupted each other's output (a wrong grey image, hence no match) or
#: failed an OpenCV assertion
_per_thread = threading.local()


def _clahe() -> cv2.CLAHE:
    clahe = getattr(_per_thread, "clahe", None)
    if clahe is None:
        clahe = _per_thread.clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
    return clahe


def _orb(threshold: int) -> cv2.ORB:
    detectors: dict[int, cv2.ORB] = _per_thread.__dict__.setdefault("orb", {})
    if threshold not in detectors:
        detectors[threshold] = cv2.ORB_create(nfeatures=DETECT_FEATURES, fastThreshold=threshold)
    return detectors[threshold]


def normalized_gray(image: Image.Image) -> np.ndarray:
    """Grey levels with local contrast normalised (CLAHE): a dark, washed-out or semi-transparent copy
    gets the same corners as its original, which plain thresholds miss."""
    return _clahe().apply(np.asarray(image.convert("L")))


def extract(image: Image.Image) -> LocalFeatures:
    """ORB keypoints of a working image (see :func:`bot.hashing.decode.decode_image`), spread over it.

    The strongest corners of a meme, a screenshot or a pasted picture are its text and UI edges; taking
    only those would leave the picture itself without keypoints. So more are detected and the kept ones
    are ordered round-robin over a grid, strongest first within a cell (a prefix of the list, as voting
    uses, is spread over the whole image). A low-contrast image is detected again with a lower threshold."""
    gray = normalized_gray(image)
    factor = UPSCALE_TO / max(gray.shape) if max(gray.shape) < UPSCALE_BELOW else 1.0
    if factor > 1:
        gray = cv2.resize(gray, (round(gray.shape[1] * factor), round(gray.shape[0] * factor)), interpolation=cv2.INTER_CUBIC)
    kps, desc = _detect(gray, FAST_THRESHOLD)
    if len(kps) < FEW_KEYPOINTS:
        kps, desc = _detect(gray, FAST_THRESHOLD_LOW)
    if desc is None or not kps:
        return LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), image.size)
    responses = np.array([k.response for k in kps], dtype=np.float32)
    pts = np.array([k.pt for k in kps], dtype=np.float32) / factor
    order = spread_order(pts, responses, image.size)[:N_FEATURES]
    return LocalFeatures(pts[order], desc[order], image.size, responses[order])


#: median absolute Laplacian (grey levels) from which an image counts as grainy: sensor or added noise
#: (measured 15-37 on noisy copies, 0-6 on every other bench/disc.py query, JPEG q15 included)
GRAIN = 10.0
#: a grainy image's keypoints are also taken from a copy this many times smaller (box-averaged: the grain
#: cancels out, the picture's structure stays)
GRAIN_SHRINK = 3


def grain(image: Image.Image) -> float:
    """How grainy an image is: the median absolute Laplacian of its grey levels (from a histogram of the
    8-bit values: ~1 ms, every query that matches nothing pays it)."""
    lap = cv2.convertScaleAbs(cv2.Laplacian(np.asarray(image.convert("L")), cv2.CV_16S))
    counts = np.cumsum(cv2.calcHist([lap], [0], None, [256], [0, 256]).ravel())
    return float(np.searchsorted(counts, lap.size / 2))


def extract_coarse(image: Image.Image, factor: int = GRAIN_SHRINK) -> LocalFeatures:
    """:func:`extract` on a copy ``factor`` times smaller (box filter), positions in ``image``'s pixels.

    Noise grain takes every corner of a noisy copy at full size (1,000 keypoints of grain, 0-9 inliers
    with its original); averaged over 3 x 3 pixels it is gone and the picture's own corners come back."""
    small = image.resize((max(1, image.width // factor), max(1, image.height // factor)), Image.Resampling.BOX)
    feats = extract(small)
    sx, sy = image.width / small.width, image.height / small.height
    responses = feats.responses
    return LocalFeatures((feats.points * [sx, sy]).astype(np.float32), feats.descriptors, image.size, responses)


def within(feats: LocalFeatures, box: tuple[float, float, float, float]) -> LocalFeatures:
    """The keypoints inside ``box`` (left, top, right, bottom), in their order."""
    left, top, right, bottom = box
    p = feats.points
    keep = (p[:, 0] >= left) & (p[:, 0] <= right) & (p[:, 1] >= top) & (p[:, 1] <= bottom)
    responses = feats.responses[keep] if feats.responses is not None else None
    return LocalFeatures(p[keep], feats.descriptors[keep], feats.size, responses)


def _detect(gray: np.ndarray, threshold: int) -> tuple[list[cv2.KeyPoint], np.ndarray | None]:
    kps, desc = _orb(threshold).detectAndCompute(gray, None)
    return list(kps or ()), desc


def spread_order(points: np.ndarray, responses: np.ndarray, size: tuple[int, int], grid: int = SPREAD_GRID) -> np.ndarray:
    """Indices of ``points`` round-robin over a ``grid`` x ``grid`` raster, strongest first within a cell:
    any prefix is spread over the image (ANMS-like, at the cost of a sort)."""
    w, h = size
    cell = (np.clip((points[:, 1] * grid / h).astype(int), 0, grid - 1) * grid
            + np.clip((points[:, 0] * grid / w).astype(int), 0, grid - 1))
    order = np.lexsort((-responses, cell))  # by cell, strongest first within a cell
    rank = np.zeros(len(points), int)
    sorted_cells = cell[order]
    starts = np.r_[0, np.nonzero(np.diff(sorted_cells))[0] + 1]
    for a, b in zip(starts, np.r_[starts[1:], len(order)]):
        rank[order[a:b]] = np.arange(b - a)
    return np.lexsort((-responses, rank))


#: descriptors per stored image kept for retrieval (the descriptor index), spread over the image
RETRIEVAL_DESCRIPTORS = 160


def retrieval_descriptors(feats: LocalFeatures, n: int = RETRIEVAL_DESCRIPTORS) -> np.ndarray:
    """The ``n`` descriptors of a stored image that go into the descriptor index: the first ``n`` of
    :func:`extract`'s spread order, so every part of the image is represented and any large crop keeps a
    good share of them (the strongest overall tend to cluster on one busy object)."""
    return feats.descriptors[:n]


def pack(descriptors: np.ndarray) -> str:
    """Descriptors (n x 32 uint8) -> the text stored in ``signals["orb"]``."""
    return base64.b64encode(np.ascontiguousarray(descriptors, dtype=np.uint8).tobytes()).decode("ascii")


def unpack(text: str) -> np.ndarray:
    raw = base64.b64decode(text)
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, 32)


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
    #: the query's outline mapped into the known image, as fractions of its width and height (4 corners):
    #: where a crop of the known image came from
    known_region: list[tuple[float, float]] | None = None
    #: coverage measured on the known image: share of its GRID x GRID cells inside the query's outline that
    #: hold known keypoints and also an inlier
    known_coverage: float = 0.0
    #: share of the overlap's textured cells where the known image's pixels, warped by the fit, agree with
    #: the query's (:func:`bot.hashing.agreement.pixel_agreement`; 0: not measured)
    agreement: float = 0.0

    def passes(self, min_inliers: int) -> bool:
        """Enough inliers (or half as many that make up most of the overlap), a plausible scale, and
        inliers spread over the overlap rather than bunched on one logo or overlay element; or, for a fit
        with bunched inliers, pixels that agree over the overlap."""
        spread_ok = self.spread >= MIN_SPREAD or self.share >= OWN_SHARE
        # many inliers over a fifth of the overlap: a copy under big text or an emoji (the overlay's own
        # keypoints take cells no inlier can reach); a shared HUD or logo gives fewer inliers than this
        coverage = MIN_COVERAGE if self.inliers < STRONG_INLIERS else MIN_COVERAGE_STRONG
        if not MIN_SCALE <= self.scale <= MAX_SCALE:
            return False
        if any(self.inliers >= share * min_inliers and self.agreement >= least for share, least in PIXEL_TIERS):
            return True
        if any(self.inliers >= share * min_inliers and self.spread >= spread and self.known_coverage >= known
               for share, spread, known in WIDE_TIERS):
            return True
        if not (self.coverage >= coverage and spread_ok):
            return False
        return self.inliers >= min_inliers or (self.inliers * 2 >= min_inliers and self.share >= MIN_SHARE)


def _two_nearest(descriptors: np.ndarray, among: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hamming distances and positions of the two nearest of ``among`` for each of ``descriptors``.

    faiss's flat binary scan: 3 ms for 1000 x 1000 descriptors where OpenCV's ``BFMatcher.knnMatch`` took
    16 ms (most of it building a Python object per match), and verification runs for every candidate."""
    index = faiss.IndexBinaryFlat(256)
    index.add(np.ascontiguousarray(among, dtype=np.uint8))
    return index.search(np.ascontiguousarray(descriptors, dtype=np.uint8), 2)


def verify(query: LocalFeatures, known: LocalFeatures, enough: int | None = None) -> Verification | None:
    """Match descriptors, estimate known -> query with RANSAC, measure it. None: no model.

    A similarity (crop, rescale, rotation) is tried first; when it explains too few matches, a homography
    (a photo of a screen, a tilted print) is estimated from the same matches and kept if it is sane
    (:func:`sane_homography`) and explains clearly more of them. A fit of :data:`GUIDED_MIN_INLIERS` or
    more is refined by guided matching (:func:`_guided`) unless it already passes with ``enough``
    inliers."""
    if len(query) < 8 or len(known) < 8:
        return None
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
    best = _measure(query, known, np.vstack([model, [0, 0, 1]]), mask, dst, src) if model is not None and mask is not None else None
    model3 = np.vstack([model, [0, 0, 1]]) if best is not None else None
    perspective = False
    tried = best is not None and HOMOGRAPHY_MIN_INLIERS <= best.inliers < len(src) * HOMOGRAPHY_BELOW
    if tried:
        h, hmask = cv2.findHomography(src, dst, cv2.RANSAC, REPROJ, maxIters=1000, confidence=0.995)
        if h is not None and hmask is not None and sane_homography(h, known.size, query.size):
            other = _measure(query, known, h, hmask, dst, src)
            if other is not None and (best is None or other.inliers >= best.inliers * HOMOGRAPHY_GAIN):
                best, model3, perspective = other, h, True
    if (best is not None and model3 is not None and best.inliers >= GUIDED_MIN_INLIERS
            and (enough is None or not best.passes(enough))):
        guided = _guided(query, known, model3, perspective)
        if guided is not None and guided.inliers > best.inliers:
            best = guided
    return best


#: a model with at least this many inliers is refined by guided matching (:func:`_guided`); fewer are
#: random fits (an unrelated image's best RANSAC fit finds ~10)
GUIDED_MIN_INLIERS = 12
#: guided matching pairs a known keypoint with the query keypoints within this many pixels of where the
#: model puts it ...
GUIDED_RADIUS = 2 * REPROJ
#: ... and keeps the most similar one within this Hamming distance (of 256 bits; unrelated ORB descriptors
#: differ by ~128 +- 8, a degraded copy's true pairs by 30-70). Measured on bench/disc.py: 48 gained 20
#: of the 77 misses, 56 gained 31, 64 gained 36 but let a neighbouring half of a photograph match (21
#: inliers spread over it) and, with caption bands still voting, a meme's words match a logo's letters
GUIDED_DISTANCE = 56
GUIDED_NEIGHBOURS = 4


def _guided(query: LocalFeatures, known: LocalFeatures, h: np.ndarray, perspective: bool) -> Verification | None:
    """The model re-fitted on matches found where it predicts them. The global ratio test drops every match
    whose descriptor has a close rival anywhere in the image (repeated structure, a degraded copy's weaker
    descriptors), so a true copy's first fit often explains only a fraction of its shared keypoints; near
    the predicted position the rivals are gone. An unrelated image's random fit predicts positions where
    no similar descriptor lies, so it gains nothing."""
    pts = np.c_[known.points.astype(np.float64), np.ones(len(known))] @ h.T
    valid = pts[:, 2] > 1e-6
    if valid.sum() < 8:
        return None
    projected = np.zeros((len(known), 2), np.float32)
    projected[valid] = (pts[valid, :2] / pts[valid, 2:]).astype(np.float32)
    index = faiss.IndexFlatL2(2)
    index.add(np.ascontiguousarray(query.points[:VERIFY_QUERY_FEATURES], dtype=np.float32))
    d2, near = index.search(np.ascontiguousarray(projected), GUIDED_NEIGHBOURS)
    close = valid[:, None] & (near >= 0) & (d2 <= GUIDED_RADIUS**2)
    rows, cols = np.nonzero(close)
    if len(rows) < 8:
        return None
    candidates = near[rows, cols]
    hamming = np.unpackbits(known.descriptors[rows] ^ query.descriptors[candidates], axis=1).sum(axis=1)
    # the most similar neighbour of each known keypoint
    order = np.lexsort((hamming, rows))
    rows, candidates, hamming = rows[order], candidates[order], hamming[order]
    first = np.r_[True, rows[1:] != rows[:-1]]
    keep = first & (hamming <= GUIDED_DISTANCE)
    if keep.sum() < 8:
        return None
    src = known.points[rows[keep]].astype(np.float32)
    dst = query.points[candidates[keep]].astype(np.float32)
    if perspective:
        model, mask = cv2.findHomography(src, dst, cv2.RANSAC, REPROJ, maxIters=1000, confidence=0.995)
        if model is None or mask is None or not sane_homography(model, known.size, query.size):
            return None
    else:
        model, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=REPROJ,
                                                  maxIters=1000, confidence=0.995)
        if model is None or mask is None:
            return None
        model = np.vstack([model, [0, 0, 1]])
    return _measure(query, known, model, mask, dst, src)


#: a similarity explaining fewer than this share of the ratio-test matches is retried as a homography
#: (a similarity fits a true crop's matches almost all; a perspective copy's only in a band)
HOMOGRAPHY_BELOW = 0.9
#: ... when the similarity explains at least this many (a tilted copy still agrees with a similarity over
#: a band of the picture; an unrelated image's random matches would run RANSAC to its last iteration)
HOMOGRAPHY_MIN_INLIERS = 15
#: ... which replaces it only when it explains this many times the inliers (a free homography fits some
#: random matches too; a true perspective copy gains far more)
HOMOGRAPHY_GAIN = 1.3
#: a homography's local scale may vary by at most this factor over the known image (a strongly tilted
#: screen photo is ~2; more is a degenerate fit folding the image)
MAX_SCALE_SPREAD = 3.0


def sane_homography(h: np.ndarray, known_size: tuple[int, int], query_size: tuple[int, int]) -> bool:
    """No mirror, no fold, no degenerate squeeze: the known image's outline maps to a convex quadrilateral
    with the same orientation, and the local scale varies within :data:`MAX_SCALE_SPREAD`."""
    kw, kh = known_size
    corners = np.array([[0, 0], [kw, 0], [kw, kh], [0, kh]], dtype=np.float64)
    ones = np.c_[corners, np.ones(4)] @ h.T
    if np.any(ones[:, 2] <= 1e-6):  # a corner maps through infinity
        return False
    quad = ones[:, :2] / ones[:, 2:]
    if not cv2.isContourConvex(quad.astype(np.float32)):
        return False
    edges = np.roll(quad, -1, axis=0) - quad
    turns = edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    if not np.all(turns > 0):  # clockwise in image coordinates like the known image's corners: not mirrored
        return False
    # local scale at each corner: the square root of the Jacobian's determinant there
    scales = np.sqrt(np.abs(_local_dets(h, corners)))
    return bool(scales.min() > 0 and scales.max() / scales.min() <= MAX_SCALE_SPREAD)


def _local_dets(h: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Determinant of the projective map's Jacobian at each point (the local area scale)."""
    x, y = points[:, 0], points[:, 1]
    w = h[2, 0] * x + h[2, 1] * y + h[2, 2]
    u = (h[0, 0] * x + h[0, 1] * y + h[0, 2]) / w
    v = (h[1, 0] * x + h[1, 1] * y + h[1, 2]) / w
    a = (h[0, 0] - h[2, 0] * u) / w
    b = (h[0, 1] - h[2, 1] * u) / w
    c = (h[1, 0] - h[2, 0] * v) / w
    d = (h[1, 1] - h[2, 1] * v) / w
    return a * d - b * c


def _measure(query: LocalFeatures, known: LocalFeatures, h: np.ndarray, mask: np.ndarray, dst: np.ndarray,
             known_src: np.ndarray | None = None) -> Verification | None:
    """Inliers, scale, coverage, share and spread of a model ``h`` (3 x 3) mapping known -> query; None
    for a degenerate model (everything mapped onto a line or a point)."""
    if abs(np.linalg.det(h)) < 1e-9:
        return None
    inl = mask.ravel().astype(bool)
    src = known_src[inl] if known_src is not None else None
    # one query keypoint can be the match of several known keypoints: count distinct positions only
    inlier_dst = np.unique(np.round(dst[inl]).astype(np.int32), axis=0)
    n = len(inlier_dst)
    kw, kh = known.size
    corners = np.array([[0, 0], [kw, 0], [kw, kh], [0, kh]], dtype=np.float64)
    ones = np.c_[corners, np.ones(4)] @ h.T
    quad = ones[:, :2] / ones[:, 2:]
    scale = float(np.sqrt(abs(cv2.contourArea(quad.astype(np.float32))) / max(kw * kh, 1)))
    overlap_mask = _overlap_mask(quad, query.size)
    coverage = _coverage(inlier_dst, query.points, overlap_mask, query.size)
    share = n / max(int(overlap_mask[_cells(query.points, query.size)].sum()), 1)
    hull = cv2.contourArea(cv2.convexHull(inlier_dst.astype(np.float32))) if n >= 3 else 0.0
    overlap = overlap_mask.mean() * query.size[0] * query.size[1]
    spread = float(hull / overlap) if overlap > 0 else 0.0
    qw, qh = query.size
    back = np.c_[np.array([[0, 0], [qw, 0], [qw, qh], [0, qh]], np.float64), np.ones(4)] @ np.linalg.inv(h).T
    back = back[:, :2] / back[:, 2:]
    known_coverage = 0.0
    if src is not None:
        known_coverage = _coverage(src, known.points, _overlap_mask(back, known.size), known.size)
    back = back / [kw, kh]
    return Verification(n, scale, coverage, [(float(x), float(y)) for x, y in quad], share, spread,
                        [(float(x), float(y)) for x, y in back], known_coverage)


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
