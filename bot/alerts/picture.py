"""The side-by-side comparison picture attached to match and recycled alerts.

Posted image on the left, known image on the right, both scaled to the same height, a small label above each
panel, and the matched region outlined where it is: on the posted image when the known picture sits inside
it (a screenshot of a post, a paste, a meme panel), on the known image when the posted one is a part of it
(a crop), on both when each shows part of the other. An outline that would frame a whole panel, or lie
mostly outside it, says nothing and is not drawn. Images come from the evidence archive
(verified reads); an image that is missing, corrupt, not an image (e.g. a video file) or too large to decode
becomes a grey placeholder panel saying so: building the picture never raises.

``region`` is in the posted image's upright pixels (EXIF orientation applied, as the matcher decodes it);
``known_region`` in fractions of the known image's width and height. A video shows its frame at the payload's ``media_frame_ts``
(posted) or the known entry's ``frame_ts`` (decoded with PyAV).

Why a JPEG, decoded small and scaled with OpenCV: the outbox draws one picture per match alert on the cores
that also match posts. A PNG of two photographs drawn from full-size decodes with Lanczos took ~120 ms of
CPU for a 1300 x 500 picture, 3-4 times the cost of checking an image; decoding each JPEG at a reduced DCT
scale (never below the panel height), scaling it to the panel with OpenCV and encoding a JPEG at
quality 90 without chroma subsampling (the outline keeps its colour and its sharp edges) takes ~10 ms, for a
file 5 times smaller.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from bot.archive import Archive
from bot.redact import redact

log = logging.getLogger(__name__)

PANEL_HEIGHT = 480
#: the pictures' encoding (see the module docstring): media type and file extension of what is sent
PICTURE_TYPE, PICTURE_EXT = "image/jpeg", "jpg"
#: JPEG quality of the pictures; 4:4:4 (no chroma subsampling) keeps the outline's colour on its thin line
JPEG_QUALITY = 90
MAX_WIDTH = 1800
LABEL_HEIGHT = 22
GAP = 8
BACKGROUND = (255, 255, 255)
PLACEHOLDER = (200, 200, 200)
OUTLINE = (255, 0, 255)
MAX_PIXELS = 80_000_000  # refuse decompression bombs before decoding
MAX_VIDEO_FRAMES = 900  # frames decoded at most to reach a keyframe's timestamp


@dataclass(frozen=True)
class Panel:
    image: Image.Image | None  # None: placeholder
    label: str
    problem: str | None = None
    #: the archived file's upright size, the pixels regions are given in, when ``image`` was decoded smaller
    source_size: tuple[int, int] | None = None

    @property
    def size(self) -> tuple[int, int] | None:
        """Width and height of the picture in the pixels its region is measured in."""
        return self.source_size or (self.image.size if self.image is not None else None)


def _font(size: int = 14) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except Exception:  # Pillow built without FreeType
        return ImageFont.load_default()


def video_frame(data: bytes, ts: float | None) -> Image.Image | None:
    """The frame of a video at ``ts`` seconds (the first frame when None) via PyAV, or None."""
    try:
        import av
    except ImportError:  # pragma: no cover - av is a dependency
        return None
    try:
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            ts = max(0.0, float(ts or 0.0))
            if ts and stream.time_base:
                container.seek(int(ts / stream.time_base), stream=stream, backward=True, any_frame=False)
            last = None
            for n, frame in enumerate(container.decode(stream)):
                last = frame
                if frame.pts is None or frame.pts * stream.time_base >= ts or n > MAX_VIDEO_FRAMES:
                    break
            if last is None or last.width * last.height > MAX_PIXELS:
                return None
            return last.to_image().convert("RGB")
    except Exception:
        return None


def load_image(
    archive: Archive, relpath: str | None, frame_ts: float | None = None
) -> tuple[Image.Image | None, str | None]:
    """(RGB image, None) or (None, why it could not be loaded). A video gives its frame at ``frame_ts``."""
    image, _, problem = _load(archive, relpath, frame_ts)
    return image, problem


def _load(
    archive: Archive, relpath: str | None, frame_ts: float | None = None, min_side: int | None = None
) -> tuple[Image.Image | None, tuple[int, int] | None, str | None]:
    """:func:`load_image`, with the file's upright size; ``min_side``: a JPEG may be decoded at a reduced DCT
    scale (libjpeg's 1/2, 1/4, 1/8) as long as both sides stay at least this long."""
    if not relpath:
        return None, None, "no archived file"
    try:
        data = archive.get(relpath)
    except Exception as e:  # ArchiveError: missing, unreadable or hash mismatch
        return None, None, "corrupt in archive" if "corrupt" in str(e) else "missing from archive"
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > MAX_PIXELS:
                return None, None, f"too large to show ({im.width}x{im.height})"
            full = im.size
            turned = im.getexif().get(0x0112, 1) in (5, 6, 7, 8)
            if min_side is not None and im.format == "JPEG":
                im.draft("RGB", (min_side, min_side))
            im.seek(0)
            upright = ImageOps.exif_transpose(im) or im  # the matcher measured the region on the upright image
            return upright.convert("RGB"), (full[1], full[0]) if turned else full, None
    except Exception:
        pass
    frame = video_frame(data, frame_ts)
    if frame is not None:
        return frame, frame.size, None
    return None, None, "not a decodable image or video"


#: an outline is drawn on a panel when at least this share of it lies inside the panel ...
MIN_INSIDE = 0.6
#: ... and it covers at most this share of the panel (else it frames the whole picture: nothing to show)
MAX_COVER = 0.9


def _area(poly: Sequence[tuple[float, float]]) -> float:
    """Shoelace area of a polygon."""
    n = len(poly)
    return abs(sum(poly[i][0] * poly[(i + 1) % n][1] - poly[(i + 1) % n][0] * poly[i][1] for i in range(n))) / 2


def _clip(poly: list[tuple[float, float]], width: float, height: float) -> list[tuple[float, float]]:
    """The part of a convex polygon inside the rectangle (0, 0, width, height) (Sutherland-Hodgman)."""
    edges = [(0, 1, 0.0), (0, -1, width), (1, 1, 0.0), (1, -1, height)]  # axis, sign, offset: sign*p[axis]+offset >= 0
    out = poly
    for axis, sign, offset in edges:
        src, out = out, []
        for i, cur in enumerate(src):
            prev = src[i - 1]
            inside_cur = sign * cur[axis] + offset >= 0
            inside_prev = sign * prev[axis] + offset >= 0
            if inside_cur != inside_prev:
                t = (sign * prev[axis] + offset) / (sign * (prev[axis] - cur[axis]) or 1e-12)
                out.append((prev[0] + t * (cur[0] - prev[0]), prev[1] + t * (cur[1] - prev[1])))
            if inside_cur:
                out.append(cur)
        if not out:
            return []
    return out


def outline_worth_drawing(points: list[tuple[float, float]], width: float, height: float) -> bool:
    """Whether an outline (in a panel's pixels) marks a part of that panel: mostly inside it, and not the
    whole of it (a crop's known-image outline frames the whole posted image, and beyond)."""
    area = _area(points)
    if area <= 0 or width <= 0 or height <= 0:
        return False
    inside = _area(_clip(points, width, height))
    return inside >= MIN_INSIDE * area and inside <= MAX_COVER * width * height


def _scale(image: Image.Image, height: int) -> Image.Image:
    """``image`` at ``height`` (aspect kept), with OpenCV: area-averaged when shrinking by 2 or more (as sharp
    as Lanczos for a photo, at a fraction of its cost), bilinear for less (a JPEG decoded at a reduced scale
    is less than twice the panel), bicubic when enlarging."""
    width = max(1, round(image.width * height / image.height))
    if (width, height) == image.size:
        return image.copy()  # drawn on: never the caller's image
    ratio = image.height / height
    interpolation = cv2.INTER_AREA if ratio >= 2 else cv2.INTER_LINEAR if ratio > 1 else cv2.INTER_CUBIC
    return Image.fromarray(cv2.resize(np.asarray(image), (width, height), interpolation=interpolation))


def _placeholder(width: int, height: int, text: str) -> Image.Image:
    im = Image.new("RGB", (width, height), PLACEHOLDER)
    draw = ImageDraw.Draw(im)
    font = _font(16)
    lines = ["image unavailable", text[:60]]
    y = height // 2 - 20
    for line in lines:
        w = draw.textlength(line, font=font)
        draw.text(((width - w) / 2, y), line, fill=(60, 60, 60), font=font)
        y += 22
    return im


def _valid_region(region: Any) -> list[tuple[float, float]] | None:
    try:
        points = [(float(p[0]), float(p[1])) for p in region]
    except (TypeError, ValueError, IndexError):
        return None
    return points if len(points) >= 3 else None


def comparison_image(
    posted: Panel,
    known: Panel,
    region: Sequence[Sequence[float]] | None = None,
    height: int = PANEL_HEIGHT,
    max_width: int = MAX_WIDTH,
    known_region: Sequence[Sequence[float]] | None = None,
) -> Image.Image:
    """Compose the comparison picture from two panels (see module docstring)."""
    images = [p.image for p in (posted, known)]
    # the common height: PANEL_HEIGHT, or smaller if the two scaled widths would not fit in max_width
    widths_at_h = [(im.width * height / im.height) if im is not None else height * 0.75 for im in images]
    total = sum(widths_at_h) + GAP
    if total > max_width:
        height = max(64, int(height * (max_width - GAP) / (total - GAP)))
    scaled: list[Image.Image] = []
    factors: list[float] = []  # from each panel's region pixels (its source size) to the picture's
    for panel, im in zip((posted, known), images, strict=True):
        if im is None or panel.size is None:
            scaled.append(_placeholder(max(160, int(height * 0.75)), height, panel.problem or ""))
            factors.append(0.0)
        else:
            scaled.append(_scale(im, height))
            factors.append(height / panel.size[1])
    outlines = [_valid_region(region) if region is not None else None, None]
    if known.size is not None and known_region is not None:
        fractions = _valid_region(known_region)
        if fractions:
            outlines[1] = [(x * known.size[0], y * known.size[1]) for x, y in fractions]
    for i, (panel, points) in enumerate(zip((posted, known), outlines, strict=True)):
        if not points or panel.size is None or not outline_worth_drawing(points, *panel.size):
            continue
        f = factors[i]
        poly = [(x * f, y * f) for x, y in points]
        ImageDraw.Draw(scaled[i]).line(poly + [poly[0]], fill=OUTLINE, width=max(2, height // 160), joint="curve")
    width = scaled[0].width + GAP + scaled[1].width
    out = Image.new("RGB", (width, height + LABEL_HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(out)
    font = _font(14)
    x = 0
    for panel, im in zip((posted, known), scaled, strict=True):
        out.paste(im, (x, LABEL_HEIGHT))
        label = panel.label
        while label and draw.textlength(label, font=font) > im.width - 4 and len(label) > 4:
            label = label[:-2]
        if label != panel.label:
            label = label.rstrip() + "…"
        draw.text((x + 2, 3), label, fill=(0, 0, 0), font=font)
        x += im.width + GAP
    return out


def comparison_picture(archive: Archive, payload: dict[str, Any]) -> bytes:
    """The picture (:data:`PICTURE_TYPE`) for a ``match``/``recycled`` payload; never raises (worst case: two
    placeholder panels)."""
    try:
        known = payload.get("known") or {}
        posted_img, posted_size, posted_problem = _load(
            archive, payload.get("media_archive_path"), payload.get("media_frame_ts"), PANEL_HEIGHT
        )
        known_img, known_size, known_problem = _load(archive, known.get("archive_path"), known.get("frame_ts"), PANEL_HEIGHT)
        posted_label = redact(f"posted: {payload.get('platform')}/{payload.get('account')} {payload.get('post_id')}")
        what = "seen before" if known.get("kind") == "seen" else "known"
        known_label = redact(f"{what}: {known.get('label') or '?'}")
        stamp = f"{known['frame_ts']:.1f}s" if isinstance(known.get("frame_ts"), (int, float)) else None
        if stamp and stamp not in known_label:  # a video's keyframes are labelled "<title> @ 12.0s" already
            known_label += f" @ {stamp}"
        image = comparison_image(
            Panel(posted_img, posted_label, posted_problem, posted_size),
            Panel(known_img, known_label, known_problem, known_size),
            payload.get("region"),
            known_region=payload.get("known_region"),
        )
    except Exception:
        log.exception("cannot build the comparison picture; sending a placeholder")
        image = comparison_image(Panel(None, "posted", "error"), Panel(None, "known", "error"))
    return encode_picture(image)


def archived_picture(archive: Archive, media: Sequence[Any]) -> bytes | None:
    """The first archived picture of a deletion-log alert's ``media`` list (``{"sha256", "archive_path"}``;
    a video gives its first frame), at most ``MAX_WIDTH`` x ``PANEL_HEIGHT`` (:data:`PICTURE_TYPE`), or None
    when none can be shown: the evidence of what was deleted travels with the alert."""
    for item in media:
        path = item.get("archive_path") if isinstance(item, dict) else None
        image, _, _ = _load(archive, path, min_side=PANEL_HEIGHT)
        if image is None:
            continue
        image.thumbnail((MAX_WIDTH, PANEL_HEIGHT))
        return encode_picture(image)
    return None


def encode_picture(image: Image.Image) -> bytes:
    """``image`` encoded as the pictures are sent (:data:`PICTURE_TYPE`)."""
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return buf.getvalue()
