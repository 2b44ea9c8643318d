"""The evaluation set: procedural scenes, images shipped inside installed packages, and the transforms.

No downloads: originals are synthetic "photos" and "game screenshots" (gradients, value-noise terrain,
shapes, text, HUD overlays) plus the PNG/JPEG files that installed packages ship. Look-alikes are made with
the same generator and the same overlay style but another seed, so they share texture statistics and HUD
elements with an original without being a copy of it.
"""

from __future__ import annotations

import io
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

WORDS = "convoy border strike base radar unit column sector night target armour depot bridge ridge".split()


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # older Pillow
        return ImageFont.load_default()


def value_noise(rng: np.random.Generator, h: int, w: int, octaves: int = 5) -> np.ndarray:
    """Multi-octave value noise in [0, 1]: terrain, clouds, camouflage."""
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = 2 ** (o + 2)
        grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
        layer = np.asarray(Image.fromarray((grid * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC))
        out += amp * layer.astype(np.float32) / 255
        total += amp
        amp *= 0.55
    return out / total


def scene(seed: int, width: int = 1024, height: int = 640, hud: bool = False, hud_seed: int = 0) -> Image.Image:
    """A procedural outdoor scene: sky gradient, noise terrain, shapes (vehicles, buildings), text, lines."""
    rng = np.random.default_rng(seed)
    r = random.Random(seed)
    sky = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    c1, c2 = rng.random(3) * 255, rng.random(3) * 255
    base = (c1[None, None, :] * (1 - sky[..., None]) + c2[None, None, :] * sky[..., None]) * np.ones((1, width, 1))
    terrain = value_noise(rng, height, width)
    horizon = int(height * r.uniform(0.3, 0.6))
    tint = rng.random(3) * 200 + 30
    base[horizon:] = (terrain[horizon:, :, None] * tint[None, None, :] * 1.2).clip(0, 255)
    base += (value_noise(rng, height, width, 3)[..., None] - 0.5) * 40
    img = Image.fromarray(base.clip(0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(r.randint(12, 30)):
        x, y = r.randrange(width), r.randrange(horizon - 40, height)
        s = r.randint(10, 90)
        colour = tuple(r.randrange(256) for _ in range(3))
        kind = r.random()
        if kind < 0.35:
            d.rectangle((x, y, x + s * 2, y + s), fill=colour, outline=(0, 0, 0))
        elif kind < 0.6:
            d.ellipse((x, y, x + s, y + s // 2), fill=colour)
        elif kind < 0.85:
            pts = [(x + r.randint(-s, s), y + r.randint(-s, s)) for _ in range(r.randint(3, 6))]
            d.polygon(pts, fill=colour)
        else:
            d.line((x, y, x + r.randint(-200, 200), y + r.randint(-60, 60)), fill=colour, width=r.randint(1, 5))
    for _ in range(r.randint(1, 4)):
        d.text((r.randrange(width - 200), r.randrange(height - 40)), r.choice(WORDS).upper(), fill=(255, 255, 255),
               font=_font(r.randint(16, 40)))
    if hud:
        img = hud_overlay(img, hud_seed)
    return img


def hud_overlay(img: Image.Image, seed: int = 0) -> Image.Image:
    """A video-game HUD: health bar, minimap, ammo counter, crosshair, objective text (style fixed by seed)."""
    img = img.copy()
    r = random.Random(seed)
    w, h = img.size
    d = ImageDraw.Draw(img)
    colour = (r.randrange(120, 256), r.randrange(120, 256), r.randrange(0, 120))
    d.rectangle((20, h - 50, 260, h - 30), outline=colour, width=2)
    d.rectangle((22, h - 48, 22 + r.randint(80, 236), h - 32), fill=(200, 30, 30))
    d.ellipse((w - 170, 20, w - 20, 170), outline=colour, width=3, fill=(20, 40, 20))
    for _ in range(6):
        cx, cy = w - 95 + r.randint(-60, 60), 95 + r.randint(-60, 60)
        d.rectangle((cx - 3, cy - 3, cx + 3, cy + 3), fill=(255, 0, 0))
    d.text((w - 230, h - 70), "AMMO 30/120", fill=colour, font=_font(28))
    d.text((20, 20), "OBJECTIVE: SECURE THE CONVOY", fill=colour, font=_font(22))
    cx, cy = w // 2, h // 2
    d.line((cx - 15, cy, cx + 15, cy), fill=colour, width=2)
    d.line((cx, cy - 15, cx, cy + 15), fill=colour, width=2)
    return img


def package_images(limit: int = 40, min_bytes: int = 20_000) -> list[tuple[str, Image.Image]]:
    """PNG/JPEG files shipped inside installed packages (site-packages, /usr/share), RGB, at least 200 px."""
    import site
    import sys

    roots = [*site.getsitepackages(), str(Path(sys.prefix) / "lib"), "/usr/share", "/usr/lib/python3"]
    seen: set[tuple[int, int]] = set()
    out: list[tuple[str, Image.Image]] = []
    for root in roots:
        for dirpath, _, files in os.walk(root):
            for f in sorted(files):
                if not f.lower().endswith((".png", ".jpg", ".jpeg")):
                    continue
                p = Path(dirpath) / f
                try:
                    if p.stat().st_size < min_bytes:
                        continue
                    im = Image.open(p)
                    im.load()
                except Exception:
                    continue
                if min(im.size) < 200 or im.size in seen:
                    continue
                seen.add(im.size)
                out.append((str(p), _flatten(im)))
                if len(out) >= limit:
                    return out
    return out


def _flatten(im: Image.Image) -> Image.Image:
    if im.mode in ("RGBA", "LA", "P"):
        rgba = im.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    return im.convert("RGB")


# ----------------------------------------------------------------------------- transforms


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def caption(img: Image.Image, text: str = "SATELLITE IMAGE: CONVOY CROSSING THE BORDER, 13 NOV", where: str = "bottom") -> Image.Image:
    w, h = img.size
    bar = max(40, h // 7)
    out = Image.new("RGB", (w, h + bar), (255, 255, 255))
    out.paste(img, (0, bar if where == "top" else 0))
    d = ImageDraw.Draw(out)
    y = 8 if where == "top" else h + 8
    d.text((12, y), text, fill=(0, 0, 0), font=_font(max(14, bar // 2 - 2)))
    return out


def crop(img: Image.Image, share: float, fx: float = 0.2, fy: float = 0.7) -> Image.Image:
    """Keep ``share`` of each side, off-centre (fx, fy: where the window sits, 0..1)."""
    w, h = img.size
    cw, ch = int(w * share), int(h * share)
    x, y = int((w - cw) * fx), int((h - ch) * fy)
    return img.crop((x, y, x + cw, y + ch))


def letterbox(img: Image.Image) -> Image.Image:
    w, h = img.size
    side = max(w, h)
    out = Image.new("RGB", (side, int(side * 1.0)), (0, 0, 0))
    out.paste(img, ((side - w) // 2, (side - h) // 2))
    return out


def pad(img: Image.Image) -> Image.Image:
    return ImageOps.expand(img, border=(40, 25, 40, 25), fill=(250, 250, 250))


def rotate(img: Image.Image, degrees: float) -> Image.Image:
    return img.rotate(degrees, resample=Image.Resampling.BILINEAR, expand=False, fillcolor=(0, 0, 0))


def downscale(img: Image.Image, side: int = 320) -> Image.Image:
    w, h = img.size
    s = side / max(w, h)
    return img.resize((max(1, int(w * s)), max(1, int(h * s))), Image.Resampling.LANCZOS)


def screenshot(img: Image.Image) -> Image.Image:
    """The 2017 case: crop, caption, rescale, recompress."""
    out = crop(img, 0.8, 0.7, 0.3)
    out = caption(out, "EVIDENCE OF SUPPORT TO TERRORISTS", where="top")
    out = out.resize((int(out.width * 0.7), int(out.height * 0.7)), Image.Resampling.BILINEAR)
    return jpeg(out, 60)


TRANSFORMS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "jpeg_q30": lambda im: jpeg(im, 30),
    "downscale_320": downscale,
    "caption_bar": caption,
    "crop_90": lambda im: crop(im, 0.9, 0.8, 0.3),
    "crop_75": lambda im: crop(im, 0.75, 0.15, 0.85),
    "pad": pad,
    "letterbox": letterbox,
    "brightness_contrast": lambda im: ImageEnhance.Contrast(ImageEnhance.Brightness(im).enhance(1.3)).enhance(0.8),
    "grayscale": lambda im: ImageOps.grayscale(im).convert("RGB"),
    "mirror": ImageOps.mirror,
    "rotate_3": lambda im: rotate(im, 3),
    "screenshot": screenshot,
    "crop_caption_mirror": lambda im: ImageOps.mirror(caption(crop(im, 0.75, 0.8, 0.2))),
}


def originals(n_scenes: int, n_games: int, with_packages: bool = True) -> Iterator[tuple[str, Image.Image]]:
    for i in range(n_scenes):
        yield f"scene-{i}", scene(1000 + i)
    for i in range(n_games):
        yield f"game-{i}", scene(5000 + i, hud=True, hud_seed=7)
    if with_packages:
        for path, im in package_images():
            yield f"pkg:{Path(path).name}", im


def lookalikes(n: int) -> Iterator[tuple[str, Image.Image]]:
    """Unrelated images that must not match: same generator (texture), same HUD style, other seeds."""
    for i in range(n):
        yield f"lookalike-scene-{i}", scene(90_000 + i)
        yield f"lookalike-game-{i}", scene(95_000 + i, hud=True, hud_seed=7)
