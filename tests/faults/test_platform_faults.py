"""Platform faults at every step: the daemon never crashes, never reports a false deletion, and polling resumes.

In process (fast): a real :class:`bot.daemon.Daemon` with its real watchers (tweepy, python-facebook-api),
media fetcher and a SQLite store, against the fake platforms serving injected faults on one step at a time:
resolving the account, reading the timeline, looking posts up again (re-checks), downloading media.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bot.config import parse_config
from bot.daemon import Daemon
from bot.demo.fakes import X_USER_ID, FakePost, Fault
from bot.store import open_store

from .conftest import CAPTURED, FB_TOKEN, X_TOKEN, add_post, leaked, picture
from bot.store.deletion_log import EventFilter

FB_VERSION = "v24.0"
RESET = int((datetime.now(timezone.utc) + timedelta(minutes=7)).timestamp())

FAULTS: dict[str, list[Fault]] = {
    "429_reset": [Fault("status", 429, {"x-rate-limit-reset": str(RESET), "x-rate-limit-remaining": "0"}, {"title": "Too Many Requests"})],
    "429_no_reset": [Fault("status", 429, {}, {"title": "Too Many Requests"})],
    "500": [Fault("status", 500, {}, {"title": "Internal Error"})],
    "502": [Fault("status", 502, {}, None)],
    "503": [Fault("status", 503, {}, {"error": "over capacity"})],
    "reset": [Fault("reset")],
    "timeout": [Fault("hang", seconds=1.6)],
    "truncated": [Fault("truncated")],
    "shape_list": [Fault("body", body=[1, 2, 3])],
    "shape_data_str": [Fault("body", body={"data": "nope", "includes": []})],
    "shape_items": [Fault("body", body={"data": [{"id": None}, {"text": 5}], "meta": {"result_count": 2}})],
    "empty_object": [Fault("body", body={})],
    "empty_page": [Fault("body", body={"data": [], "meta": {"result_count": 0}})],
}

STEPS = {
    "x": {
        "resolve": "/2/users/by/username/",
        "timeline": f"/2/users/{X_USER_ID}/tweets",
        "lookup": "/2/tweets",
        "media": "/media/",
    },
    "facebook": {
        "timeline": f"/{FB_VERSION}/1010101/",
        "lookup": f"/{FB_VERSION}",  # ?ids=... on the version root
        "media": "/media/",
    },
}

TOTALS = {"cases": 0, "faults_served": 0, "false_deletions": 0}


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def make_daemon(tmp_path: Path, server, platform: str, clock: Clock) -> Daemon:
    section = (
        f"""  x:
    bearer_token: ${{FAULTS_X_TOKEN}}
    api_base: {server.base_url}
    accounts: [{server.world.username}]"""
        if platform == "x"
        else f"""  facebook:
    access_token: ${{FAULTS_FB_TOKEN}}
    api_base: {server.base_url}
    version: {FB_VERSION}
    accounts: ["{server.world.page_id}"]"""
    )
    cfg = parse_config(
        f"""
data_dir: {tmp_path / "data"}
store: sqlite:///{tmp_path / "state.db"}
watchers:
{section}
    interval: 60s
    jitter: 0s
    timeout: 1s
    recheck:
      schedule: [10s, 20s, 40s]
      confirm_after: 5s
media:
  trusted_hosts: ["{server.host}"]
  retries: 0
  timeout: 1s
alerts:
  targets: ["json://{server.host}/hook"]
  console: false
""",
        {"FAULTS_X_TOKEN": X_TOKEN, "FAULTS_FB_TOKEN": FB_TOKEN},
    )
    return Daemon(cfg, store=open_store(f"sqlite:///{tmp_path / 'state.db'}"), clock=clock, recheck_every=1)


def publish(world, platform: str, n: int, start: int, later: float = 0.0) -> list[str]:
    ids = []
    for i in range(start, start + n):
        post_id = str(1861000000000000000 + i)
        if platform == "x":
            add_post(world, post_id, picture(7000 + i), minutes_ago=(3 - later) / 60)
        else:
            path = f"/media/fb{i}.jpg"
            with world.lock:
                world.media[path] = ("image/jpeg", picture(7000 + i))
                world.fb_posts.append(FakePost(post_id, f"FB post {i}", datetime.now(timezone.utc) - timedelta(seconds=3 - later), path))
        ids.append(post_id)
    return ids


def stored_id(platform: str, world, post_id: str) -> str:
    return post_id if platform == "x" else f"{world.page_id}_{post_id}"


CASES = [(p, step, fault) for p, steps in STEPS.items() for step in steps for fault in FAULTS]


@pytest.mark.parametrize(("platform", "step", "fault"), CASES, ids=[f"{p}-{s}-{f}" for p, s, f in CASES])
def test_platform_fault(tmp_path: Path, world, platform: str, step: str, fault: str, caplog) -> None:
    w, server = world
    clock = Clock()
    caplog.set_level(logging.INFO)
    daemon = make_daemon(tmp_path, server, platform, clock)
    store = daemon.store
    try:
        first = publish(w, platform, 2, 0)
        prefix = STEPS[platform][step]
        # the fault is served to every request of that step during the faulty poll / re-check
        faults = [Fault(f.kind, f.status, f.headers, f.body, f.seconds, sticky=True) for f in FAULTS[fault]]

        if step in ("resolve", "timeline", "media"):
            w.inject(prefix, *faults)
            outcome = daemon.poll_account(platform, daemon.accounts[platform][0])  # never raises
            w.faults.clear()
            if step == "media":
                # the posts are safe in the store even though their media could not be fetched
                assert all(store.get_post(platform, stored_id(platform, w, i)) for i in first)
        else:
            outcome = daemon.poll_account(platform, daemon.accounts[platform][0])
            assert outcome.error is None and outcome.new == 2, outcome
            # re-checks through the fault, twice, further apart than confirm_after: no deletion may come of it
            for _ in range(3):
                clock.advance(30)
                w.inject(prefix, *faults)
                daemon.run_rechecks(platform)
                w.faults.clear()

        served = len(w.faults_served)
        assert served >= 1, "the fault was never served"

        # polling resumes: time passes (past any rate-limit reset or backoff), a new post appears, it is found
        clock.advance(3600)
        more = publish(w, platform, 1, 10, later=5)  # Graph's since= has a one-second resolution
        outcome = daemon.poll_account(platform, daemon.accounts[platform][0])
        assert outcome.error is None and outcome.skipped is None, outcome
        daemon.process_pending()
        for post_id in first + more:
            stored = store.get_post(platform, stored_id(platform, w, post_id))
            assert stored is not None, f"{post_id} not stored after the fault"
        assert not store.pending_posts(10), "posts still pending after the platform recovered"
        state = next(s for s in store.get_account_states() if s.platform == platform)
        assert state.consecutive_errors == 0 and state.paused_until is None

        # and re-checks after recovery see every post alive
        clock.advance(60)
        daemon.run_rechecks(platform)
        deleted = store.list_events(EventFilter(kinds=["deleted"]))
        TOTALS["false_deletions"] += len(deleted)
        assert deleted == [], f"false deletion after {fault} on {step}: {deleted}"
        for post_id in first + more:
            assert store.get_post(platform, stored_id(platform, w, post_id)).status != "deleted"
        TOTALS["cases"] += 1
        TOTALS["faults_served"] += served
    finally:
        daemon.stop(timeout=2)
        CAPTURED.append((f"caplog {platform}/{step}/{fault}", caplog.text))
    assert not leaked(caplog.text)


def test_platform_fault_totals() -> None:
    """Runs after the matrix (same module): print the numbers for the README."""
    print(f"\nplatform faults: {TOTALS['cases']} cases passed, {TOTALS['faults_served']} faults served, "
          f"{TOTALS['false_deletions']} false deletions")
