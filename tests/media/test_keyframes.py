from __future__ import annotations

import io
import itertools
import struct
import time
import tracemalloc

import av
import numpy as np
import pytest
from PIL import Image

from bot.errors import MediaError
from bot.media.keyframes import KeyframeLimits, extract_keyframes
from tests.media.videos import make_gif, make_video


@pytest.fixture(scope="module")
def mp4() -> bytes:
    return make_video("mp4", "libx264", seconds=10, fps=10, gop=10)


@pytest.fixture(scope="module")
def webm() -> bytes:
    return make_video("webm", "libvpx-vp9", seconds=10, fps=10, gop=10)


@pytest.fixture(scope="module")
def ts() -> bytes:
    """MPEG-TS: what HLS segments joined together give (bot.media.hls)."""
    return make_video("mpegts", "libx264", seconds=10, fps=10, gop=10)


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def _assert_distinct(frames: list[tuple[float, Image.Image]]) -> None:
    for (_, a), (_, b) in itertools.pairwise(frames):
        assert np.abs(_pixels(a) - _pixels(b)).mean() > 1


@pytest.mark.parametrize("name", ["mp4", "webm", "ts"])
def test_keyframes_every_second(name: str, request: pytest.FixtureRequest) -> None:
    data = request.getfixturevalue(name)
    frames = extract_keyframes(data)
    assert [t for t, _ in frames] == pytest.approx([float(i) for i in range(10)], abs=0.01)
    assert all(isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (64, 48) for _, img in frames)
    _assert_distinct(frames)


def test_path_source(tmp_path, mp4: bytes) -> None:
    path = tmp_path / "v.mp4"
    path.write_bytes(mp4)
    assert len(extract_keyframes(path)) == 10
    assert len(extract_keyframes(str(path))) == 10


def test_bytes_like_source(mp4: bytes) -> None:
    assert len(extract_keyframes(bytearray(mp4))) == len(extract_keyframes(memoryview(mp4))) == 10


def test_ffmpeg_protocol_strings_are_not_opened(tmp_path, mp4: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "v.mp4").write_bytes(mp4)
    monkeypatch.chdir(tmp_path)
    for source in ("concat:v.mp4|v.mp4", "file:v.mp4", "https://example.org/v.mp4"):
        with pytest.raises(MediaError) as e:
            extract_keyframes(source)
        assert e.value.reason == "not_video"


def test_max_frames_spread_evenly(mp4: bytes) -> None:
    assert [t for t, _ in extract_keyframes(mp4, max_frames=3)] == pytest.approx([0.0, 4.0, 9.0], abs=0.01)
    assert [t for t, _ in extract_keyframes(mp4, max_frames=1)] == [0.0]


def test_min_interval_respected(mp4: bytes) -> None:
    times = [t for t, _ in extract_keyframes(mp4, min_interval=2.5)]
    assert times == pytest.approx([0.0, 3.0, 6.0, 9.0], abs=0.01)
    assert all(b - a >= 2.5 - 1e-6 for a, b in itertools.pairwise(times))


def test_few_keyframes_falls_back_to_decoding() -> None:
    data = make_video("mp4", "libx264", seconds=10, fps=10, gop=1000)  # a single keyframe
    frames = extract_keyframes(data)
    times = [t for t, _ in frames]
    assert len(frames) == 10
    assert times == pytest.approx([float(i) for i in range(10)], abs=0.01)
    _assert_distinct(frames)


def test_min_interval_zero_gives_max_frames(mp4: bytes) -> None:
    frames = extract_keyframes(mp4, max_frames=25, min_interval=0)
    times = [t for t, _ in frames]
    assert len(frames) == 25
    assert times == sorted(set(times))
    assert times[0] == 0.0 and times[-1] == pytest.approx(9.9, abs=0.01)


def test_downscales_to_max_side() -> None:
    data = make_video("mp4", "libx264", seconds=2, fps=5, gop=5, width=320, height=240)
    frames = extract_keyframes(data, max_side=100)
    assert frames and all(img.size == (100, 75) for _, img in frames)
    assert extract_keyframes(data, max_side=None)[0][1].size == (320, 240)


def test_animated_gif_frames_spread() -> None:
    frames = extract_keyframes(make_gif(frames=20, fps=10), min_interval=0.5)
    assert [t for t, _ in frames] == pytest.approx([0.0, 0.5, 1.0, 1.5], abs=0.01)
    _assert_distinct(frames)


def test_still_gif_gives_one_frame() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (10, 10), "red").save(buf, "GIF")
    frames = extract_keyframes(buf.getvalue())
    assert len(frames) == 1 and frames[0][0] == 0.0


def test_gif_with_thousands_of_frames_is_bounded() -> None:
    data = make_gif(frames=5000, fps=50)  # 100 s
    tracemalloc.start()
    started = time.monotonic()
    try:
        frames = extract_keyframes(data, max_frames=16)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 10
    assert peak < 50 * 1024**2
    assert len(frames) == 16
    assert frames[-1][0] == pytest.approx(99.0, abs=0.05)  # thinned to 1 s steps


def test_decoded_frame_limit_stops_the_scan() -> None:
    data = make_gif(frames=500, fps=50)
    frames = extract_keyframes(data, max_frames=10, limits=KeyframeLimits(max_decoded_frames=100))
    assert 1 <= len(frames) <= 3  # frames at 0, 1.0 and 2.0 s lie within the first 100 frames
    assert frames[-1][0] <= 2.0


def test_duration_limit_stops_the_scan(mp4: bytes) -> None:
    frames = extract_keyframes(mp4, limits=KeyframeLimits(max_duration=4.5))
    assert [t for t, _ in frames] == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0], abs=0.01)


def test_resolution_limit(mp4: bytes) -> None:
    with pytest.raises(MediaError) as e:
        extract_keyframes(mp4, limits=KeyframeLimits(max_width=32))
    assert e.value.reason == "too_large"


@pytest.mark.parametrize(("width", "height", "reason"), [(9000, 16, "too_large"), (65535, 65535, None)])
def test_gif_with_huge_declared_size_is_refused(width: int, height: int, reason: str | None) -> None:
    # a tiny GIF whose header declares a huge canvas: refused before anything is decoded
    buf = io.BytesIO()
    Image.new("P", (2, 2)).save(buf, "GIF")
    data = bytearray(buf.getvalue())
    data[6:10] = struct.pack("<HH", width, height)
    with pytest.raises(MediaError) as e:
        extract_keyframes(bytes(data))
    # FFmpeg itself rejects 65535x65535 (too many pixels for its image size check) as invalid data
    assert e.value.reason in ((reason,) if reason else ("too_large", "corrupt_video"))


@pytest.mark.parametrize(
    "data",
    [b"", b"garbage" * 100, b"<html><body>not a video</body></html>", b"#EXTM3U\n#EXT-X-VERSION:3\nfile:///etc/passwd\n"],
    ids=["empty", "garbage", "html", "hls-playlist"],
)
def test_non_video_input(data: bytes) -> None:
    with pytest.raises(MediaError) as e:
        extract_keyframes(data)
    assert e.value.reason == "not_video"


def test_still_images_are_not_video() -> None:
    for fmt in ("JPEG", "PNG", "WEBP"):
        buf = io.BytesIO()
        Image.new("RGB", (10, 10), "red").save(buf, fmt)
        with pytest.raises(MediaError) as e:
            extract_keyframes(buf.getvalue())
        assert e.value.reason == "not_video"


def test_missing_file(tmp_path) -> None:
    with pytest.raises(MediaError) as e:
        extract_keyframes(tmp_path / "nope.mp4")
    assert e.value.reason == "not_video"


def test_audio_only_is_not_video() -> None:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for _ in range(5):
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(MediaError) as e:
        extract_keyframes(buf.getvalue())
    assert e.value.reason == "not_video"


@pytest.mark.parametrize("name", ["mp4", "webm"])
def test_truncated_video(name: str, request: pytest.FixtureRequest) -> None:
    data = request.getfixturevalue(name)
    with pytest.raises(MediaError) as e:
        extract_keyframes(data[:200])
    assert e.value.reason == "corrupt_video"


def test_garbage_after_a_valid_header() -> None:
    data = make_video("mp4", "libx264", seconds=1, fps=10, gop=10)
    with pytest.raises(MediaError) as e:
        extract_keyframes(data[:32] + bytes(range(256)) * 40)
    assert e.value.reason == "corrupt_video"


def test_arguments_validated(mp4: bytes) -> None:
    with pytest.raises(ValueError):
        extract_keyframes(mp4, max_frames=0)
    with pytest.raises(ValueError):
        extract_keyframes(mp4, min_interval=-1)
