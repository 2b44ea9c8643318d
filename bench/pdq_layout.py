"""Which half of the PDQ code should the multi-index tables of :mod:`bot.hashing.index` cover?

    python bench/pdq_layout.py [--scenes 60] [--games 30]

For every original of ``bench/evalset.py`` and each of its transformed copies, the closest pair of (stored
hash: whole image or borders stripped) and (query hash: the 8 dihedral variants, with and without borders),
as the matcher would compare them. For candidate 128-bit layouts (16 of the 32 bytes, two per chunk) it
prints the flip rate of the indexed bits and how many true pairs the probe rule finds (some chunk within
``nflip`` bits), for pairs within 31 bits (``pdq_match``) and within 32-63 bits (up to ``pdq_suggest``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bench.evalset import TRANSFORMS, originals  # noqa: E402
from bot.hashing.borders import strip_borders  # noqa: E402
from bot.hashing.decode import prepare  # noqa: E402
from bot.hashing.signals import PdqSignal  # noqa: E402

LAYOUTS = {
    "bytes 0-15": np.arange(16),
    "bytes 16-31": np.arange(16, 32),
    "even bytes": np.arange(0, 32, 2),
    "odd bytes": np.arange(1, 32, 2),
    "even byte pairs": np.array([b for row in range(0, 16, 2) for b in (2 * row, 2 * row + 1)]),
    "odd byte pairs": np.array([b for row in range(1, 16, 2) for b in (2 * row, 2 * row + 1)]),
}


def hashes(image: Image.Image, dihedral: bool) -> np.ndarray:
    """Packed PDQ hashes of the image and, when it has borders or caption bars, of the image without them."""
    work = prepare(image)
    stripped, box = strip_borders(work)
    images = [work] + ([stripped] if box != (0, 0, work.width, work.height) else [])
    out = [h for im in images for h in (PdqSignal.dihedral(im)[0] if dihedral else [PdqSignal.compute(im)])]
    return np.stack([PdqSignal.to_bytes(h) for h in out])


def closest_pairs(n_scenes: int, n_games: int) -> np.ndarray:
    """XOR of the closest (stored, query) hash pair for every (original, transform): pairs x 32 uint8."""
    out = []
    for _, image in originals(n_scenes, n_games):
        stored = hashes(image, dihedral=False)
        for transform in TRANSFORMS.values():
            xor = (hashes(transform(image), dihedral=True)[:, None] ^ stored[None]).reshape(-1, 32)
            out.append(xor[np.unpackbits(xor, axis=1).sum(1).argmin()])
    return np.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=60)
    ap.add_argument("--games", type=int, default=30)
    args = ap.parse_args()
    xor = closest_pairs(args.scenes, args.games)
    distance = np.unpackbits(xor, axis=1).sum(1)
    match, suggest = distance <= 31, (distance > 31) & (distance <= 63)
    print(f"{len(xor)} (original, copy) pairs: {match.sum()} within 31 bits, {suggest.sum()} within 32-63")
    for name, layout in LAYOUTS.items():
        flips = np.unpackbits(xor[:, layout], axis=1)
        per_chunk = flips.reshape(len(xor), 8, 16).sum(2).min(1)
        rate = flips[match | suggest].mean()
        found = " | ".join(
            f"nflip {k}: {(per_chunk[match] <= k).sum()}/{match.sum()}, {(per_chunk[suggest] <= k).sum()}/{suggest.sum()}"
            for k in (1, 2)
        )
        print(f"  {name:16s} indexed bits flip {rate:.4f} | found (<= 31, 32-63): {found}")


if __name__ == "__main__":
    main()
