"""Speed benchmark: decode+hash, ``check`` latency at 1 k / 100 k known images, PDQ lookup at 1 M / 10 M.

    python bench/speed.py [--skip-10m] [--queries 60] [--planted 2000]

Every figure is printed with its ratio to a baseline measured in the same process:
- decode+hash: ours (reduced-size JPEG decode, PDQ + pHash) vs naive ``imagehash.phash(Image.open(f))``;
- check latency: 100 k known images vs 1 k (how retrieval scales);
- PDQ lookup: our index (multi-index hashing above 300 k rows) vs the exact faiss flat scan of the same hashes.
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
from bot.hashing.signals import PdqSignal, PhashSignal  # noqa: E402
from bot.hashing.stage import compute_signals  # noqa: E402
from bot.known import add_image  # noqa: E402
from bot.hashing.local import pack, unpack  # noqa: E402
from bot.hashing.index import HammingIndex  # noqa: E402
from bot.matching.matcher import Matcher  # noqa: E402
from bot.hashing.signals import SIGNAL_TYPES  # noqa: E402
from bot.store.records import KnownMedia  # noqa: E402
from bot.store.sqlite import SqliteStore  # noqa: E402


def add_synthetic(matcher: Matcher, n: int, descriptor_pool: np.ndarray | None = None, seed: int = 0) -> None:
    """Pad the indexes with ``n`` entries of random PDQ hashes and, when a pool of
    real descriptors is given, descriptors drawn from it with 1/8 of their bits flipped (realistic
    neighbours for the descriptor index, unlike uniform random bits)."""
    rng = np.random.default_rng(seed)
    start = len(matcher._entries)
    matcher._entries = matcher._entries + [KnownMedia(label=f"synthetic-{i}", signals={}, id=f"syn{i}") for i in range(n)]
    owners = np.arange(start, start + n)
    for name, sig in SIGNAL_TYPES.items():
        matcher._indexes[name].add(rng.integers(0, 256, (n, sig.bits // 8), dtype=np.uint8), owners)
    if descriptor_pool is not None and len(descriptor_pool):
        from bot.hashing.local import RETRIEVAL_DESCRIPTORS as per  # noqa: PLC0415

        for chunk in range(0, n, 10_000):
            m = min(10_000, n - chunk) * per
            picks = descriptor_pool[rng.integers(0, len(descriptor_pool), m)]
            # AND of three random bytes: each bit set with probability 1/8 (~32 of 256 bits flipped)
            flips = rng.integers(0, 256, (3, m, 32), dtype=np.uint8)
            flips = flips[0] & flips[1] & flips[2]
            matcher._descriptors.add_many(picks ^ flips, np.repeat(owners[chunk : chunk + m // per], per))
        matcher._descriptors.build()
    for name in matcher._quality:
        matcher._quality[name] = np.concatenate([matcher._quality[name], np.full(n, 100, np.int16)])


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


def to_12mp(img: Image.Image) -> Image.Image:
    """Upscale so the longer side is 4000 px (a 4000 x 3000 phone photo for a 4:3 image)."""
    s = 4000 / max(img.size)
    return img.resize((round(img.width * s), round(img.height * s)), Image.Resampling.BILINEAR)


def bench_check(tmp: Path, n_real: int, n_queries: int) -> None:
    print(f"== check latency (one core; {n_real} real known images, padded with synthetic entries)")
    store = SqliteStore(str(tmp / "state.db"))
    archive = Archive(tmp / "archive")
    originals = [scene(20_000 + i, 1200, 900) for i in range(n_real)]
    t = time.perf_counter()
    entries = [add_image(store, archive, jpeg(im, 92), label=f"real-{i}") for i, im in enumerate(originals)]
    print(f"  adding {n_real} images: {(time.perf_counter() - t) / n_real * 1000:.1f} ms per image")
    pool = np.concatenate([unpack(e.signals["orb"]) for e in entries if e is not None])
    names = ["crop_75", "screenshot", "crop_caption_mirror", "jpeg_q30", "rotate_3", "letterbox"]
    # every query is a 12 MP photo (longer side 4000 px), as phones post them
    queries = [jpeg(to_12mp(TRANSFORMS[names[i % len(names)]](originals[i % n_real])), 85) for i in range(n_queries)]
    unrelated = [jpeg(to_12mp(scene(60_000 + i, 1200, 900)), 85) for i in range(n_queries // 3)]
    results = {}
    for total in (1_000, 100_000):
        matcher = Matcher(store, archive, features_dir=tmp / "features")
        matcher.refresh()
        t = time.perf_counter()
        add_synthetic(matcher, total - n_real, pool, seed=total)
        build = time.perf_counter() - t
        for e in entries:  # steady state: each entry's local features are computed once, then cached
            matcher.known_features(e)
        matcher.match(queries[0])  # builds the descriptor index
        hits = 0
        lat, cpu = [], []  # wall clock, and CPU time (what other jobs on a shared machine do not inflate)
        for i, q in enumerate(queries):
            t, c = time.perf_counter(), time.process_time()
            found = matcher.match(q)
            lat.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
            hits += bool(found and found[0].tier == "match" and found[0].known.label == f"real-{i % n_real}")
        lat_u, cpu_u = [], []
        false = 0
        for q in unrelated:
            t, c = time.perf_counter(), time.process_time()
            false += any(m.tier == "match" for m in matcher.match(q))
            lat_u.append(time.perf_counter() - t)
            cpu_u.append(time.process_time() - c)
        results[total] = statistics.median(lat)
        mem = sum(i.memory_bytes() for i in matcher._indexes.values()) + matcher._descriptors.memory_bytes()
        print(f"  {total:>7,} known: copies {ms(lat)} (recall {hits}/{len(queries)}) | unrelated {ms(lat_u)} "
              f"(false matches {false}) | index build {build:.1f}s, {mem / total:.0f} B/image in indexes")
        print(f"  {total:>7,} known: CPU time per check: copies median {statistics.median(cpu) * 1000:.1f} ms, "
              f"unrelated median {statistics.median(cpu_u) * 1000:.1f} ms "
              f"({statistics.median(cpu_u) / statistics.median(cpu):.2f}x)")
        # what the daemon does after archiving a post image: one new entry, then the next check
        extra = [jpeg(scene(90_000 + i + total, 800, 500), 92) for i in range(5)]
        appended = []
        for data in extra:
            add_image(store, archive, data, label="appended")
            t = time.perf_counter()
            matcher.refresh()
            appended.append(time.perf_counter() - t)
        print(f"  {total:>7,} known: refresh after adding one image: {ms(appended)} (appended, not rebuilt)")
    print(f"  median at 100k / 1k: {results[100_000] / results[1_000]:.2f}x")
    # where local features live: cache vs recompute from the archive
    m = Matcher(store, archive, features_dir=tmp / "features")
    m.refresh()
    e = entries[0]
    cached = timed(lambda: m.known_features(e), 20)
    m2 = Matcher(store, archive, features_dir=tmp / "nocache")
    m2.cache_features = lambda *a, **k: None  # type: ignore[method-assign]
    recomputed = timed(lambda: m2.known_features(e), 5)
    size = m._cache_path(e.sha256).stat().st_size
    print(f"  known-image local features: cached {statistics.median(cached) * 1000:.2f} ms vs recomputed from the "
          f"archive {statistics.median(recomputed) * 1000:.1f} ms ({statistics.median(recomputed) / statistics.median(cached):.0f}x); "
          f"cache file {size / 1000:.0f} KB per image")
    store.close()


def bench_start(tmp: Path, total: int) -> None:
    """How long a new matcher (a restarted daemon, a one-off ``afterimage check``) takes to be ready on a store
    of ``total`` known images: building its indexes vs reading the saved descriptor index."""
    print(f"== matcher start on a store of {total:,} known images (one core)")
    store = SqliteStore(str(tmp / "start.db"))
    archive = Archive(tmp / "start-archive")
    real = [add_image(store, archive, jpeg(scene(30_000 + i, 800, 500), 92), label=f"real-{i}") for i in range(50)]
    pool = np.concatenate([unpack(e.signals["orb"]) for e in real if e is not None])
    rng = np.random.default_rng(5)
    t = time.perf_counter()
    for i in range(total - len(real)):  # entries as the store holds them: PDQ + 160 descriptors (realistic noise)
        picks = pool[rng.integers(0, len(pool), 160)]
        flips = rng.integers(0, 256, (3, 160, 32), dtype=np.uint8)
        store.add_known(KnownMedia(label=f"synthetic-{i}", signals={
            "pdq": rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex(),
            "orb": pack(picks ^ (flips[0] & flips[1] & flips[2]))}))
    print(f"  filling the store: {time.perf_counter() - t:.0f} s")
    query = jpeg(TRANSFORMS["crop_75"](scene(30_007, 800, 500)), 85)
    timings = {}
    for name in ("build (no saved index)", "saved index"):
        t = time.perf_counter()
        matcher = Matcher(store, archive, features_dir=tmp / "start-features", index_dir=tmp / "start-index")
        found = matcher.best(query)
        timings[name] = time.perf_counter() - t
        print(f"  {name}: ready and first check done in {timings[name]:.1f} s (found {found.known.label if found else None})")
        del matcher
    saved = sum(f.stat().st_size for f in (tmp / "start-index").iterdir())
    print(f"  saved index: {saved / 1e6:.0f} MB; start {timings['build (no saved index)'] / timings['saved index']:.1f}x faster")
    store.close()


def planted(rng: np.random.Generator, codes: np.ndarray, lo: int, hi: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``m`` stored rows, each with a distance drawn from ``lo..hi`` and that many random bits flipped."""
    rows = rng.integers(0, len(codes), m)
    distances = rng.integers(lo, hi + 1, m)
    bits = np.unpackbits(codes[rows], axis=1)
    for b, d in zip(bits, distances):
        b[rng.choice(256, d, replace=False)] ^= 1
    return rows, distances, np.packbits(bits, axis=1)


def planted_recall(index: HammingIndex, codes: np.ndarray, rng: np.random.Generator, per_bucket: int) -> str:
    """Share of planted near-duplicates found at their distance (queries of 8, radius 63), per bucket."""
    out = []
    for lo, hi in ((0, 15), (16, 23), (24, 31), (32, 47), (48, 63)):
        rows, distances, queries = planted(rng, codes, lo, hi, per_bucket)
        found = 0
        for start in range(0, per_bucket, 8):
            hits = {(owner, start + qi, d) for owner, d, qi in index.search(queries[start : start + 8], 8, 63)}
            found += sum((int(rows[i]), i, int(distances[i])) in hits for i in range(start, min(per_bucket, start + 8)))
        out.append(f"{lo}-{hi}: {found / per_bucket:.4f}")
    return ", ".join(out)


def bench_lookup(sizes: list[int], per_bucket: int) -> None:
    print("== PDQ lookup, 8 dihedral variants per query (one core); baseline: exact faiss flat scan")
    rng = np.random.default_rng(1)
    for n in sizes:
        codes = rng.integers(0, 256, (n, 32), dtype=np.uint8)
        t = time.perf_counter()
        index = HammingIndex(PdqSignal)
        index.add(codes, np.arange(n))
        build = time.perf_counter() - t
        queries = [rng.integers(0, 256, (8, 32), dtype=np.uint8) for _ in range(40)]
        queries[0][0] = codes[12345] ^ np.eye(1, 32, 3, dtype=np.uint8)[0]  # one true near-duplicate
        assert index.search(queries[0], 8, 31)[0][:2] == (12345, 1)
        lat = {r: [timed(lambda q=q, r=r: index.search(q, 8, r), 1)[0] for q in queries] for r in (63, 31)}
        flat = faiss.IndexBinaryFlat(256)
        flat.add(codes)
        base = [timed(lambda q=q: flat.search(q, 8), 1)[0] for q in queries[:20]]
        del flat
        speedup = statistics.median(base) / statistics.median(lat[63])
        print(f"  {n:>10,} hashes: radius 63 {ms(lat[63])} | radius 31 {ms(lat[31])} | {index.memory_bytes() / n:.1f} "
              f"B/hash | exact flat scan {ms(base)} ({speedup:.1f}x slower) | build {build:.1f} s")
        print(f"  {n:>10,} hashes: recall of planted near-duplicates by distance ({per_bucket} each): "
              f"{planted_recall(index, codes, rng, per_bucket)}")
        bench_adds(index, rng, queries)
        if n <= 1_000_000:
            bench_multihash(codes, queries)
        del index, codes


def bench_adds(index: HammingIndex, rng: np.random.Generator, queries: list[np.ndarray]) -> None:
    """Adding rows after the build: into the tail, lookups with a nearly full tail, and the merge."""
    n = len(index)
    one = timed(lambda: index.add(rng.integers(0, 256, (1, 32), dtype=np.uint8), np.arange(1)), 20)
    fill = index.tail_rows - 1 - index.tail
    t = time.perf_counter()
    index.add(rng.integers(0, 256, (fill, 32), dtype=np.uint8), np.arange(fill))
    bulk = time.perf_counter() - t
    lat = [timed(lambda q=q: index.search(q, 8, 63), 1)[0] for q in queries]
    merge = timed(lambda: index.add(rng.integers(0, 256, (1, 32), dtype=np.uint8), np.arange(1)), 1)[0]
    assert index.tail == 0
    print(f"  {n:>10,} hashes: add 1 row {statistics.median(one) * 1000:.2f} ms, {fill:,} rows {bulk * 1000:.0f} ms | "
          f"radius 63 with a {fill:,}-row tail {ms(lat)} | the add that merges the tail {merge:.1f} s")


def bench_multihash(codes: np.ndarray, queries: list[np.ndarray]) -> None:
    """faiss multi-index hashing (8 x 24-bit chunks, up to 2 flipped bits per chunk): fast but ~10x the memory."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    mih = faiss.IndexBinaryMultiHash(256, 8, 24)
    mih.nflip = 2
    mih.add(codes)
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
    lat = [timed(lambda q=q: mih.range_search(q, 32), 1)[0] for q in queries]
    print(f"  {len(codes):>10,} hashes, faiss IndexBinaryMultiHash(8x24, nflip=2), radius 31: {ms(lat)}; "
          f"~{grown / len(codes):.0f} B/hash (RSS growth)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-10m", action="store_true", help="skip the 10 M hash lookup (needs ~2 GB, a few minutes)")
    ap.add_argument("--real", type=int, default=200, help="real images added for the check latency run")
    ap.add_argument("--queries", type=int, default=60)
    ap.add_argument("--planted", type=int, default=2000, help="planted near-duplicates per distance bucket")
    ap.add_argument("--only", choices=["decode", "check", "start", "lookup"], default=None)
    ap.add_argument("--start-known", type=int, default=100_000, help="known images for the matcher start run")
    args = ap.parse_args()
    faiss.omp_set_num_threads(1)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "decode"):
            bench_decode(Path(tmp))
        if args.only in (None, "check"):
            bench_check(Path(tmp), args.real, args.queries)
        if args.only in (None, "start"):
            bench_start(Path(tmp), args.start_known)
        if args.only in (None, "lookup"):
            bench_lookup([1_000_000] + ([] if args.skip_10m else [10_000_000]), args.planted)


if __name__ == "__main__":
    main()
