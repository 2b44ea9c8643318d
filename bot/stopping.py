"""Stopping a long-running command on SIGTERM or SIGINT. Kept free of heavy imports: ``afterimage run``
installs it before it imports the daemon (OpenCV, faiss) and opens the store, so systemd or Docker stopping
a daemon that is still starting gets a clean exit 0, not a death by signal."""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger(__name__)


def stop_on_signals() -> threading.Event:
    """An event that SIGTERM and SIGINT set from now on, instead of ending the process."""
    stop_requested = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop_requested.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop_requested
