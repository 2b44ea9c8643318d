"""``systemctl stop`` or ``docker stop`` reaching a daemon that is still starting (importing its libraries,
opening the store, loading the matching index) ends it cleanly: exit 0, as a stop of a running daemon does,
and a later daemon on the same store starts and processes as usual."""

from __future__ import annotations

import signal
from pathlib import Path

from bot.store import open_store
from bot.store.review import CaseQuery

from .conftest import add_post, capture, picture, seed_store, start_daemon, stop_daemon, wait_for


def _catches_sigterm(pid: int) -> bool:
    """Whether the process has a handler for SIGTERM (its ``SigCgt`` mask in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    return False


def test_sigterm_while_the_daemon_starts_exits_cleanly(tmp_path: Path, world) -> None:
    w, server = world
    store_url = f"sqlite:///{tmp_path / 'state.db'}"
    config = seed_store(tmp_path, server, store_url, range(3))
    log_file = tmp_path / "daemon.log"
    proc = start_daemon(config, store_url, log_file)
    # the moment the stop handler is in place, long before the daemon is running (imports, store, index)
    wait_for(lambda: proc.poll() is not None or _catches_sigterm(proc.pid), 30, "the stop handler installed", every=0.005)
    code = stop_daemon(proc)
    output = capture("daemon stopped while starting", log_file.read_text(errors="replace"))
    assert code == 0, output
    assert "afterimage running" not in output  # it was stopped before it began polling

    # nothing left half-done: the next daemon runs and processes a post recycling a known picture
    add_post(w, "9001", picture(1))
    proc = start_daemon(config, store_url, log_file)
    store = open_store(store_url)
    try:
        wait_for(lambda: store.get_post("x", "9001") is not None and not store.pending_posts(1), 60, "the post processed")
        assert any(case.post_id == "9001" for case in store.list_cases(CaseQuery(platform="x")))  # matched
    finally:
        store.close()
        assert stop_daemon(proc) == 0
