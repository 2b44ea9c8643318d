"""Speed benchmark: decode+hash, ``check`` latency at 1 k / 100 k known images, PDQ lookup at 1 M / 10 M.

    python bench/speed.py [--skip-10m] [--queries 60]

Every figure is printed with its ratio to a baseline measured in the same process:
- decode+hash: ours (reduced-size JPEG decode, PDQ + pHash) vs naive ``imagehash.phash(Image.open(f))``;
- check latency: 100 k known images vs 1 k (how retrieval scales);
- PDQ lookup: faiss flat index vs a numpy brute-force scan of the same hashes.
Single-threaded (faiss/OpenCV limited to one thread) unless stated.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import faiss  # noqa: E402
import imagehash  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bench.evalset import TRANSFORMS, scene  # noqa: E402
from bot.archive import Archive  # noqa: E402
from bot.hashing.decode import decode_image  # noqa: E402
from bot.hashing.signals import PdqSignal, PhashSignal, compute_signals  # noqa: E402
from bot.known import add_image  # noqa: E402
from bot.matching.descriptors import unpack  # noqa: E402
from bot.matching.index import HammingIndex  # noqa: E402
from bot.matching.matcher import Matcher  # noqa: E402
from bot.store.sqlite import SqliteStore  # noqa: E402


def timed(fn, repeat: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def ms(xs: list[float]) -> str:
    xs = sorted(xs)
    return f"median {statistics.median(xs) * 1000:7.1f} ms  p95 {xs[int(len(xs) * 0.95) - 1] * 1000:7.1f} ms"


def jpeg(img: Image.Image, q: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=q)
    return buf.getvalue()


def bench_decode(tmp: Path) -> None:
    print("== decode + hash (one core)")
    for name, size in (("12 MP", (4000, 3000)), ("1.5 MP", (1500, 1000))):
        path = tmp / f"{name.replace(' ', '')}.jpg"
        path.write_bytes(jpeg(scene(7, *size)))
        naive = timed(lambda: imagehash.phash(Image.open(path)), 7)

        def ours() -> None:
            work = decode_image(path.read_bytes())
            PdqSignal.compute(work)
            PhashSignal.compute(work)

        fast = timed(ours, 7)
        full = timed(lambda: compute_signals(decode_image(path.read_bytes())), 7)
        n, f = statistics.median(naive), statistics.median(fast)
        print(f"{name:7s} naive phash(Image.open) {n * 1000:7.1f} ms | ours decode+PDQ+pHash {f * 1000:6.1f} ms "
              f"({n / f:4.1f}x faster) | all stored signals incl. ORB {statistics.median(full) * 1000:6.1f} ms")


def bench_check(tmp: Path, n_real: int, n_queries: int) -> None:
    print(f"== check latency (one core; {n_real} real known images, padded with synthetic entries)")
    store = SqliteStore(str(tmp / "state.db"))
    archive = Archive(tmp / "archive")
    originals = [scene(20_000 + i, 800, 500) for i in range(n_real)]
    t = time.perf_counter()
    entries = [add_image(store, archive, jpeg(im, 92), label=f"real-{i}") for i, im in enumerate(originals)]
    print(f"  adding {n_real} images: {(time.perf_counter() - t) / n_real * 1000:.1f} ms per image")
    pool = np.concatenate([unpack(e.signals["orb"]) for e in entries if e is not None])
    names = ["crop_75", "screenshot", "crop_caption_mirror", "jpeg_q30", "rotate_3", "letterbox"]
    queries = [jpeg(TRANSFORMS[names[i % len(names)]](originals[i % n_real]), 85) for i in range(n_queries)]
    unrelated = [jpeg(scene(60_000 + i, 800, 500), 85) for i in range(n_queries // 3)]
    results = {}
    for total in (1_000, 100_000):
        matcher = Matcher(store, archive, features_dir=tmp / "features")
        matcher.refresh()
        t = time.perf_counter()
        matcher.add_synthetic(total - n_real, pool, seed=total)
        build = time.perf_counter() - t
        for q in queries[:3]:
            matcher.match(q)  # warm the feature cache and the index
        hits = 0
        lat = []
        for i, q in enumerate(queries):
            t = time.perf_counter()
            found = matcher.match(q)
            lat.append(time.perf_counter() - t)
            hits += bool(found and found[0].tier == "match" and found[0].known.label == f"real-{i % n_real}")
        lat_u = []
        false = 0
        for q in unrelated:
            t = time.perf_counter()
            false += any(m.tier == "match" for m in matcher.match(q))
            lat_u.append(time.perf_counter() - t)
        results[total] = statistics.median(lat)
        mem = matcher._whole.memory_bytes() + matcher._descriptors.memory_bytes()
        print(f"  {total:>7,} known: copies {ms(lat)} (recall {hits}/{len(queries)}) | unrelated {ms(lat_u)} "
              f"(false matches {false}) | index build {build:.1f}s, {mem / total:.0f} B/image in indexes")
    print(f"  median at 100k / 1k: {results[100_000] / results[1_000]:.2f}x")
    # where local features live: cache vs recompute from the archive
    m = Matcher(store, archive, features_dir=tmp / "features")
    m.refresh()
    e = entries[0]
    cached = timed(lambda: m.known_features(e), 20)
    m2 = Matcher(store, archive, features_dir=tmp / "nocache")
    m2.cache_features = lambda *a, **k: None  # type: ignore[method-assign]
    recomputed = timed(lambda: m2.known_features(e), 5)
    size = (tmp / "features" / e.sha256[:2] / f"{e.sha256}.npz").stat().st_size
    print(f"  known-image local features: cached {statistics.median(cached) * 1000:.2f} ms vs recomputed from the "
          f"archive {statistics.median(recomputed) * 1000:.1f} ms ({statistics.median(recomputed) / statistics.median(cached):.0f}x); "
          f"cache file {size / 1000:.0f} KB per image")
    store.close()


def bench_lookup(sizes: list[int]) -> None:
    print("== PDQ lookup, 8 dihedral variants per query (one core)")
    rng = np.random.default_rng(1)
    for n in sizes:
        index = HammingIndex(PdqSignal)
        chunk = 1_000_000
        for start in range(0, n, chunk):
            index.add(rng.integers(0, 256, (min(chunk, n - start), 32), dtype=np.uint8), np.arange(start, min(n, start + chunk)))
        codes = faiss.vector_to_array(index._index.xb).reshape(n, 32)
        queries = [rng.integers(0, 256, (8, 32), dtype=np.uint8) for _ in range(20)]
        queries[0][0] = codes[12345] ^ np.eye(1, 32, 3, dtype=np.uint8)[0]  # one true near-duplicate
        found = index.search(queries[0], 8, 31)
        assert found and found[0][0] == 12345
        lat = [timed(lambda q=q: index.search(q, 8, 63), 1)[0] for q in queries]
        if n <= 1_000_000:
            table = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(1).astype(np.uint16)
            brute = timed(lambda: [table[codes ^ q].sum(1).argmin() for q in queries[0]], 3)
            ratio = f" | numpy brute force {statistics.median(brute) * 1000:.0f} ms ({statistics.median(brute) / statistics.median(lat):.0f}x slower)"
        else:
            ratio = ""
        print(f"  {n:>10,} hashes: {ms(lat)}; {index.memory_bytes() / n:.0f} B/hash{ratio}")
        if n <= 1_000_000:
            faiss.omp_set_num_threads(2)
            two = [timed(lambda q=q: index.search(q, 8, 63), 1)[0] for q in queries]
            faiss.omp_set_num_threads(1)
            print(f"  {n:>10,} hashes, 2 threads: {ms(two)}")
            # the alternative: multi-index hashing (8 x 24-bit chunks, up to 2 flipped bits per chunk);
            # fast but approximate beyond ~2 flips per chunk and ~10x the memory
            import resource

            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            mih = faiss.IndexBinaryMultiHash(256, 8, 24)
            mih.nflip = 2
            mih.add(codes)
            grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
            mlat = [timed(lambda q=q: mih.range_search(q, 32), 1)[0] for q in queries]
            lims, _, ids = mih.range_search(queries[0], 32)
            print(f"  {n:>10,} hashes, faiss IndexBinaryMultiHash(8x24, nflip=2), radius 31: {ms(mlat)}; "
                  f"~{grown / n:.0f} B/hash (RSS growth); finds the planted duplicate: {12345 in set(ids.tolist())}")
            del mih
        del index, codes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-10m", action="store_true", help="skip the 10 M hash lookup (needs ~0.5 GB, ~1 min)")
    ap.add_argument("--real", type=int, default=200, help="real images added for the check latency run")
    ap.add_argument("--queries", type=int, default=60)
    ap.add_argument("--only", choices=["decode", "check", "lookup"], default=None)
    args = ap.parse_args()
    faiss.omp_set_num_threads(1)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "decode"):
            bench_decode(Path(tmp))
        if args.only in (None, "check"):
            bench_check(Path(tmp), args.real, args.queries)
        if args.only in (None, "lookup"):
            bench_lookup([1_000_000] + ([] if args.skip_10m else [10_000_000]))


if __name__ == "__main__":
    main()
