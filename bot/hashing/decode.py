"""Safe, fast decoding of untrusted image bytes into the one working image every signal is computed from.

Why this module exists: posted files are hostile input (decompression bombs, truncated uploads, HTML error
pages served as ``image/jpeg``) and big (12 MP phone photos). Decoding them at full size just to make a
64x64 hash is the slowest step of the pipeline, so JPEGs are decoded at a reduced size with
``Image.draft`` (the DCT scaling of libjpeg: 1/2, 1/4, 1/8) and everything is then downscaled to
:data:`WORK_SIDE` pixels. Stored and query images take exactly this path, so their hashes are comparable.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from bot.errors import MediaError
from bot.media.sniff import GIF, JPEG, PNG, SNIFF_BYTES, WEBP, sniff

#: longest side of the working image (PDQ works on 512 px, ORB keypoints need a bit more detail)
WORK_SIDE = 640
#: images with more pixels than this are refused as decompression bombs (a 12 MP photo is fine)
DEFAULT_MAX_PIXELS = 64_000_000

_IMAGE_TYPES = {JPEG, PNG, GIF, WEBP}


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int | None = WORK_SIDE) -> Image.Image:
    """Decode ``data`` into an upright RGB image whose longer side is at most ``max_side`` (None: full size).

    Only JPEG, PNG, GIF and WebP are accepted, recognized by their magic bytes; GIF and WebP give their first
    frame. EXIF orientation is applied. Raises :class:`MediaError` with reason ``empty``, ``not_an_image``
    (HTML, SVG, video, unknown bytes), ``decompression_bomb`` (more than ``max_pixels`` pixels) or
    ``truncated`` / ``corrupt`` (a damaged file of a supported type).
    """
    if not data:
        raise MediaError("empty", "the file is empty (0 bytes)")
    kind = sniff(bytes(data[:SNIFF_BYTES]))
    if kind not in _IMAGE_TYPES:
        what = "a video" if kind is not None else _describe(data)
        raise MediaError("not_an_image", f"not a JPEG, PNG, GIF or WebP image: the file is {what}")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=["JPEG", "PNG", "GIF", "WEBP"])
            width, height = img.size
            if width <= 0 or height <= 0:
                raise MediaError("corrupt", "the image has no pixels")
            if width * height > max_pixels:
                raise MediaError(
                    "decompression_bomb", f"the image claims {width}x{height} pixels, over the limit of {max_pixels}"
                )
            if max_side is not None and kind is JPEG:
                _draft(img, max_side)
            img.seek(0)
            img.load()
            img = ImageOps.exif_transpose(img) or img
            img = _to_rgb(img)
        except MediaError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise MediaError("decompression_bomb", f"the image is too large to decode safely: {e}") from None
        except UnidentifiedImageError:
            raise MediaError("not_an_image", "the file starts like an image but Pillow cannot read it") from None
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            text = str(e)
            reason = "truncated" if "truncated" in text or isinstance(e, EOFError) else "corrupt"
            raise MediaError(reason, f"the image is damaged: {text or type(e).__name__}") from None
    if max_side is not None:
        img = fit(img, max_side)
    return img


def upright_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of an image as displayed (EXIF rotation applied), read from its header only."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)
    except Exception:
        return None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def fit(img: Image.Image, max_side: int) -> Image.Image:
    """Downscale (never upscale) so the longer side is at most ``max_side``, keeping the aspect ratio."""
    w, h = img.size
    if max(w, h) <= max_side:
        return img
    scale = max_side / max(w, h)
    return img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR, reducing_gap=2.0)


def prepare(image: Image.Image, max_side: int = WORK_SIDE) -> Image.Image:
    """The fixed preprocessing of an already decoded image (PIL input to the matcher): RGB, at most ``max_side``."""
    return fit(_to_rgb(image), max_side)


#: a JPEG may be DCT-decoded down to this share of the working side (a 4000 px photo decodes at 1/8 to
#: 500 px instead of 1/4 to 1000 px and a resize: 2x faster, and PDQ/ORB do not care about 500 vs 640 px)
DRAFT_SLACK = 0.75


def _draft(img: Image.Image, max_side: int) -> None:
    """Ask libjpeg for the smallest DCT scale that still gives ``DRAFT_SLACK * max_side`` on the longer side."""
    w, h = img.size
    scale = max_side * DRAFT_SLACK / max(w, h)
    if scale < 1:
        img.draft("RGB", (max(1, int(w * scale)), max(1, int(h * scale))))


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB on white: transparent areas of logos and stickers hash as white, whatever their hidden colour."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def _describe(data: bytes) -> str:
    head = bytes(data[:512]).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        return "an HTML page"
    if head.startswith(b"<?xml") or b"<svg" in head:
        return "XML/SVG (vector images are not supported)"
    return "of an unknown type"
