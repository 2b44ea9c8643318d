"""RSS/Atom watcher (requests + feedparser) for government press-release feeds. ``accounts`` are feed URLs.

- The feed is fetched with requests (``timeout``, ``user_agent`` from config, conditional GET with the
  ETag / Last-Modified of the previous answer: a 304 means nothing new) and parsed by feedparser. A feed
  feedparser flags as ill-formed ("bozo") but that still yields entries is used; an answer that is not a
  feed at all (an HTML page, garbage) raises :class:`bot.errors.PlatformError`.
- Post id: the entry's id/guid, else its link. Post URL: the link. Time: published, else updated, else the
  moment it was first seen (press feeds often have no dates).
- Cursor: press feeds often lack dates and reorder or re-date items, so the cursor is the set of ids already
  seen, not a time: ``rss1:`` + comma-separated 16-hex-digit hashes of the ids, newest feed first, at most
  :attr:`RssWatcher.max_seen` of them. New items are those whose id is not in it; they come oldest first
  (by date when every new item has one, else in reverse feed order). The first poll (no cursor) returns
  every item of the feed.
- Media: enclosures (image/* and video/*), ``media:content`` / ``media:thumbnail`` and ``<img src>`` in the
  summary/content (relative URLs resolved against the item link; 1x1 tracking pixels and data: URIs skipped).
- Feed redirects: the configured feed URL is requested as it is (the user chose it), but a redirect it
  answers with is followed under the address policy of item links (below): a feed cannot send the watcher
  to an internal address.
- Lookup: HEAD each item's link (from the last version seen, else from the configured feeds, else the id
  itself when it is an absolute URL, i.e. a permalink guid), or GET when the server answers HEAD with 405/501;
  only the status is read, never the body. Links come from the feed, i.e. from a third party, so they go
  through :class:`bot.net.client.GuardedClient` like media downloads: http or https only, every address of
  the host (and of each redirect target) public unless the host is in ``trusted_hosts``, the connection
  pinned to the checked address, the whole check bounded by five times ``timeout``. A refused link is
  unknown, never requested. 404/410 -> deleted; 2xx -> alive; anything else (403, 429, 5xx, timeouts,
  connection errors, refusals) -> unknown. The alive post is the item as the feed shows it now (feed
  refetched, cheap with conditional GET) so edits are seen; if the item has left the feed, the last version this process saw;
  failing that (item gone from the feed since a restart) ``alive`` without a post: the page stands, its
  content was not observed, so the tracker records it as seen alive without comparing versions. An id that is not a URL and is in no
  configured feed any more has no known link: unknown.
"""

from __future__ import annotations

import calendar
import hashlib
import io
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from html.parser import HTMLParser
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urljoin, urlsplit

import feedparser
from pydantic import Field, field_validator
import requests

from bot.errors import MediaError, PlatformError, RateLimited
from bot.config_base import WatcherConfig
from bot.net.client import REDIRECT_STATUSES, GuardedClient
from bot.net.policy import Resolver, system_resolver
from bot.models import Media, MediaKind, Post, PostStatus, RejectedItem, utcnow
from watchers._common import describe_error, html_to_text, read_capped, reset_time
from watchers.base import PollResult, Watcher

log = logging.getLogger(__name__)

CURSOR_PREFIX = "rss1:"
_IMAGE_EXT = re.compile(r"\.(jpe?g|png|gif|webp|avif|bmp|tiff?)$", re.I)
_VIDEO_EXT = re.compile(r"\.(mp4|m4v|mov|webm|mkv|avi)$", re.I)
_GONE = {404, 410}
#: answers to HEAD from servers that only implement GET
_NO_HEAD = {405, 501}
#: refusals by the address policy (the link was not requested), as opposed to failed requests
_REFUSED = {"bad_url", "not_https", "private_address"}
#: a link check or a redirected feed fetch ends after this many times ``timeout``, however slowly data drips
_DEADLINE_FACTOR = 5


def id_hash(post_id: str) -> str:
    return hashlib.sha256(post_id.encode("utf-8")).hexdigest()[:16]


def parse_cursor(cursor: str | None) -> list[str]:
    """The id hashes of a cursor (an empty list for None or a cursor this version does not understand)."""
    if not cursor or not cursor.startswith(CURSOR_PREFIX):
        return []
    return [h for h in cursor[len(CURSOR_PREFIX) :].split(",") if re.fullmatch(r"[0-9a-f]{16}", h)]


def to_jsonable(value: Any) -> Any:
    """feedparser's entry as plain JSON: dicts, lists, strings; struct_time as ISO 8601 UTC."""
    if isinstance(value, time.struct_time):
        return datetime.fromtimestamp(calendar.timegm(value), timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


#: URL parts of images that are page furniture, not pictures of the item: feed share buttons and tracking
#: pixels (FeedBurner ``~ff``/``~r``, WordPress stats), avatars, emoji and icons
_NOISE_URL_PARTS = (
    "feeds.feedburner.com/~ff/",
    "feeds.feedburner.com/~r/",
    "feedproxy.google.com/~r/",
    "stats.wordpress.com/",
    "pixel.wp.com/",
    "gravatar.com/avatar",
    "/avatar",
    "/emoji/",
    "/smilies/",
    "/share-button",
    "/sharing/",
    "/icons/",
    "style_images/",
    "doubleclick.net/",
)
#: class names of the same furniture
_NOISE_CLASSES = ("avatar", "emoji", "wp-smiley", "share", "icon", "tracking")
#: an image declared this small (both sides, in pixels) is an icon or a button, not a picture to match
_ICON_SIDE = 64
#: WordPress' resized copies: ``photo-300x200.jpg`` is ``photo.jpg`` at another size
_WP_SIZE_SUFFIX = re.compile(r"-\d{2,5}x\d{2,5}(?=\.[a-z0-9]+$)", re.I)


def is_noise_image(url: str, classes: str = "", width: str = "", height: str = "") -> bool:
    """True for an image that is not a picture of the item: a tracking pixel, share button, avatar, emoji."""
    lowered = url.lower()
    if any(part in lowered for part in _NOISE_URL_PARTS):
        return True
    if any(name in classes.lower() for name in _NOISE_CLASSES):
        return True
    w, h = _dimension(width), _dimension(height)
    if (w is not None and w <= 2) or (h is not None and h <= 2):
        return True  # tracking pixel
    return w is not None and h is not None and w <= _ICON_SIDE and h <= _ICON_SIDE


def _dimension(value: str | None) -> int | None:
    text = (value or "").strip().lower().removesuffix("px")
    return int(text) if text.isdigit() else None


def picture_key(url: str) -> str:
    """What two URLs of the same picture at different sizes share: host and path without a WordPress size
    suffix, no query (``?w=100&h=70``, ``?resize=...``)."""
    parts = urlsplit(url)
    return f"{parts.netloc.lower()}{_WP_SIZE_SUFFIX.sub('', parts.path)}"


def picture_area(url: str, width: Any = None, height: Any = None) -> int:
    """The size a URL of a picture names (declared width x height, a WordPress ``-WxH`` suffix or ``w``/``h``
    query values); 0 when it names none (the original, usually the largest)."""
    w, h = _dimension(str(width) if width is not None else None), _dimension(str(height) if height is not None else None)
    if w and h:
        return w * h
    parts = urlsplit(url)
    m = re.search(r"-(\d{2,5})x(\d{2,5})\.[a-z0-9]+$", parts.path, re.I)
    if m:
        return int(m.group(1)) * int(m.group(2))
    query = dict(parse_qsl(parts.query))
    qw, qh = _dimension(query.get("w")), _dimension(query.get("h"))
    if qw or qh:
        return (qw or qh or 0) * (qh or qw or 0)
    return 0


class _ImgCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.images: list[tuple[str, str | None, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "img":
            return
        a = {k.lower(): (v or "") for k, v in attrs}
        src = a.get("src", "").strip()
        if not src or src.startswith("data:"):
            return
        if is_noise_image(src, a.get("class", ""), a.get("width", ""), a.get("height", "")):
            return
        self.images.append((src, a.get("alt") or None, picture_area(src, a.get("width"), a.get("height"))))


def html_images(markup: str | None) -> list[tuple[str, str | None, int]]:
    """``(src, alt, declared area)`` of the pictures in an HTML fragment, furniture left out."""
    if not markup:
        return []
    collector = _ImgCollector()
    try:
        collector.feed(markup)
        collector.close()
    except Exception:  # pragma: no cover - HTMLParser is lenient
        pass
    return collector.images


def _kind_of(mime: str, medium: str, url: str) -> MediaKind | None:
    mime, medium = (mime or "").lower(), (medium or "").lower()
    path = urlsplit(url).path
    if mime.startswith("image/") or medium == "image":
        return MediaKind.PHOTO
    if mime.startswith("video/") or medium == "video":
        return MediaKind.VIDEO
    if mime or medium:
        return None  # audio, documents...
    if _IMAGE_EXT.search(path):
        return MediaKind.PHOTO
    if _VIDEO_EXT.search(path):
        return MediaKind.VIDEO
    return None


class RssConfig(WatcherConfig):
    """``accounts`` are feed URLs (http or https)."""

    #: press sites are small servers; feeds rarely change more than every few minutes
    min_interval: ClassVar[float] = 60.0

    user_agent: str = "afterimage (+https://github.com/afterimage)"
    #: hosts (or host:port) item links and feed redirects may point at even on a private address (intranet
    #: press sites, tests); every other link must resolve to public addresses only
    trusted_hosts: list[str] = Field(default_factory=list)

    @field_validator("accounts")
    @classmethod
    def _feed_urls(cls, v: list[str]) -> list[str]:
        for feed in v:
            parts = urlsplit(feed.strip())
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f'"{feed}" is not a feed URL with scheme and host (e.g. https://{feed.strip().lstrip("/")})')
        return [feed.strip() for feed in v]


class RssWatcher(Watcher):
    platform = "rss"
    config_model = RssConfig
    lookup_batch_size = 20
    #: id hashes kept in the cursor
    max_seen = 1000
    #: last versions kept in memory for lookups
    max_cached_posts = 5000
    #: a feed answer larger than this is refused
    max_feed_bytes = 20 * 1024 * 1024

    @classmethod
    def account_key(cls, account: str) -> str:
        """A feed URL as servers compare it: scheme and host case-insensitive, the path and query exactly."""
        parts = urlsplit(account.strip())
        return parts._replace(scheme=parts.scheme.lower(), netloc=parts.netloc.lower()).geturl()

    def __init__(self, config: RssConfig, *, resolver: Resolver = system_resolver):
        """``resolver`` is injectable for tests (names resolving to private addresses)."""
        super().__init__(config)
        self._session = requests.Session()
        self._session.headers["User-Agent"] = config.user_agent or "afterimage"
        self._timeout = config.timeout
        #: item links and feed redirects: third-party URLs, under the media download address policy
        self._guarded = GuardedClient(
            config.trusted_hosts,
            config.timeout,
            total_timeout=_DEADLINE_FACTOR * config.timeout,
            https_only=False,
            resolver=resolver,
        )
        #: feed URL -> (etag, last-modified, cursor returned) of the last poll: a conditional GET is only sent
        #: when the cursor given is the one returned then (a poll result the daemon lost is fetched again)
        self._poll_validators: dict[str, tuple[str | None, str | None, str | None]] = {}
        #: feed URL -> ids its last full answer listed (what a 304 still lists)
        self._listed: dict[str, list[str]] = {}
        #: feed URL -> (etag, last-modified, posts by id) of the last refresh done by lookup
        self._lookup_validators: dict[str, tuple[str | None, str | None, dict[str, Post]]] = {}
        self._posts: OrderedDict[str, Post] = OrderedDict()
        self._feed_of: dict[str, str] = {}

    # ------------------------------------------------------------------ fetching

    def _fetch_feed(
        self, feed_url: str, etag: str | None, modified: str | None
    ) -> tuple[feedparser.FeedParserDict | None, requests.Response]:
        """GET and parse a feed; None for 304 Not Modified. Raises RateLimited / PlatformError."""
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if modified:
            headers["If-Modified-Since"] = modified
        try:
            with self._open_feed(feed_url, headers) as response:
                if response.status_code == 429:
                    raise RateLimited(self.platform, reset_time(response.headers), f"rss: {feed_url} answered 429")
                if response.status_code == 304:
                    return None, response
                if not 200 <= response.status_code < 300:
                    raise PlatformError(f"rss: {feed_url} answered HTTP {response.status_code}")
                body = read_capped(response, self.max_feed_bytes, f"rss: {feed_url}")
        except requests.RequestException as e:
            raise PlatformError(f"rss: fetching {feed_url} failed: {describe_error(e)}") from e
        except MediaError as e:
            raise PlatformError(f"rss: following the redirect of {feed_url} failed: {e}") from e
        parsed = feedparser.parse(
            io.BytesIO(body),  # a stream: feedparser would open a body that names a local file
            resolve_relative_uris=False,  # <img src> is resolved against the item link, not the feed URL
            # no content-location: feedparser would resolve a plain guid ("press-7", a permalink by RSS's
            # default) against the feed URL into a URL that does not exist; links are resolved below
            response_headers={"content-type": response.headers.get("Content-Type", "")},
        )
        if not parsed.entries and not parsed.get("version"):
            reason = parsed.get("bozo_exception") or "no RSS/Atom root element"
            raise PlatformError(f"rss: {feed_url} is not an RSS/Atom feed ({describe_error(reason)})")
        if parsed.get("bozo"):
            log.info("rss: %s is not well-formed (%s); using the %d items read", feed_url, parsed.get("bozo_exception"), len(parsed.entries))
        return parsed, response

    @contextmanager
    def _open_feed(self, feed_url: str, headers: dict[str, str]) -> Iterator[requests.Response]:
        """The feed's answer, streamed: the configured URL as is, a redirect target under the address policy.

        Raises requests' errors for the first request and :class:`MediaError` for a refused or failed
        redirect."""
        response = self._session.get(feed_url, headers=headers, timeout=self._timeout, stream=True, allow_redirects=False)
        try:
            location = response.headers.get("Location") if response.status_code in REDIRECT_STATUSES else None
            if not location:
                yield response
                return
        finally:
            response.close()
        follow = {**self._session.headers, **headers}
        with self._guarded.open(urljoin(feed_url, location.strip()), headers=follow) as answer:
            yield answer.response

    def _read(self, feed_url: str, etag: str | None = None, modified: str | None = None) -> tuple[list[tuple[int, Any, Post | None, str | None]], dict[str, Post] | None, requests.Response]:
        """Fetch and normalize a feed: (feed index, raw entry, post or None, error) per entry, and the posts by
        id of the answer (None when the feed answered 304)."""
        parsed, response = self._fetch_feed(feed_url, etag, modified)
        if parsed is None:
            return [], None, response
        items = []
        by_id: dict[str, Post] = {}
        for index, entry in enumerate(parsed.entries):
            raw = to_jsonable(entry)
            try:
                post = self._normalize(entry, raw, feed_url)
            except (ValueError, TypeError, KeyError, AttributeError) as e:
                items.append((index, raw, None, str(e)))
                continue
            items.append((index, raw, post, None))
            by_id.setdefault(post.post_id, post)
        return items, by_id, response

    def _remember(self, feed_url: str, by_id: dict[str, Post]) -> None:
        for post_id, post in by_id.items():
            self._posts[post_id] = post
            self._posts.move_to_end(post_id)
            self._feed_of[post_id] = feed_url
        while len(self._posts) > self.max_cached_posts:
            old, _ = self._posts.popitem(last=False)
            self._feed_of.pop(old, None)

    # ------------------------------------------------------------------ normalizing

    def _normalize(self, entry: Any, raw: Any, feed_url: str) -> Post:
        if not isinstance(entry, dict):
            raise ValueError(f"entry has unexpected type {type(entry).__name__}")
        entry_id = entry.get("id")
        link = entry.get("link")
        if link is not None and not isinstance(link, str):
            raise ValueError(f"field 'link' has unexpected type {type(link).__name__}")
        if entry_id is not None and not isinstance(entry_id, str):
            raise ValueError(f"field 'id' has unexpected type {type(entry_id).__name__}")
        post_id = (entry_id or "").strip() or (link or "").strip()
        if not post_id:
            raise ValueError("entry has neither id/guid nor link")
        url = urljoin(feed_url, link.strip()) if link and link.strip() else ""
        if not url and urlsplit(post_id).scheme in ("http", "https"):
            url = post_id
        created = None
        for key in ("published_parsed", "updated_parsed"):
            value = entry.get(key)
            if isinstance(value, time.struct_time):
                created = datetime.fromtimestamp(calendar.timegm(value), timezone.utc)
                break
        title = html_to_text(entry.get("title")) if isinstance(entry.get("title"), str) else ""
        body_html = ""
        content = entry.get("content")
        if isinstance(content, list) and content and isinstance(content[0], dict):
            body_html = content[0].get("value") or ""
        if not body_html and isinstance(entry.get("summary"), str):
            body_html = entry["summary"]
        body = html_to_text(body_html)
        text = "\n\n".join(part for part in (title, body) if part)
        return self.new_post(
            feed_url, post_id, url, text, created or utcnow(), media=self._media(entry, url or feed_url),
            raw=raw if created else {**raw, "afterimage_first_seen": True},
        )

    def _media(self, entry: Any, base: str) -> list[Media]:
        """Enclosures, ``media:content`` (with ``media:thumbnail`` as its preview), else the thumbnails, and
        ``<img>`` in the text. Furniture (tracking pixels, share buttons, avatars) is left out, and one
        picture found at several sizes is one attachment: its largest copy (an unsized URL is taken for the
        original)."""
        found: list[Media] = []
        areas: list[int] = []
        by_key: dict[str, int] = {}

        def add(url: Any, kind: MediaKind | None, alt: str | None = None, preview: str | None = None, area: int = 0) -> bool:
            if not isinstance(url, str) or not url.strip() or kind is None:
                return False
            absolute = urljoin(base, url.strip())
            if urlsplit(absolute).scheme not in ("http", "https") or is_noise_image(absolute):
                return False
            key = picture_key(absolute)
            rank = area or 10**9  # no size named: the original
            if key in by_key:
                index = by_key[key]
                if rank > areas[index]:
                    found[index] = Media(url=absolute, kind=kind, alt_text=alt or found[index].alt_text, preview_url=preview)
                    areas[index] = rank
                return True
            by_key[key] = len(found)
            found.append(Media(url=absolute, kind=kind, alt_text=alt or None, preview_url=preview))
            areas.append(rank)
            return True

        thumbnails = [t for t in entry.get("media_thumbnail") or [] if isinstance(t, dict) and isinstance(t.get("url"), str)]
        for enc in entry.get("enclosures") or []:
            if isinstance(enc, dict):
                href = enc.get("href") or enc.get("url")
                add(href, _kind_of(enc.get("type", ""), "", href or ""))
        usable = 0
        for mc in (mc for mc in entry.get("media_content") or [] if isinstance(mc, dict)):
            kind = _kind_of(mc.get("type", ""), mc.get("medium", ""), mc.get("url") or "")
            # media:thumbnail next to media:content is its preview (a smaller copy), not another image
            preview = urljoin(base, thumbnails[0]["url"]) if thumbnails else None
            usable += add(mc.get("url"), kind, None, preview, picture_area(mc.get("url") or "", mc.get("width"), mc.get("height")))
        if not usable:  # no media:content, or only unusable ones (a video player page, a document)
            for thumb in thumbnails:
                add(thumb["url"], MediaKind.PHOTO, area=picture_area(thumb["url"], thumb.get("width"), thumb.get("height")))
        markup = []
        content = entry.get("content")
        if isinstance(content, list):
            markup += [c.get("value") for c in content if isinstance(c, dict) and isinstance(c.get("value"), str)]
        if isinstance(entry.get("summary"), str):
            markup.append(entry["summary"])
        for fragment in markup:
            for src, alt, area in html_images(fragment):
                add(src, MediaKind.PHOTO, alt, area=area)
        return found

    # ------------------------------------------------------------------ poll

    def poll(self, account: str, cursor: str | None) -> PollResult:
        etag, modified, returned = self._poll_validators.get(account, (None, None, None))
        if returned is None or returned != cursor:
            etag = modified = None
        items, by_id, response = self._read(account, etag, modified)
        if by_id is None:  # 304 Not Modified: the feed still lists what it listed last time
            return PollResult([], None, still_listed=list(self._listed.get(account, ())))
        seen = parse_cursor(cursor)
        seen_set = set(seen)
        new_posts: list[tuple[int, Post]] = []
        rejected: list[RejectedItem] = []
        current: list[str] = []
        for index, raw, post, error in items:
            if post is None:
                log.warning("rss: %s: skipped a malformed item: %s", account, error)
                key = id_hash(str(raw.get("id") or raw.get("link") or raw)) if isinstance(raw, dict) else id_hash(str(raw))
                if key not in seen_set:
                    rejected.append(RejectedItem(self.platform, account, raw, error or "malformed"))
                current.append(key)
                continue
            key = id_hash(post.post_id)
            if key not in current:
                current.append(key)
            if key not in seen_set and all(p.post_id != post.post_id for _, p in new_posts):
                new_posts.append((index, post))
        self._remember(account, by_id)
        # oldest first: by date when every new item has one, else reverse feed order (feeds list newest first)
        if new_posts and all(not (isinstance(p.raw, dict) and p.raw.get("afterimage_first_seen")) for _, p in new_posts):
            new_posts.sort(key=lambda ip: (ip[1].created_at, -ip[0]))
        else:
            new_posts.sort(key=lambda ip: -ip[0])
        if not new_posts and not rejected and cursor and set(current) <= seen_set:
            new_cursor = None
        else:
            merged = list(dict.fromkeys(current + seen))[: max(self.max_seen, len(current))]
            new_cursor = CURSOR_PREFIX + ",".join(merged)
        validators = (response.headers.get("ETag"), response.headers.get("Last-Modified"), new_cursor or cursor)
        self._poll_validators[account] = validators
        self._listed[account] = list(by_id)
        new_ids = {p.post_id for _, p in new_posts}
        still_listed = [post_id for post_id in by_id if post_id not in new_ids]
        return PollResult([p for _, p in new_posts], new_cursor, rejected, still_listed)

    # ------------------------------------------------------------------ lookup

    def _lookup_batch(
        self, batch: list[str], authors: Mapping[str, str | None], state: dict[str, dict[str, Post] | None]
    ) -> dict[str, PostStatus]:
        """``state`` holds the feeds refreshed during this lookup (each read once per call)."""
        return {post_id: self._lookup_one(post_id, state) for post_id in batch}

    def _refresh(self, feed_url: str, refreshed: dict[str, dict[str, Post] | None]) -> dict[str, Post] | None:
        """The feed's current posts by id (once per lookup call); None if the feed cannot be read now."""
        if feed_url not in refreshed:
            try:
                etag, modified, previous = self._lookup_validators.get(feed_url, (None, None, {}))
                _, by_id, response = self._read(feed_url, etag, modified)
                if by_id is None:  # 304: the answer we remember is still current
                    by_id = previous
                else:
                    self._lookup_validators[feed_url] = (
                        response.headers.get("ETag"),
                        response.headers.get("Last-Modified"),
                        by_id,
                    )
                    self._remember(feed_url, by_id)
                refreshed[feed_url] = by_id
            except PlatformError as e:
                log.info("rss: could not refresh %s during lookup: %s", feed_url, e)
                refreshed[feed_url] = None
        return refreshed[feed_url]

    def _find(self, post_id: str, refreshed: dict[str, dict[str, Post] | None]) -> Post | None:
        """The item as its feed shows it now, else the last version seen; None if unknown."""
        feeds = [self._feed_of[post_id]] if post_id in self._feed_of else list(getattr(self.config, "accounts", []))
        for feed_url in feeds:
            current = self._refresh(feed_url, refreshed)
            if current and post_id in current:
                return current[post_id]
        return self._posts.get(post_id)

    def _lookup_one(self, post_id: str, refreshed: dict[str, dict[str, Post] | None]) -> PostStatus:
        known = self._posts.get(post_id) or self._find(post_id, refreshed)
        link = known.url if known and known.url else None
        if link is None and urlsplit(post_id).scheme in ("http", "https"):
            link = post_id  # a permalink guid of an item gone from the feed since a restart
        if link is None:
            return PostStatus.unknown("no link known for this item (not a URL and in no configured feed now)")
        try:
            code = self._link_status(link)
        except MediaError as e:
            if e.reason in _REFUSED:
                return PostStatus.unknown(f"link not checked, refused by the address policy: {e}")
            return PostStatus.unknown(f"checking {link} failed: {e}")
        if code in _GONE:
            return PostStatus.deleted()
        if not 200 <= code < 300:
            return PostStatus.unknown(f"{link} answered HTTP {code}")
        # still in the feed: the current version (edits show); gone from the feed: the page stands, content unseen
        return PostStatus.alive(self._find(post_id, refreshed))

    def _link_status(self, link: str) -> int:
        """HTTP status of ``link`` (redirects followed under the policy): HEAD, GET if HEAD is not implemented.

        Raises :class:`MediaError` for a refused link or redirect target, timeouts and connection failures."""
        code = self._status(link, "HEAD")
        if code in _NO_HEAD:
            code = self._status(link, "GET")
        return code

    def _status(self, link: str, method: str) -> int:
        """The status of one policy-checked request; the response is closed unread (a GET body is never
        downloaded)."""
        headers = {
            "User-Agent": self._session.headers["User-Agent"],
            "Accept": "text/html,application/xhtml+xml,*/*;q=0.8",
            "Accept-Encoding": "identity",
        }
        with self._guarded.open(link, method=method, headers=headers) as answer:
            return answer.response.status_code

    def close(self) -> None:
        self._guarded.close()
        self._session.close()


WATCHER = RssWatcher
