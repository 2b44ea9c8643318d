"""What makes matching survive social media: embedded pictures found as regions, perspective accepted
within sanity limits, low-detail copies confirmed by a second signal, and signal types that bring their
own index."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from bot.config import MatchingConfig
from bot.hashing import local
from bot.hashing.local import sane_homography
from bot.hashing.regions import propose
from bot.hashing.signals import SIGNAL_TYPES, SignalType
from bot.hashing.stage import hash_image
from bot.known import add_image
from bot.matching.matcher import Matcher
from tests.images import encode, post_screenshot, scene


def _matcher(store, archive, tmp_path: Path) -> Matcher:
    return Matcher(store, archive, MatchingConfig(), features_dir=tmp_path / "features")


def test_the_picture_inside_a_post_screenshot_is_proposed_as_a_region() -> None:
    page, box = post_screenshot(scene(8))
    hashed = hash_image(encode(page))
    s = hashed.image.width / page.width
    found = propose(hashed.image)
    tol = 0.02 * hashed.image.width  # the block's edge blurs by a few pixels (7 x 7 flatness window)
    assert any(all(abs(b[i] - box[i] * s) < tol for i in range(4)) for b in found), found
    assert propose(hashed.image.crop((0, 0, 60, 60))) == []  # too small to hold a picture


def test_a_photo_of_a_tilted_screen_matches_through_a_homography(store, archive, tmp_path) -> None:
    original = scene(31, 1024, 640)
    entry = add_image(store, archive, encode(original, "PNG"), label="tilted")
    w, h = original.size
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = np.float32([[60, 40], [w - 10, 0], [w - 90, h - 20], [20, h - 70]])
    warped = cv2.warpPerspective(np.asarray(original), cv2.getPerspectiveTransform(src, dst), (w, h))
    found = _matcher(store, archive, tmp_path).match(encode(Image.fromarray(warped), quality=85))
    assert found and found[0].tier == "match" and found[0].known.id == entry.id and found[0].signal == "orb"
    corners = np.array(found[0].region)
    assert np.abs(corners - dst).max() < 40  # the tilted quadrilateral (corners 40-90 px off a rectangle)


def test_degenerate_and_mirrored_homographies_are_refused() -> None:
    size = (640, 400)
    assert sane_homography(np.eye(3), size, size)
    mirror = np.array([[-1.0, 0, 640], [0, 1, 0], [0, 0, 1]])
    assert not sane_homography(mirror, size, size)
    squeeze = np.array([[1.0, 0, 0], [0, 1, 0], [0.004, 0, 1]])  # the far side shrunk to almost nothing
    assert not sane_homography(squeeze, size, size)
    through_infinity = np.array([[1.0, 0, 0], [0, 1, 0], [-0.002, 0, 1]])
    assert not sane_homography(through_infinity, size, size)


def _low_detail(seed: int) -> Image.Image:
    """A dark, motion-blurred scene: PDQ's quality score is low and ORB finds few stable corners."""
    dark = Image.fromarray((np.asarray(scene(seed, 1024, 640), np.float32) * 0.15).astype(np.uint8))
    return dark.filter(ImageFilter.BoxBlur(8)).filter(ImageFilter.GaussianBlur(4))


def test_a_low_detail_copy_matches_when_phash_agrees_and_a_different_one_does_not(store, archive, tmp_path) -> None:
    original = _low_detail(41)
    entry = add_image(store, archive, encode(original, "PNG"), label="night")
    assert int(entry.signals["pdq_quality"]) < MatchingConfig().min_quality  # not trusted alone
    matcher = _matcher(store, archive, tmp_path)
    found = matcher.match(encode(original, quality=20))
    assert found and found[0].tier == "match" and found[0].known.id == entry.id
    assert not [m for m in matcher.match(encode(_low_detail(42), quality=20)) if m.tier == "match"]


def test_a_noisy_low_detail_copy_beyond_the_pdq_match_radius_matches_when_phash_agrees(store, archive, tmp_path) -> None:
    """Noise and a JPEG q15 re-save move a dark scene's low-quality PDQ hash past ``pdq_match``, and ORB
    finds nothing stable; PDQ within ``pdq_suggest`` and pHash within 6 bits together still name it."""
    original = _low_detail(43)
    entry = add_image(store, archive, encode(original, "PNG"), label="night")
    noisy = np.asarray(original, np.float32) / 255 + np.random.default_rng(43).normal(0, 0.02**0.5, (640, 1024, 3))
    query = encode(Image.fromarray((noisy.clip(0, 1) * 255).astype(np.uint8)), quality=15)
    pdq = SIGNAL_TYPES["pdq"]
    assert pdq.distance(hash_image(query).signals["pdq"], entry.signals["pdq"]) > MatchingConfig().pdq_match
    found = _matcher(store, archive, tmp_path).match(query)
    assert found and found[0].tier == "match" and found[0].known.id == entry.id
    # reported as the PDQ distance it is, so an item's stricter pdq_match applies to it
    assert found[0].signal == "pdq" and found[0].distance > MatchingConfig().pdq_match
    strict = MatchingConfig(pdq_match=16, pdq_suggest=31)  # a stricter profile keeps its narrower radius
    found = Matcher(store, archive, strict, features_dir=tmp_path / "features").match(query)
    assert not [m for m in found if m.tier == "match"]


class ToySignal(SignalType):
    """A signal type defined outside the registry module: a 64-bit mean hash."""

    name = "toy"
    bits = 64
    keys = ("toy",)

    @classmethod
    def compute(cls, image: Image.Image) -> str:
        small = np.asarray(image.convert("L").resize((8, 8)), np.float32)
        return np.packbits(small > small.mean()).tobytes().hex()

    @classmethod
    def match_radius(cls, config: MatchingConfig) -> int | None:
        return 4


def test_a_new_signal_type_is_one_class_and_one_registry_entry(store, archive, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(SIGNAL_TYPES, ToySignal.name, ToySignal)
    entry = add_image(store, archive, encode(scene(51), "PNG"), label="toy")
    assert entry.signals["toy"] == ToySignal.compute(hash_image(encode(scene(51), "PNG")).image)  # computed, stored
    matcher = _matcher(store, archive, tmp_path)
    matcher.refresh()
    assert isinstance(matcher._indexes["toy"], ToySignal.get_index_cls())  # searched in its own index
    found = matcher.match(encode(scene(51)))
    assert found and found[0].known.id == entry.id


def _pasted(seed: int) -> tuple[Image.Image, Image.Image, tuple[int, int, int, int]]:
    """A picture pasted onto another busy picture of the same kind (AugLy's ``overlay_onto_background_image``
    as DISC21 uses it): the picture, the composite and where the picture sits in it."""
    picture = scene(seed, 1024, 768)
    background = scene(seed + 100_000, 1200, 900)
    small = picture.resize((560, 420))
    box = (230, 190, 230 + small.width, 190 + small.height)
    background.paste(small, box[:2])
    return picture, background, box


def test_a_picture_pasted_onto_a_busy_picture_is_matched(store, archive, tmp_path) -> None:
    """Where its border meets a background of about its colour, a pasted picture's edges break up and the
    background takes half the keypoints: the picture is still matched, not only suggested."""
    for seed in (65, 67, 68):  # the pastes whose whole-image check alone stays in the suggest tier
        picture, composite, _ = _pasted(seed)
        entry = add_image(store, archive, encode(picture, "PNG"), label=f"pasted-{seed}")
        best = _matcher(store, archive, tmp_path).best(encode(composite, quality=88))
        assert best is not None and best.tier == "match" and best.known.id == entry.id, (seed, best)


def test_a_copy_under_big_text_matches_and_a_look_alike_under_the_same_text_does_not(store, archive, tmp_path) -> None:
    """Big text across a copy takes most of the query's keypoint cells; the picture's own inliers still
    spread over the known image. The neighbouring half of the same wide scene, under the same text, must not
    match."""
    from PIL import ImageDraw, ImageFont

    font = ImageFont.load_default(110)  # Pillow's own scalable font

    def texted(im: Image.Image) -> bytes:
        im = im.copy()
        draw = ImageDraw.Draw(im)
        for i, line in enumerate(("SHARE BEFORE", "IT IS DELETED")):
            draw.text((10, 250 + i * 130), line, font=font, fill=(240, 230, 250))
        return encode(im, quality=88)

    wide = scene(73, 2048, 768)
    left, right = wide.crop((0, 0, 1024, 768)), wide.crop((1024, 0, 2048, 768))
    entry = add_image(store, archive, encode(left, "PNG"), label="left half")
    matcher = _matcher(store, archive, tmp_path)
    best = matcher.best(texted(left))
    assert best is not None and best.tier == "match" and best.known.id == entry.id
    assert not [m for m in matcher.match(texted(right)) if m.tier == "match"]


def _noisy(img: Image.Image, seed: int) -> Image.Image:
    """Blur, strong grain and JPEG q15: what a re-shared, re-filmed copy goes through."""
    rng = np.random.default_rng(seed)
    a = np.asarray(img.filter(ImageFilter.GaussianBlur(2)), np.float32)
    a = (a + rng.normal(0, 30, a.shape)).clip(0, 255).astype(np.uint8)
    return Image.open(io.BytesIO(encode(Image.fromarray(a), quality=15)))


def test_guided_matching_recovers_the_keypoints_a_degraded_copy_shares_and_no_more() -> None:
    original = hash_image(encode(scene(41, 1024, 640), "PNG")).features
    copy = hash_image(encode(_noisy(scene(41, 1024, 640), 1))).features
    unrelated = hash_image(encode(_noisy(scene(42, 1024, 640), 2))).features
    guided = local.verify(copy, original)
    plain_min = local.GUIDED_MIN_INLIERS
    try:
        local.GUIDED_MIN_INLIERS = 10**6  # the ratio-test fit alone
        plain = local.verify(copy, original)
    finally:
        local.GUIDED_MIN_INLIERS = plain_min
    assert guided is not None and plain is not None
    assert guided.inliers >= 1.3 * plain.inliers and guided.passes(MatchingConfig().min_inliers_match), (plain, guided)
    other = local.verify(unrelated, original)
    assert other is None or not other.passes(MatchingConfig().min_inliers_suggest)


def test_a_caption_bands_words_neither_vote_nor_verify(store, archive, tmp_path) -> None:
    picture = scene(43, 800, 500)
    meme = Image.new("RGB", (800, 650), "white")
    meme.paste(picture, (0, 150))
    font = ImageFont.load_default(size=90)
    ImageDraw.Draw(meme).text((30, 25), "FOOTAGE ARMY", fill="black", font=font)
    hashed = hash_image(encode(meme, quality=90))
    assert hashed.content is not None
    band = hashed.content[1]  # where the picture starts, in working-image pixels
    assert band > 0.15 * hashed.image.height
    assert (hashed.features.points[:, 1] < band - 2).any()  # the words have keypoints ...
    m = _matcher(store, archive, tmp_path)
    view = m._view(hashed, None)
    for mirrored in (False, True):  # ... which the check does not use, as is or mirrored
        assert (m._features(view, mirrored).points[:, 1] >= band).all()
    entry = add_image(store, archive, encode(picture, "PNG"), label="picture")
    found = m.match(encode(meme, quality=90))
    assert found and found[0].known.id == entry.id and found[0].tier == "match"


def test_inliers_along_one_ridge_pass_when_they_cover_most_of_the_known_image() -> None:
    """A sunset gradient's keypoints lie along its skyline, so a true copy's inliers form a thin hull; they
    pass when they reach most of the known image's keypoint cells. The same count bunched on a shared HUD
    (few known cells) does not."""
    ridge = local.Verification(inliers=40, scale=1.0, coverage=0.23, region=[], share=0.04, spread=0.025,
                               known_coverage=0.58)
    assert ridge.passes(MatchingConfig().min_inliers_match)
    hud = local.Verification(inliers=43, scale=1.0, coverage=0.08, region=[], share=0.04, spread=0.006,
                             known_coverage=0.10)
    assert not hud.passes(MatchingConfig().min_inliers_match)
    half = local.Verification(inliers=25, scale=1.0, coverage=0.30, region=[], share=0.05, spread=0.011,
                              known_coverage=0.42)  # the neighbouring half of the same photograph
    assert not half.passes(MatchingConfig().min_inliers_match)


def test_a_pasted_picture_whose_lower_half_blends_into_the_background_is_proposed_whole() -> None:
    """Only the picture's top, its horizon and one full side stand out: the lower half (ground) has the
    background's colour. The side running past the horizon gives the picture's full height, not only its
    sky band."""
    rng = np.random.default_rng(3)
    page = np.zeros((450, 600, 3), np.float32)
    page[:] = (90, 120, 60)
    page += rng.normal(0, 12, page.shape)
    ground = (40, 40, 120)
    page[220:, :460] = ground + rng.normal(0, 6, (230, 460, 3))
    page[330:, :] = ground + rng.normal(0, 6, (120, 600, 3))
    picture = np.zeros((180, 320, 3), np.float32)
    picture[:70] = (120, 170, 230)
    picture[70:] = ground
    page[150:330, 140:460] = picture + rng.normal(0, 6, picture.shape)
    hashed = hash_image(encode(Image.fromarray(page.clip(0, 255).astype(np.uint8)), quality=90))
    found = propose(hashed.image)
    assert any(all(abs(b[i] - want) <= 6 for i, want in enumerate((140, 150, 460, 330))) for b in found), found


def _blurred(seed: int) -> Image.Image:
    """A motion-blurred scene: its working image keeps few corners, its source a few more."""
    return scene(seed, 1080, 720).filter(ImageFilter.BoxBlur(6)).filter(ImageFilter.GaussianBlur(3))


def _crop_30(image: Image.Image, fx: float, fy: float) -> Image.Image:
    """An off-centre window holding 30 % of the image's area."""
    w, h = round(image.width * 0.3**0.5), round(image.height * 0.3**0.5)
    x, y = round((image.width - w) * fx), round((image.height - h) * fy)
    return image.crop((x, y, x + w, y + h))


def test_a_magnified_crop_of_a_low_texture_picture_matches_through_the_sharper_source(store, archive, tmp_path) -> None:
    """A 30 % crop of a blurred scene, shown at about twice the known working image's scale, has corners
    the known working image lost; the known source, decoded sharper, still has them."""
    ids = {seed: add_image(store, archive, encode(_blurred(seed), quality=95), label=str(seed)).id for seed in (1, 4)}
    matcher = _matcher(store, archive, tmp_path)
    for seed in (1, 4):
        found = matcher.match(encode(_crop_30(_blurred(seed), 0.1, 0.2), quality=88))
        assert found and found[0].tier == "match" and found[0].known.id == ids[seed], seed
    # the same kind of crop of another blurred scene has no counterpart in either source
    assert not [m for m in matcher.match(encode(_crop_30(_blurred(2001), 0.5, 0.5), quality=88)) if m.tier == "match"]


def _grainy_photo_of_screen(image: Image.Image, seed: int) -> bytes:
    """A blurred, tilted, noisy copy saved at JPEG q15: a phone photo of a screen in poor light."""
    pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(4)), np.float32)
    h, w = pixels.shape[:2]
    corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    tilted = np.float32([[40, 30], [w - 10, 0], [w - 50, h - 20], [0, h]])
    pixels = cv2.warpPerspective(pixels, cv2.getPerspectiveTransform(corners, tilted), (w, h)) / 255
    pixels = pixels + np.random.default_rng(seed).normal(0, 0.05**0.5, pixels.shape)
    return encode(Image.fromarray((pixels.clip(0, 1) * 255).astype(np.uint8)), quality=15)


def test_a_grainy_copy_is_matched_on_the_keypoints_of_its_smoothed_out_copy(store, archive, tmp_path) -> None:
    """Noise grain takes every keypoint of the copy at full size; box-averaged 3 x 3 the picture's corners
    come back. A grainy look-alike gains nothing from it."""
    entry = add_image(store, archive, encode(scene(7, 1024, 640), quality=95), label="scene")
    add_image(store, archive, encode(scene(1007, 1024, 640), quality=95), label="other")
    query = _grainy_photo_of_screen(scene(7, 1024, 640), 7)
    assert local.grain(hash_image(query).image) >= local.GRAIN
    matcher = _matcher(store, archive, tmp_path)
    found = matcher.match(query)
    assert found and found[0].tier == "match" and found[0].known.id == entry.id
    look_alike = _grainy_photo_of_screen(scene(2007, 1024, 640), 7)
    assert not [m for m in matcher.match(look_alike) if m.tier == "match"]


def test_a_failed_sharper_retry_on_another_candidate_leaves_one_for_the_true_entry(store, archive, tmp_path) -> None:
    """A check verifies a low-texture view against hash neighbours before the voted true entry: the
    sharper-source retry spent on a neighbour that fails must leave one for the true entry."""
    true = add_image(store, archive, encode(_blurred(1), quality=95), label="true")
    neighbour = add_image(store, archive, encode(_blurred(2), quality=95), label="neighbour")
    matcher = _matcher(store, archive, tmp_path)
    matcher.refresh()
    view = matcher._view(hash_image(encode(_crop_30(_blurred(1), 0.1, 0.2), quality=88)), None)
    spent = matcher._verify(neighbour, view, False)
    assert view.sharpened == 1 and not (spent and spent.passes(matcher.config.min_inliers_match))
    check = matcher._verify(true, view, False)
    assert check is not None and check.passes(matcher.config.min_inliers_match)
