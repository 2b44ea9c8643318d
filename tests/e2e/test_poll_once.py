"""End to end: ``afterimage poll --once`` against one local server speaking all six platforms.

One pytest-httpserver answers as X API v2, the Graph API, a Mastodon instance, the Bluesky AppView (XRPC),
Telegram's public preview site (t.me/s/<channel>) and a ministry website with an RSS and an Atom feed, with the wire-format fixtures of the watcher tests
(tests/watchers/fixtures/, read as they are; only the CDN hosts of their media URLs are pointed at the
local server). The same server serves every picture and video those payloads reference, so the whole
pipeline runs: watchers through their real client libraries, the SQLite store, the archive, hashing and
matching, console-only alerts.
"""

from __future__ import annotations

import io
import json
import logging
import re
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from bot.archive import Archive
from bot.cli import main
from bot.demo.fake_telegram import channel_page
from bot.store import open_store
from tests.images import encode, scene, scene_video
from tests.media.videos import hls_from_video

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parents[1] / "watchers" / "fixtures"

X_TOKEN = "x-bearer-e2e-SECRET-4242"
FB_TOKEN = "EAAB-e2e-page-token-SECRET-4242"
MASTODON_TOKEN = "mastodon-e2e-SECRET-4242"
SECRETS = (X_TOKEN, FB_TOKEN, MASTODON_TOKEN)
ENV = {"E2E_X_TOKEN": X_TOKEN, "E2E_FB_TOKEN": FB_TOKEN, "E2E_MASTODON_TOKEN": MASTODON_TOKEN}

#: media bodies by path, generated once per session (the path names them, whatever the server's port)
_MEDIA: dict[str, tuple[str, bytes]] = {}
#: the Bluesky video as video.bsky.app serves it, by path below the master playlist's folder
_HLS: dict[str, bytes] = {}

X_USER_ID = "2244994945"
FB_PAGE = "111"
MASTODON_ACCOUNT_ID = "109302"
BSKY_HANDLE = "agency.gov.example"

#: hosts of the media URLs in the fixtures, served by the local server under /cdn/<host>/...
MEDIA_HOSTS = (
    "pbs.twimg.com",
    "video.twimg.com",
    "scontent.xx.fbcdn.net",
    "video.xx.fbcdn.net",
    "external.xx.fbcdn.net",
    "media.giphy.com",
    "files.social.example.gov",
    "cdn.bsky.app",
    "video.bsky.app",
    "tracker.example.net",
    "cdn4.telesco.pe",
)
TG_CHANNEL = "ministry_example"

def json_response(body: object, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


@dataclass
class FakeInternet:
    """X, Graph, Mastodon, Bluesky, t.me, a press website and their CDNs, on one local server."""

    server: HTTPServer
    base: str
    #: platform -> HTTP status to answer its API requests with instead of the fixtures (500: server error)
    failing: dict[str, int] = field(default_factory=dict)
    requests: list[tuple[str, dict]] = field(default_factory=list)

    def fixture(self, platform: str, name: str) -> str:
        """A fixture's text with its media hosts and ``{BASE}`` pointed at this server."""
        text = (FIXTURES / platform / name).read_text()
        for host in MEDIA_HOSTS:
            text = text.replace(f"https://{host}/", f"{self.base}/cdn/{host}/")
        return text.replace("{BASE}", self.base)

    def fixture_json(self, platform: str, name: str) -> object:
        return json.loads(self.fixture(platform, name))

    # ------------------------------------------------------------------ dispatch
    def handle(self, request: Request) -> Response:
        path = request.path
        self.requests.append((path, request.args.to_dict()))
        for prefix, platform, handler in (
            ("/2/", "x", self.x),
            ("/v24.0/", "facebook", self.facebook),
            ("/api/v1/", "mastodon", self.mastodon),
            ("/xrpc/", "bluesky", self.bluesky),
        ):
            if path.startswith(prefix):
                if platform in self.failing:
                    return self.failure(platform, self.failing[platform])
                return handler(request)
        if path == f"/s/{TG_CHANNEL}":
            if "telegram" in self.failing:
                return Response("<html><body>Bad Gateway</body></html>", self.failing["telegram"], content_type="text/html")
            return self.telegram(request)
        if path in ("/feed.xml", "/atom.xml"):
            if "rss" in self.failing:
                return Response("<html>Internal Server Error</html>", self.failing["rss"], content_type="text/html")
            name = "press.rss.xml" if path == "/feed.xml" else "press.atom.xml"
            kind = "application/rss+xml" if path == "/feed.xml" else "application/atom+xml"
            return Response(self.fixture("rss", name), 200, content_type=kind)
        return self.media(path)

    def failure(self, platform: str, status: int) -> Response:
        if platform == "x":
            return json_response(self.fixture_json("x", "server_error.json"), status)
        if platform == "facebook":
            return json_response(self.fixture_json("facebook", "error_unknown.json"), status)
        return json_response({"error": "Internal server error"}, status)

    # ------------------------------------------------------------------ X API v2
    def x(self, request: Request) -> Response:
        assert request.headers.get("Authorization") == f"Bearer {X_TOKEN}"
        if request.path == "/2/users/by/username/MinExample":
            return json_response(self.fixture_json("x", "user_by_username.json"))
        if request.path == f"/2/users/{X_USER_ID}/tweets":
            # the timeline as X serves it; since_id filtering is left to the watcher (it must not trust it)
            if request.args.get("pagination_token") == "7140dibdnow9c7btw3z2vwioavpvutgzrzm9icis4ndix":
                return json_response(self.fixture_json("x", "timeline_page2.json"))
            return json_response(self.fixture_json("x", "timeline_page1.json"))
        return json_response(self.fixture_json("x", "user_not_found.json"), 404)

    # ------------------------------------------------------------------ Graph API
    def facebook(self, request: Request) -> Response:
        assert request.args.get("access_token") == FB_TOKEN
        if request.path == f"/v24.0/{FB_PAGE}/posts":
            if request.args.get("after") == "QVFIUl9hZnRlcg":
                return json_response(self.fixture_json("facebook", "page_posts_2.json"))
            return json_response(self.fixture_json("facebook", "page_posts_1.json"))
        return json_response(self.fixture_json("facebook", "error_does_not_exist.json"), 400)

    # ------------------------------------------------------------------ Mastodon
    def mastodon(self, request: Request) -> Response:
        assert request.headers.get("Authorization") == f"Bearer {MASTODON_TOKEN}"
        if request.path == "/api/v1/accounts/lookup" and request.args.get("acct") == "govinfo":
            return json_response(self.fixture_json("mastodon", "account.json"))
        if request.path == f"/api/v1/accounts/{MASTODON_ACCOUNT_ID}/statuses":
            status = self.fixture_json("mastodon", "status.json")
            min_id = request.args.get("min_id") or request.args.get("since_id")
            newer = [s for s in [status] if not min_id or int(s["id"]) > int(min_id)]
            return json_response(newer)
        return json_response({"error": "Record not found"}, 404)

    # ------------------------------------------------------------------ Bluesky AppView
    def bluesky(self, request: Request) -> Response:
        if request.path == "/xrpc/app.bsky.feed.getAuthorFeed":
            assert request.args.get("actor") == BSKY_HANDLE
            feed = [{"post": self.fixture_json("bluesky", name)} for name in ("post_video.json", "post_images.json")]
            return json_response({"feed": feed})  # newest first, one page (no cursor)
        if request.path == "/xrpc/app.bsky.actor.getProfile":
            return json_response(self.fixture_json("bluesky", "profile.json"))
        return json_response({"error": "MethodNotImplemented", "message": "Method Not Implemented"}, 501)

    # ------------------------------------------------------------------ t.me preview
    def telegram(self, request: Request) -> Response:
        """The newest page is the real-format fixture; the page before it is the channel's start (empty)."""
        if request.args.get("before"):
            return Response(channel_page(TG_CHANNEL, [], self.base), 200, content_type="text/html; charset=utf-8")
        return Response(self.fixture("telegram", "channel-page.html"), 200, content_type="text/html; charset=utf-8")

    # ------------------------------------------------------------------ CDNs and the press website
    def media(self, path: str) -> Response:
        """A distinct picture or video for every media path; an HLS video for HLS paths; 404 for anything else."""
        lower = path.lower()
        if lower.endswith((".m3u8", ".ts")):
            return self.hls(path)
        if path not in _MEDIA:
            seed = zlib.crc32(path.encode()) % 100_000
            if lower.endswith(".mp4"):
                _MEDIA[path] = ("video/mp4", scene_video([seed], seconds_each=1, fps=2, size=(160, 96)))
            elif lower.endswith(".png"):
                _MEDIA[path] = ("image/png", encode(scene(seed, 320, 200), "PNG"))
            elif lower.endswith(".gif"):
                buf = io.BytesIO()
                scene(seed, 320, 200).convert("P").save(buf, "GIF")
                _MEDIA[path] = ("image/gif", buf.getvalue())
            elif re.search(r"(\.jpe?g|@jpeg)$", lower):
                _MEDIA[path] = ("image/jpeg", encode(scene(seed, 480, 300), "JPEG", quality=85))
            else:
                return Response("not found", 404, content_type="text/plain")
        content_type, body = _MEDIA[path]
        return Response(body, 200, content_type=content_type)

    @staticmethod
    def hls(path: str) -> Response:
        """A master playlist (``.../playlist.m3u8``) over a 360p media playlist of 1-second MPEG-TS segments."""
        if not _HLS:
            video = scene_video([7, 8, 9], seconds_each=1, fps=4, size=(160, 96))
            with tempfile.TemporaryDirectory() as folder:
                files = hls_from_video(video, Path(folder))
            _HLS.update({f"360p/{name}": body for name, body in files.items()})
            _HLS["playlist.m3u8"] = b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=300000,RESOLUTION=160x96\n360p/index.m3u8\n"
        for name, body in _HLS.items():
            if path.endswith(f"/{name}"):
                kind = "application/vnd.apple.mpegurl" if name.endswith(".m3u8") else "video/mp2t"
                return Response(body, 200, content_type=kind)
        return Response("not found", 404, content_type="text/plain")


@pytest.fixture
def internet(httpserver: HTTPServer) -> FakeInternet:
    fake = FakeInternet(httpserver, httpserver.url_for("/").rstrip("/"))
    httpserver.expect_request(re.compile(r"^/.*")).respond_with_handler(fake.handle)
    return fake


@pytest.fixture
def config(tmp_path: Path, internet: FakeInternet) -> Path:
    host = internet.server.host
    path = tmp_path / "afterimage.yaml"
    path.write_text(
        f"""
data_dir: {tmp_path / "data"}
store: sqlite:///{tmp_path / "state.db"}
log_level: info
watchers:
  x:
    bearer_token: ${{E2E_X_TOKEN}}
    api_base: {internet.base}
    accounts: ["MinExample"]
    timeout: 5s
  facebook:
    access_token: ${{E2E_FB_TOKEN}}
    api_base: {internet.base}
    accounts: ["{FB_PAGE}"]
    timeout: 5s
  mastodon:
    access_token: ${{E2E_MASTODON_TOKEN}}
    api_base: {internet.base}
    accounts: ["govinfo"]
    timeout: 5s
  bluesky:
    api_base: {internet.base}
    accounts: ["{BSKY_HANDLE}"]
    timeout: 5s
  telegram:
    api_base: {internet.base}
    accounts: ["@{TG_CHANNEL}"]
    timeout: 5s
  rss:
    accounts: ["{internet.base}/feed.xml", "{internet.base}/atom.xml"]
    user_agent: "afterimage-e2e (+https://example.org/afterimage)"
    timeout: 5s
media:
  trusted_hosts: ["{host}"]
  retries: 0
  timeout: 10s
alerts:
  targets: []
  console: true
"""
    )
    return path


def poll_once(config: Path) -> tuple[int, dict[str, str], str]:
    """Run ``afterimage poll --once``; returns the exit code, the line of each account, and all output."""
    result = CliRunner().invoke(main, ["poll", "--once", "-c", str(config)], env=ENV, catch_exceptions=False)
    output = result.output + result.stderr
    lines: dict[str, str] = {}
    for line in result.stdout.splitlines():
        m = re.match(r"^(\w+/\S+): (.*)$", line)
        if m:
            lines[m.group(1)] = m.group(2)
    return result.exit_code, lines, output


LINE = re.compile(
    r"^(?P<new>\d+) new, (?P<edited>\d+) edited, (?P<unchanged>\d+) unchanged post\(s\), (?P<media>\d+) attachment\(s\)"
    r"(?:, (?P<rejected>\d+) malformed item\(s\) kept)?$"
)


def counts(line: str) -> dict[str, int]:
    m = LINE.match(line)
    assert m, f"not a poll summary: {line!r}"
    return {k: int(v or 0) for k, v in m.groupdict().items()}


#: the first poll of each account: (new posts, attachments, malformed items kept). The fixtures' malformed
#: items: X 3 broken tweets + 1 media key missing from includes; Graph 2 broken posts.
FIRST_POLL = {
    "x/MinExample": (5, 6, 4),
    f"facebook/{FB_PAGE}": (6, 5, 2),  # the shared link's preview card is not an attachment
    "mastodon/govinfo": (1, 3, 0),  # image, video, gifv (the audio attachment has nothing to hash)
    f"bluesky/{BSKY_HANDLE}": (2, 3, 0),  # two images, one video
    "rss/{base}/feed.xml": (3, 5, 0),  # <img> x2, enclosure + media:content video, media:content (no pdf)
    "rss/{base}/atom.xml": (2, 2, 0),  # enclosure link, <img> in the summary
    # album of two photos and a video, one photo, a too-big video's thumbnail; a message without a date
    f"telegram/{TG_CHANNEL}": (3, 5, 1),
}
CURSORS = {
    ("x", "MinExample"): "1800000000000000040",
    ("facebook", FB_PAGE): "2024-06-10T12:50:00Z",
    ("mastodon", "govinfo"): "113500000000000100",
    ("telegram", TG_CHANNEL): "5131",
}


def expected_first(internet: FakeInternet) -> dict[str, tuple[int, int, int]]:
    return {k.format(base=internet.base): v for k, v in FIRST_POLL.items()}


def assert_first_poll_lines(lines: dict[str, str], expected: dict[str, tuple[int, int, int]]) -> None:
    for account, (new, media, rejected) in expected.items():
        assert account in lines, f"no line for {account}: {lines}"
        assert counts(lines[account]) == {"new": new, "edited": 0, "unchanged": 0, "media": media, "rejected": rejected}, (
            account,
            lines[account],
        )


def assert_stored_with_media(tmp_path: Path, platforms: dict[str, int]) -> None:
    """Every post of ``platforms`` (platform -> expected post count) is stored, processed, and each of its
    attachments is linked to an archived file whose content matches its sha256 (a Bluesky video: its HLS
    segments joined into one MPEG-TS file)."""
    archive = Archive(tmp_path / "data" / "archive")
    with open_store(f"sqlite:///{tmp_path / 'state.db'}") as store:
        assert store.pending_posts() == []
        for platform, expected in platforms.items():
            stored = list(store.iter_posts(platform))
            assert len(stored) == expected, platform
            archived = 0
            for sp in stored:
                assert sp.processed_version == sp.version, sp.post.key
                links = sorted(store.get_post_media(platform, sp.post.post_id), key=lambda link: link.index)
                assert [link.index for link in links] == list(range(len(sp.post.media))), sp.post.key
                for link, media in zip(links, sp.post.media):
                    assert link.url == media.url
                    assert link.sha256 and link.error is None, link
                    record = store.get_media(link.sha256)
                    assert record is not None, link
                    if media.url.endswith(".m3u8"):
                        assert record.content_type == "video/mp2t" and record.archive_path.endswith(".ts"), record
                    data = archive.get(record.archive_path)  # verifies the content against the hash
                    assert len(data) == record.size
                    archived += 1
            assert archived >= 1 or expected == 0, f"{platform}: no archived media"


def test_poll_once_all_five_platforms_then_cursors_hold(tmp_path, internet, config, caplog):
    caplog.set_level(logging.INFO)
    code, lines, output = poll_once(config)

    assert code == 0, output
    expected = expected_first(internet)
    assert set(lines) == set(expected), output  # one line per account, nothing else account-shaped
    assert_first_poll_lines(lines, expected)
    assert "alerts waiting in the outbox: 0" in output

    assert_stored_with_media(tmp_path, {"x": 5, "facebook": 6, "mastodon": 1, "bluesky": 2, "rss": 5, "telegram": 3})
    with open_store(f"sqlite:///{tmp_path / 'state.db'}") as store:
        for (platform, account), cursor in CURSORS.items():
            assert store.get_cursor(platform, account) == cursor
        assert store.get_cursor("bluesky", BSKY_HANDLE)
        assert store.get_cursor("rss", f"{internet.base}/feed.xml")
        assert store.get_cursor("rss", f"{internet.base}/atom.xml")
        assert len(store.list_rejected()) == 7
        states = {(s.platform, s.account): s for s in store.get_account_states()}
        assert all(states[(a.split("/", 1)[0], a.split("/", 1)[1])].last_poll_at for a in expected)
        assert all(not s.last_error for s in states.values())

    # the second run: the cursors are sent, and nothing is new
    internet.requests.clear()
    code2, lines2, output2 = poll_once(config)
    assert code2 == 0, output2
    assert set(lines2) == set(expected), output2
    for account, line in lines2.items():
        assert counts(line)["new"] == 0 and counts(line)["edited"] == 0 and counts(line)["media"] == 0, (account, line)
    sent: dict[str, dict] = {}
    for path, args in internet.requests:
        sent.setdefault(path, args)  # the first request of each kind carries the cursor
    assert sent[f"/2/users/{X_USER_ID}/tweets"]["since_id"] == CURSORS[("x", "MinExample")]
    assert sent[f"/v24.0/{FB_PAGE}/posts"]["since"] == "1718023800"  # 2024-06-10T12:50:00Z
    assert sent[f"/api/v1/accounts/{MASTODON_ACCOUNT_ID}/statuses"]["min_id"] == CURSORS[("mastodon", "govinfo")]
    assert not any(path.startswith(("/cdn/", "/media/")) for path, _ in internet.requests)
    assert_stored_with_media(tmp_path, {"x": 5, "facebook": 6, "mastodon": 1, "bluesky": 2, "rss": 5, "telegram": 3})

    for secret in SECRETS:
        assert secret not in output and secret not in output2
        assert secret not in caplog.text


# each watcher's own 5xx handling is covered in tests/watchers/; here: a few platforms, the new one included
@pytest.mark.parametrize("platform", ["x", "rss", "telegram"])
def test_poll_once_one_platform_failing_does_not_stop_the_others(tmp_path, internet, config, caplog, platform):
    internet.failing[platform] = 500
    code, lines, output = poll_once(config)

    assert code == 1, output
    expected = expected_first(internet)
    assert set(lines) == set(expected), output
    failed = {a for a in expected if a.startswith(f"{platform}/")}
    for account in failed:
        assert lines[account].startswith("error: "), lines[account]
        assert re.search(r"500|Internal Server Error", lines[account]), lines[account]
    assert_first_poll_lines(lines, {a: v for a, v in expected.items() if a not in failed})

    posts = {"x": 5, "facebook": 6, "mastodon": 1, "bluesky": 2, "rss": 5, "telegram": 3}
    assert_stored_with_media(tmp_path, {p: (0 if p == platform else n) for p, n in posts.items()})
    with open_store(f"sqlite:///{tmp_path / 'state.db'}") as store:
        states = {(s.platform, s.account): s for s in store.get_account_states()}
        for account in failed:
            key = tuple(account.split("/", 1))
            assert store.get_cursor(*key) is None
            assert states[key].last_error and states[key].consecutive_errors == 1
    for secret in SECRETS:
        assert secret not in output and secret not in caplog.text
