"""In-process fake X, Facebook and Telegram (t.me preview) servers for the demo, speaking the platforms' real wire formats.

They are small on purpose: just the endpoints the real clients (tweepy, python-facebook-api) call for one
ministry account, backed by a mutable list of posts so the demo can post and then delete. They also serve
the posted media, and a webhook receiver stands in for the team chat (apprise's ``json://`` target).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bot.demo import fake_telegram
from bot.demo.fake_telegram import FakeMessage

X_USER_ID = "783214"


@dataclass
class FakePost:
    post_id: str
    text: str
    created_at: datetime
    media_path: str  # served by the same fake server
    deleted: bool = False


@dataclass
class FakeWorld:
    """What the fake platforms currently show. Mutated by the demo script, read by the servers."""

    username: str = "MinistryOfDefence"
    page_id: str = "1010101"
    x_posts: list[FakePost] = field(default_factory=list)
    fb_posts: list[FakePost] = field(default_factory=list)
    #: the Telegram channel the fake preview site (t.me) shows, and its messages
    tg_channel: str = "mod_example_en"
    tg_messages: list[FakeMessage] = field(default_factory=list)
    media: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # path -> (content type, bytes)
    received_alerts: list[dict[str, Any]] = field(default_factory=list)
    chat_down: bool = False  # the webhook answers 503 (a chat outage)
    #: injected faults (tests): path prefix -> faults served, one per request, before the normal answer
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    #: every fault actually served, as (path, fault kind), for the tests' counts
    faults_served: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def inject(self, prefix: str, *faults: Fault) -> None:
        """Serve ``faults`` (in order, one per request) to the next requests whose path starts with ``prefix``."""
        with self.lock:
            self.faults.setdefault(prefix, []).extend(faults)

    def take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for prefix, queue in self.faults.items():
                if path.startswith(prefix) and queue:
                    fault = queue[0] if queue[0].sticky else queue.pop(0)
                    self.faults_served.append((path, fault.kind))
                    return fault
        return None


@dataclass
class Fault:
    """One misbehaviour of the fake server (tests only).

    ``kind``: ``status`` (answer ``status`` with ``headers`` and a JSON ``body``), ``reset`` (close the connection
    with a TCP RST, no answer), ``delay`` (sleep ``seconds`` then answer normally), ``hang`` (sleep ``seconds``,
    then close without answering), ``truncated`` (a 200 whose JSON body is cut in half), ``body`` (a 200 with
    ``body`` as the JSON answer, e.g. a wrong shape or an empty page), ``html`` (``status`` with ``body`` as an
    HTML page, e.g. a challenge page). ``sticky`` faults are never used up.
    """

    kind: str
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    seconds: float = 0.0
    sticky: bool = False


def _x_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.000Z")


class _Handler(BaseHTTPRequestHandler):
    world: FakeWorld
    base_url: str

    def log_message(self, format: str, *args: object) -> None:  # the demo prints its own story
        pass

    def _json(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _html(self, code: int, page: str, headers: dict[str, str] | None = None) -> None:
        data = page.encode()
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _fault(self, path: str) -> bool:
        """Serve an injected fault for ``path``; True when the request is answered (or dropped) by it."""
        fault = self.world.take_fault(path)
        if fault is None:
            return False
        if fault.kind == "delay":
            time.sleep(fault.seconds)
            return False
        if fault.kind in ("reset", "hang"):
            if fault.kind == "hang":
                time.sleep(fault.seconds)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return True
        if fault.kind == "truncated":
            data = json.dumps(fault.body if fault.body is not None else {"data": [{"id": "1", "text": "cut"}]}).encode()
            data = data[: len(data) // 2]
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return True
        if fault.kind == "html":
            self._html(fault.status, str(fault.body))
            return True
        data = json.dumps(fault.body).encode() if fault.body is not None else b""
        self.send_response(fault.status if fault.kind == "status" else 200)
        for name, value in fault.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        return True

    def do_POST(self) -> None:  # noqa: N802: the chat webhook
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self._fault(urlsplit(self.path).path):
            return
        if self.world.chat_down:
            return self._json(503, {"error": "chat outage"})
        try:
            payload = json.loads(body)
        except ValueError:
            payload = {"raw": body.decode("utf-8", "replace")}
        with self.world.lock:
            self.world.received_alerts.append(payload)
        self._json(200, {"ok": True})

    def do_GET(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        path = url.path
        if self._fault(path):
            return
        with self.world.lock:
            if path in self.world.media:
                content_type, data = self.world.media[path]
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            if path.startswith("/2/"):
                return self._x(path, query)
            if path.startswith("/v"):
                return self._facebook(path, query)
            if path.startswith("/s/") or path.count("/") <= 2:
                return self._telegram(path, query)
        self._json(404, {"error": "not found"})

    # ---------------------------------------------------------------------------------------- t.me preview
    def _telegram(self, path: str, query: dict[str, str]) -> None:
        w = self.world
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["s"] and len(parts) == 2:
            if parts[1].lower() != w.tg_channel.lower():
                return self._html(302, "", {"Location": f"/{parts[1]}"})
            before = int(query["before"]) if query.get("before", "").isdigit() else None
            return self._html(200, fake_telegram.channel_page(w.tg_channel, w.tg_messages, self.base_url, before))
        if len(parts) == 2 and parts[1].isdigit() and query.get("embed") == "1":
            messages = w.tg_messages if parts[0].lower() == w.tg_channel.lower() else []
            return self._html(200, fake_telegram.embed_page(parts[0], messages, int(parts[1]), self.base_url))
        if len(parts) == 1:
            return self._html(200, fake_telegram.missing_channel_page(parts[0]))
        return self._html(404, "<html><body>Not found</body></html>")

    # ---------------------------------------------------------------------------------------- X API v2
    def _x_tweet(self, post: FakePost) -> tuple[dict[str, Any], dict[str, Any]]:
        key = f"3_{post.post_id}"
        tweet = {
            "id": post.post_id,
            "text": post.text,
            "created_at": _x_time(post.created_at),
            "author_id": X_USER_ID,
            "edit_history_tweet_ids": [post.post_id],
            "attachments": {"media_keys": [key]},
        }
        media = {"media_key": key, "type": "photo", "url": self.base_url + post.media_path, "width": 768, "height": 488}
        return tweet, media

    def _x(self, path: str, query: dict[str, str]) -> None:
        w = self.world
        user = {"id": X_USER_ID, "name": "Ministry of Defence", "username": w.username, "protected": False}
        if path == f"/2/users/by/username/{w.username}":
            return self._json(200, {"data": user})
        if path == "/2/users":
            return self._json(200, {"data": [user]})
        if path == f"/2/users/{X_USER_ID}/tweets":
            since = int(query.get("since_id") or 0)
            visible = [p for p in w.x_posts if not p.deleted and int(p.post_id) > since]
            visible.sort(key=lambda p: int(p.post_id), reverse=True)  # the API pages newest first
            if not visible:
                return self._json(200, {"meta": {"result_count": 0}})
            pairs = [self._x_tweet(p) for p in visible]
            return self._json(
                200,
                {
                    "data": [t for t, _ in pairs],
                    "includes": {"media": [m for _, m in pairs], "users": [user]},
                    "meta": {"result_count": len(pairs), "newest_id": visible[0].post_id, "oldest_id": visible[-1].post_id},
                },
            )
        if path == "/2/tweets":
            ids = [i for i in query.get("ids", "").split(",") if i]
            by_id = {p.post_id: p for p in w.x_posts}
            data, media, errors = [], [], []
            for tweet_id in ids:
                post = by_id.get(tweet_id)
                if post is None or post.deleted:
                    errors.append(
                        {
                            "value": tweet_id,
                            "detail": f"Could not find tweet with ids: [{tweet_id}].",
                            "title": "Not Found Error",
                            "resource_type": "tweet",
                            "parameter": "ids",
                            "resource_id": tweet_id,
                            "type": "https://api.twitter.com/2/problems/resource-not-found",
                        }
                    )
                    continue
                tweet, m = self._x_tweet(post)
                data.append(tweet)
                media.append(m)
            body: dict[str, Any] = {}
            if data:
                body["data"] = data
                body["includes"] = {"media": media, "users": [user]}
            if errors:
                body["errors"] = errors
            return self._json(200, body)
        self._json(404, {"title": "Not Found Error", "detail": f"no route {path}", "type": "about:blank", "status": 404})

    # ---------------------------------------------------------------------------------------- Graph API
    def _fb_post(self, post: FakePost) -> dict[str, Any]:
        full_id = f"{self.world.page_id}_{post.post_id}"
        image = {"height": 488, "width": 768, "src": self.base_url + post.media_path}
        return {
            "id": full_id,
            "message": post.text,
            "created_time": post.created_at.strftime("%Y-%m-%dT%H:%M:%S+0000"),
            "permalink_url": f"https://www.facebook.com/{self.world.page_id}/posts/{post.post_id}",
            "attachments": {
                "data": [
                    {
                        "media": {"image": image},
                        "media_type": "photo",
                        "type": "photo",
                        "url": f"https://www.facebook.com/photo.php?fbid={post.post_id}",
                        "target": {"id": post.post_id, "url": f"https://www.facebook.com/photo.php?fbid={post.post_id}"},
                    }
                ]
            },
        }

    def _facebook(self, path: str, query: dict[str, str]) -> None:
        w = self.world
        parts = [p for p in path.split("/") if p]
        node = parts[1] if len(parts) > 1 else ""
        edge = parts[2] if len(parts) > 2 else ""
        page = {"id": w.page_id, "name": "Ministry of Defence", "username": w.username}
        if node in (w.page_id, w.username) and edge in ("posts", "feed", "published_posts"):
            since = query.get("since")
            posts = [p for p in w.fb_posts if not p.deleted]
            if since and since.isdigit():
                posts = [p for p in posts if p.created_at.timestamp() >= int(since)]
            posts.sort(key=lambda p: p.created_at, reverse=True)
            return self._json(200, {"data": [self._fb_post(p) for p in posts]})
        if node in (w.page_id, w.username) and not edge:
            return self._json(200, page)
        by_full_id = {f"{w.page_id}_{p.post_id}": p for p in w.fb_posts}
        wanted = query["ids"].split(",") if not node and "ids" in query else [node] if node in by_full_id else []
        out = {}
        for full_id in wanted:
            post = by_full_id.get(full_id)
            if post is None or post.deleted:
                return self._json(400, _graph_missing(full_id))
            out[full_id] = self._fb_post(post)
        if wanted:
            return self._json(200, out if not node else out[node])
        return self._json(
            404, {"error": {"message": "Unknown path components", "type": "OAuthException", "code": 2500, "fbtrace_id": "x"}}
        )


def _graph_missing(object_id: str) -> dict[str, Any]:
    """Graph's answer for an object that is gone (or not visible to the token): code 100, subcode 33."""
    return {
        "error": {
            "message": f"Unsupported get request. Object with ID '{object_id}' does not exist, cannot be "
            "loaded due to missing permissions, or does not support this operation.",
            "type": "GraphMethodException",
            "code": 100,
            "error_subcode": 33,
            "fbtrace_id": "AfakeTraceId",
        }
    }


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-answer (a refused 100 MB body, a killed daemon) is not worth a traceback."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakePlatforms:
    """One loopback server answering as X, as the Graph API, as t.me, as the media CDN and as the chat webhook."""

    def __init__(self, world: FakeWorld):
        self.world = world
        handler = type("Handler", (_Handler,), {"world": world, "base_url": ""})
        self.server = _QuietServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        host, port = self.server.server_address[:2]
        self.host = f"{host}:{port}"
        self.base_url = f"http://{self.host}"
        handler.base_url = self.base_url
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-platforms", daemon=True
        )

    def __enter__(self) -> FakePlatforms:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
