"""RSS/Atom watcher against a fake government website (pytest-httpserver) serving real RSS 2.0 / Atom
documents and press-release pages, parsed by the real feedparser: seen-id cursor, media of every kind,
conditional GET, bozo feeds, every lookup status and every failure path (none of which may yield
``deleted``)."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from watchers.rss import RssConfig
from bot.errors import PlatformError, RateLimited
from bot.net.policy import system_resolver
from bot.models import MediaKind, StatusKind
from watchers import build_watcher
from watchers.rss import CURSOR_PREFIX, RssWatcher, id_hash, parse_cursor

FIXTURES = Path(__file__).parent / "fixtures" / "rss"
UA = "afterimage-test (+https://example.org/afterimage)"


class FakeSite:
    """A ministry website: feeds at /<name>.xml (with ETag support), pages whose status can be set."""

    def __init__(self, server: HTTPServer):
        self.server = server
        self.feeds: dict[str, tuple[bytes, str]] = {}
        self.feed_answers: dict[str, list[Response]] = {}
        self.pages: dict[str, int] = {}
        self.page_answers: dict[str, Response] = {}
        self.slow: set[str] = set()
        #: path -> a function answering any request to it (per-method answers, streamed bodies)
        self.handlers: dict[str, Callable[[Request], Response]] = {}
        self.requests: list[tuple[str, dict]] = []
        self.methods: list[tuple[str, str]] = []
        server.expect_request(re.compile(r"^/.*")).respond_with_handler(self.handle)

    @property
    def base(self) -> str:
        return self.server.url_for("").rstrip("/")

    def url(self, path: str) -> str:
        return self.base + path

    def set_feed(self, path: str, text_or_fixture: str, content_type: str = "application/rss+xml") -> str:
        fixture = FIXTURES / text_or_fixture
        text = fixture.read_text() if fixture.exists() else text_or_fixture
        self.feeds[path] = (text.replace("{BASE}", self.base).encode(), content_type)
        return self.url(path)

    def handle(self, request: Request) -> Response:
        path = request.path
        self.requests.append((path, dict(request.headers)))
        self.methods.append((request.method, path))
        if path in self.handlers:
            return self.handlers[path](request)
        if path in self.slow:
            time.sleep(1.5)
        if path in self.feed_answers and self.feed_answers[path]:
            return self.feed_answers[path].pop(0)
        if path in self.feeds:
            body, ctype = self.feeds[path]
            etag = f'"{hash(body) & 0xFFFFFFFF:x}"'
            if request.headers.get("If-None-Match") == etag:
                return Response(status=304, headers={"ETag": etag})
            return Response(body, 200, headers={"ETag": etag, "Last-Modified": "Tue, 24 Nov 2026 12:00:00 GMT"}, content_type=ctype)
        if path in self.page_answers:
            return self.page_answers[path]
        status = self.pages.get(path, 200)
        return Response(f"<html><body>page {path}</body></html>", status, content_type="text/html")


@pytest.fixture
def site(threaded_server) -> FakeSite:
    threaded_server.clear()
    yield FakeSite(threaded_server)
    threaded_server.clear()


def make_watcher(
    site: FakeSite,
    accounts: list[str] | None = None,
    trusted: list[str] | None = None,
    resolver: Callable[[str, int], list[str]] | None = None,
) -> RssWatcher:
    """A watcher as the daemon builds it; the fake site (on loopback) is trusted unless ``trusted`` says."""
    trusted = [f"{site.server.host}:{site.server.port}"] if trusted is None else trusted
    cfg = RssConfig(accounts=accounts or [site.url("/feed.xml")], timeout=0.5, user_agent=UA, trusted_hosts=trusted)
    watcher = build_watcher("rss", cfg) if resolver is None else RssWatcher(cfg, resolver=resolver)
    assert isinstance(watcher, RssWatcher)
    return watcher


# ----------------------------------------------------------------------------- poll


def test_first_poll_returns_every_item_oldest_first_with_media_of_every_kind(site):
    feed = site.set_feed("/feed.xml", "press.rss.xml")
    result = make_watcher(site).poll(feed, None)
    ids = [p.post_id for p in result.posts]
    assert ids == [site.url("/press/2026/11/vaccination"), "press-1002", "press-1003"]
    vacc, water, visit = result.posts
    assert visit.platform == "rss" and visit.account == feed
    assert visit.url == site.url("/press/2026/11/minister-visits-flood-area")
    assert visit.created_at == datetime(2026, 11, 24, 10, 30, tzinfo=timezone.utc)
    assert visit.text == "Minister visits flood area\n\nThe Minister visited the northern district today."
    # <img> in content, relative URLs resolved against the item link; tracking pixel skipped
    assert [(m.url, m.alt_text) for m in visit.media] == [
        (site.url("/media/2026/flood-visit.jpg"), "Minister at the bridge"),
        (site.url("/press/2026/11/images/second.png"), "Second photo"),
    ]
    # image enclosure (the PDF one ignored) and media:content video with its thumbnail as preview
    assert [(m.url, m.kind, m.preview_url) for m in water.media] == [
        (site.url("/media/2026/water.jpg"), MediaKind.PHOTO, None),
        (site.url("/media/2026/briefing.mp4"), MediaKind.VIDEO, site.url("/media/2026/briefing-thumb.jpg")),
    ]
    assert [(m.url, m.preview_url) for m in vacc.media] == [
        (site.url("/media/2026/vaccine.png"), site.url("/media/2026/vaccine-small.png"))
    ]
    assert visit.raw["id"] == "press-1003" and visit.raw["published"]  # feedparser's view, JSON-safe
    assert result.cursor.startswith(CURSOR_PREFIX)
    assert set(parse_cursor(result.cursor)) == {id_hash(i) for i in ids}
    assert site.requests[0][1]["User-Agent"] == UA


def test_atom_feed(site):
    feed = site.set_feed("/atom.xml", "press.atom.xml", "application/atom+xml")
    posts = make_watcher(site, [feed]).poll(feed, None).posts
    assert [p.post_id for p in posts] == [
        "urn:uuid:1225c695-cfb8-4ebb-aaaa-80da344efa6b",
        "urn:uuid:1225c695-cfb8-4ebb-aaaa-80da344efa6a",
    ]
    budget = posts[1]
    assert budget.created_at == datetime(2026, 11, 24, 11, 0, tzinfo=timezone.utc)  # published, not updated
    assert [m.url for m in budget.media] == [site.url("/news/budget-cover.jpg"), site.url("/news/charts/budget.png")]
    assert posts[0].text == "Cabinet meeting\n\nDecisions of the cabinet."


def test_only_unseen_items_are_new_even_when_the_feed_reorders_and_redates(site):
    feed = site.set_feed("/feed.xml", "press.rss.xml")
    w = make_watcher(site)
    first = w.poll(feed, None)
    again = w.poll(feed, first.cursor)
    assert again.posts == [] and again.cursor is None
    text = (FIXTURES / "press.rss.xml").read_text()
    items = text.split("<item>")
    # reorder the items, re-date one and add a new one with no date at the end
    reordered = items[0] + "<item>" + items[3].replace("</channel>", "").replace("</rss>", "")
    reordered += "<item>" + items[1].replace("Tue, 24 Nov 2026", "Wed, 25 Nov 2026") + "<item>" + items[2]
    reordered += "<item><title>New release</title><link>{BASE}/press/new</link><guid>press-1004</guid></item></channel></rss>"
    site.set_feed("/feed.xml", reordered)
    third = w.poll(feed, first.cursor)
    assert [p.post_id for p in third.posts] == ["press-1004"]
    assert set(parse_cursor(third.cursor)) == set(parse_cursor(first.cursor)) | {id_hash("press-1004")}


def test_items_without_dates_come_in_reverse_feed_order_and_are_marked(site):
    feed = site.set_feed("/feed.xml", "nodates.rss.xml")
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    posts = make_watcher(site).poll(feed, None).posts
    assert [p.text.split("\n")[0] for p in posts] == ["First", "Second", "Third"]
    assert all(p.created_at >= before for p in posts)
    assert all(p.raw["afterimage_first_seen"] is True for p in posts)
    assert posts[0].post_id == site.url("/regional/1")  # no guid: the link


def test_cursor_is_bounded(site):
    items = "".join(f"<item><title>{n}</title><link>{{BASE}}/p/{n}</link></item>" for n in range(30))
    feed = site.set_feed("/feed.xml", f"<rss version='2.0'><channel><title>t</title>{items}</channel></rss>")
    w = make_watcher(site)
    w.max_seen = 10
    cursor = w.poll(feed, None).cursor
    assert len(parse_cursor(cursor)) == 30  # never fewer than the feed holds
    smaller = "".join(f"<item><title>{n}</title><link>{{BASE}}/q/{n}</link></item>" for n in range(5))
    site.set_feed("/feed.xml", f"<rss version='2.0'><channel><title>t</title>{smaller}</channel></rss>")
    result = w.poll(feed, cursor)
    assert len(result.posts) == 5 and len(parse_cursor(result.cursor)) == 10


def test_bozo_feed_that_still_has_items_is_used(site):
    feed = site.set_feed("/feed.xml", "bozo.rss.xml")
    posts = make_watcher(site).poll(feed, None).posts
    assert [p.post_id for p in posts] == ["health-6", "health-7"]


def test_malformed_item_is_rejected_and_not_reported_again(site, caplog):
    feed = site.set_feed(
        "/feed.xml",
        "<rss version='2.0'><channel><title>t</title>"
        "<item><title>good</title><link>{BASE}/p/1</link></item>"
        "<item><title>no id, no link</title><description>orphan</description></item>"
        "</channel></rss>",
    )
    w = make_watcher(site)
    with caplog.at_level(logging.WARNING):
        result = w.poll(feed, None)
    assert [p.post_id for p in result.posts] == [site.url("/p/1")]
    assert len(result.rejected) == 1 and result.rejected[0].raw["title"] == "no id, no link"
    assert "neither id/guid nor link" in result.rejected[0].error
    assert "skipped a malformed item" in caplog.text
    assert w.poll(feed, result.cursor).rejected == []


def test_conditional_get_and_304(site):
    feed = site.set_feed("/feed.xml", "press.rss.xml")
    w = make_watcher(site)
    cursor = w.poll(feed, None).cursor
    result = w.poll(feed, cursor)
    assert site.requests[-1][1].get("If-None-Match")
    assert result.posts == [] and result.cursor is None
    # a cursor other than the one returned (the daemon lost a result): fetched in full again
    w.poll(feed, None)
    assert "If-None-Match" not in site.requests[-1][1]


@pytest.mark.parametrize(
    "answer, match",
    [
        (Response("oops", 500), "HTTP 500"),
        (Response("gone", 404), "HTTP 404"),
        (Response((FIXTURES / "not-a-feed.html").read_text(), 200, content_type="text/html"), "not an RSS/Atom feed"),
        (Response(b"\x00\x01\x02garbage{", 200, content_type="application/octet-stream"), "not an RSS/Atom feed"),
        (Response("<rss version='2.0'><channel><title>t</title><item><title>x", 200), None),
    ],
    ids=["500", "404", "html", "garbage", "truncated"],
)
def test_feed_failures_raise_platform_error(site, answer, match):
    feed = site.url("/feed.xml")
    site.feed_answers["/feed.xml"] = [answer]
    w = make_watcher(site)
    if match is None:  # a truncated feed that still yields its item is used (bozo)
        result = w.poll(feed, None)
        assert len(result.posts) + len(result.rejected) == 1
        return
    with pytest.raises(PlatformError, match=match) as info:
        w.poll(feed, None)
    assert not isinstance(info.value, RateLimited)


def test_feed_429_raises_rate_limited_with_reset(site):
    site.feed_answers["/feed.xml"] = [Response("slow down", 429, headers={"Retry-After": "120"})]
    before = datetime.now(timezone.utc)
    with pytest.raises(RateLimited) as info:
        make_watcher(site).poll(site.url("/feed.xml"), None)
    assert info.value.platform == "rss"
    assert before + timedelta(seconds=119) <= info.value.reset_at <= before + timedelta(seconds=125)


def test_feed_timeout_and_connection_error_raise_platform_error(site):
    site.set_feed("/feed.xml", "press.rss.xml")
    site.slow.add("/feed.xml")
    with pytest.raises(PlatformError, match="timed out"):
        make_watcher(site).poll(site.url("/feed.xml"), None)
    with pytest.raises(PlatformError, match="failed"):
        make_watcher(site).poll("http://127.0.0.1:9/feed.xml", None)


# ----------------------------------------------------------------------------- lookup


def test_lookup_alive_returns_the_feed_version_and_detects_edits(site):
    feed = site.set_feed("/feed.xml", "press.rss.xml")
    w = make_watcher(site)
    w.poll(feed, None)
    before = w.lookup(["press-1003"])["press-1003"]
    assert before.kind == StatusKind.ALIVE and before.post.text.startswith("Minister visits flood area")
    edited = (FIXTURES / "press.rss.xml").read_text().replace("visited the <b>northern", "visited the <b>southern")
    edited = edited.replace('<img src="images/second.png" alt="Second photo">', "")
    site.set_feed("/feed.xml", edited)
    after = w.lookup(["press-1003"])["press-1003"]
    assert after.kind == StatusKind.ALIVE and "southern district" in after.post.text
    assert len(after.post.media) == 1
    assert after.post.content_fingerprint() != before.post.content_fingerprint()
    # the item page itself was requested
    assert "/press/2026/11/minister-visits-flood-area" in [p for p, _ in site.requests]


@pytest.mark.parametrize("code", [404, 410])
def test_lookup_404_and_410_are_deleted(site, code):
    feed = site.set_feed("/feed.xml", "press.rss.xml")
    w = make_watcher(site)
    w.poll(feed, None)
    site.pages["/press/2026/11/water-supply"] = code
    answer = w.lookup(["press-1002", "press-1003"])
    assert answer["press-1002"].kind == StatusKind.DELETED
    assert answer["press-1003"].kind == StatusKind.ALIVE


@pytest.mark.parametrize("code", [500, 502, 503, 403, 401, 429, 451])
def test_lookup_other_errors_are_unknown(site, code):
    feed = site.set_feed("/feed.xml", "press.rss.xml")
    w = make_watcher(site)
    w.poll(feed, None)
    site.pages["/press/2026/11/water-supply"] = code
    status = w.lookup(["press-1002"])["press-1002"]
    assert status.kind == StatusKind.UNKNOWN and str(code) in status.error


def test_lookup_timeout_and_connection_errors_are_unknown(site):
    feed = site.set_feed("/feed.xml", "press.rss.xml")
    w = make_watcher(site)
    w.poll(feed, None)
    site.slow.add("/press/2026/11/water-supply")
    slow = w.lookup(["press-1002"])["press-1002"]
    assert slow.kind == StatusKind.UNKNOWN and "timed out" in slow.error
    refused = make_watcher(site, trusted=["127.0.0.1"]).lookup(["http://127.0.0.1:9/gone"])["http://127.0.0.1:9/gone"]
    assert refused.kind == StatusKind.UNKNOWN and "connection failed" in refused.error


def test_lookup_of_item_that_left_the_feed_uses_the_last_version_seen(site):
    feed = site.set_feed("/feed.xml", "press.rss.xml")
    w = make_watcher(site)
    w.poll(feed, None)
    site.set_feed("/feed.xml", "nodates.rss.xml")
    status = w.lookup(["press-1002"])["press-1002"]
    assert status.kind == StatusKind.ALIVE and status.post.text.startswith("Statement on water supply")


def test_lookup_after_restart_finds_the_item_in_configured_feeds(site):
    feed = site.set_feed("/feed.xml", "press.rss.xml")
    w = make_watcher(site, [feed])  # new process: nothing in memory
    status = w.lookup(["press-1002"])["press-1002"]
    assert status.kind == StatusKind.ALIVE and len(status.post.media) == 2
    site.pages["/press/2026/11/water-supply"] = 404
    assert make_watcher(site, [feed]).lookup(["press-1002"])["press-1002"].kind == StatusKind.DELETED


def test_lookup_after_restart_of_an_item_gone_from_the_feed(site):
    site.set_feed("/feed.xml", "nodates.rss.xml")
    w = make_watcher(site)
    # a URL id: its page is checked; alive, but with no version to compare (so never a false edit)
    url_id = site.url("/press/2026/11/vaccination")
    status = w.lookup([url_id, "press-1002"])
    assert status[url_id].kind == StatusKind.ALIVE and status[url_id].post is None
    # a guid that is not a URL and in no feed: no link to check
    assert status["press-1002"].kind == StatusKind.UNKNOWN


def test_lookup_when_the_feed_cannot_be_refreshed(site):
    feed = site.set_feed("/feed.xml", "press.rss.xml")
    w = make_watcher(site)
    w.poll(feed, None)
    site.feed_answers["/feed.xml"] = [Response("down", 503)]
    status = w.lookup(["press-1003"])["press-1003"]
    assert status.kind == StatusKind.ALIVE and status.post.text.startswith("Minister")
    site.feed_answers["/feed.xml"] = [Response("down", 503)]
    assert make_watcher(site).lookup(["press-1003"])["press-1003"].kind == StatusKind.UNKNOWN


def test_lookup_refetches_each_feed_at_most_once(site):
    feed = site.set_feed("/feed.xml", "press.rss.xml")
    w = make_watcher(site)
    w.poll(feed, None)
    site.requests.clear()
    answer = w.lookup(["press-1002", "press-1003", site.url("/press/2026/11/vaccination")])
    assert {s.kind for s in answer.values()} == {StatusKind.ALIVE}
    assert [p for p, _ in site.requests].count("/feed.xml") == 1


def test_plain_guid_stays_verbatim_and_relative_links_are_resolved_against_the_feed(site):
    feed = site.set_feed(
        "/feeds/press.xml",
        "<rss version='2.0'><channel><title>t</title>"
        "<item><title>x</title><link>/press/rel-1</link><guid>plain-1</guid>"
        "<description>&lt;img src='pic.jpg'&gt;</description></item></channel></rss>",
    )
    w = make_watcher(site, [feed])
    post = w.poll(feed, None).posts[0]
    assert post.post_id == "plain-1"
    assert post.url == site.url("/press/rel-1")
    assert [m.url for m in post.media] == [site.url("/press/pic.jpg")]
    site.pages["/press/rel-1"] = 410
    assert make_watcher(site, [feed]).lookup(["plain-1"])["plain-1"].kind == StatusKind.DELETED


def test_a_body_naming_a_local_file_is_not_read(site, tmp_path):
    local = tmp_path / "secret-feed.xml"
    local.write_text("<rss version='2.0'><channel><title>local</title><item><title>x</title><link>http://l/1</link></item></channel></rss>")
    site.feed_answers["/feed.xml"] = [Response(str(local), 200, content_type="text/plain")]
    with pytest.raises(PlatformError, match="not an RSS/Atom feed"):
        make_watcher(site).poll(site.url("/feed.xml"), None)


def test_oversized_feed_is_refused(site):
    feed = site.set_feed("/feed.xml", "press.rss.xml")
    w = make_watcher(site)
    w.max_feed_bytes = 1000
    with pytest.raises(PlatformError, match="larger than"):
        w.poll(feed, None)


# ----------------------------------------------------------------------------- lookup: address policy
# Item links come from the feed, i.e. from a third party: they must never make the daemon request an
# internal address (SSRF). The fake site is on 127.0.0.1, so "internal" is reachable: a request that
# slipped through would show in its log.

INTRANET = "intranet.example.test"  # a name that resolves to the fake site's loopback address
PRESS = "press.example.test"  # a trusted name for the fake site


def _resolver(host: str, port: int) -> list[str]:
    if host in (INTRANET, PRESS):
        return ["127.0.0.1"]
    return system_resolver(host, port)


def _single_item_feed(site: FakeSite, link: str) -> str:
    return site.set_feed(
        "/feed.xml",
        f"<rss version='2.0'><channel><title>t</title><item><title>x</title><link>{link}</link>"
        "<guid>press-9</guid></item></channel></rss>",
    )


def _internal_requests(site: FakeSite) -> list[str]:
    return [path for path, _ in site.requests if path.startswith("/internal")]


@pytest.mark.parametrize(
    "link, error",
    [
        ("http://127.0.0.1:{port}/internal/admin", "127.0.0.1 resolves to a non-public address (127.0.0.1)"),
        ("http://10.0.0.1/internal/admin", "10.0.0.1 resolves to a non-public address (10.0.0.1)"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 resolves to a non-public address"),
        ("http://[::1]:{port}/internal/admin", "::1 resolves to a non-public address (::1)"),
        (f"http://{INTRANET}:{{port}}/internal/admin", f"{INTRANET} resolves to a non-public address (127.0.0.1)"),
        ("file:///etc/passwd", "unsupported scheme 'file'"),
        ("ftp://127.0.0.1:{port}/internal/admin", "unsupported scheme 'ftp'"),
    ],
    ids=["loopback", "private", "metadata", "ipv6-loopback", "name-to-private", "file", "ftp"],
)
def test_lookup_refuses_links_to_non_public_addresses_without_requesting_them(site, link, error):
    feed = _single_item_feed(site, link.format(port=site.server.port))
    w = make_watcher(site, trusted=[], resolver=_resolver)  # the feed itself is configured: fetched as is
    w.poll(feed, None)
    status = w.lookup(["press-9"])["press-9"]
    assert status.kind == StatusKind.UNKNOWN
    assert "refused by the address policy" in status.error and error in status.error
    assert _internal_requests(site) == []


@pytest.mark.parametrize(
    "target, error",
    [
        ("http://127.0.0.1:{port}/internal/admin", "(127.0.0.1)"),
        ("http://localhost:{port}/internal/admin", "localhost resolves to a non-public address"),
        ("http://169.254.169.254/latest/meta-data/iam/", "(169.254.169.254)"),
        ("gopher://127.0.0.1:{port}/internal/admin", "unsupported scheme 'gopher'"),
    ],
    ids=["loopback", "localhost", "metadata", "gopher"],
)
def test_lookup_refuses_a_redirect_to_a_non_public_address(site, target, error):
    port = site.server.port
    feed = _single_item_feed(site, f"http://{PRESS}:{port}/press/moved")
    site.page_answers["/press/moved"] = Response(status=302, headers={"Location": target.format(port=port)})
    w = make_watcher(site, trusted=[PRESS], resolver=_resolver)  # trust is by the name written, not the address
    w.poll(feed, None)
    status = w.lookup(["press-9"])["press-9"]
    assert status.kind == StatusKind.UNKNOWN and error in status.error
    assert "/press/moved" in [path for path, _ in site.requests]
    assert _internal_requests(site) == []


def test_lookup_follows_redirects_within_the_policy(site):
    port = site.server.port
    feed = _single_item_feed(site, f"http://{PRESS}:{port}/press/moved")
    site.page_answers["/press/moved"] = Response(status=301, headers={"Location": "/press/new-home"})
    site.pages["/press/new-home"] = 410
    w = make_watcher(site, trusted=[PRESS], resolver=_resolver)
    w.poll(feed, None)
    assert w.lookup(["press-9"])["press-9"].kind == StatusKind.DELETED
    assert ("HEAD", "/press/new-home") in site.methods


def test_lookup_asks_with_head_only(site):
    feed = site.set_feed("/feed.xml", "press.rss.xml")
    w = make_watcher(site)
    w.poll(feed, None)
    assert w.lookup(["press-1002"])["press-1002"].kind == StatusKind.ALIVE
    assert [m for m, path in site.methods if path == "/press/2026/11/water-supply"] == ["HEAD"]


def _no_head(status: int, get_answer: Callable[[], Response]) -> Callable[[Request], Response]:
    def answer(request: Request) -> Response:
        return Response("no HEAD here", status) if request.method == "HEAD" else get_answer()

    return answer


@pytest.mark.parametrize("head_status", [405, 501])
@pytest.mark.parametrize("get_status, kind", [(200, StatusKind.ALIVE), (404, StatusKind.DELETED), (410, StatusKind.DELETED)])
def test_lookup_falls_back_to_get_when_head_is_not_implemented(site, head_status, get_status, kind):
    feed = site.set_feed("/feed.xml", "press.rss.xml")
    site.handlers["/press/2026/11/water-supply"] = _no_head(head_status, lambda: Response("page", get_status))
    w = make_watcher(site)
    w.poll(feed, None)
    assert w.lookup(["press-1002"])["press-1002"].kind == kind
    assert [m for m, path in site.methods if path == "/press/2026/11/water-supply"] == ["HEAD", "GET"]


def test_lookup_by_get_does_not_download_the_body(site):
    total = 200 * 1024 * 1024
    chunk = b"x" * 65536
    sent: list[int] = []
    finished = threading.Event()

    def body() -> Iterator[bytes]:
        for _ in range(total // len(chunk)):
            sent.append(len(chunk))
            yield chunk
        finished.set()

    feed = site.set_feed("/feed.xml", "press.rss.xml")
    site.handlers["/press/2026/11/water-supply"] = _no_head(405, lambda: Response(body(), 200, content_type="text/html"))
    w = make_watcher(site)
    w.poll(feed, None)
    started = time.monotonic()
    assert w.lookup(["press-1002"])["press-1002"].kind == StatusKind.ALIVE
    assert time.monotonic() - started < 2
    time.sleep(0.3)  # let the server notice the closed connection
    assert not finished.is_set() and sum(sent) < total // 4


def test_a_feed_redirect_to_a_non_public_address_is_refused(site):
    site.feed_answers["/feed.xml"] = [
        Response(status=302, headers={"Location": f"http://127.0.0.1:{site.server.port}/internal/feed.xml"})
    ]
    site.set_feed("/internal/feed.xml", "press.rss.xml")
    with pytest.raises(PlatformError, match=r"non-public address \(127\.0\.0\.1\)"):
        make_watcher(site, trusted=[]).poll(site.url("/feed.xml"), None)
    assert _internal_requests(site) == []


def test_a_feed_redirect_within_the_policy_is_followed_with_its_conditional_get(site):
    feed = site.url("/old-feed.xml")
    site.set_feed("/feed.xml", "press.rss.xml")
    site.handlers["/old-feed.xml"] = lambda request: Response(status=301, headers={"Location": "/feed.xml"})
    w = make_watcher(site, [feed])
    first = w.poll(feed, None)
    assert len(first.posts) == 3
    again = w.poll(feed, first.cursor)
    assert again.posts == [] and again.cursor is None
    assert site.requests[-1][0] == "/feed.xml" and site.requests[-1][1].get("If-None-Match")
    assert site.requests[-1][1]["User-Agent"] == UA


def test_a_slow_feed_redirect_target_is_cut_at_the_deadline(site):
    def drip(request: Request) -> Response:
        def body() -> Iterator[bytes]:
            yield b"<rss version='2.0'><channel><title>t</title>"
            for _ in range(40):  # 12 s in all, each piece well within the 0.5 s read timeout
                time.sleep(0.3)
                yield b"<!-- . -->"

        return Response(body(), 200, content_type="application/rss+xml")

    site.handlers["/feed.xml"] = lambda request: Response(status=302, headers={"Location": "/slow-feed.xml"})
    site.handlers["/slow-feed.xml"] = drip
    started = time.monotonic()
    with pytest.raises(PlatformError, match=r"redirect .* exceeded 2\.5s"):
        make_watcher(site).poll(site.url("/feed.xml"), None)
    assert time.monotonic() - started < 5  # 5 x timeout (0.5 s), not the 12 s the server would take


# ----------------------------------------------------------------------------- lifetime


def test_items_a_poll_still_lists_are_reported_as_sightings_also_on_304(site):
    feed = site.set_feed("/feed.xml", "press.rss.xml")
    w = make_watcher(site)
    first = w.poll(feed, None)
    assert first.still_listed == []  # every item is new
    ids = {p.post_id for p in first.posts}
    again = w.poll(feed, first.cursor)
    assert site.requests[-1][1].get("If-None-Match")  # a 304: the feed lists what it listed
    assert again.posts == [] and set(again.still_listed) == ids
    w.poll(feed, None)  # full answer again
    assert set(w.poll(feed, first.cursor).still_listed) == ids


def test_rss_deletion_lifetime_runs_to_the_last_poll_that_listed_the_item(site, tmp_path):
    """A press release first seen 4 s after publication, listed by two later polls, then gone: its lifetime is
    proven up to the last poll that listed it, not to the first sighting."""
    from bot.archive import Archive
    from bot.config import MatchingConfig, MediaConfig, RecheckConfig
    from bot.deletions.tracker import RecheckTracker
    from bot.matching.matcher import Matcher
    from bot.media.fetch import MediaFetcher
    from bot.pipeline import Pipeline
    from bot.store.sqlite import SqliteStore

    published = datetime(2026, 11, 24, 10, 0, tzinfo=timezone.utc)
    feed = site.set_feed(
        "/feed.xml",
        "<rss version='2.0'><channel><title>t</title><item><title>Statement</title>"
        f"<link>{site.url('/press/statement')}</link><guid>press-77</guid>"
        "<pubDate>Tue, 24 Nov 2026 10:00:00 GMT</pubDate></item></channel></rss>",
    )
    now = [published + timedelta(seconds=4)]
    store = SqliteStore(str(tmp_path / "state.db"))
    archive = Archive(tmp_path / "archive")
    tracker = RecheckTracker(store, {"rss": RecheckConfig()})
    fetcher = MediaFetcher(MediaConfig())
    pipeline = Pipeline(store, archive, fetcher, Matcher(store, archive, MatchingConfig()), tracker, clock=lambda: now[0])
    w = make_watcher(site)
    try:
        cursor = None
        for seconds in (4, 60, 100):  # three polls list the item (the later two answered 304)
            now[0] = published + timedelta(seconds=seconds)
            result = w.poll(feed, cursor)
            pipeline.ingest("rss", feed, result)
            cursor = result.cursor or cursor
        tracker.schedule_new(store.get_post("rss", "press-77").post, published + timedelta(seconds=4))
        site.pages["/press/statement"] = 404
        events = []
        for minutes_after in (2, 3, 4):
            events += tracker.run("rss", w, published + timedelta(minutes=minutes_after)).events
        [deleted] = [e for e in events if e.kind == "deleted"]
        assert deleted.details["last_seen_alive"] == "2026-11-24T10:01:40Z"
        assert deleted.lifetime_seconds(published, store.get_post("rss", "press-77")) == 100
        alert = store.get_alert(f"deleted:rss:press-77:{deleted.id}")
        assert alert.payload["lifetime_seconds"] == 100
    finally:
        fetcher.close()
        store.close()


# ----------------------------------------------------------------------------- fixes from real recorded feeds


def test_unusable_media_content_still_yields_the_thumbnail(site):
    """A YouTube channel feed: media:content is the (flash) player, media:thumbnail the only picture."""
    feed = site.set_feed("/yt.xml", (FIXTURES.parent / "youtube" / "videos.xml").read_text(), "application/atom+xml")
    result = make_watcher(site, accounts=[feed]).poll(feed, None)
    by_id = {p.post_id: p for p in result.posts}
    media = by_id["yt:video:Vid000000B2"].media
    assert [(m.kind, m.url) for m in media] == [(MediaKind.PHOTO, site.url("/vi/Vid000000B2/hqdefault.jpg"))]


def test_noise_images_are_not_attachments_and_two_sizes_are_one(site):
    feed = site.set_feed("/noise.xml", "noise.rss.xml")
    [post] = make_watcher(site, accounts=[feed]).poll(feed, None).posts
    assert [m.url for m in post.media] == [
        site.url("/wp-content/uploads/2026/02/hospital-visit-1024x683.jpg"),  # the largest of the two sizes
        site.url("/wp-content/uploads/2026/02/ward-tour.jpg"),
    ]
    assert post.media[0].alt_text == "Hospital visit"
