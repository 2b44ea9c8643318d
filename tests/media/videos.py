"""Small synthetic videos and GIFs made with PyAV, for the media tests."""

from __future__ import annotations

import io

import av
import numpy as np


def synthetic_frame(i: int, width: int, height: int) -> np.ndarray:
    """Frame ``i``: a colour that changes every frame and a bar that moves, so any two frames differ."""
    a = np.zeros((height, width, 3), np.uint8)
    a[:, :, 0] = (i * 7) % 256
    a[:, :, 2] = (i * 13) % 256
    a[(i * 3) % height, :, 1] = 255
    a[:, (i * 5) % width, 1] = 255
    return a


def make_video(
    fmt: str = "mp4",
    codec: str = "libx264",
    seconds: float = 10,
    fps: int = 10,
    gop: int = 10,
    width: int = 64,
    height: int = 48,
) -> bytes:
    """``seconds`` of changing frames at ``fps``, a keyframe every ``gop`` frames."""
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        if codec == "libx264":
            stream.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
        for i in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(synthetic_frame(i, width, height), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def make_gif(frames: int = 20, fps: int = 10, width: int = 32, height: int = 24) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="gif") as container:
        stream = container.add_stream("gif", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "rgb8"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(synthetic_frame(i, width, height), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()
