"""Adding a trailer to known media: time per minute of video and shots covered, shot-change keyframes vs the
former sampling (at most 64 evenly spaced keyframes), both measured in this process on the same file.

    python bench/known_video.py [--minutes 4] [--size 1280x720] [--fps 24] [--shot 2.0]

The video is generated (no download): a new procedural scene every ``--shot`` seconds (+-40 %), each
shot panning slowly, encoded with libx264 (keyframes every 10 s, so most cuts fall between keyframes, as in
a real encode). "Covered" counts the shots with at least one kept frame: a crop of a shot without one
cannot be found. Both methods archive each kept frame as PNG and compute its signals (PDQ, pHash, ORB).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av  # noqa: E402
import numpy as np  # noqa: E402

from bench.evalset import scene  # noqa: E402
from bot.archive import Archive  # noqa: E402
from bot.hashing.stage import compute_signals  # noqa: E402
from bot.known import AddOptions, video_frames  # noqa: E402
from bot.media.keyframes import extract_keyframes  # noqa: E402


def make_trailer(minutes: float, size: tuple[int, int], fps: int, shot: float, seed: int = 7) -> tuple[bytes, list[float]]:
    """The mp4 and the start time of every shot."""
    rng = random.Random(seed)
    starts: list[float] = []
    buf = io.BytesIO()
    total = int(minutes * 60 * fps)
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = {"g": str(10 * fps), "sc_threshold": "0", "preset": "veryfast"}
        n = 0
        while n < total:
            starts.append(n / fps)
            length = max(1, int(shot * rng.uniform(0.6, 1.4) * fps))
            wide = np.asarray(scene(10_000 + len(starts), width=size[0] + length, height=size[1]).convert("RGB"))
            for i in range(min(length, total - n)):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(wide[:, i : i + size[0]]), format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
                n += 1
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue(), starts


def covered(times: list[float], starts: list[float], duration: float) -> int:
    ends = [*starts[1:], duration + 1]
    return sum(1 for s, e in zip(starts, ends) if any(s <= t < e for t in times))


def baseline(archive: Archive, data: bytes) -> list[float]:
    """What ``known add`` did before: 64 evenly spaced keyframes, each archived as PNG and hashed."""
    times = []
    for ts, frame in extract_keyframes(data, max_frames=64, min_interval=1.0):
        png = io.BytesIO()
        frame.save(png, "PNG")
        archive.put(png.getvalue(), "png")
        compute_signals(frame)
        times.append(ts)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--shot", type=float, default=2.0, help="average shot length, seconds")
    args = parser.parse_args()
    size = tuple(int(x) for x in args.size.split("x"))
    t0 = time.perf_counter()
    data, starts = make_trailer(args.minutes, size, args.fps, args.shot)  # type: ignore[arg-type]
    duration = args.minutes * 60
    print(f"video: {args.minutes:g} min, {size[0]}x{size[1]} @ {args.fps} fps, {len(starts)} shots, "
          f"{len(data) / 1e6:.1f} MB (generated in {time.perf_counter() - t0:.0f} s)")
    with tempfile.TemporaryDirectory() as tmp:
        archive = Archive(Path(tmp) / "archive")
        t0 = time.perf_counter()
        ours = video_frames(archive, data, AddOptions(label="bench"))
        ours_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        base_times = baseline(Archive(Path(tmp) / "archive-base"), data)
        base_s = time.perf_counter() - t0
    ours_times = [e.frame_ts for e in ours.entries if e.frame_ts is not None]
    per_min, base_per_min = ours_s / args.minutes, base_s / args.minutes
    print(f"shot-change keyframes: {len(ours_times)} frames, {covered(ours_times, starts, duration)}/{len(starts)} "
          f"shots covered, {ours_s:.1f} s = {per_min:.1f} s per minute of video"
          + (f" (capped at {ours.scan.capped_at:.0f} s)" if ours.scan.capped_at is not None else ""))
    print(f"baseline (64 evenly spaced): {len(base_times)} frames, {covered(base_times, starts, duration)}/{len(starts)} "
          f"shots covered, {base_s:.1f} s = {base_per_min:.1f} s per minute of video")
    print(f"time ratio ours/baseline: {ours_s / base_s:.2f}x; video sha256 {hashlib.sha256(data).hexdigest()[:12]}")


if __name__ == "__main__":
    main()
