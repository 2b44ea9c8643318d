"""DISC21-style copy-detection benchmark: AugLy edits of photo-like and game-like originals, with look-alikes.

    python bench/disc.py [--originals 36] [--distractors 36] [--only NAME,...] [--verbose]

Meta's DISC21 image-copy benchmark was built with AugLy; this benchmark applies the same library's edits
(plus chains of 3-4 of them) to originals made here, with no download: procedural outdoor scenes, HUD-style
game frames, low-detail originals (smooth gradients, dark, motion-blurred and washed-out scenes) and the
few photographs installed packages ship. Every edited copy is encoded as JPEG (as a platform would) and
checked through :class:`bot.matching.matcher.Matcher` exactly as ``afterimage check`` does.

Look-alike distractors must never match: game frames with the *same HUD* as the game originals (another
scene behind it), and the *neighbouring half* of the photograph an original was cut from (same scene,
lighting and generator, no shared pixels). They are checked as is and after the edits that add the most
clutter (screenshot, meme, paste, big text).

Baselines in the same run, on the same queries: plain PDQ (nearest known hash within ``pdq_match`` bits)
and plain pHash (nearest within 10 bits).

AugLy is a dev dependency (``pip install -e '.[dev]'``); the product never imports it.
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import tempfile
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import augly.image.functional as aug  # noqa: E402
import augly.utils as augly_utils  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFilter, ImageFont  # noqa: E402

from bench.evalset import hud_overlay, package_images, scene  # noqa: E402
from bot.archive import Archive  # noqa: E402
from bot.config import MatchingConfig  # noqa: E402
from bot.hashing.decode import decode_image  # noqa: E402
from bot.hashing.signals import PdqSignal, PhashSignal  # noqa: E402
from bot.known import add_image  # noqa: E402
from bot.matching.matcher import Matcher  # noqa: E402
from bot.store.sqlite import SqliteStore  # noqa: E402

if not hasattr(np, "float"):  # AugLy 1.0's perspective_transform still uses the alias NumPy 1.24 removed
    np.float = float  # type: ignore[attr-defined]

TEMPLATES = Path(augly_utils.SCREENSHOT_TEMPLATES_DIR)
EMOJIS = sorted(Path(augly_utils.EMOJI_DIR).rglob("*.png"))
FONT = str(Path(augly_utils.FONTS_DIR) / "Raleway-ExtraBold.ttf")
#: the pHash baseline's threshold (of 64 bits)
PHASH_BASELINE = 10

Edit = Callable[[Image.Image, random.Random], Image.Image]


def rgb(im: Image.Image) -> Image.Image:
    """Flatten AugLy's RGBA results on white, as a platform's JPEG re-encode does."""
    if im.mode == "RGB":
        return im
    rgba = im.convert("RGBA")
    out = Image.new("RGB", rgba.size, (255, 255, 255))
    out.paste(rgba, mask=rgba.getchannel("A"))
    return out


def jpeg_bytes(im: Image.Image, quality: int = 88) -> bytes:
    buf = io.BytesIO()
    rgb(im).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _crop_area(im: Image.Image, r: random.Random, area: float) -> Image.Image:
    """An off-centre window holding ``area`` of the image (same aspect ratio)."""
    side = area**0.5
    x, y = r.uniform(0, 1 - side), r.uniform(0, 1 - side)
    x = x if abs(x - (1 - side) / 2) > 0.05 else 0.0  # never the centred window
    return aug.crop(im, x1=x, y1=y, x2=x + side, y2=y + side)


def _background(r: random.Random) -> Image.Image:
    """Another picture to paste onto: a different scene (busy, like a real background photo)."""
    return scene(r.randrange(200_000, 300_000), 1200, 900)


def _text(r: random.Random, n: int) -> str:
    words = "breaking footage shows the moment army convoy crosses border last night share before deleted".split()
    return " ".join(r.choice(words) for _ in range(n))


def _overlay_text(im: Image.Image, r: random.Random, size: float, y: float) -> Image.Image:
    """Words (AugLy takes glyph indices of its font's character map) in a colour, at a height."""
    lines = [[ord(c) - 32 for c in _text(r, 2).upper()] for _ in range(2)]  # AugLy's index: code point - 32
    return aug.overlay_text(im, text=lines, font_file=FONT, font_size=size, x_pos=r.uniform(0, 0.1), y_pos=y,
                            color=(r.randrange(256), r.randrange(256), r.randrange(256)))


def meme(im: Image.Image, text: str, caption_height: int, colour: tuple[int, int, int] = (0, 0, 0)) -> Image.Image:
    """AugLy's ``meme_format`` (a white band on top with centred text in its meme font), redrawn here
    because AugLy 1.0 calls a Pillow method that Pillow 10 removed."""
    im = rgb(im)
    out = Image.new("RGB", (im.width, im.height + caption_height), (255, 255, 255))
    out.paste(im, (0, caption_height))
    draw = ImageDraw.Draw(out)
    size = caption_height
    font = ImageFont.truetype(FONT, size)
    while size > 8 and draw.textlength(text, font=font) > im.width * 0.9:
        size -= 2
        font = ImageFont.truetype(FONT, size)
    x = (im.width - draw.textlength(text, font=font)) / 2
    draw.text((x, (caption_height - size) / 2), text, fill=colour, font=font)
    return out


def screenshot(im: Image.Image, template: str) -> Image.Image:
    return aug.overlay_onto_screenshot(im, template_filepath=str(TEMPLATES / template), crop_src_to_fit=True)


def perspective(im: Image.Image, r: random.Random) -> Image.Image:
    return aug.perspective_transform(im, sigma=r.uniform(40, 60), seed=r.randrange(10**6), crop_out_black_border=False)


EDITS: dict[str, Edit] = {
    "jpeg_15": lambda im, r: aug.encoding_quality(im, quality=15),
    "scale_200": lambda im, r: aug.resize(im, width=200, height=max(1, round(200 * im.height / im.width))),
    "blur": lambda im, r: aug.blur(im, radius=r.uniform(2.0, 4.0)),
    "noise": lambda im, r: aug.random_noise(im, var=0.02, seed=r.randrange(1000)),
    "pixelization": lambda im, r: aug.pixelization(im, ratio=r.uniform(0.2, 0.3)),
    "color_jitter": lambda im, r: aug.color_jitter(im, brightness_factor=r.uniform(0.6, 1.4),
                                                   contrast_factor=r.uniform(0.6, 1.6), saturation_factor=r.uniform(0.2, 2.0)),
    "grayscale": lambda im, r: aug.grayscale(im),
    "flip": lambda im, r: aug.hflip(im),
    "rotate": lambda im, r: aug.rotate(im, degrees=r.choice([-1, 1]) * r.uniform(10, 20)),
    "pad": lambda im, r: aug.pad(im, w_factor=r.uniform(0.1, 0.3), h_factor=r.uniform(0.1, 0.3),
                                 color=(r.randrange(256), r.randrange(256), r.randrange(256))),
    "letterbox": lambda im, r: aug.pad_square(im, color=(0, 0, 0)),
    "opacity": lambda im, r: aug.opacity(im, level=r.uniform(0.3, 0.5)),
    "crop_50": lambda im, r: _crop_area(im, r, 0.5),
    "crop_30": lambda im, r: _crop_area(im, r, 0.3),
    "caption": lambda im, r: meme(im, _text(r, 5), max(40, im.height // 8), (20, 20, 20)),
    "big_text": lambda im, r: _overlay_text(im, r, 0.2, r.uniform(0.3, 0.5)),
    "emoji": lambda im, r: aug.overlay_emoji(im, emoji_path=str(r.choice(EMOJIS)), emoji_size=r.uniform(0.25, 0.35),
                                             x_pos=r.uniform(0.1, 0.5), y_pos=r.uniform(0.1, 0.5)),
    "meme": lambda im, r: meme(im, _text(r, 2).upper(), max(80, im.height // 4)),
    "screenshot_web": lambda im, r: screenshot(im, "web.png"),
    "screenshot_phone": lambda im, r: screenshot(im, "mobile.png"),
    "paste": lambda im, r: aug.overlay_onto_background_image(
        im, background_image=_background(r), overlay_size=r.uniform(0.4, 0.55), x_pos=r.uniform(0.05, 0.4),
        y_pos=r.uniform(0.05, 0.4), scale_bg=False),
    "perspective": perspective,
}


def _chain(*names: str) -> Edit:
    def run(im: Image.Image, r: random.Random) -> Image.Image:
        for name in names:
            im = rgb(EDITS[name](im, r))
        return im

    return run


CHAINS: dict[str, Edit] = {
    "chain:crop_50+caption+jpeg_15": _chain("crop_50", "caption", "jpeg_15"),
    "chain:flip+color_jitter+meme": _chain("flip", "color_jitter", "meme"),
    "chain:emoji+grayscale+screenshot_phone": _chain("emoji", "grayscale", "screenshot_phone"),
    "chain:perspective+blur+noise+jpeg_15": _chain("perspective", "blur", "noise", "jpeg_15"),
    "chain:rotate+pad+big_text": _chain("rotate", "pad", "big_text"),
    "chain:crop_50+paste+jpeg_15": _chain("crop_50", "paste", "jpeg_15"),
    "chain:opacity+letterbox+screenshot_web": _chain("opacity", "letterbox", "screenshot_web"),
}

ALL_EDITS: dict[str, Edit] = {**EDITS, **CHAINS}
#: edits applied to every distractor as well (the ones that add the most foreign content)
DISTRACTOR_EDITS = ("jpeg_15", "screenshot_web", "meme", "paste", "big_text", "crop_50")


# ----------------------------------------------------------------------------- originals


def low_detail(seed: int, kind: str) -> Image.Image:
    """Originals that defeat corner detectors and PDQ's quality score: smooth, dark, blurred, washed out."""
    rng = np.random.default_rng(seed)
    if kind == "gradient":
        h, w = 720, 1080
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        a, b = rng.random(3) * 255, rng.random(3) * 255
        t = (xx / w * rng.uniform(0.3, 1) + yy / h * rng.uniform(0.3, 1))[..., None] / 2
        base = a * (1 - t) + b * t
        for _ in range(4):  # a few soft blobs (a sun, a lamp)
            cx, cy, rad = rng.random() * w, rng.random() * h, rng.uniform(60, 200)
            blob = np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * rad**2)))[..., None]
            base = base * (1 - blob * 0.6) + rng.random(3) * 255 * blob * 0.6
        # a dark silhouette against the sky (a sunset skyline, a ridge): the little detail such photos have
        ridge = h * 0.75 + np.cumsum(rng.normal(0, 2.5, w)) + 25 * np.sin(np.linspace(0, rng.uniform(2, 6), w))
        base[yy >= ridge[None, :].clip(h * 0.45, h - 10)] *= 0.2
        return Image.fromarray(base.clip(0, 255).astype(np.uint8))
    im = scene(seed, 1080, 720)
    if kind == "dark":
        return Image.fromarray((np.asarray(im, np.float32) * 0.18).astype(np.uint8))
    if kind == "motion":
        return im.filter(ImageFilter.BoxBlur(6)).filter(ImageFilter.GaussianBlur(3))
    if kind == "washed":
        return Image.fromarray((np.asarray(im, np.float32) * 0.25 + 170).clip(0, 255).astype(np.uint8))
    raise ValueError(kind)


#: the wide photographs originals are cut from; the other half of each is a distractor
WIDE = (2048, 768)


def originals(n: int) -> list[tuple[str, Image.Image]]:
    """``n`` originals: ~40 % halves of wide scenes, ~30 % HUD game frames, ~20 % low-detail, packages."""
    out: list[tuple[str, Image.Image]] = []
    n_low = max(4, n // 5)
    n_pkg = min(4, n // 9)
    n_game = (n - n_low - n_pkg) * 2 // 5
    n_half = n - n_low - n_pkg - n_game
    for i in range(n_half):
        out.append((f"photo-{i}", _half(30_000 + i, left=True)))
    for i in range(n_game):
        out.append((f"game-{i}", scene(40_000 + i, 1280, 720, hud=True, hud_seed=7)))
    kinds = ("gradient", "dark", "motion", "washed")
    for i in range(n_low):
        out.append((f"low-{kinds[i % 4]}-{i}", low_detail(50_000 + i, kinds[i % 4])))
    photos = [(p, im) for p, im in package_images(40) if "screenshot_templates" not in p and "augly" not in p]
    for p, im in photos[:n_pkg]:
        out.append((f"pkg-{Path(p).stem}", im))
    return out


def _half(seed: int, left: bool) -> Image.Image:
    wide = scene(seed, *WIDE)
    w, h = wide.size
    return wide.crop((0, 0, w // 2, h) if left else (w // 2, 0, w, h))


def distractors(n: int) -> Iterator[tuple[str, Image.Image]]:
    """Half neighbouring halves of the photo originals, half game frames with the same HUD."""
    for i in range(n):
        if i % 2 == 0:
            yield f"other-half-{i // 2}", _half(30_000 + i // 2, left=False)
        else:
            yield f"same-hud-{i // 2}", hud_overlay(scene(60_000 + i, 1280, 720), 7)


# ----------------------------------------------------------------------------- run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--originals", type=int, default=36)
    ap.add_argument("--distractors", type=int, default=36)
    ap.add_argument("--only", default="", help="comma-separated edit names (prefix match)")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--save", default="", help="folder to write every query JPEG to (for inspection)")
    args = ap.parse_args()
    cfg = MatchingConfig()
    edits = {k: v for k, v in ALL_EDITS.items() if not args.only or any(k.startswith(p) for p in args.only.split(","))}
    save = Path(args.save) if args.save else None
    if save:
        save.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(str(Path(tmp) / "state.db"))
        archive = Archive(Path(tmp) / "archive")
        origs = originals(args.originals)
        names: dict[str, str] = {}
        base_pdq: list[tuple[str, str]] = []
        base_phash: list[tuple[str, str]] = []
        for name, img in origs:
            entry = add_image(store, archive, jpeg_bytes(img, 95), label=name)
            assert entry is not None, name
            names[entry.id] = name
            base_pdq.append((name, entry.signals["pdq"]))
            base_phash.append((name, entry.signals["phash"]))
        matcher = Matcher(store, archive, cfg, features_dir=Path(tmp) / "features")
        matcher.refresh()

        def baselines(data: bytes) -> tuple[str | None, str | None]:
            work = decode_image(data)
            pdq, ph = PdqSignal.compute(work), PhashSignal.compute(work)
            d, name = min((PdqSignal.distance(pdq, h), n) for n, h in base_pdq)
            pd = name if d <= cfg.pdq_match else None
            d, name = min((PhashSignal.distance(ph, h), n) for n, h in base_phash)
            return pd, (name if d <= PHASH_BASELINE else None)

        hits: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # ours, pdq, phash, queries
        wrong = 0
        times: list[float] = []
        place = {ename: e for e, ename in enumerate(ALL_EDITS)}
        for k, (name, img) in enumerate(origs):
            for ename, edit in edits.items():
                # seeded by the edit's place among all edits: --only checks the very queries a full run does
                r = random.Random(k * 1000 + place[ename])
                data = jpeg_bytes(rgb(edit(img, r)))
                if save:
                    (save / f"{name}__{ename.replace(':', '_')}.jpg").write_bytes(data)
                t = time.perf_counter()
                found = matcher.match(data)
                times.append(time.perf_counter() - t)
                top = found[0] if found and found[0].tier == "match" else None
                ok = top is not None and names[top.known.id] == name
                wrong += top is not None and not ok
                pd, ph = baselines(data)
                row = hits[ename]
                row[0] += ok
                row[1] += pd == name
                row[2] += ph == name
                row[3] += 1
                if not ok and args.verbose:
                    print(f"  miss {ename:40s} {name:22s} "
                          f"{[(names[m.known.id], m.tier, m.signal, m.distance, m.inliers) for m in found]}", flush=True)

        false = base_false_pdq = base_false_phash = checked = 0
        for name, img in distractors(args.distractors):
            for e, ename in enumerate(("none", *DISTRACTOR_EDITS)):
                r = random.Random(zlib.crc32(name.encode()) % 1000 + e)  # the same queries in every run
                q = img if ename == "none" else rgb(EDITS[ename](img, r))
                data = jpeg_bytes(q)
                checked += 1
                found = matcher.match(data)
                if any(m.tier == "match" for m in found):
                    false += 1
                    if args.verbose:
                        print(f"  FALSE {name} ({ename}): "
                              f"{[(names[m.known.id], m.tier, m.signal, m.distance, m.inliers) for m in found]}")
                pd, ph = baselines(data)
                base_false_pdq += pd is not None
                base_false_phash += ph is not None

        print(f"\n{len(origs)} originals, {args.distractors} look-alike distractors, {len(edits)} edits\n")
        print(f"| {'edit':40s} | {'afterimage':>10s} | {'PDQ':>6s} | {'pHash':>6s} |")
        print(f"|{'-' * 42}|{'-' * 12}|{'-' * 8}|{'-' * 8}|")
        total = [0, 0, 0, 0]
        for ename in edits:
            row = hits[ename]
            total = [a + b for a, b in zip(total, row)]
            n = row[3]
            print(f"| {ename:40s} | {row[0] / n:10.3f} | {row[1] / n:6.3f} | {row[2] / n:6.3f} |")
        n = max(total[3], 1)
        print(f"| {'**overall**':40s} | {total[0] / n:10.3f} | {total[1] / n:6.3f} | {total[2] / n:6.3f} |")
        print(f"\ncopies checked: {total[3]}; wrong-image matches among them: {wrong}")
        print(f"distractor queries: {checked}; false matches: afterimage {false}, "
              f"PDQ {base_false_pdq}, pHash {base_false_phash}")
        times.sort()
        if times:
            print(f"check latency: median {times[len(times) // 2] * 1000:.1f} ms, "
                  f"p95 {times[int(len(times) * 0.95)] * 1000:.1f} ms (at {len(origs)} known)")
        store.close()


if __name__ == "__main__":
    main()
