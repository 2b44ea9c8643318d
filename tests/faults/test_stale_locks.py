"""After a kill -9 the restarted daemon takes back the locks and the queued posts its dead predecessor held
(instead of waiting out their TTLs, up to 5 minutes without alerts, or the claims' lease); locks and claims
that a live daemon or another host may hold are left alone."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from bot.config import parse_config
from bot.daemon import Daemon
from bot.store import open_store

from .conftest import X_TOKEN


def test_reclaims_only_locks_of_dead_daemons_of_this_host(tmp_path: Path) -> None:
    cfg = parse_config(
        f"""
data_dir: {tmp_path / "data"}
watchers:
  x:
    bearer_token: ${{T}}
    api_base: http://127.0.0.1:9
    accounts: [a, b, c]
""",
        {"T": X_TOKEN},
    )
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    daemon = Daemon(cfg, store=store)
    host = socket.gethostname()
    dead = 2**22 + 12345  # above the default pid_max: no such process
    while True:
        try:
            os.kill(dead, 0)
            dead += 1
        except ProcessLookupError:
            break
        except PermissionError:
            dead += 1
    owners = {
        "alerts:sender": f"{host}:{dead}:deadbeef",  # a killed daemon of this host
        "poll:x:c": f"{host}:{os.getpid()}:0ldc0de0",  # our own pid, earlier incarnation (containers: pid 1)
        "poll:x:a": f"{host}:{os.getppid()}:a11ve000",  # a live process of this host: may be a daemon
        "poll:x:b": f"other-host:{dead}:deadbeef",  # another host: cannot tell, left to expire
        "recheck:x": "garbage",
    }
    for name, owner in owners.items():
        assert store.acquire_lock(name, owner, 300)
    queue = daemon.queue
    queue.put("posts", ["x:1:dead", "x:1:live", "x:1:remote"])
    for item, owner in (("dead", "alerts:sender"), ("live", "poll:x:a"), ("remote", "poll:x:b")):
        (claim,) = queue.claim("posts", f"{owners[owner]}/w0")
        assert claim.item == f"x:1:{item}"
    try:
        assert sorted(daemon.reclaim_stale_locks()) == ["alerts:sender", "poll:x:c"]
        assert store.lock_owner("alerts:sender") is None and store.lock_owner("poll:x:c") is None
        for name in ("poll:x:a", "poll:x:b", "recheck:x"):
            assert store.lock_owner(name) == owners[name]
        assert store.acquire_lock("alerts:sender", daemon.owner, 10)
        # the dead daemon's claimed post is claimable at once; the live one's and the other host's are not
        assert [c.item for c in queue.claim("posts", f"{daemon.owner}/w0", count=5)] == ["x:1:dead"]
    finally:
        daemon.stop(timeout=1)
