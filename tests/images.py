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


def post_screenshot(picture: Image.Image) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """A screenshot of a social post: white page, avatar, name, text lines, ``picture`` at 500 x 312 inside,
    a counter line. Returns the screenshot and the picture's box in it."""
    from PIL import ImageDraw

    page = Image.new("RGB", (1080, 1400), (255, 255, 255))
    d = ImageDraw.Draw(page)
    d.ellipse((40, 40, 140, 140), fill=(90, 120, 200))
    d.text((170, 60), "Ministry of Defence @mod_official", fill=(20, 20, 20), font_size=34)
    for i in range(4):
        d.text((40, 200 + 50 * i), "Footage of the strike on the depot last night " * 2, fill=(30, 30, 30), font_size=30)
    box = (290, 470, 290 + 500, 470 + 312)
    page.paste(picture.resize((box[2] - box[0], box[3] - box[1])), box[:2])
    d.text((40, 1000), "12.4K reposts   48K likes", fill=(90, 90, 90), font_size=30)
    return page, box


def encode_video(frames, fps: int, size: tuple[int, int], options: dict[str, str] | None = None) -> bytes:
    """An H.264 mp4 of ``frames`` (RGB arrays of ``size``), ``options`` passed to libx264."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        if options:
            stream.options = options
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def stills_video(images: list[Image.Image], seconds_each: int = 2, fps: int = 5, size: tuple[int, int] = (320, 200)) -> bytes:
    """An mp4 showing each image for ``seconds_each`` seconds."""
    stills = [np.asarray(image.convert("RGB").resize(size)) for image in images]
    return encode_video((still for still in stills for _ in range(seconds_each * fps)), fps, size)


def scene_video(seeds: list[int], seconds_each: int = 2, fps: int = 5, size: tuple[int, int] = (320, 200)) -> bytes:
    """An mp4 showing a different procedural scene every ``seconds_each`` seconds (a tiny "trailer")."""
    stills = [np.asarray(scene(seed).resize(size)) for seed in seeds]
    options = {"g": str(fps), "keyint_min": str(fps), "sc_threshold": "0"}
    return encode_video((still for still in stills for _ in range(seconds_each * fps)), fps, size, options)
