"""Bounded first poll: a new account's history is read back only as far as its watcher's ``backfill``, so
adding an account with a long history does not flood the pipeline; later polls find new posts as usual."""

from __future__ import annotations

from pathlib import Path

from bot.config import parse_config
from bot.daemon import Daemon

from .conftest import X_TOKEN, add_post, picture


def test_first_poll_keeps_only_posts_within_backfill(tmp_path: Path, world, caplog) -> None:
    w, server = world
    cfg = parse_config(
        f"""
data_dir: {tmp_path / "data"}
store: sqlite:///{tmp_path / "state.db"}
watchers:
  x:
    bearer_token: ${{T}}
    api_base: {server.base_url}
    accounts: [{w.username}]
    backfill: 1d
media:
  trusted_hosts: ["{server.host}"]
  retries: 0
alerts:
  console: false
""",
        {"T": X_TOKEN},
    )
    for k, minutes_ago in enumerate((4 * 1440, 2 * 1440, 1500, 600, 5)):  # 4 d, 2 d, 25 h, 10 h, 5 min ago
        add_post(w, str(1865000000000000000 + k), picture(8000 + k), minutes_ago=minutes_ago)
    daemon = Daemon(cfg)
    try:
        caplog.set_level("INFO")
        first = daemon.poll_account("x", w.username, hold_lock=False)
        assert (first.error, first.new) == (None, 2), first
        kept = sorted(p.post.post_id for p in daemon.store.iter_posts())
        assert kept == ["1865000000000000003", "1865000000000000004"]
        assert "3 post(s) older than the backfill limit not kept" in caplog.text
        assert not daemon.store.pending_posts(10)  # the kept ones were processed

        add_post(w, "1865000000000000009", picture(8009), minutes_ago=1)  # later polls are not bounded
        second = daemon.poll_account("x", w.username, hold_lock=False)
        assert (second.new, second.unchanged) == (1, 0), second
        assert daemon.store.count_posts() == 3
    finally:
        daemon.stop(timeout=2)
