"""A trailer's every shot is found from a crop of it (issue #14): a 4-minute video of 120 distinct shots, added
with the default options, and a cropped, re-encoded still of each shot checked against the store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bot.archive import Archive
from bot.cli import main
from bot.config import load_config
from bot.matching.matcher import Matcher
from bot.store import open_store
from tests.images import crop, encode, encode_video, scene

pytestmark = pytest.mark.slow

SHOTS = 120
SECONDS_EACH = 2
FPS = 5
SIZE = (480, 300)


def shots_video(stills: list[np.ndarray]) -> bytes:
    """An mp4 cutting to the next still every SECONDS_EACH seconds, with a slow pan inside each shot and
    keyframes only every 10 s (cuts fall between keyframes, as in a real encode)."""
    frames = (np.roll(still, i, axis=1) for still in stills for i in range(SECONDS_EACH * FPS))  # a pixel a frame
    return encode_video(frames, FPS, SIZE, {"g": str(10 * FPS), "sc_threshold": "0", "preset": "veryfast"})


def test_every_shot_of_a_four_minute_trailer_is_found_from_a_crop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AFTERIMAGE_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("AFTERIMAGE_CONFIG", raising=False)
    images = [scene(3000 + i, width=SIZE[0], height=SIZE[1]) for i in range(SHOTS)]
    video = tmp_path / "trailer.mp4"
    video.write_bytes(shots_video([np.asarray(im.convert("RGB")) for im in images]))

    result = CliRunner().invoke(main, ["known", "add", str(video), "--label", "trailer"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output  # the defaults cover the whole video

    cfg = load_config(None)
    with open_store(cfg.store_url) as store:
        group = hashlib.sha256(video.read_bytes()).hexdigest()
        frames = store.find_known_by_group(group)
        assert SHOTS <= len(frames) <= 2 * SHOTS
        assert {int(f.frame_ts // SECONDS_EACH) for f in frames} == set(range(SHOTS))  # a frame in every shot
        matcher = Matcher(store, Archive(cfg.archive_path), cfg.matching)
        missed = []
        for i, image in enumerate(images):
            query = encode(crop(image, 0.7, 0.2, 0.1).resize((300, 180)), quality=80)
            best = matcher.best(query)
            if best is None or best.known.group != group or int(best.known.frame_ts // SECONDS_EACH) != i:
                missed.append((i, best.known.frame_ts if best else None))
        assert missed == []
