"""Signals: stable hex serialization, dihedral variants, and borders/caption bars removed before hashing."""

from __future__ import annotations

from PIL import ImageOps

from bench.evalset import caption, letterbox, pad
from bot.hashing.borders import strip_borders
from bot.hashing.decode import prepare
from bot.hashing.signals import MIRRORED_VARIANTS, PdqSignal, PhashSignal
from bot.hashing.stage import compute_signals
from tests.images import scene


def test_compute_signals_gives_hex_hashes_and_descriptors() -> None:
    s = compute_signals(prepare(scene(10)))
    assert len(s["pdq"]) == 64 and len(s["phash"]) == 16
    assert int(s["pdq_quality"]) >= 50
    assert PdqSignal.validate(s["pdq"].upper()) == s["pdq"]
    assert s["orb"]


def test_mirror_is_found_among_dihedral_variants() -> None:
    img = prepare(scene(11))
    original = PdqSignal.compute(img)
    variants, _ = PdqSignal.dihedral(prepare(ImageOps.mirror(scene(11))))
    best = min(range(8), key=lambda i: PdqSignal.distance(variants[i], original))
    assert best in MIRRORED_VARIANTS
    assert PdqSignal.distance(variants[best], original) <= 31


def test_caption_bar_and_letterbox_are_stripped() -> None:
    img, _ = strip_borders(prepare(scene(12)))  # the same path as a stored image
    for transformed in (caption(scene(12)), letterbox(scene(12)), pad(scene(12))):
        stripped, box = strip_borders(prepare(transformed))
        assert abs(stripped.width / stripped.height - img.width / img.height) < 0.05
        assert PdqSignal.distance(PdqSignal.compute(stripped), PdqSignal.compute(img)) <= 31
        assert PhashSignal.distance(PhashSignal.compute(stripped), PhashSignal.compute(img)) <= 12


def test_plain_picture_keeps_its_pixels() -> None:
    img = prepare(scene(13))
    _, box = strip_borders(img)
    assert box[2] - box[0] >= img.width * 0.9


def test_a_dark_sky_taken_for_a_bar_keeps_its_keypoints_and_a_caption_band_does_not() -> None:
    """strip_borders cuts a dark scene's flat sky like a bar (right for its hashes); its faint detail still
    gives the copy's keypoints, so only a band holding marks (a caption's words) is left out of them."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    from bot.hashing.stage import hash_image
    from tests.images import encode

    dark = Image.fromarray((np.asarray(scene(50001, 1080, 720), np.float32) * 0.18).astype(np.uint8))
    hashed = hash_image(encode(dark, quality=15))
    assert strip_borders(hashed.image)[1][1] > 100  # the sky is cut off for hashing ...
    assert hashed.content is None  # ... and its keypoints stay the picture's
    captioned = Image.new("RGB", (1080, 900), "white")
    captioned.paste(dark, (0, 180))
    ImageDraw.Draw(captioned).text((30, 40), "SHARE BEFORE", fill="black", font=ImageFont.load_default(size=90))
    assert hash_image(encode(captioned, quality=85)).content is not None
