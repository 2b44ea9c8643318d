"""The comparison picture outlines the matched region where it really is, checked on its pixels: on the
known image for a crop, on the posted image for a screenshot of a post and for a paste."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bot.alerts.picture import GAP, LABEL_HEIGHT, OUTLINE, comparison_picture, encode_picture, outline_worth_drawing
from bot.config import MatchingConfig
from bot.known import add_image
from bot.matching.matcher import Matcher
from bot.store.sqlite import SqliteStore
from tests.images import encode, post_screenshot, scene


@pytest.fixture
def known(tmp_path: Path, archive):
    store = SqliteStore(str(tmp_path / "state.db"))
    original = scene(21, 1024, 640)
    entry = add_image(store, archive, encode(original, "PNG"), label="convoy photo")
    matcher = Matcher(store, archive, MatchingConfig(), features_dir=tmp_path / "features")
    yield original, entry, matcher
    store.close()


def _outline_pixels(png: bytes) -> np.ndarray:
    """(y, x) of every pixel drawn in the outline colour (within the JPEG's error: no channel 40 off)."""
    im = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return np.argwhere(np.abs(im - np.array(OUTLINE)).max(axis=2) <= 40)


def _panels(png: bytes, posted: Image.Image) -> tuple[float, int]:
    """The posted panel's scale factor and the x where the known panel starts."""
    height = Image.open(io.BytesIO(png)).height - LABEL_HEIGHT
    f = height / posted.height
    return f, round(posted.width * f) + GAP


def _near_box(pixels: np.ndarray, box: tuple[float, float, float, float], tol: float) -> None:
    """Every pixel lies on the box's border (within ``tol``), and each of the four sides is drawn."""
    left, top, right, bottom = box
    ys, xs = pixels[:, 0], pixels[:, 1]
    inside_outer = (xs >= left - tol) & (xs <= right + tol) & (ys >= top - tol) & (ys <= bottom + tol)
    inside_inner = (xs > left + tol) & (xs < right - tol) & (ys > top + tol) & (ys < bottom - tol)
    assert np.all(inside_outer & ~inside_inner), "outline pixels away from the expected border"
    for side in (np.abs(xs - left) <= tol, np.abs(xs - right) <= tol, np.abs(ys - top) <= tol, np.abs(ys - bottom) <= tol):
        assert side.sum() >= 10, "a side of the outline is missing"


def _picture(archive, entry, posted: Image.Image, match) -> bytes:
    stored = archive.put(encode(posted, quality=92), "jpg")
    payload = {
        "platform": "x", "account": "mod", "post_id": "1",
        "media_archive_path": stored.relpath,
        "known": {"archive_path": entry.archive_path, "label": entry.label, "kind": "known"},
        "region": match.region, "known_region": match.known_region,
    }
    return comparison_picture(archive, payload)


def test_a_crop_is_outlined_on_the_known_image(known, archive) -> None:
    original, entry, matcher = known
    box = (400, 190, 900, 560)  # 50 % x 58 % of the known picture, off-centre
    posted = original.crop(box)
    match = matcher.best(encode(posted, quality=90))
    assert match is not None and match.tier == "match" and match.known.id == entry.id
    png = _picture(archive, entry, posted, match)
    f, known_x = _panels(png, posted)
    pixels = _outline_pixels(png)
    assert len(pixels) and np.all(pixels[:, 1] >= known_x), "nothing may be outlined on the posted crop"
    k = (Image.open(io.BytesIO(png)).height - LABEL_HEIGHT) / original.height
    expected = (known_x + box[0] * k, LABEL_HEIGHT + box[1] * k, known_x + box[2] * k, LABEL_HEIGHT + box[3] * k)
    _near_box(pixels, expected, tol=6)


def test_a_screenshot_of_a_post_is_outlined_on_the_posted_image(known, archive) -> None:
    original, entry, matcher = known
    posted, box = post_screenshot(original)
    match = matcher.best(encode(posted, quality=85))
    assert match is not None and match.tier == "match" and match.known.id == entry.id
    png = _picture(archive, entry, posted, match)
    f, known_x = _panels(png, posted)
    pixels = _outline_pixels(png)
    assert len(pixels) and np.all(pixels[:, 1] < known_x - GAP), "nothing may be outlined on the known image"
    expected = (box[0] * f, LABEL_HEIGHT + box[1] * f, box[2] * f, LABEL_HEIGHT + box[3] * f)
    _near_box(pixels, expected, tol=6)


def test_a_paste_onto_another_picture_is_outlined_on_the_posted_image(known, archive) -> None:
    original, entry, matcher = known
    posted = scene(777, 1200, 900)
    box = (520, 120, 520 + 560, 120 + 350)
    posted.paste(original.resize((box[2] - box[0], box[3] - box[1])), box[:2])
    match = matcher.best(encode(posted, quality=85))
    assert match is not None and match.tier == "match" and match.known.id == entry.id
    png = _picture(archive, entry, posted, match)
    f, known_x = _panels(png, posted)
    pixels = _outline_pixels(png)
    assert len(pixels) and np.all(pixels[:, 1] < known_x - GAP)
    _near_box(pixels, (box[0] * f, LABEL_HEIGHT + box[1] * f, box[2] * f, LABEL_HEIGHT + box[3] * f), tol=6)


def test_an_outline_framing_the_whole_panel_or_lying_outside_is_not_drawn() -> None:
    assert outline_worth_drawing([(10, 10), (90, 10), (90, 60), (10, 60)], 100, 80)
    assert not outline_worth_drawing([(-50, -40), (150, -40), (150, 120), (-50, 120)], 100, 80)  # a crop's
    assert not outline_worth_drawing([(200, 10), (300, 10), (300, 60), (200, 60)], 100, 80)
    assert not outline_worth_drawing([(0, 0), (10, 10), (20, 20)], 100, 80)  # degenerate


def test_the_known_label_is_not_repeated(archive) -> None:
    frame = archive.put(encode(scene(3)), "jpg")
    png = comparison_picture(archive, {"media_archive_path": frame.relpath,
                                   "known": {"archive_path": frame.relpath, "label": "Gunship trailer @ 12.0s",
                                             "frame_ts": 12.0}})
    # the label with a doubled timestamp would be wider: compare with the label drawn alone
    from bot.alerts.picture import Panel, comparison_image

    im = Image.open(io.BytesIO(png)).convert("RGB")
    ref = comparison_image(Panel(Image.open(io.BytesIO(encode(scene(3)))).convert("RGB"), "posted: None/None None"),
                           Panel(Image.open(io.BytesIO(encode(scene(3)))).convert("RGB"), "known: Gunship trailer @ 12.0s"))
    ref = Image.open(io.BytesIO(encode_picture(ref))).convert("RGB")  # through the same JPEG encoder
    # the label strip's rows in whole 8 x 8 JPEG blocks, which hold nothing of the panels below it
    rows = LABEL_HEIGHT // 8 * 8
    assert np.array_equal(np.asarray(im)[:rows], np.asarray(ref)[:rows])
