"""Bluesky watcher against a fake public AppView (pytest-httpserver) answering the XRPC lexicons
app.bsky.feed.getAuthorFeed / getPosts and app.bsky.actor.getProfile, driven through atproto's real XRPC
client: cursor paging, embeds of every kind, account states, and every failure path (none of which may
yield ``deleted``). The same server plays the PLC directory and the author's PDS
(com.atproto.repo.getRecord, plain HTTP), which tell a deleted post from one moderation hid."""

from __future__ import annotations

import copy
import json
import logging
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from watchers.bluesky import BlueskyConfig
from bot.errors import PlatformError, RateLimited
from bot.models import MediaKind, StatusKind
from watchers import build_watcher
from watchers._bluesky_pds import MAX_JSON_BYTES
from watchers.bluesky import BlueskyWatcher, parse_cursor

FIXTURES = Path(__file__).parent / "fixtures" / "bluesky"
DID = "did:plc:govagency123456789abcde"
HANDLE = "agency.gov.example"
T0 = datetime(2026, 11, 24, 8, 0, tzinfo=timezone.utc)


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def stamp(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_post(n: int, fixture: str = "post_images.json", *, minutes: float | None = None, **changes) -> dict:
    """Post number n, created n minutes after T0 (indexed a second later)."""
    post = load(fixture)
    rkey = f"3lbpost{n:06d}"
    post["uri"] = f"at://{DID}/app.bsky.feed.post/{rkey}"
    post["cid"] = f"bafyreipost{n:06d}"
    created = T0 + timedelta(minutes=n if minutes is None else minutes)
    post["record"]["createdAt"] = stamp(created)
    post["record"]["text"] = f"Post number {n}"
    post["indexedAt"] = stamp(created + timedelta(seconds=1))
    post.update(changes)
    return post


def uri(n: int) -> str:
    return f"at://{DID}/app.bsky.feed.post/3lbpost{n:06d}"


def error(status: int, name: str, message: str) -> Response:
    return Response(json.dumps({"error": name, "message": message}), status, content_type="application/json")


class FakeAppView:
    """The public AppView: the author feed ordered by sortAt (min of createdAt and indexedAt) with a
    timestamp cursor, getPosts that silently omits posts it will not serve, getProfile with the account
    state errors. ``force`` queues raw answers per method; ``slow`` delays a method past the timeout.

    Also the PLC directory (``GET /<did>``: a DID document naming this server as the PDS), did:web
    (``/.well-known/did.json``) and the PDS's getRecord: a post in ``hidden`` (deleted) is RecordNotFound
    there, one in ``taken_down`` (hidden by moderation) is still served. ``force`` and ``slow`` take
    ``plc`` and ``did.json`` for the identity answers; identity requests are recorded by path."""

    def __init__(self, server: HTTPServer):
        self.server = server
        self.feed: list[dict] = []  # FeedViewPost items
        self.hidden: set[str] = set()  # URIs deleted: neither getPosts nor the PDS return them
        self.taken_down: set[str] = set()  # URIs getPosts omits while the PDS still has the record
        self.profile: Response | None = None
        self.force: dict[str, list[Response]] = {}
        self.slow: set[str] = set()
        self.requests: list[tuple[str, dict]] = []
        server.expect_request(re.compile(r"^/(xrpc/|did:|\.well-known/did\.json$)")).respond_with_handler(self.handle)

    @property
    def base(self) -> str:
        return self.server.url_for("").rstrip("/")

    @property
    def host(self) -> str:
        """host:port of the fake, as trusted in the watcher config (it is on a loopback address)."""
        return f"localhost:{self.server.port}"

    def did_document(self, did: str, endpoint: str | None = None) -> dict:
        return {
            "@context": ["https://www.w3.org/ns/did/v1"],
            "id": did,
            "alsoKnownAs": [f"at://{HANDLE}"],
            "service": [
                {"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": endpoint or self.base}
            ],
        }

    def identity(self, request: Request) -> Response:
        """PLC directory and did:web answers (DID documents)."""
        key = "did.json" if request.path.endswith("did.json") else "plc"
        self.requests.append((request.path, {}))
        if key in self.slow:
            time.sleep(1.5)
        if self.force.get(key):
            return self.force[key].pop(0)
        did = f"did:web:{self.host.replace(':', '%3A')}" if key == "did.json" else request.path[1:]
        return Response(json.dumps(self.did_document(did)), 200, content_type="application/json")

    def get_record(self, args: dict) -> Response:
        """The PDS: the record if the post exists (even when taken down), else RecordNotFound."""
        (repo,), (collection,), (rkey,) = args["repo"], args["collection"], args["rkey"]
        at_uri = f"at://{repo}/{collection}/{rkey}"
        by_uri = {i["post"]["uri"]: i["post"] for i in self.feed}
        if at_uri in by_uri and at_uri not in self.hidden:
            post = by_uri[at_uri]
            body = {"uri": at_uri, "cid": post["cid"], "value": post["record"]}
            return Response(json.dumps(body), 200, content_type="application/json")
        return error(400, "RecordNotFound", f"Could not locate record: {at_uri}")

    def add(self, *posts: dict, repost_at: datetime | None = None) -> None:
        for p in posts:
            item = {"post": p}
            if repost_at is not None:
                item["reason"] = {
                    "$type": "app.bsky.feed.defs#reasonRepost",
                    "by": {"did": DID, "handle": HANDLE},
                    "indexedAt": stamp(repost_at),
                }
            self.feed.append(item)

    @staticmethod
    def sort_at(item: dict) -> str:
        if "reason" in item:
            return item["reason"]["indexedAt"]
        post = item["post"]
        # the real AppView always has a sortAt; for posts built broken on purpose, put them at the top
        times = [t for t in (post.get("indexedAt"), post["record"].get("createdAt")) if str(t).startswith("20")]
        return min(times) if times else "9999"

    def handle(self, request: Request) -> Response:
        if not request.path.startswith("/xrpc/"):
            return self.identity(request)
        nsid = request.path.removeprefix("/xrpc/")
        args = request.args.to_dict(flat=False)
        self.requests.append((nsid, args))
        if nsid in self.slow:
            time.sleep(1.5)
        if self.force.get(nsid):
            return self.force[nsid].pop(0)
        if nsid == "app.bsky.feed.getAuthorFeed":
            assert args["actor"] in ([HANDLE], [DID])
            assert args.get("includePins") == ["false"]
            limit = int(args.get("limit", ["50"])[0])
            items = sorted(self.feed, key=self.sort_at, reverse=True)
            if "cursor" in args:
                items = [i for i in items if self.sort_at(i) < args["cursor"][0]]
            page = items[:limit]
            body = {"feed": page}
            if len(items) > limit:
                body["cursor"] = self.sort_at(page[-1])
            return Response(json.dumps(body), 200, content_type="application/json")
        if nsid == "app.bsky.feed.getPosts":
            uris = args.get("uris", [])
            assert 1 <= len(uris) <= 25
            by_uri = {i["post"]["uri"]: i["post"] for i in self.feed}
            posts = [by_uri[u] for u in uris if u in by_uri and u not in self.hidden | self.taken_down]
            return Response(json.dumps({"posts": posts}), 200, content_type="application/json")
        if nsid == "app.bsky.actor.getProfile":
            if self.profile is not None:
                return self.profile
            return Response(json.dumps(load("profile.json")), 200, content_type="application/json")
        if nsid == "com.atproto.repo.getRecord":
            return self.get_record(args)
        return error(501, "MethodNotImplemented", "Method Not Implemented")


@pytest.fixture
def appview(threaded_server) -> FakeAppView:
    threaded_server.clear()
    yield FakeAppView(threaded_server)
    threaded_server.clear()


def make_watcher(appview: FakeAppView) -> BlueskyWatcher:
    cfg = BlueskyConfig(
        api_base=appview.base,
        plc_directory=appview.base,
        trusted_hosts=[appview.host],
        accounts=[HANDLE],
        timeout=0.5,
    )
    watcher = build_watcher("bluesky", cfg)
    assert isinstance(watcher, BlueskyWatcher)
    return watcher


def feed_requests(appview: FakeAppView) -> list[dict]:
    return [a for n, a in appview.requests if n == "app.bsky.feed.getAuthorFeed"]


# ----------------------------------------------------------------------------- poll


def test_first_poll_normalizes_embeds_of_every_kind_oldest_first(appview):
    appview.add(
        make_post(1),
        make_post(2, "post_video.json"),
        make_post(3, "post_record_with_media.json"),
        make_post(4, "post_gif.json"),
        make_post(5, embed=None, record={"$type": "app.bsky.feed.post", "text": "Text only", "createdAt": stamp(T0 + timedelta(minutes=5))}),
    )
    appview.feed[-1]["post"].pop("embed")
    result = make_watcher(appview).poll(f"@{HANDLE}", None)
    assert [p.post_id for p in result.posts] == [uri(n) for n in range(1, 6)]
    images, video, quote, gif, text_only = result.posts
    assert images.platform == "bluesky" and images.account == f"@{HANDLE}" and images.author_id == DID
    assert images.url == f"https://bsky.app/profile/{HANDLE}/post/3lbpost000001"
    assert images.text == "Post number 1"
    assert images.created_at == T0 + timedelta(minutes=1)
    assert [(m.kind, m.alt_text, m.media_id) for m in images.media] == [
        (MediaKind.PHOTO, "Flooded road", "bafkreiimageone1111111111111111111111111111111111111111"),
        (MediaKind.PHOTO, None, "bafkreiimagetwo2222222222222222222222222222222222222222"),
    ]
    assert images.media[0].url.startswith("https://cdn.bsky.app/img/feed_fullsize/")
    assert images.media[0].preview_url.startswith("https://cdn.bsky.app/img/feed_thumbnail/")
    (v,) = video.media
    assert v.kind == MediaKind.VIDEO and v.url.endswith("playlist.m3u8") and v.preview_url.endswith("thumbnail.jpg")
    assert v.media_id == "bafkreivideoblob333333333333333333333333333333333333333" and v.alt_text == "Briefing video"
    # recordWithMedia: its own map, not the quoted post's image
    assert [(m.alt_text, m.media_id) for m in quote.media] == [
        ("Map of closures", "bafkreimapimage44444444444444444444444444444444444444444")
    ]
    (g,) = gif.media
    assert g.kind == MediaKind.GIF and g.url.startswith("https://media.tenor.com/")
    assert text_only.media == ()
    assert images.raw == appview.feed[0]["post"]
    assert feed_requests(appview)[0]["filter"] == ["posts_with_replies"]
    since, seen = parse_cursor(result.cursor)
    assert since == T0 + timedelta(minutes=5)
    assert uri(5) in seen


def test_video_with_gif_presentation_is_a_gif(appview):
    post = make_post(1, "post_video.json")
    post["embed"]["presentation"] = "gif"
    appview.add(post)
    assert make_watcher(appview).poll(HANDLE, None).posts[0].media[0].kind == MediaKind.GIF


def test_poll_with_cursor_pages_until_the_cursor_and_skips_seen_and_reposts(appview):
    appview.add(*[make_post(n, embed=None) for n in range(1, 251)])
    w = make_watcher(appview)
    w.page_limit = 40
    cursor = w.poll(HANDLE, None).cursor  # newest 50
    assert parse_cursor(cursor)[0] == T0 + timedelta(minutes=250)
    appview.add(*[make_post(n, embed=None) for n in range(251, 351)])
    appview.add(make_post(999, embed=None, minutes=-500), repost_at=T0 + timedelta(minutes=300, seconds=30))
    result = w.poll(HANDLE, cursor)
    assert [p.post_id for p in result.posts] == [uri(n) for n in range(251, 351)]
    reqs = feed_requests(appview)[1:]
    assert len(reqs) == 3 and "cursor" not in reqs[0] and all("cursor" in r for r in reqs[1:])
    assert parse_cursor(result.cursor)[0] == T0 + timedelta(minutes=350)
    again = w.poll(HANDLE, result.cursor)
    assert again.posts == [] and again.cursor is None


def test_late_indexed_post_within_grace_is_still_caught(appview):
    appview.add(make_post(10, embed=None))
    w = make_watcher(appview)
    cursor = w.poll(HANDLE, None).cursor
    late = make_post(8, embed=None)  # created before the newest post, indexed only now
    late["indexedAt"] = stamp(T0 + timedelta(minutes=12))
    appview.add(late)
    result = w.poll(HANDLE, cursor)
    assert [p.post_id for p in result.posts] == [uri(8)]
    assert w.poll(HANDLE, result.cursor).posts == []


def test_malformed_items_are_rejected_and_the_rest_kept(appview, caplog):
    no_uri = make_post(2)
    del no_uri["uri"]
    bad_text = make_post(3)
    bad_text["record"]["text"] = {"not": "text"}
    bad_embed = make_post(4)
    bad_embed["embed"]["images"] = "nope"
    bad_image_url = make_post(5)
    bad_image_url["embed"]["images"][0]["fullsize"] = 42
    appview.add(make_post(1), no_uri, bad_text, bad_embed, bad_image_url, make_post(6))
    with caplog.at_level(logging.WARNING):
        result = make_watcher(appview).poll(HANDLE, None)
    assert [p.post_id for p in result.posts] == [uri(1), uri(6)]
    assert len(result.rejected) == 4
    assert "missing field 'uri'" in result.rejected[0].error
    assert result.rejected[1].raw["post"]["uri"] == uri(3)
    assert "skipped a malformed feed item" in caplog.text


def test_non_object_items_are_rejected(appview):
    appview.add(make_post(1))
    body = {"feed": [appview.feed[0], "garbage", {"post": "not an object"}]}
    appview.force["app.bsky.feed.getAuthorFeed"] = [Response(json.dumps(body), 200, content_type="application/json")]
    result = make_watcher(appview).poll(HANDLE, None)
    assert len(result.posts) == 1 and len(result.rejected) == 2


def test_poll_429_raises_rate_limited_with_reset(appview):
    reset = int(datetime(2026, 11, 24, 20, 0, tzinfo=timezone.utc).timestamp())
    appview.force["app.bsky.feed.getAuthorFeed"] = [
        Response(
            json.dumps({"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}),
            429,
            headers={"RateLimit-Limit": "3000", "RateLimit-Remaining": "0", "RateLimit-Reset": str(reset), "RateLimit-Policy": "3000;w=300"},
            content_type="application/json",
        )
    ]
    with pytest.raises(RateLimited) as info:
        make_watcher(appview).poll(HANDLE, None)
    assert info.value.platform == "bluesky"
    assert info.value.reset_at == datetime(2026, 11, 24, 20, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "answer, match",
    [
        (error(500, "InternalServerError", "Internal Server Error"), "500"),
        (Response("<html>502</html>", 502, content_type="text/html"), "failed"),
        (Response('{"feed": [{"post": {"uri": "at://', 200, content_type="application/json"), "failed"),
        (Response(json.dumps({"feed": {"not": "a list"}}), 200, content_type="application/json"), "malformed"),
        (Response(json.dumps(["feed"]), 200, content_type="application/json"), "malformed"),
        (error(400, "AccountTakedown", "Account has been suspended"), "AccountTakedown"),
        (error(400, "InvalidRequest", "Profile not found"), "Profile not found"),
    ],
    ids=["500", "502-html", "truncated", "feed-not-list", "not-object", "takedown", "not-found"],
)
def test_poll_failures_raise_platform_error(appview, answer, match):
    appview.force["app.bsky.feed.getAuthorFeed"] = [answer]
    with pytest.raises(PlatformError, match=match) as info:
        make_watcher(appview).poll(HANDLE, None)
    assert not isinstance(info.value, RateLimited)


def test_poll_timeout_raises_platform_error(appview):
    appview.slow.add("app.bsky.feed.getAuthorFeed")
    with pytest.raises(PlatformError, match="InvokeTimeoutError"):
        make_watcher(appview).poll(HANDLE, None)


# ----------------------------------------------------------------------------- lookup


def test_lookup_alive_and_edited(appview):
    appview.add(make_post(1), make_post(2))
    w = make_watcher(appview)
    w.poll(HANDLE, None)
    before = w.lookup([uri(1)])[uri(1)]
    assert before.kind == StatusKind.ALIVE and before.post.account == HANDLE
    edited = copy.deepcopy(appview.feed[0]["post"])  # a record rewritten in place (putRecord)
    edited["record"]["text"] = "Post number 1 (corrected)"
    edited["embed"]["images"] = edited["embed"]["images"][:1]
    edited["record"]["embed"]["images"] = edited["record"]["embed"]["images"][:1]
    edited["cid"] = "bafyreinewcid"
    appview.feed[0]["post"] = edited
    after = w.lookup([uri(1), uri(2)])
    assert after[uri(1)].kind == StatusKind.ALIVE and after[uri(1)].post.text.endswith("(corrected)")
    assert after[uri(1)].post.content_fingerprint() != before.post.content_fingerprint()
    assert after[uri(2)].kind == StatusKind.ALIVE


def test_lookup_missing_post_with_healthy_author_is_deleted(appview):
    appview.add(make_post(1), make_post(2))
    appview.hidden.add(uri(1))
    answer = make_watcher(appview).lookup([uri(1), uri(2)])
    assert answer[uri(1)].kind == StatusKind.DELETED and answer[uri(2)].kind == StatusKind.ALIVE
    assert answer[uri(1)].error == "confirmed at the author's PDS"
    assert ("app.bsky.actor.getProfile", {"actor": [DID]}) in appview.requests
    assert (f"/{DID}", {}) in appview.requests  # the PLC directory
    record = {"repo": [DID], "collection": ["app.bsky.feed.post"], "rkey": ["3lbpost000001"]}
    assert ("com.atproto.repo.getRecord", record) in appview.requests


@pytest.mark.parametrize(
    "profile, kind",
    [
        (error(400, "AccountTakedown", "Account has been suspended"), StatusKind.AUTHOR_SUSPENDED),
        (error(400, "AccountDeactivated", "Account is deactivated"), StatusKind.AUTHOR_DELETED),
        (error(400, "InvalidRequest", "Profile not found"), StatusKind.AUTHOR_DELETED),
        (error(400, "InvalidRequest", "Error: actor must be a valid did or a handle"), StatusKind.UNKNOWN),
        (error(500, "InternalServerError", "Internal Server Error"), StatusKind.UNKNOWN),
        (error(429, "RateLimitExceeded", "Rate Limit Exceeded"), StatusKind.UNKNOWN),
        (Response('{"did": "did:plc:gov', 200, content_type="application/json"), StatusKind.UNKNOWN),
        (Response(json.dumps({"handle": "x"}), 200, content_type="application/json"), StatusKind.UNKNOWN),
    ],
    ids=["takedown", "deactivated", "not-found", "other-400", "500", "429", "truncated", "no-did"],
)
def test_lookup_missing_post_is_told_apart_from_account_states(appview, profile, kind):
    appview.add(make_post(1), make_post(2))
    appview.hidden.update({uri(1), uri(2)})
    appview.profile = profile
    answer = make_watcher(appview).lookup([uri(1), uri(2)])
    assert answer[uri(1)].kind == kind and answer[uri(2)].kind == kind
    # one profile look-up per author per call
    assert [n for n, _ in appview.requests].count("app.bsky.actor.getProfile") == 1


@pytest.mark.parametrize(
    "answer",
    [
        error(429, "RateLimitExceeded", "Rate Limit Exceeded"),
        error(500, "InternalServerError", "Internal Server Error"),
        Response("bad gateway", 502),
        Response('{"posts": [', 200, content_type="application/json"),
        Response(json.dumps({"posts": "none"}), 200, content_type="application/json"),
        Response(json.dumps({}), 200, content_type="application/json"),
        Response(json.dumps({"posts": ["garbage"]}), 200, content_type="application/json"),
        Response("not json at all", 200, content_type="text/plain"),
    ],
    ids=["429", "500", "502", "truncated", "posts-not-list", "missing-posts", "unreadable-item", "not-json"],
)
def test_lookup_failures_are_unknown_never_deleted(appview, answer):
    appview.add(make_post(1))
    appview.force["app.bsky.feed.getPosts"] = [answer]
    status = make_watcher(appview).lookup([uri(1), uri(2)])
    assert {s.kind for s in status.values()} == {StatusKind.UNKNOWN}


def test_lookup_malformed_returned_post_is_unknown(appview):
    broken = make_post(1)
    broken["record"] = "gone"
    appview.add(broken)
    assert make_watcher(appview).lookup([uri(1)])[uri(1)].kind == StatusKind.UNKNOWN


def test_lookup_timeout_is_unknown(appview):
    appview.add(make_post(1))
    appview.slow.add("app.bsky.feed.getPosts")
    assert make_watcher(appview).lookup([uri(1)])[uri(1)].kind == StatusKind.UNKNOWN


def test_lookup_batches_25_and_rejects_non_post_uris(appview):
    appview.add(*[make_post(n, embed=None) for n in range(1, 61)])
    bogus = [
        "https://bsky.app/profile/x/post/y",
        f"at://{DID}/app.bsky.feed.like/3abc",
        f"at://{HANDLE}/app.bsky.feed.post/3lbpost000001",  # handle-based: the answer would never match it
    ]
    answer = make_watcher(appview).lookup([uri(n) for n in range(1, 61)] + bogus)
    assert all(answer[uri(n)].kind == StatusKind.ALIVE for n in range(1, 61))
    assert all(answer[b].kind == StatusKind.UNKNOWN for b in bogus)
    sizes = [len(a["uris"]) for n, a in appview.requests if n == "app.bsky.feed.getPosts"]
    assert sizes == [25, 25, 10]


def test_rejected_items_are_not_rejected_again_by_the_next_poll(appview):
    appview.add(make_post(1))
    w = make_watcher(appview)
    cursor = w.poll(HANDLE, None).cursor
    no_time = make_post(2)
    del no_time["indexedAt"]
    no_time["record"]["createdAt"] = "sometime"
    no_uri = make_post(3)
    del no_uri["uri"]
    appview.add(no_time, no_uri, make_post(4))
    first = w.poll(HANDLE, cursor)
    assert [p.post_id for p in first.posts] == [uri(4)] and len(first.rejected) == 2
    second = w.poll(HANDLE, first.cursor)
    assert second.posts == [] and second.rejected == []


def test_post_without_indexed_at_uses_created_at_for_the_cursor(appview):
    post = make_post(1)
    del post["indexedAt"]
    appview.add(post)
    w = make_watcher(appview)
    result = w.poll(HANDLE, None)
    assert len(result.posts) == 1 and parse_cursor(result.cursor)[0] == T0 + timedelta(minutes=1)
    assert w.poll(HANDLE, result.cursor).posts == []


# ----------------------------------------------------------------------------- lookup: the author's PDS decides


def pds_requests(appview: FakeAppView) -> list[dict]:
    return [a for n, a in appview.requests if n == "com.atproto.repo.getRecord"]


def plc_requests(appview: FakeAppView) -> list[str]:
    return [n for n, _ in appview.requests if n.startswith("/did:")]


def test_post_hidden_by_moderation_but_on_the_pds_is_withheld_not_deleted(appview):
    appview.add(make_post(1), make_post(2))
    appview.taken_down.add(uri(1))
    appview.hidden.add(uri(2))
    answer = make_watcher(appview).lookup([uri(1), uri(2)])
    assert answer[uri(1)].kind == StatusKind.WITHHELD
    assert answer[uri(1)].error == "hidden by the Bluesky AppView (moderation); the record still exists on the author's PDS"
    assert answer[uri(2)].kind == StatusKind.DELETED and answer[uri(2)].error == "confirmed at the author's PDS"
    # two missing posts of one author: one DID resolution, one getRecord each
    assert plc_requests(appview) == [f"/{DID}"] and len(pds_requests(appview)) == 2


@pytest.mark.parametrize(
    "record, kind",
    [
        (error(400, "RepoTakendown", f"Repo has been takendown: {DID}"), StatusKind.AUTHOR_SUSPENDED),
        (error(400, "RepoSuspended", f"Repo has been suspended: {DID}"), StatusKind.AUTHOR_SUSPENDED),
        (error(400, "RepoDeactivated", f"Repo has been deactivated: {DID}"), StatusKind.AUTHOR_DELETED),
        (error(400, "RepoNotFound", f"Could not find repo: {DID}"), StatusKind.AUTHOR_DELETED),
    ],
    ids=["takendown", "suspended", "deactivated", "not-found"],
)
def test_account_level_errors_of_the_pds_are_author_states(appview, record, kind):
    appview.add(make_post(1))
    appview.taken_down.add(uri(1))
    appview.force["com.atproto.repo.getRecord"] = [record]
    status = make_watcher(appview).lookup([uri(1)])[uri(1)]
    assert status.kind == kind and "at the author's PDS" in status.error


def test_did_web_author_is_resolved_at_its_well_known_document(appview):
    web_did = f"did:web:{appview.host.replace(':', '%3A')}"
    post = make_post(1)
    post["uri"] = f"at://{web_did}/app.bsky.feed.post/3lbpost000001"
    post["author"]["did"] = web_did
    appview.add(post)
    appview.taken_down.add(post["uri"])
    profile = dict(load("profile.json"), did=web_did)
    appview.profile = Response(json.dumps(profile), 200, content_type="application/json")
    status = make_watcher(appview).lookup([post["uri"]])[post["uri"]]
    assert status.kind == StatusKind.WITHHELD
    assert ("/.well-known/did.json", {}) in appview.requests and plc_requests(appview) == []


def document(did: str = DID, **changes) -> Response:
    doc = {"id": did, "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": "x"}]}
    doc.update(changes)
    return Response(json.dumps(doc), 200, content_type="application/json")


@pytest.mark.parametrize(
    "forced, reason",
    [
        ({"plc": [Response("<html>oops</html>", 200, content_type="text/html")]}, "malformed DID document"),
        ({"plc": [document("did:plc:someoneelse")]}, "malformed DID document"),
        ({"plc": [document(service=[{"id": "#atproto_labeler", "type": "AtprotoLabeler", "serviceEndpoint": "x"}])]},
         "names no PDS"),
        ({"plc": [document(service=[{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer"}])]},
         "no usable serviceEndpoint"),
        ({"plc": [Response(json.dumps({"message": "DID not registered"}), 404, content_type="application/json")]},
         "HTTP 404"),
        ({"plc": [Response("x" * (MAX_JSON_BYTES + 1), 200, content_type="application/json")]}, "over the limit"),
        ({"plc": [Response("[" * 100_000, 200, content_type="application/json")]}, "malformed DID document"),
        ({"com.atproto.repo.getRecord": [error(500, "InternalServerError", "Internal Server Error")]}, "HTTP 500"),
        ({"com.atproto.repo.getRecord": [Response("{}", 200, content_type="application/json")]}, "malformed getRecord"),
        ({"com.atproto.repo.getRecord": [error(400, "InvalidRequest", "Invalid rkey")]}, "HTTP 400 InvalidRequest"),
    ],
    ids=["not-json", "other-did", "no-pds", "no-endpoint", "plc-404", "too-large", "too-deep", "pds-500", "no-value",
         "other-400"],
)
def test_unusable_identity_or_pds_falls_back_to_deleted_saying_it_was_not_confirmed(appview, forced, reason):
    appview.add(make_post(1))
    appview.taken_down.add(uri(1))
    appview.force.update(forced)
    status = make_watcher(appview).lookup([uri(1)])[uri(1)]
    assert status.kind == StatusKind.DELETED
    assert status.error.startswith("not confirmed at the author's PDS: ") and reason in status.error


@pytest.mark.parametrize("slow", ["plc", "com.atproto.repo.getRecord"])
def test_slow_directory_or_pds_falls_back_to_deleted_saying_it_timed_out(appview, slow):
    appview.add(make_post(1), make_post(2))
    appview.taken_down.update({uri(1), uri(2)})
    appview.slow.add(slow)
    started = time.monotonic()
    answer = make_watcher(appview).lookup([uri(1), uri(2)])
    for status in answer.values():
        assert status.kind == StatusKind.DELETED and "not confirmed" in status.error and "timeout" in status.error
    # the read timeout (0.5 s) ended the wait, not the slow answer; the slow server was asked once, not per post
    assert time.monotonic() - started < 1.4
    assert len(plc_requests(appview)) == 1 and len(pds_requests(appview)) == (slow != "plc")


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_pds_on_a_private_address_is_never_requested(appview, scheme):
    appview.add(make_post(1), make_post(2))
    appview.taken_down.update({uri(1), uri(2)})
    private = appview.did_document(DID, f"{scheme}://127.0.0.1:{appview.server.port}")
    appview.force["plc"] = [Response(json.dumps(private), 200, content_type="application/json")]
    answer = make_watcher(appview).lookup([uri(1), uri(2)])
    reason = "private_address" if scheme == "https" else "not_https"
    for n in (1, 2):
        assert answer[uri(n)].kind == StatusKind.DELETED
        assert "not confirmed at the author's PDS" in answer[uri(n)].error and reason in answer[uri(n)].error
    assert pds_requests(appview) == [] and len(plc_requests(appview)) == 1


def test_pds_redirect_to_a_private_address_is_refused(appview):
    appview.add(make_post(1))
    appview.taken_down.add(uri(1))
    location = f"https://127.0.0.1:{appview.server.port}/xrpc/com.atproto.repo.getRecord"
    appview.force["com.atproto.repo.getRecord"] = [Response("", 302, headers={"Location": location})]
    status = make_watcher(appview).lookup([uri(1)])[uri(1)]
    assert status.kind == StatusKind.DELETED and "private_address" in status.error
    assert len(pds_requests(appview)) == 1  # the redirect was not followed


def test_unresolvable_author_is_resolved_once_per_lookup(appview):
    appview.add(make_post(1), make_post(2), make_post(3))
    appview.taken_down.update({uri(1), uri(2), uri(3)})
    appview.force["plc"] = [Response("nope", 404)]
    w = make_watcher(appview)
    answer = w.lookup([uri(1), uri(2), uri(3)])
    assert {s.kind for s in answer.values()} == {StatusKind.DELETED}
    assert len(plc_requests(appview)) == 1 and pds_requests(appview) == []
    assert {s.kind for s in w.lookup([uri(1)]).values()} == {StatusKind.WITHHELD}  # a new run resolves again
