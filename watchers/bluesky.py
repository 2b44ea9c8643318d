"""Bluesky watcher (atproto's XRPC client) against the public AppView (``api_base``, no login needed).

- ``poll``: ``app.bsky.feed.getAuthorFeed`` (filter ``posts_with_replies``, pins excluded), paged with the
  feed's own cursor, newest first. Reposts are skipped (the account did not author them). Items are read raw
  (``invoke_query``) and normalized one by one, so one malformed item is rejected without losing its page;
  the generated response models would refuse the whole page.
- Poll cursor: ``bsky1:<time>|<uri>,<uri>...`` where ``<time>`` is the newest feed sort time seen (the
  AppView's ``sortAt`` = the earlier of the record's ``createdAt`` and ``indexedAt``) and the URIs are the
  posts seen within :attr:`BlueskyWatcher.grace` of it. A poll pages down until items are older than
  ``time - grace`` (late-indexed posts are still caught) and skips the URIs listed. Without a cursor only the
  newest page is read. Posts come oldest first. Post id: the ``at://`` URI; URL:
  ``https://bsky.app/profile/<handle>/post/<rkey>``.
- Media: ``app.bsky.embed.images#view`` (fullsize, thumb, alt), ``app.bsky.embed.gallery#view``,
  ``app.bsky.embed.video#view`` (HLS ``playlist`` as url, which :mod:`bot.media.hls` turns into one video
  file, ``thumbnail`` as preview; ``presentation: gif`` -> GIF), ``app.bsky.embed.recordWithMedia#view`` (its ``media``), and external embeds whose link is a
  .gif (how Bluesky posts GIFs). Link-card thumbnails and quoted posts' media are not this post's media.
  ``media_id`` is the blob CID from the record (stable, unlike CDN URLs).
- ``lookup``: ``app.bsky.feed.getPosts`` 25 URIs per request. Returned -> alive. A URI missing from the
  answer is only a deletion candidate: ``app.bsky.actor.getProfile`` on its author DID first:
  ``AccountTakedown`` -> author_suspended; ``AccountDeactivated`` -> author_deleted (reversible, said in
  the error); ``InvalidRequest: Profile not found`` -> author_deleted; any other error -> unknown. With the
  profile fine, the AppView may still hide a post that moderation took down, so the author's PDS decides
  (:mod:`watchers._bluesky_pds`: DID resolved at ``plc_directory`` or did:web, then
  ``com.atproto.repo.getRecord``): record there -> withheld; ``RecordNotFound`` -> deleted (confirmed);
  ``RepoTakendown`` / ``RepoDeactivated`` / ``RepoNotFound`` -> the author state; PDS or DID document
  unusable (down, slow, malformed, private address) -> deleted, the detail saying it was not confirmed and
  why. Failed ``getPosts`` (429, 5xx, timeout, bad JSON) -> unknown for the whole batch.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any, ClassVar

from atproto_client import Client, models
from pydantic import Field
from atproto_client.exceptions import RateLimitExceededError, RequestErrorBase
from atproto_client.models.common import XrpcError
from atproto_client.request import Request

from bot.errors import PlatformError, RateLimited
from bot.config_base import WatcherConfig, api_root
from bot.net.client import GuardedClient
from bot.net.policy import Resolver, system_resolver
from bot.models import Media, MediaKind, Post, PostStatus, RejectedItem, StatusKind, canonical_json, iso, parse_iso
from watchers._bluesky_pds import PdsChecker, Unconfirmed
from watchers._common import describe_error, parse_time, require, reset_time
from watchers.base import PollResult, Watcher

log = logging.getLogger(__name__)

CURSOR_PREFIX = "bsky1:"
#: post URIs with a DID authority (what the AppView returns; a handle-based URI would never match an answer
#: and so would look deleted)
_POST_URI = re.compile(r"^at://(did:[a-z0-9]+:[A-Za-z0-9._:%-]+)/app\.bsky\.feed\.post/([A-Za-z0-9._~:-]+)$")
_REPOST = "app.bsky.feed.defs#reasonRepost"


@dataclass
class _LookupRun:
    """What one lookup call learns once for all its batches."""

    #: author DID -> account-level status (None: the profile is served normally)
    profiles: dict[str, PostStatus | None] = field(default_factory=dict)
    #: author DID -> PDS endpoint, resolved once per run
    endpoints: dict[str, str | Unconfirmed] = field(default_factory=dict)


class XrpcFailure(PlatformError):
    """An XRPC error answer: HTTP status, the lexicon error name (``AccountTakedown``...) and message."""

    def __init__(self, message: str, status: int | None = None, error: str | None = None, detail: str | None = None):
        self.status = status
        self.error = error
        self.detail = detail
        super().__init__(message)


def parse_cursor(cursor: str | None) -> tuple[datetime | None, set[str]]:
    if not cursor or not cursor.startswith(CURSOR_PREFIX):
        return None, set()
    stamp, _, uris = cursor[len(CURSOR_PREFIX) :].partition("|")
    try:
        since = parse_iso(stamp)
    except ValueError:
        return None, set()
    return since, {u for u in uris.split(",") if u}


def _blob_cids(record_embed: Any) -> list[str | None]:
    """CIDs of the blobs of a post record's embed, in display order (images, gallery items or video)."""
    if not isinstance(record_embed, dict):
        return []
    kind = record_embed.get("$type", "")
    if kind == "app.bsky.embed.recordWithMedia":
        return _blob_cids(record_embed.get("media"))
    if kind == "app.bsky.embed.video":
        return [_cid(record_embed.get("video"))]
    entries = record_embed.get("images") if kind == "app.bsky.embed.images" else record_embed.get("items")
    if not isinstance(entries, list):
        return []
    return [_cid(e.get("image")) if isinstance(e, dict) else None for e in entries]


def _cid(blob: Any) -> str | None:
    if isinstance(blob, dict):
        ref = blob.get("ref")
        if isinstance(ref, dict) and isinstance(ref.get("$link"), str):
            return ref["$link"]
        if isinstance(blob.get("cid"), str):  # legacy blob form
            return blob["cid"]
    return None


def _url(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise ValueError(f"embed field {field!r} is not a URL: {value!r}")
    return value


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class BlueskyConfig(WatcherConfig):
    """``accounts`` are handles or DIDs."""

    #: the public AppView allows 3 000 requests per 5 minutes per address
    min_interval: ClassVar[float] = 30.0

    api_base: str = "https://public.api.bsky.app"
    #: the PLC directory that resolves ``did:plc`` authors to their PDS (where a post missing from the AppView
    #: is confirmed deleted or found hidden by moderation)
    plc_directory: Annotated[str, api_root("https://plc.directory")] = "https://plc.directory"
    #: hosts (or host:port) the DID documents and PDS endpoints may point at even over http or on a private
    #: address (a self-hosted PDS on the intranet, tests); every other one must be https on public addresses
    trusted_hosts: list[str] = Field(default_factory=list)


class BlueskyWatcher(Watcher):
    platform = "bluesky"
    config_model = BlueskyConfig
    lookup_batch_size = 25  # getPosts' maximum
    page_limit = 100
    first_poll_limit = 50
    max_pages = 30
    #: how far below the cursor time a poll still looks, for posts indexed late
    grace = timedelta(minutes=10)
    #: URIs kept in the cursor
    max_cursor_uris = 200

    #: the whole exchange with a DID directory or PDS (redirects, body) is bounded by this many timeouts
    pds_deadline_factor = 3

    def __init__(self, config: BlueskyConfig, *, resolver: Resolver = system_resolver):
        """``resolver`` is injectable for tests (PDS names resolving to private addresses)."""
        super().__init__(config)
        self._client = Client(base_url=config.api_base, request=Request(timeout=config.timeout))
        #: DID documents and PDS endpoints are third-party URLs: under the media download address policy
        self._guarded = GuardedClient(
            config.trusted_hosts,
            config.timeout,
            total_timeout=self.pds_deadline_factor * config.timeout,
            resolver=resolver,
        )
        self._pds = PdsChecker(self._guarded, config.plc_directory)
        #: author DID -> configured account name
        self._names: dict[str, str] = {}

    # ------------------------------------------------------------------ transport

    def _query(self, nsid: str, params: Any) -> dict[str, Any]:
        try:
            response = self._client.invoke_query(nsid, params=params)
        except RateLimitExceededError as e:
            headers = e.response.headers if e.response is not None else {}
            raise RateLimited(self.platform, e.reset_at or reset_time(headers), f"bluesky: {nsid} rate limited") from e
        except RequestErrorBase as e:
            status = e.response.status_code if e.response is not None else None
            content = e.response.content if e.response is not None else None
            error = content.error if isinstance(content, XrpcError) else None
            detail = content.message if isinstance(content, XrpcError) else None
            raise XrpcFailure(f"bluesky: {nsid} failed: {describe_error(e)}", status, error, detail) from e
        except Exception as e:  # bad JSON, invalid parameters
            raise PlatformError(f"bluesky: {nsid} failed: {describe_error(e)}") from e
        if not isinstance(response.content, dict):
            raise PlatformError(f"bluesky: {nsid}: malformed answer (not a JSON object)")
        return response.content

    # ------------------------------------------------------------------ normalizing

    @staticmethod
    def _sort_time(item: Any) -> datetime | None:
        """The time the author feed sorts an item by (None if the item gives none)."""
        try:
            reason = item.get("reason")
            if isinstance(reason, dict) and reason.get("$type") == _REPOST:
                return parse_time(reason.get("indexedAt"))
            post = item["post"]
            times = []
            for get in (lambda: post["indexedAt"], lambda: post["record"]["createdAt"]):
                try:
                    times.append(parse_time(get()))
                except (ValueError, KeyError, TypeError):
                    pass
            return min(times) if times else None
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def _media(self, embed: Any, record: dict[str, Any]) -> list[Media]:
        if embed is None:
            return []
        if not isinstance(embed, dict):
            raise ValueError(f"embed has unexpected type {type(embed).__name__}")
        kind = embed.get("$type")
        cids = _blob_cids(record.get("embed"))

        def cid(i: int) -> str | None:
            return cids[i] if i < len(cids) else None

        if kind == "app.bsky.embed.recordWithMedia#view":
            return self._media(embed.get("media"), {"embed": (record.get("embed") or {}).get("media")})
        if kind in ("app.bsky.embed.images#view", "app.bsky.embed.gallery#view"):
            images = embed.get("images" if kind.startswith("app.bsky.embed.images") else "items")
            if not isinstance(images, list):
                raise ValueError(f"{kind}: images is not a list")
            out = []
            for i, image in enumerate(images):
                if not isinstance(image, dict):
                    raise ValueError(f"{kind}: image {i} is not an object")
                thumb = image.get("thumb") or image.get("thumbnail")
                out.append(
                    Media(
                        url=_url(image.get("fullsize"), "fullsize"),
                        kind=MediaKind.PHOTO,
                        alt_text=_optional_str(image.get("alt")),
                        preview_url=_optional_str(thumb),
                        media_id=cid(i),
                    )
                )
            return out
        if kind == "app.bsky.embed.video#view":
            return [
                Media(
                    url=_url(embed.get("playlist"), "playlist"),
                    kind=MediaKind.GIF if embed.get("presentation") == "gif" else MediaKind.VIDEO,
                    alt_text=_optional_str(embed.get("alt")),
                    preview_url=_optional_str(embed.get("thumbnail")),
                    media_id=_optional_str(embed.get("cid")) or cid(0),
                )
            ]
        if kind == "app.bsky.embed.external#view":
            external = embed.get("external")
            uri = external.get("uri") if isinstance(external, dict) else None
            if isinstance(uri, str) and re.search(r"\.gif(\?|$)", uri, re.I) and uri.startswith("https://"):
                return [Media(url=uri, kind=MediaKind.GIF, alt_text=_optional_str(external.get("description")),
                              preview_url=_optional_str(external.get("thumb")))]
            return []
        return []  # record#view (a quoted post: its media is not this post's), unknown future embeds

    def _normalize(self, post: Any, account: str | None = None) -> Post:
        uri = require(post, "uri")
        m = _POST_URI.match(uri)
        if not m:
            raise ValueError(f"not a post URI: {uri!r}")
        author = require(post, "author", dict)
        did = require(author, "did")
        record = require(post, "record", dict)
        text = record.get("text", "")
        if not isinstance(text, str):
            raise ValueError(f"field 'text' has unexpected type {type(text).__name__}")
        try:
            created = parse_time(record.get("createdAt"))
        except ValueError:
            created = parse_time(require(post, "indexedAt"))
        handle = author.get("handle")
        who = handle if isinstance(handle, str) and handle and handle != "handle.invalid" else did
        name = account or self._names.get(did) or f"@{who}"
        return self.new_post(
            name, uri, f"https://bsky.app/profile/{who}/post/{m.group(2)}", text, created,
            media=self._media(post.get("embed"), record), raw=post, author_id=did,
        )

    # ------------------------------------------------------------------ poll

    def poll(self, account: str, cursor: str | None) -> PollResult:
        actor = account.strip().lstrip("@")
        since, seen = parse_cursor(cursor)
        floor = since - self.grace if since else None
        items: list[Any] = []  # newest first
        page_cursor: str | None = None
        pages = 0
        while True:
            try:
                params = models.AppBskyFeedGetAuthorFeed.Params(
                    actor=actor,
                    filter="posts_with_replies",
                    include_pins=False,
                    limit=self.page_limit if since else self.first_poll_limit,
                    cursor=page_cursor,
                )
            except ValueError as e:
                raise PlatformError(f"bluesky: {actor!r} cannot be asked for: {describe_error(e)}") from None
            try:
                data = self._query("app.bsky.feed.getAuthorFeed", params)
            except XrpcFailure as e:
                if e.error in ("AccountTakedown", "AccountDeactivated", "BlockedActor", "BlockedByActor") or (
                    e.detail and "not found" in e.detail.lower()
                ):
                    raise XrpcFailure(f"bluesky: {actor}: {e.error}: {e.detail}", e.status, e.error, e.detail) from e
                raise
            feed = data.get("feed")
            if not isinstance(feed, list):
                raise PlatformError(f"bluesky: getAuthorFeed of {actor}: malformed answer (feed is not a list)")
            reached_floor = False
            for item in feed:
                t = self._sort_time(item) if isinstance(item, dict) else None
                if floor is not None and t is not None and t < floor:
                    reached_floor = True
                    continue
                items.append(item)
            pages += 1
            next_cursor = data.get("cursor")
            if since is None or reached_floor or not feed or not isinstance(next_cursor, str) or not next_cursor:
                break
            if pages >= self.max_pages:
                log.warning("bluesky: %s: stopped after %d pages", actor, pages)
                break
            page_cursor = next_cursor

        posts: list[Post] = []
        rejected: list[RejectedItem] = []
        times: list[tuple[datetime, str]] = []
        untimed: list[str] = []  # keys of items without a usable time: always kept in the cursor
        for item in reversed(items):  # oldest first
            t = self._sort_time(item) if isinstance(item, dict) else None
            post_raw = item.get("post") if isinstance(item, dict) else None
            uri = post_raw.get("uri") if isinstance(post_raw, dict) else None
            key = uri if isinstance(uri, str) and uri else "#" + hashlib.sha256(canonical_json(item)).hexdigest()[:16]
            if t is not None:
                times.append((t, key))
            else:
                untimed.append(key)
            reason = item.get("reason") if isinstance(item, dict) else None
            if isinstance(reason, dict) and reason.get("$type") == _REPOST:
                continue
            if key in seen:
                continue
            try:
                if not isinstance(item, dict):
                    raise ValueError(f"feed item has unexpected type {type(item).__name__}")
                post = self._normalize(require(item, "post", dict), account)
            except (ValueError, TypeError, KeyError, AttributeError) as e:
                log.warning("bluesky: %s: skipped a malformed feed item: %s", actor, e)
                rejected.append(RejectedItem(self.platform, account, item, str(e)))
                continue
            if post.author_id:
                self._names.setdefault(post.author_id, account)
            posts.append(post)
        if not posts and not rejected:
            return PollResult([], None)
        newest = max((t for t, _ in times), default=since)
        if since and newest and newest < since:
            newest = since
        if newest is None:
            return PollResult(posts, None, rejected)
        recent = untimed + [u for t, u in sorted(times, reverse=True) if t >= newest - self.grace]
        new_cursor = CURSOR_PREFIX + iso(newest) + "|" + ",".join(list(dict.fromkeys(recent))[: self.max_cursor_uris])
        return PollResult(posts, new_cursor, rejected)

    # ------------------------------------------------------------------ lookup

    def _lookup_state(self) -> _LookupRun:
        return _LookupRun()

    def _lookup_batch(self, batch: list[str], authors: Mapping[str, str | None], state: _LookupRun) -> dict[str, PostStatus]:
        invalid = {uri: PostStatus.unknown(f"not a Bluesky post URI: {uri!r}") for uri in batch if not _POST_URI.match(uri)}
        valid = [uri for uri in batch if uri not in invalid]
        return {**invalid, **self._lookup_uris(valid, state.profiles, state.endpoints)} if valid else invalid

    def _lookup_uris(
        self, batch: list[str], profiles: dict[str, PostStatus | None], endpoints: dict[str, str | Unconfirmed]
    ) -> dict[str, PostStatus]:
        try:
            data = self._query("app.bsky.feed.getPosts", models.AppBskyFeedGetPosts.Params(uris=batch))
        except PlatformError as e:
            return {uri: PostStatus.unknown(str(e)) for uri in batch}
        returned = data.get("posts")
        if not isinstance(returned, list):
            return {uri: PostStatus.unknown("malformed getPosts answer (posts is not a list)") for uri in batch}
        out: dict[str, PostStatus] = {}
        for raw in returned:
            uri = raw.get("uri") if isinstance(raw, dict) else None
            if uri not in batch:
                continue
            try:
                out[uri] = PostStatus.alive(self._normalize(raw))
            except (ValueError, TypeError, KeyError, AttributeError) as e:
                out[uri] = PostStatus.unknown(f"malformed post in getPosts answer: {e}")
        if any(not isinstance(raw, dict) or not isinstance(raw.get("uri"), str) for raw in returned):
            # an item we cannot attribute might be one of the "missing" posts: do not call those deleted
            return {uri: out.get(uri) or PostStatus.unknown("getPosts answer has unreadable items") for uri in batch}
        for uri in batch:
            if uri in out:
                continue
            _, _, did, _, rkey = uri.split("/")  # at://<did>/app.bsky.feed.post/<rkey>, checked by lookup
            if did not in profiles:
                profiles[did] = self._profile_state(did)
            state = profiles[did]
            out[uri] = state if state is not None else self._pds.lookup_record(did, rkey, endpoints)
        return out

    def _profile_state(self, actor: str) -> PostStatus | None:
        """None if the author's profile is served normally, else the account-level status (unknown if unsure)."""
        try:
            data = self._query("app.bsky.actor.getProfile", models.AppBskyActorGetProfile.Params(actor=actor))
        except XrpcFailure as e:
            if e.error == "AccountTakedown":
                return PostStatus.of(StatusKind.AUTHOR_SUSPENDED, f"AccountTakedown: {e.detail}")
            if e.error == "AccountDeactivated":
                return PostStatus.of(StatusKind.AUTHOR_DELETED, f"AccountDeactivated (reversible): {e.detail}")
            if e.status == 400 and e.error == "InvalidRequest" and (e.detail or "").lower() == "profile not found":
                return PostStatus.of(StatusKind.AUTHOR_DELETED, "Profile not found")
            return PostStatus.unknown(str(e))
        except PlatformError as e:
            return PostStatus.unknown(str(e))
        if data.get("did") != actor and not (isinstance(data.get("did"), str) and not actor.startswith("did:")):
            return PostStatus.unknown("malformed getProfile answer")
        return None

    def close(self) -> None:
        try:
            self._client.request.close()
        except Exception:  # pragma: no cover
            pass
        self._guarded.close()


WATCHER = BlueskyWatcher
