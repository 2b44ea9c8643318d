"""Synthetic evidence for the demo: a short "game trailer" and the cropped, captioned frame a ministry posts.

Everything is generated from a fixed seed (no downloads): a camera pans over a procedurally drawn desert
with roads and a vehicle convoy, under a game-style HUD, like the 2015 trailer in the 2017 case.
"""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

WORLD_SIZE = (2400, 900)
FRAME_SIZE = (960, 540)
FPS = 12
SECONDS = 6


def _world(seed: int = 2015) -> Image.Image:
    """A large textured landscape the trailer's camera pans across."""
    rng = np.random.default_rng(seed)
    w, h = WORLD_SIZE
    base = rng.normal(0, 1, (h // 8, w // 8))
    terrain = Image.fromarray(((base - base.min()) / np.ptp(base) * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
    terrain = terrain.filter(ImageFilter.GaussianBlur(3))
    arr = np.asarray(terrain, dtype=np.float32) / 255
    grain = rng.normal(0, 0.06, (h, w))
    sand = np.stack([0.76 + 0.2 * arr + grain, 0.62 + 0.18 * arr + grain, 0.42 + 0.12 * arr + grain], axis=-1)
    img = Image.fromarray(np.clip(sand * 255, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(9):  # roads
        y0, y1 = rng.integers(0, h, 2)
        draw.line([(0, int(y0)), (w, int(y1))], fill=(92, 84, 70), width=int(rng.integers(8, 18)))
    for _ in range(40):  # compounds and rocks
        x, y = rng.integers(0, w), rng.integers(0, h)
        s = int(rng.integers(12, 60))
        shade = tuple(int(c) for c in rng.integers(60, 200, 3))
        draw.rectangle([int(x), int(y), int(x) + s, int(y) + s // 2], fill=shade, outline=(30, 30, 30))
    for i in range(14):  # the convoy
        x, y = 300 + i * 140, 430 + int(18 * np.sin(i / 2))
        draw.rounded_rectangle([x, y, x + 70, y + 28], radius=6, fill=(58, 66, 48), outline=(15, 15, 15), width=2)
        draw.rectangle([x + 48, y + 6, x + 66, y + 22], fill=(40, 44, 36))
    return img


def _hud(frame: Image.Image, t: float) -> Image.Image:
    draw = ImageDraw.Draw(frame)
    font = ImageFont.load_default()
    w, h = frame.size
    draw.rectangle([12, 12, 230, 44], outline=(120, 255, 120), width=2)
    draw.text((20, 20), f"TGT LOCK  T+{t:05.2f}", fill=(120, 255, 120), font=font)
    draw.ellipse([w // 2 - 30, h // 2 - 30, w // 2 + 30, h // 2 + 30], outline=(120, 255, 120), width=2)
    draw.text((w - 170, h - 30), "AC-130 GUNSHIP SIM", fill=(200, 255, 200), font=font)
    return frame


def trailer_frames() -> list[Image.Image]:
    world = _world()
    frames = []
    total = FPS * SECONDS
    max_x = WORLD_SIZE[0] - FRAME_SIZE[0]
    for i in range(total):
        x = int(max_x * i / (total - 1))
        y = 180 + int(40 * np.sin(i / total * np.pi))
        frame = world.crop((x, y, x + FRAME_SIZE[0], y + FRAME_SIZE[1]))
        frames.append(_hud(frame, i / FPS))
    return frames


def write_trailer(path: Path) -> Path:
    """Encode the trailer as H.264 MP4 with a keyframe every second."""
    frames = trailer_frames()
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=FPS)
        stream.width, stream.height = FRAME_SIZE
        stream.pix_fmt = "yuv420p"
        stream.gop_size = FPS
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def ministry_evidence(frame_index: int = 30) -> bytes:
    """What the ministry posts: a frame cropped to 75% off-centre, captioned, rescaled and recompressed."""
    frame = trailer_frames()[frame_index]
    w, h = frame.size
    crop = frame.crop((int(w * 0.2), int(h * 0.1), int(w * 0.95), int(h * 0.85)))
    caption_h = 70
    posted = Image.new("RGB", (crop.width, crop.height + caption_h), (255, 255, 255))
    posted.paste(crop, (0, 0))
    draw = ImageDraw.Draw(posted)
    draw.text((16, crop.height + 16), "Irrefutable evidence: convoy receives air cover, 13 Nov", fill=(0, 0, 0))
    posted = posted.resize((int(posted.width * 0.8), int(posted.height * 0.8)), Image.LANCZOS)
    out = io.BytesIO()
    posted.save(out, "JPEG", quality=70)
    return out.getvalue()
