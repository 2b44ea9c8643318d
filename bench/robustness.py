"""Robustness benchmark: recall per transform and false matches, against a global-hash baseline.

    python bench/robustness.py [--scenes 60] [--games 30] [--lookalikes 40] [--no-packages]

Originals (procedural scenes, HUD "game screenshots", images shipped in installed packages) are added to a
fresh store through :func:`bot.known.add_image`; every transform of every original is checked through
:class:`bot.matching.Matcher` exactly as ``afterimage check`` does. The baseline, run in the same process on
the same images, is the naive approach: whole-image PDQ only (nearest neighbour within ``pdq_match``) and
pHash within 10 bits.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image  # noqa: E402

from bench.evalset import TRANSFORMS, lookalikes, originals  # noqa: E402
from bot.archive import Archive  # noqa: E402
from bot.config import MatchingConfig  # noqa: E402
from bot.hashing.decode import prepare  # noqa: E402
from bot.hashing.signals import PdqSignal, PhashSignal  # noqa: E402
from bot.known import add_image  # noqa: E402
from bot.matching.matcher import Matcher  # noqa: E402
from bot.store.sqlite import SqliteStore  # noqa: E402


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def jpg(img: Image.Image, q: int = 92) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=q)
    return buf.getvalue()


def baseline_hit(query: Image.Image, known: dict[str, tuple[str, str]], cfg: MatchingConfig) -> str | None:
    """Naive global hashing: nearest PDQ within pdq_match, else pHash within 10 bits."""
    work = prepare(query)
    pdq, ph = PdqSignal.compute(work), PhashSignal.compute(work)
    best = min(known.items(), key=lambda kv: PdqSignal.distance(pdq, kv[1][0]))
    if PdqSignal.distance(pdq, best[1][0]) <= cfg.pdq_match:
        return best[0]
    for name, (_, kph) in known.items():
        if PhashSignal.distance(ph, kph) <= 10:
            return name
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=60)
    ap.add_argument("--games", type=int, default=30)
    ap.add_argument("--lookalikes", type=int, default=40)
    ap.add_argument("--no-packages", action="store_true")
    ap.add_argument("--only", default="", help="comma-separated transform names")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    cfg = MatchingConfig()
    transforms = {k: v for k, v in TRANSFORMS.items() if not args.only or k in args.only.split(",")}

    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(str(Path(tmp) / "state.db"))
        archive = Archive(Path(tmp) / "archive")
        t0 = time.perf_counter()
        origs = list(originals(args.scenes, args.games, with_packages=not args.no_packages))
        ids: dict[str, str] = {}
        base_known: dict[str, tuple[str, str]] = {}
        for name, img in origs:
            entry = add_image(store, archive, png(img), label=name)
            assert entry is not None
            ids[entry.id] = name
            base_known[name] = (entry.signals["pdq"], entry.signals["phash"])
        matcher = Matcher(store, archive, cfg, features_dir=Path(tmp) / "features")
        matcher.refresh()
        print(f"{len(origs)} originals added in {time.perf_counter() - t0:.1f}s")

        hits: dict[str, int] = defaultdict(int)
        base_hits: dict[str, int] = defaultdict(int)
        wrong: dict[str, int] = defaultdict(int)
        times: list[float] = []
        for name, img in origs:
            for tname, fn in transforms.items():
                q = fn(img)
                t = time.perf_counter()
                found = matcher.match(jpg(q))
                times.append(time.perf_counter() - t)
                top = found[0] if found and found[0].tier == "match" else None
                if top is not None and ids[top.known.id] == name:
                    hits[tname] += 1
                else:
                    if top is not None:
                        wrong[tname] += 1
                    if args.verbose:
                        print(f"  miss {tname:22s} {name}: {[(ids[m.known.id], m.tier, m.signal, m.distance, m.inliers) for m in found]}")
                if baseline_hit(q, base_known, cfg) == name:
                    base_hits[tname] += 1

        false_matches = suggestions = 0
        unrelated = list(lookalikes(args.lookalikes))
        for name, img in unrelated:
            for q in (img, TRANSFORMS["jpeg_q30"](img)):
                found = matcher.match(jpg(q))
                if any(m.tier == "match" for m in found):
                    false_matches += 1
                    if args.verbose:
                        print(f"  FALSE {name}: {[(ids[m.known.id], m.tier, m.signal, m.distance, m.inliers) for m in found]}")
                suggestions += any(m.tier == "suggest" for m in found)
        n = len(origs)
        print(f"\n{'transform':24s} {'recall':>7s} {'baseline':>9s} {'ratio':>6s} {'wrong':>6s}")
        tot = tot_base = 0
        for tname in transforms:
            r, b = hits[tname] / n, base_hits[tname] / n
            tot += hits[tname]
            tot_base += base_hits[tname]
            ratio = f"{r / b:.1f}x" if b else "inf"
            print(f"{tname:24s} {r:7.3f} {b:9.3f} {ratio:>6s} {wrong[tname]:6d}")
        overall, base_overall = tot / (n * len(transforms)), tot_base / (n * len(transforms))
        print(f"{'overall':24s} {overall:7.3f} {base_overall:9.3f} {overall / max(base_overall, 1e-9):5.1f}x")
        print(f"\noriginals: {n}; transformed queries: {n * len(transforms)}; unrelated queries: {2 * len(unrelated)}")
        print(f"false matches (unrelated/look-alike queries in the match tier): {false_matches}; suggestions: {suggestions}")
        print(f"wrong-image matches among transformed queries: {sum(wrong.values())}")
        times.sort()
        print(f"check latency over {len(times)} queries: median {times[len(times) // 2] * 1000:.1f} ms, "
              f"p95 {times[int(len(times) * 0.95)] * 1000:.1f} ms")
        store.close()


if __name__ == "__main__":
    main()
