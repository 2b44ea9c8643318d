"""Shot-change keyframes (:func:`bot.media.keyframes.iter_shot_frames`): a frame at every cut, even between
encoder keyframes, one at least every ``every`` seconds, none closer than the minimum gap, a cap that says
where it stopped, and progress by frames."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from bot.errors import MediaError
from bot.media.keyframes import SHOT_MIN_GAP, ShotScan, iter_shot_frames

FPS = 10


def video(shots: list[tuple[float, int]], *, gop: int = 50, size: tuple[int, int] = (96, 64), strobe: bool = False) -> bytes:
    """``(seconds, seed)`` shots of random blocky pictures; ``strobe`` makes every frame of a shot differ."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
        for seconds, seed in shots:
            rng = np.random.default_rng(seed)
            picture = np.kron(rng.integers(0, 256, (size[1] // 16, size[0] // 16, 3)), np.ones((16, 16, 1))).astype(np.uint8)
            for i in range(round(seconds * FPS)):
                frame = 255 - picture if strobe and i % 2 else picture
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def times(data: bytes, **kwargs) -> list[float]:
    return [round(ts, 1) for ts, _ in iter_shot_frames(data, **kwargs)]


def test_a_frame_at_every_cut_even_between_encoder_keyframes() -> None:
    shots = [(1.3, 1), (0.7, 2), (2.1, 3), (0.5, 4), (3.0, 5)]
    starts = np.cumsum([0] + [s for s, _ in shots[:-1]]).round(1).tolist()
    assert times(video(shots)) == starts  # the encoder put keyframes at 0 and 5 s only


def test_a_static_shot_gets_a_frame_every_so_many_seconds() -> None:
    assert times(video([(35.0, 7)]), every=10) == [0.0, 10.0, 20.0, 30.0]
    assert times(video([(35.0, 7)]), every=30) == [0.0, 30.0]


def test_a_camera_pan_gets_a_frame_each_time_it_has_moved_a_fifth_of_the_picture() -> None:
    rng = np.random.default_rng(11)
    world = np.kron(rng.integers(0, 256, (4, 40, 3)), np.ones((16, 16, 1))).astype(np.uint8)  # 640 x 64
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for i in range(60):  # 6 s panning 8 px a frame: the picture moves its own width every 1.2 s
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(world[:, i * 8 : i * 8 + 96]), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    kept = times(buf.getvalue())
    gaps = [b - a for a, b in zip(kept, kept[1:])]
    assert 15 <= len(kept) <= 30  # a frame per ~20 px of movement, not one for the whole 6 s shot
    assert max(gaps) <= 0.4


def test_flashing_pictures_are_kept_no_closer_than_the_minimum_gap() -> None:
    kept = times(video([(3.0, 8)], strobe=True))
    assert len(kept) >= 5 and min(b - a for a, b in zip(kept, kept[1:])) >= SHOT_MIN_GAP - 1e-9


def test_the_cap_stops_the_scan_and_says_where_and_progress_counts_frames() -> None:
    data = video([(1.0, s) for s in range(10, 16)])
    scan = ShotScan()
    kept = [ts for ts, _ in iter_shot_frames(data, max_frames=3, scan=scan)]
    assert kept == [0.0, 1.0, 2.0] and scan.capped_at == pytest.approx(3.0) and scan.kept == 3
    scan = ShotScan()
    seen: list[int] = []
    full = list(iter_shot_frames(data, scan=scan, progress=lambda s: seen.append(s.decoded)))
    assert len(full) == 6 and scan.capped_at is None and scan.total_frames == 60
    assert seen == sorted(seen) and seen[0] == 50 and seen[-1] == 60  # every 50 frames, and once at the end


def test_not_a_video_is_refused() -> None:
    with pytest.raises(MediaError) as e:
        list(iter_shot_frames(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100))
    assert e.value.reason == "not_video"
