"""Pipeline throughput on one Redis: how much of the machine the daemons use, and how it scales out.

    python bench/scale.py [--posts 120] [--known N] [--skip-sim] [--skip-latency]

Everything runs in one go, against a redis-server of its own and real ``afterimage run`` daemons:

1. **check cost**: the per-image cost of ``afterimage check`` (its per-input step: read the file, decode,
   match; one thread) on the posts' images, against the same known set: the unit of "cores' worth of
   matching". Measured again after every run; a run's figure uses the mean of the checks just before and
   after it (:class:`CheckCost`).
2. **throughput**: N posts (each a ~2 MP edited copy of a known image, served over HTTP) are stored and queued
   at once; the time until every one is processed (its match alert queued) gives posts/s (``--deliver-alerts``:
   until every alert, with its comparison picture, has also reached a chat webhook on a local server: every
   post here is a match, so this is the worst case of the outbox's share) for: 1 daemon x 1 worker thread (the
   BASELINE: what the old pipeline lock allowed), 1 daemon x 2 worker threads, x 2 threads hashing in processes,
   x 2 forked worker processes (of one thread, then of two threads each), 2 daemons x 2 threads, x 2 forked
   processes, x 1 forked process of two threads (``--runs``).
   Printed: posts/s, the check cost around the run, cores' worth of matching (posts/s x check cost), the
   CPU the daemons used (cores busy), the cores nothing used (idle) and this script's own share (its media
   server), the daemons' page faults per post (memory handed back and faulted in again would show here),
   Redis CPU and commands per post, and the ratio of cores of matching to the baseline's.
3. **scale-out simulation** (``--skip-sim`` to skip): 1, 2, 4 and 8 simulated daemons, each a process that
   claims posts from the real Redis work queue and does the real store round trips of a post, with the
   matching replaced by a sleep of one measured per-post cost (as if every daemon had a machine of its own).
   With the Redis CPU per post measured in step 2, it shows where Redis becomes the limit.
4. **alert latency** (``--skip-latency`` to skip): one daemon watching 1,000 RSS feeds (a local server); once
   every feed was polled, a post recycling a known image appears in one feed; the time until its alert
   reaches the chat webhook is compared with the poll interval + 5 s. Jitter is 0 here: a configured
   ``jitter`` delays each poll by up to that much more.

The machine is shared (other jobs run at the same time), so figures are noisy: compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import redis  # noqa: E402
from PIL import Image  # noqa: E402

from bench.evalset import scene  # noqa: E402
from bot.archive import Archive  # noqa: E402
from bot.known import add_image  # noqa: E402
from bot.matching.check import check_one  # noqa: E402
from bot.matching.matcher import Matcher  # noqa: E402
from bot.models import Media, Post  # noqa: E402
from bot.store import open_work_queue  # noqa: E402
from bot.store.queue import POSTS, parse_post_item, post_item  # noqa: E402
from bot.store.posts import AccountPoll  # noqa: E402
from bot.store.redis import RedisStore  # noqa: E402
from bot.hashing.pool import keep_freed_memory, one_library_thread_per_worker  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIZE = (1640, 1230)  # ~2 MP


# ------------------------------------------------------------------------------------------------ fixtures
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Files:
    """A threaded local HTTP server answering GET path -> (content type, bytes); POSTs to /hook are recorded.
    HTTP/1.1 with keep-alive, as platforms' media hosts answer: a daemon's downloads reuse a connection, as
    they do in production, rather than paying (on both sides of this one machine) for a connection each."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[str, bytes]] = {}
        self.hooks: list[tuple[float, dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                found = outer.files.get(self.path)
                if found is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", found[0])
                self.send_header("Content-Length", str(len(found[1])))
                self.end_headers()
                self.wfile.write(found[1])

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.hooks.append((time.time(), json.loads(body or b"{}")))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def url(self, path: str) -> str:
        return f"http://{self.host}{path}"


def jpeg(img: Image.Image, quality: int = 88) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def edited_copy(original: Image.Image, n: int) -> bytes:
    """A ~2 MP edited copy: cropped a little, brightened, a mark in a corner, re-encoded (unique bytes)."""
    w, h = original.size
    dx, dy = 10 + n % 37, 8 + n % 23
    img = original.crop((dx, dy, w - (n % 29), h - (n % 31))).resize(SIZE)
    pixels = np.asarray(img).astype(np.int16) + 8
    pixels[20 : 40 + n % 20, 20:60] = (n * 7) % 255
    return jpeg(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), 80 + n % 10)


class RedisServer:
    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(folder), "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.client = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def url(self, prefix: str) -> str:
        return f"redis://127.0.0.1:{self.port}/0?prefix={prefix}"

    def cpu_and_calls(self) -> tuple[float, int]:
        """Redis server CPU seconds (user + sys) and commands processed so far."""
        cpu = self.client.info("cpu")
        stats = self.client.info("stats")
        return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), int(stats["total_commands_processed"])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (a daemon's fork server and hashing processes)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(parents.get(p, []))
    return found


def pss_mb(pids: list[int]) -> float:
    """Proportional set size of these processes in MB: shared pages (libraries, a forked parent's memory)
    counted once in all, so the sum is what they cost the machine together."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def machine_idle() -> float:
    """Seconds the machine's cores spent idle (idle + iowait) so far, summed over cores: what no process used."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")


def proc_usage(pids: list[int]) -> tuple[float, int]:
    """CPU seconds (user + system) and page faults (minor: a page first touched, or copied after a fork)
    these processes used so far, from one read of each one's ``/proc/<pid>/stat``; a process already gone
    counts nothing."""
    cpu, faults = 0, 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu += int(fields[11]) + int(fields[12])
        faults += int(fields[7])
    return cpu / os.sysconf("SC_CLK_TCK"), faults


# ------------------------------------------------------------------------------------------------ setup
class Corpus:
    def __init__(self, known: int, posts: int, files: Files) -> None:
        self.originals = [scene(4000 + k, *SIZE) for k in range(known)]
        self.known_bytes = [jpeg(img, 92) for img in self.originals]
        self.post_bytes = [edited_copy(self.originals[i % known], i) for i in range(posts)]
        for i, data in enumerate(self.post_bytes):
            files.files[f"/media/{i}.jpg"] = ("image/jpeg", data)
        self.files = files

    def seed(self, url: str, data_dir: Path) -> None:
        """The known images, with their local features cached as a daemon that has run a while has them (the
        check cost is measured warm too): the runs measure steady throughput, not a one-off cache fill."""
        store = RedisStore(url)
        archive = Archive(data_dir / "archive")
        matcher = Matcher(store, archive)
        for k, data in enumerate(self.known_bytes):
            entry = add_image(store, archive, data, label=f"Known {k}", source=f"https://example.org/{k}")
            if entry is not None:
                matcher.known_features(entry)
        store.close()

    def posts(self, run: str) -> list[Post]:
        now = datetime.now(timezone.utc)
        return [
            Post("x", "bench", f"{run}{i:05d}", f"https://x.com/bench/status/{i}", f"post {i}",
                 now - timedelta(minutes=1), media=(Media(self.files.url(f"/media/{i}.jpg")),), raw={"id": i})
            for i in range(len(self.post_bytes))
        ]  # fmt: skip


def write_config(
    path: Path, store_url: str, data_dir: Path, files: Files, workers: int, extra: str = "", mode: str = "threads",
    hook: bool = False,
) -> Path:
    """A daemon's configuration; ``hook``: alerts go to the local server's ``/hook`` (a JSON webhook)."""
    targets = f'\n  targets: ["json://{files.host}/hook"]' if hook else ""
    path.write_text(
        f"""
data_dir: {data_dir}
store: {store_url}
log_level: warning
media:
  trusted_hosts: ["{files.host}"]
  retries: 0
alerts:
  console: false{targets}
pipeline:
  workers: {workers}
  workers_mode: {mode.split(":")[0]}
  worker_threads: {mode.split(":")[1] if ":" in mode else 1}
  lease: 30s
{extra}
"""
    )
    return path


def start_daemons(config: Path, n: int, log: Path) -> list[subprocess.Popen[bytes]]:
    out = open(log, "ab")  # noqa: SIM115
    procs = [
        subprocess.Popen([sys.executable, "-m", "bot.cli", "run", "-c", str(config)], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        for _ in range(n)
    ]
    out.close()
    return procs


def stop_daemons(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# ------------------------------------------------------------------------------------------------ 1. check
class CheckCost:
    """Mean CPU seconds per image of ``afterimage check`` on the posts' images, one thread: the command's own
    per-input step (:func:`bot.matching.check.check_one`: read the file, decode, match, its answer) on files.

    CPU time, not wall time: on a shared machine the wall time also counts the waits for a core. The mean,
    not the median: posts/s is the inverse of the mean cost of a post, so "cores' worth of matching" (posts/s
    x this) compares like with like (a few slow images weigh on both). Measured again between runs (the
    matcher stays loaded and warm): this machine's speed drifts by up to a third within minutes (other
    virtual machines on the host), so each run is paired with the mean of the checks just before and after
    it, not with one figure from the start."""

    def __init__(self, corpus: Corpus, redis_server: RedisServer, tmp: Path) -> None:
        url = redis_server.url("bench-check")
        corpus.seed(url, tmp / "check")
        self.files = []
        for i, data in enumerate(corpus.post_bytes):
            self.files.append(tmp / "check" / f"post-{i}.jpg")
            self.files[-1].write_bytes(data)
        self.store = RedisStore(url)
        self.matcher = Matcher(self.store, Archive(tmp / "check" / "archive"))
        one_library_thread_per_worker()  # as in a daemon's worker
        keep_freed_memory()  # as in a daemon
        self._check(self.files[0])  # loads the index, caches the known images' local features

    def _check(self, path: Path) -> bool:
        """One input of ``afterimage check``: True when it matched."""
        line = check_one(self.matcher, str(path), path.read_bytes)
        if "error" in line:
            raise RuntimeError(f"check failed on {path}: {line['error']}")
        return line["match"] is not None

    def measure(self, show: bool = False) -> float:
        times, walls, found = [], [], 0
        faults = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        for path in self.files:
            t, w = time.thread_time(), time.perf_counter()
            found += self._check(path)
            times.append(time.thread_time() - t)
            walls.append(time.perf_counter() - w)
        cost = statistics.mean(times)
        self.faults = (resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - faults) / len(self.files)
        if show:
            print(f"check cost: mean {cost * 1000:.1f} ms CPU per ~2 MP image (median {statistics.median(times) * 1000:.1f} "
                  f"ms; wall {statistics.median(walls) * 1000:.0f} ms; {self.faults:.0f} page faults), {found}/{len(times)} matched, one thread; measured "
                  "again after every run")
        return cost

    def close(self) -> None:
        self.store.close()


# ------------------------------------------------------------------------------------------------ 2. runs
def run_daemons(
    corpus: Corpus, redis_server: RedisServer, tmp: Path, daemons: int, workers: int, files: Files, mode: str,
    deliver: bool = False, run: int = 0,
) -> dict[str, float]:
    """Run number ``run``; ``deliver``: done when every post is processed and its alert reached the webhook
    (else when every post is processed, its alert queued). A run has a store prefix and posts of its own, so
    a spec may be repeated (to see the run-to-run spread)."""
    name = f"r{run}d{daemons}w{workers}{mode[0]}{mode.partition(':')[2]}"
    url = redis_server.url(f"bench-{name}")
    data_dir = tmp / name
    corpus.seed(url, data_dir)
    config = write_config(tmp / f"{name}.yaml", url, data_dir, files, workers, mode=mode, hook=deliver)
    procs = start_daemons(config, daemons, tmp / f"{name}.log")
    store = RedisStore(url)
    queue = open_work_queue(store)
    try:
        deadline = time.monotonic() + 60
        while len(queue.daemons()) < daemons:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"daemons did not start: {(tmp / f'{name}.log').read_text()[-2000:]}")
            time.sleep(0.1)
        posts = corpus.posts(name)
        os.sync()  # the seeding's files written out now: the run's first fsyncs would otherwise flush them
        redis_cpu0, calls0 = redis_server.cpu_and_calls()
        cpu0, faults0 = proc_usage([pid for p in procs for pid in descendants(p.pid)])
        idle0, harness0 = machine_idle(), proc_usage([os.getpid()])[0]
        hooks0 = len(files.hooks)
        t0 = time.monotonic()
        changes = store.record_poll(AccountPoll("x", "bench", posts))
        queue.put(POSTS, [post_item("x", c.post.post_id, c.version) for c in changes])
        while store.pending_posts(1) or (deliver and store.outbox_size()):
            if time.monotonic() - t0 > 900:
                raise RuntimeError("posts not processed within 15 minutes")
            time.sleep(0.025)  # the end of a ~5 s run is seen within 0.5 % of it, the harness using ~2 % of a core
        wall = time.monotonic() - t0
        pids = [pid for p in procs for pid in descendants(p.pid)]
        cpu1, faults1 = proc_usage(pids)
        cpu, faults = cpu1 - cpu0, faults1 - faults0
        idle, harness = machine_idle() - idle0, proc_usage([os.getpid()])[0] - harness0
        memory = pss_mb(pids) / daemons
        redis_cpu1, calls1 = redis_server.cpu_and_calls()
        alerts = len(files.hooks) - hooks0 if deliver else store.outbox_size()
    finally:
        stop_daemons(procs)
        store.close()
    n = len(corpus.post_bytes)
    return {
        "posts_s": n / wall,
        "wall": wall,
        "cores_busy": cpu / wall,
        "cores_idle": idle / wall,
        "cores_harness": harness / wall,
        "cpu_per_post": cpu / n,
        "faults_per_post": faults / n,
        "redis_cpu_per_post": (redis_cpu1 - redis_cpu0) / n,
        "redis_calls_per_post": (calls1 - calls0) / n,
        "alerts": alerts,
        "pss_mb": memory,
    }


# ------------------------------------------------------------------------------------------------ 3. simulation
def _sim_daemon(url: str, per_post: float, stop_at: float, done: Any) -> None:
    """A simulated daemon on a machine of its own: the real queue and store round trips of a post (claim,
    read the post, record the media and its link, queue an alert, remember the image, mark it processed,
    acknowledge), the matching replaced by a sleep of the measured per-post cost."""
    from bot.store.records import MediaRecord, OutboxAlert, PostMediaLink

    store = RedisStore(url)
    queue = open_work_queue(store)
    me = f"sim:{os.getpid()}"
    while time.time() < stop_at:
        claims = queue.claim(POSTS, me)
        if not claims:
            time.sleep(0.01)
            continue
        claim = claims[0]
        _, post_id, version = parse_post_item(claim.item)
        stored = store.get_post("x", post_id)
        store.get_recheck("x", post_id)
        sha = f"{abs(hash(post_id)):064x}"[:64]
        store.put_media(MediaRecord(sha, 1000, "image/jpeg", f"{sha}.jpg", "http://h/m", datetime.now(timezone.utc)))
        store.link_post_media(PostMediaLink("x", post_id, 0, "http://h/m", sha))
        store.known_state()
        time.sleep(per_post)
        store.enqueue_alert(OutboxAlert(f"match:x:{post_id}:{sha}", "match", {"platform": "x", "post_id": post_id}))
        store.find_known_by_sha256(sha)
        store.mark_processed("x", post_id, version if stored is None else stored.version)
        queue.ack(claim)
        with done.get_lock():
            done.value += 1
    store.close()


def simulate(redis_server: RedisServer, per_post: float, redis_cpu_per_post: float, seconds: float = 12.0) -> None:
    print(f"\n== scale-out simulation: each daemon a machine of its own (matching = sleep {per_post * 1000:.0f} ms per post)")
    posts_needed = 20000
    rows = []
    for daemons in (1, 2, 4, 8):
        url = redis_server.url(f"bench-sim{daemons}")
        store = RedisStore(url)
        now = datetime.now(timezone.utc)
        n = min(posts_needed, int(daemons * seconds / per_post * 1.5) + 50)
        posts = [Post("x", "sim", f"{daemons}-{i}", "https://x.com/s", "t", now, raw={}) for i in range(n)]
        for start in range(0, n, 500):
            changes = store.record_poll(AccountPoll("x", "sim", posts[start : start + 500]))
            open_work_queue(store).put(POSTS, [post_item("x", c.post.post_id, c.version) for c in changes])
        done = multiprocessing.Value("i", 0)
        stop_at = time.time() + seconds
        cpu0, _ = redis_server.cpu_and_calls()
        procs = [multiprocessing.Process(target=_sim_daemon, args=(url, per_post, stop_at, done)) for _ in range(daemons)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(seconds + 30)
        cpu1, _ = redis_server.cpu_and_calls()
        rate = done.value / seconds
        rows.append((daemons, rate, (cpu1 - cpu0) / seconds))
        store.close()
    base = rows[0][1]
    for daemons, rate, redis_load in rows:
        print(f"{daemons} daemon(s): {rate:6.1f} posts/s ({rate / base:4.2f}x one daemon), Redis busy {redis_load * 100:4.1f} % of a core")
    if redis_cpu_per_post > 0:
        ceiling = 1.0 / redis_cpu_per_post
        per_daemon = rows[0][1]
        print(f"Redis limit: one Redis core at {redis_cpu_per_post * 1e6:.0f} us of Redis CPU per real post (measured in "
              f"the daemon runs) handles ~{ceiling:.0f} posts/s, i.e. ~{ceiling / per_daemon:.0f} daemons like these")


# ------------------------------------------------------------------------------------------------ 4. latency
def latency(
    corpus: Corpus, redis_server: RedisServer, tmp: Path, files: Files, accounts: int, interval: int, mode: str
) -> None:
    print(f"\n== alert latency: one daemon watching {accounts} RSS feeds, poll interval {interval}s")
    url = redis_server.url("bench-latency")
    data_dir = tmp / "latency"
    corpus.seed(url, data_dir)

    def feed(i: int, items: list[tuple[str, str | None]]) -> bytes:
        entries = "".join(
            f"<item><guid>{guid}</guid><link>{files.url('/p/' + guid)}</link><title>{guid}</title>"
            + (f'<enclosure url="{img}" type="image/jpeg" length="1"/>' if img else "")
            + "</item>"
            for guid, img in items
        )
        return f'<?xml version="1.0"?><rss version="2.0"><channel><title>feed {i}</title>{entries}</channel></rss>'.encode()

    for i in range(accounts):
        files.files[f"/feed/{i}.xml"] = ("application/rss+xml", feed(i, [(f"old-{i}", None)]))
    feeds = "\n".join(f"      - {files.url(f'/feed/{i}.xml')}" for i in range(accounts))
    extra = f"""watchers:
  rss:
    interval: {interval}s
    jitter: 0s
    trusted_hosts: ["{files.host}"]
    accounts:
{feeds}
"""
    config = write_config(tmp / "latency.yaml", url, data_dir, files, 2, extra, mode=mode, hook=True)
    procs = start_daemons(config, 1, tmp / "latency.log")
    store = RedisStore(url)
    try:
        deadline = time.monotonic() + 300
        while sum(1 for s in store.get_account_states() if s.last_poll_at) < accounts:
            if time.monotonic() > deadline or procs[0].poll() is not None:
                raise RuntimeError("first polls not done: " + (tmp / "latency.log").read_text()[-2000:])
            time.sleep(0.5)
        print(f"all {accounts} feeds polled once")
        results = []
        for n, i in enumerate((7, accounts // 2, accounts - 3)):
            before = len(files.hooks)
            guid = f"new-{i}"
            files.files[f"/feed/{i}.xml"] = ("application/rss+xml", feed(i, [(guid, files.url(f"/media/{n}.jpg")), (f"old-{i}", None)]))
            t0 = time.time()
            while not any(guid in json.dumps(p) for _, p in files.hooks[before:]):
                if time.time() - t0 > interval + 60:
                    raise RuntimeError("no alert")
                time.sleep(0.05)
            sent = next(t for t, p in files.hooks[before:] if guid in json.dumps(p))
            results.append(sent - t0)
        worst = max(results)
        print(f"alert latency (post appears -> chat webhook): {', '.join(f'{r:.1f}s' for r in results)}; worst {worst:.1f}s "
              f"vs bound interval + 5 s = {interval + 5}s: {'OK' if worst <= interval + 5 else 'OVER'}")
    finally:
        stop_daemons(procs)
        store.close()


# ------------------------------------------------------------------------------------------------ main
#: how each pipeline.workers_mode is named in the table
MODE_LABELS = {"threads": "threads", "processes": "thr.+hashing pr.", "forked": "forked pr."}


def parse_run(spec: str, default_mode: str) -> tuple[int, int, str]:
    """``daemons x workers`` with an optional ``t`` (worker threads), ``p`` (threads, hashing in processes) or
    ``f`` (forked worker processes, optionally with a number of threads each): 2x2p, 1x2f2."""
    match = re.fullmatch(r"(\d+)x(\d+)([tpf]?)(\d*)", spec)
    if match is None:
        raise SystemExit(f"--runs: {spec!r} is not DAEMONSxWORKERS[t|p|f[THREADS]]")
    mode = {"t": "threads", "p": "processes", "f": "forked"}.get(match[3], default_mode)
    if match[4]:  # forked with this many threads per worker process
        mode += f":{match[4]}"
    return int(match[1]), int(match[2]), mode


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--posts", type=int, default=120)
    ap.add_argument(
        "--known",
        type=int,
        default=None,
        help="known images (default: one per post, so each post copies a different one; fewer makes posts "
        "copies of each other, and each post is then also verified against the earlier posts' copies, work "
        "the check cost does not include)",
    )
    ap.add_argument("--runs", default="1x1t,1x2t,1x2p,1x2f,1x3f,1x2f2,2x2t,2x2f,2x3f,2x1f2", help="daemons x workers per run (suffix t: threads, p: threads hashing in processes, f: forked processes; default --workers-mode); "
                    "the first is the baseline")
    ap.add_argument("--workers-mode", default="forked", choices=["threads", "processes", "forked"],
                    help="pipeline.workers_mode of runs without a suffix, and of the latency run")
    ap.add_argument("--deliver-alerts", action="store_true", help="throughput runs end when every post's alert (with "
                    "its comparison picture) reached a webhook, not when every post is processed and its alert queued")
    ap.add_argument("--skip-throughput", action="store_true", help="only the simulation and the latency run")
    ap.add_argument("--skip-sim", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--interval", type=int, default=60)
    args = ap.parse_args()
    args.known = args.known or args.posts
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start (shared machine: figures are noisy)")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        files = Files()
        redis_server = RedisServer(tmp)
        try:
            corpus = Corpus(args.known, args.posts, files)
            checker = CheckCost(corpus, redis_server, tmp)
            cost = checker.measure(show=True)
            if args.skip_throughput:
                args.runs = ""
            print(f"\n== throughput: {args.posts} posts, ~2 MP edited copies of {args.known} known images, Redis store, "
                  + ("each post's alert delivered to a webhook" if args.deliver_alerts else "alerts queued"))
            print(f"{'run':34} {'posts/s':>8} {'check':>6} {'cores of matching':>18} {'cores busy':>11} {'idle':>5} {'bench':>6} "
                  f"{'CPU/post':>9} {'faults/post':>12} {'Redis us/post':>14} {'Redis cmds/post':>16} {'MB/daemon':>10} {'alerts':>7} {'vs baseline':>12}")
            results: list[tuple[str, dict[str, float]]] = []
            for i, spec in enumerate(filter(None, args.runs.split(","))):
                daemons, workers, mode = parse_run(spec, args.workers_mode)
                r = run_daemons(corpus, redis_server, tmp, daemons, workers, files, mode, args.deliver_alerts, run=i)
                after = checker.measure()
                r["check"], cost = (cost + after) / 2, after  # the check cost around this run
                r["matching"] = r["posts_s"] * r["check"]
                results.append((spec, r))
                base = results[0][1]["matching"]
                base_mode, _, threads = mode.partition(":")
                label = f"{daemons} daemon(s) x {workers} {MODE_LABELS[base_mode]}" + (f" x {threads} thr." if threads else "")
                print(f"{label:34} {r['posts_s']:8.2f} {r['check'] * 1000:4.1f}ms {r['matching']:18.2f} {r['cores_busy']:11.2f} "
                      f"{r['cores_idle']:5.2f} {r['cores_harness']:6.2f} {r['cpu_per_post'] * 1000:7.0f}ms {r['faults_per_post']:12.0f} "
                      f"{r['redis_cpu_per_post'] * 1e6:14.0f} {r['redis_calls_per_post']:16.0f} {r['pss_mb']:10.0f} "
                      f"{r['alerts']:7.0f} {r['matching'] / base:11.2f}x", flush=True)
            checker.close()
            last = results[-1][1] if results else {"cpu_per_post": cost, "redis_cpu_per_post": 0.0}
            if results:
                print(f"per-post CPU / check cost: {last['cpu_per_post'] / last['check']:.2f} (a post is one check plus "
                      "download, archive, remembering the image for recycling" + (", delivering its alert)" if args.deliver_alerts else ")"))
                print("check: the check cost around the run (mean of the checks just before and after it); cores busy: the "
                      "daemons' CPU; idle: cores no process used; bench: this script's own CPU (the media server); cores of "
                      "matching per core the daemons used, the share of their CPU that went into matching:")
                print("  " + ", ".join(f"{spec}: {r['matching'] / r['cores_busy']:.2f}" for spec, r in results if r["cores_busy"]))
            if not args.skip_sim:
                simulate(redis_server, last["cpu_per_post"], last["redis_cpu_per_post"])
            if not args.skip_latency:
                latency(corpus, redis_server, tmp, files, args.accounts, args.interval, args.workers_mode)
        finally:
            redis_server.stop()


if __name__ == "__main__":
    main()
