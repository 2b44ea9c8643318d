"""Pixels as a second kind of evidence: a copy whose keypoint inliers bunch on one patch is matched when
the known image, laid over it where the fit puts it, agrees with its pixels; a look-alike never does."""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from bot.config import MatchingConfig
from bot.hashing.agreement import pixel_agreement
from bot.hashing.decode import decode_image
from bot.known import add_image
from bot.matching.matcher import Matcher
from tests.images import encode, scene

#: a wide photograph: the known picture is its left half, the look-alike its right half (same sky,
#: terrain and lighting, no shared pixels)
WIDE_SEED = 30_006
#: a 30 % window of the half (fractions of its width and height): mostly smooth sky and terrain, where the
#: 27 inliers a crop keeps bunch on one hill (spread 0.007)
WINDOW = (0.3031, 0.0781, 0.8509, 0.6259)


def _half(left: bool) -> Image.Image:
    wide = scene(WIDE_SEED, 2048, 768)
    return wide.crop((0, 0, 1024, 768) if left else (1024, 0, 2048, 768))


def _window(image: Image.Image) -> Image.Image:
    w, h = image.size
    x1, y1, x2, y2 = WINDOW
    return image.crop((int(w * x1), int(h * y1), int(w * x2), int(h * y2)))


def test_a_crop_with_bunched_inliers_matches_on_agreeing_pixels_and_its_neighbour_does_not(store, archive, tmp_path: Path) -> None:
    entry = add_image(store, archive, encode(_half(True), quality=95), label="left half")
    matcher = Matcher(store, archive, MatchingConfig(), features_dir=tmp_path / "features")
    found = matcher.match(encode(_window(_half(True)), quality=88))
    assert found and found[0].tier == "match" and found[0].known.id == entry.id
    assert found[0].signal == "orb" and found[0].inliers is not None and found[0].inliers < MatchingConfig().min_inliers_match
    # the same window of the neighbouring half of the photograph
    assert not [m for m in matcher.match(encode(_window(_half(False)), quality=88)) if m.tier == "match"]


def test_pixel_agreement_tells_the_right_placement_from_a_wrong_one_and_a_look_alike() -> None:
    known = decode_image(encode(_half(True), quality=95))
    w, h = known.size
    # the bottom-left quarter (terrain; the top is smooth sky) shown at twice the scale
    copy = known.crop((0, h // 2, w // 2, h)).resize((w, h))
    right = [(0.0, -1.0 * h), (2.0 * w, -1.0 * h), (2.0 * w, 1.0 * h), (0.0, 1.0 * h)]
    agreement, cells = pixel_agreement(copy, known, right)
    assert cells >= 16 and agreement >= 0.75
    shifted = [(x - 0.25 * w, y) for x, y in right]
    assert pixel_agreement(copy, known, shifted)[0] < 0.3
    other = decode_image(encode(_half(False), quality=95)).crop((0, h // 2, w // 2, h)).resize((w, h))
    assert pixel_agreement(other, known, right)[0] < 0.3


def _blurred(seed: int) -> Image.Image:
    return scene(seed, 1080, 720).filter(ImageFilter.BoxBlur(6)).filter(ImageFilter.GaussianBlur(3))


def _rotated_under_big_text(image: Image.Image, degrees: float) -> Image.Image:
    """Rotated, cut to an upright rectangle inside the rotated picture, and two lines of big words over
    it (a fifth of its height each): what a re-poster's meme editor does."""
    w, h = image.size
    turned = image.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=True)
    a = math.radians(abs(degrees))
    s = 1 / (math.cos(a) + math.sin(a) * max(w, h) / min(w, h))
    cx, cy = turned.width / 2, turned.height / 2
    out = turned.crop((int(cx - w * s / 2), int(cy - h * s / 2), int(cx + w * s / 2), int(cy + h * s / 2)))
    size = int(min(out.size) * 0.2)
    font = ImageFont.load_default(size=size)
    draw = ImageDraw.Draw(out)
    for i, words in enumerate(("ARMY BEFORE", "BORDER SHARE")):
        draw.text((out.width * 0.05, out.height * 0.4 + i * size), words, fill=(200, 120, 140), font=font)
    return out


def test_a_rotated_copy_under_big_text_matches_on_the_pixels_the_text_leaves(store, archive, tmp_path: Path) -> None:
    """The words take a third of the picture and the keypoints around them (28 inliers); the pixels
    outside the words still agree with the known image, those of a look-alike under the same words do not."""
    entry = add_image(store, archive, encode(_blurred(6), quality=95), label="blurred scene")
    matcher = Matcher(store, archive, MatchingConfig(), features_dir=tmp_path / "features")
    found = matcher.match(encode(_rotated_under_big_text(_blurred(6), -16), quality=88))
    assert found and found[0].tier == "match" and found[0].known.id == entry.id
    look_alike = encode(_rotated_under_big_text(_blurred(2006), -16), quality=88)
    assert not [m for m in matcher.match(look_alike) if m.tier == "match"]
