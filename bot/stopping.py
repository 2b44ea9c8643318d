"""Stopping a long-running command on SIGTERM or SIGINT. Kept free of heavy imports: ``afterimage run``
installs it before it imports the daemon (OpenCV, faiss) and opens the store, so systemd or Docker stopping
a daemon that is still starting gets a clean exit 0, not a death by signal."""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger(__name__)


#: the event :func:`stop_early` installed, until a command takes it over with :func:`stop_on_signals`
_early: threading.Event | None = None


def stop_early() -> None:
    """Handle SIGTERM and SIGINT from now on, before the console command imports its modules (all of
    afterimage's commands and libraries: seconds on a busy machine); the command's own
    :func:`stop_on_signals` then gets the same event, with any stop that came meanwhile."""
    global _early
    _early = stop_on_signals()


def stop_on_signals() -> threading.Event:
    """An event that SIGTERM and SIGINT set from now on, instead of ending the process (the one
    :func:`stop_early` installed, the first time after it)."""
    global _early
    if _early is not None:
        early, _early = _early, None
        return early
    stop_requested = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop_requested.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop_requested
