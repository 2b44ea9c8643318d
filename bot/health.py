"""Optional HTTP endpoint (``health.listen``): ``/healthz`` for Docker/Kubernetes probes and ``/metrics``
for Prometheus. Runs in a daemon thread on the standard library's HTTP server: two small GET routes do not
justify a web framework."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bot.status import Snapshot, render_prometheus

log = logging.getLogger(__name__)


class HealthServer:
    """Serves ``snapshot()`` (raising means unhealthy: e.g. the store is unreachable)."""

    def __init__(self, listen: str, snapshot: Callable[[], Snapshot], is_running: Callable[[], bool]):
        host, _, port = listen.rpartition(":")
        self._snapshot = snapshot
        self._is_running = is_running
        handler = self._handler_class()
        self.server = ThreadingHTTPServer((host.strip("[]") or "127.0.0.1", int(port)), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="health", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        return self.server.server_address[:2]  # type: ignore[return-value]

    def start(self) -> None:
        self.thread.start()
        log.info("health endpoint on http://%s:%d/healthz and /metrics", *self.address)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path.split("?")[0] == "/healthz":
                    self._healthz()
                elif self.path.split("?")[0] == "/metrics":
                    self._metrics()
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _healthz(self) -> None:
                try:
                    snap = outer._snapshot()
                    ok = outer._is_running()
                    body = {"status": "ok" if ok else "stopped", "outbox": snap.outbox_size, "accounts": len(snap.accounts)}
                except Exception as e:  # the store is down: unhealthy, say why
                    ok, body = False, {"status": "error", "error": type(e).__name__}
                self._send(200 if ok else 503, "application/json", json.dumps(body).encode())

            def _metrics(self) -> None:
                try:
                    text = render_prometheus(outer._snapshot())
                except Exception as e:
                    self._send(503, "text/plain", f"store unavailable: {type(e).__name__}\n".encode())
                    return
                self._send(200, "text/plain; version=0.0.4", text.encode())

            def _send(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # probes every few seconds: keep logs quiet
                log.debug("health: " + format, *args)

        return Handler
