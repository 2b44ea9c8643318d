"""Small synthetic videos and GIFs made with PyAV, for the media tests."""

from __future__ import annotations

import io
from pathlib import Path

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


def _encode(container: av.container.OutputContainer, stream: av.VideoStream, frames: int, width: int, height: int) -> None:
    """Encode ``frames`` synthetic frames into ``stream`` and flush the encoder."""
    for i in range(frames):
        for packet in stream.encode(av.VideoFrame.from_ndarray(synthetic_frame(i, width, height), format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


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
        _encode(container, stream, int(seconds * fps), width, height)
    return buf.getvalue()


def make_gif(frames: int = 20, fps: int = 10, width: int = 32, height: int = 24) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="gif") as container:
        stream = container.add_stream("gif", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "rgb8"
        _encode(container, stream, frames, width, height)
    return buf.getvalue()


def hls_from_video(
    video: bytes, folder: Path, segment_type: str = "mpegts", segment_seconds: int = 1
) -> dict[str, bytes]:
    """``video`` (an mp4 file's bytes) remuxed, without re-encoding, by FFmpeg's own ``hls`` muxer into
    ``folder``, as ``{file name: bytes}``: what an HLS server would publish.

    ``segment_type`` "mpegts" gives ``index.m3u8`` and ``seg0.ts``...; "fmp4" gives ``index.m3u8``,
    ``init.mp4`` (the EXT-X-MAP section) and ``seg0.m4s``...; the playlist is VOD (EXT-X-ENDLIST). Segments
    are cut at the first keyframe after every ``segment_seconds``."""
    folder.mkdir(parents=True, exist_ok=True)
    ext = "ts" if segment_type == "mpegts" else "m4s"
    options = {
        "hls_time": str(segment_seconds),
        "hls_playlist_type": "vod",
        "hls_segment_type": segment_type,
        "hls_segment_filename": str(folder / f"seg%d.{ext}"),
        "hls_fmp4_init_filename": "init.mp4",
    }
    playlist = str(folder / "index.m3u8")
    with av.open(io.BytesIO(video)) as source, av.open(playlist, "w", format="hls", options=options) as out:
        stream = source.streams.video[0]
        copy = out.add_stream_from_template(stream)
        for packet in source.demux(stream):
            if packet.dts is not None:  # the demuxer's final empty packet
                packet.stream = copy
                out.mux(packet)
    return {f.name: f.read_bytes() for f in sorted(folder.iterdir())}
