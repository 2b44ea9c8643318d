"""Image helpers for the hashing, matching and CLI tests (procedural scenes from the benchmark set)."""

from __future__ import annotations

import io

import av
import numpy as np
from PIL import Image

from bench.evalset import caption, crop, hud_overlay, scene  # noqa: F401  (re-exported for tests)


def encode(img: Image.Image, fmt: str = "JPEG", **kw: object) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, fmt, **kw)
    return buf.getvalue()


def scene_video(seeds: list[int], seconds_each: int = 2, fps: int = 5, size: tuple[int, int] = (320, 200)) -> bytes:
    """An mp4 showing a different procedural scene every ``seconds_each`` seconds (a tiny "trailer")."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = {"g": str(fps), "keyint_min": str(fps), "sc_threshold": "0"}
        for seed in seeds:
            still = np.asarray(scene(seed).resize(size))
            for _ in range(seconds_each * fps):
                frame = av.VideoFrame.from_ndarray(still, format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()
