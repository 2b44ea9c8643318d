"""``afterimage demo``: the November 2017 story, replayed offline in under a minute through the real code.

1. A synthetic "game trailer" (2015) is generated and added to the known-media store (keyframes).
2. Fake X and Facebook servers start in-process; a ministry account posts a cropped, captioned frame.
3. The real daemon (scheduler, tweepy and python-facebook-api clients, pipeline, alerts to the console and
   to a local webhook) polls, archives, matches and raises the alert.
4. The post is deleted on X; the re-checker confirms the deletion (two answers) and logs it.
5. The deletion log is exported as HTML, CSV and JSON Lines into the output folder.

Nothing is written outside the output folder: the state store, archive and exports all live in it. Every
run starts afresh: the fake platforms start empty each time, so a store left by an earlier run would describe
another world (its post deleted, the known media already added) and the daemon would rightly report the
"reposted" post as restored. The demo therefore replaces its own earlier state (folders it marked as its own)
and refuses a non-empty folder it did not write.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from bot.archive import Archive
from bot.config import Config, parse_config
from bot.daemon import Daemon
from bot.demo.fakes import FakePlatforms, FakePost, FakeWorld
from bot.demo.scene import ministry_evidence, write_trailer
from bot.export.rows import ExportFilters
from bot.export.writers import export_to_file
from bot.known import AddOptions, add_paths
from bot.models import utcnow
from bot.store import open_store
from bot.store.deletion_log import EventFilter

X_POST_ID = "930405181311074304"  # a tweet id of 14 November 2017's size
FB_POST_ID = "1555000000000001"
TRAILER_LABEL = "'AC-130 Gunship Simulator' game trailer (2015)"
TRAILER_SOURCE = "https://store.example.com/gunship-sim/trailer-2015"
POST_TEXT = "Irrefutable evidence: the terrorists' convoy leaving under air cover. #proof"
#: written into the output folder, so a later run knows the folder (and the state in it) is the demo's own
MARKER = ".afterimage-demo"
TRAILER_FILE = "gunship-sim-trailer-2015.mp4"
DEMO_SECRETS = {"DEMO_X_TOKEN": "demo-x-bearer-token", "DEMO_FB_TOKEN": "demo-facebook-page-token"}


@dataclass
class DemoResult:
    out_dir: Path
    alerts: list[dict] = field(default_factory=list)
    deletions: int = 0
    exports: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0


def demo_config(out_dir: Path, server: FakePlatforms, world: FakeWorld) -> Config:
    """The daemon's configuration for the fake world: short intervals, media trusted from loopback."""
    text = f"""
data_dir: {out_dir / "data"}
log_level: warning
watchers:
  x:
    bearer_token: ${{DEMO_X_TOKEN}}
    api_base: {server.base_url}
    accounts: [MinistryOfDefence]
    interval: 2s
    jitter: 0s
    recheck: {{schedule: [4s, 8s, 12s, 16s, 24s, 32s, 48s], confirm_after: 2s}}
  facebook:
    access_token: ${{DEMO_FB_TOKEN}}
    api_base: {server.base_url}
    accounts: ["{world.page_id}"]
    interval: 2s
    jitter: 0s
    recheck: {{schedule: [4s, 8s, 12s, 16s, 24s, 32s, 48s], confirm_after: 2s}}
media:
  trusted_hosts: ["{server.host}"]
  retries: 0
alerts:
  targets: ["json://{server.host}/chat-webhook"]
  console: true
  max_backoff: 2s
"""
    return parse_config(text, environ=DEMO_SECRETS, source="(demo)")


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise TimeoutError(f"the demo did not see {what} within {timeout:.0f} s")


class DemoFolderError(Exception):
    """The output folder holds files the demo did not write: nothing is deleted, the demo does not run."""


def _written_by_demo(out_dir: Path) -> bool:
    """The marker, or (a folder from a version before the marker) the demo's trailer next to its data."""
    return (out_dir / MARKER).exists() or ((out_dir / TRAILER_FILE).exists() and (out_dir / "data").is_dir())


def prepare_out_dir(out_dir: Path) -> None:
    """Make ``out_dir`` ready for a fresh run: create it, or clear the state of an earlier demo run in it.

    Only a folder carrying the demo's marker is cleared (its ``data`` folder: store and archive); the exports
    and the trailer are rewritten by the run. A non-empty folder without the marker is refused."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DemoFolderError(f"{out_dir} is a file, not a folder: choose another --out")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not _written_by_demo(out_dir):
        raise DemoFolderError(
            f"{out_dir} is not empty and was not written by `afterimage demo`: nothing was changed; "
            "choose an empty or new folder with --out"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / "data").exists():
        shutil.rmtree(out_dir / "data")
    (out_dir / MARKER).write_text("written by `afterimage demo`; its next run replaces this folder's data/\n")


def run_demo(out_dir: Path, echo: Callable[[str], None] = print) -> DemoResult:
    started = time.monotonic()
    prepare_out_dir(out_dir)
    result = DemoResult(out_dir)
    world = FakeWorld()
    with FakePlatforms(world) as server:
        config = demo_config(out_dir, server, world)

        echo("1. A 2015 game trailer is added to the known-media store ...")
        trailer = write_trailer(out_dir / TRAILER_FILE)
        with open_store(config.store_url) as store:
            report = add_paths(store, Archive(config.archive_path), [trailer], AddOptions(TRAILER_LABEL, TRAILER_SOURCE))
        echo(f"   {len(report.added)} keyframes remembered from {trailer.name}")

        echo("2. The ministry posts a cropped, captioned frame on X and on Facebook ...")
        evidence = ministry_evidence()
        posted_at = utcnow() - timedelta(seconds=1)
        with world.lock:
            world.media["/media/convoy-proof.jpg"] = ("image/jpeg", evidence)
            world.x_posts.append(FakePost(X_POST_ID, POST_TEXT, posted_at, "/media/convoy-proof.jpg"))
            world.fb_posts.append(FakePost(FB_POST_ID, POST_TEXT, posted_at, "/media/convoy-proof.jpg"))

        echo("3. The daemon polls, archives, matches and alerts the team chat ...")
        daemon = Daemon(config, recheck_every=1.0)
        daemon.start()
        try:
            wait_until(
                lambda: len(world.received_alerts) >= 2 and not daemon.store.pending_posts(1) and daemon.store.outbox_size() == 0,
                40,
                "the match alerts at the chat webhook",
            )
            with world.lock:
                result.alerts = list(world.received_alerts)
            for alert in result.alerts:
                echo(f"   chat received: {alert.get('title', '')}")

            echo("4. The post is deleted on X; afterimage confirms the deletion ...")
            with world.lock:
                world.x_posts[0].deleted = True
            wait_until(lambda: bool(daemon.store.list_events(EventFilter(kinds=["deleted"]))), 40, "a confirmed deletion")
            result.deletions = len(daemon.store.list_events(EventFilter(kinds=["deleted"])))
            event = daemon.store.list_events(EventFilter(kinds=["deleted"]))[0]
            echo(f"   deletion of {event.platform}/{event.post_id} confirmed at {event.detected_at:%H:%M:%S} UTC")
            # the deletion alert is part of the story: the run ends once the chat has it, not with it queued
            wait_until(lambda: daemon.store.outbox_size() == 0, 40, "the deletion alert at the chat webhook")
            with world.lock:
                for alert in world.received_alerts[len(result.alerts) :]:
                    echo(f"   chat received: {alert.get('title', '')}")
                result.alerts = list(world.received_alerts)
            daemon.run_evidence()  # the deletion into the log chain, with its post card, before the export
        finally:
            daemon.stop()

    echo("5. The deletion log is exported for the report ...")
    with open_store(config.store_url) as store:
        for fmt, name in (("html", "deletion-report.html"), ("csv", "deletions.csv"), ("jsonl", "deletions.jsonl")):
            path = out_dir / name
            export_to_file(fmt, store, path, ExportFilters(), archive_root=config.archive_path, evidence_dir=config.evidence_path)
            result.exports[fmt] = path
            echo(f"   {path}")
    result.seconds = time.monotonic() - started
    echo(f"Done in {result.seconds:.0f} s. Open {result.exports['html']} in a browser.")
    return result
