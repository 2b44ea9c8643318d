"""YouTube watcher: the channel's Atom feed without a key; the Data API (optional key) for re-checks.

- Accounts are channel ids (``UC`` + 22 characters) or ``@handles``; a handle is resolved once per process
  from its channel page (``<link rel="canonical" href=".../channel/UC...">``, read with selectolax).
- ``poll``: ``<api_base>/feeds/videos.xml?channel_id=<id>`` (the 15 newest uploads), parsed by feedparser.
  The cursor is the newest ``published`` time seen; an entry at or after it is returned (the store reports a
  video seen before as unchanged). Each video's still to match is its thumbnail at the largest size that
  exists (``maxresdefault``, else ``sddefault``, else the feed's ``hqdefault``; checked with HEAD).
- ``lookup`` with ``api_key``: ``videos.list`` (google-api-python-client) in batches of 50. A video absent
  from the answer is a deletion candidate while its channel still exists (``channels.list``); ``private``
  is an author (visibility) state; ``uploadStatus: rejected`` (a takedown: copyright, terms of use) is
  withheld. Quota and rate errors, 5xx and malformed answers are ``unknown``.
- ``lookup`` without a key: ``<api_base>/oembed?url=...watch?v=<id>``: 200 alive, 401/403 private or not
  embeddable (author state), 404 a deletion candidate while the channel's feed still answers; anything else
  is ``unknown``.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any, ClassVar
from urllib.parse import quote, urlsplit, urlunsplit

import feedparser
import requests
from pydantic import SecretStr, field_validator
from selectolax.lexbor import LexborHTMLParser

from bot.config_base import WatcherConfig, api_root
from bot.errors import PlatformError, RateLimited
from bot.models import Media, MediaKind, Post, PostStatus, RejectedItem, StatusKind, iso, parse_iso
from bot.redact import register_secret
from watchers._common import LookupRun, MalformedItem, describe_error, parse_time, reset_time
from watchers.base import PollResult, Watcher
from watchers.rss import to_jsonable

log = logging.getLogger(__name__)

PUBLIC_BASE = "https://www.youtube.com"
#: thumbnail names from the largest to the smallest; hqdefault always exists
THUMBNAILS = ("maxresdefault.jpg", "sddefault.jpg", "hqdefault.jpg")
_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def is_channel_id(value: str) -> bool:
    return len(value) == 24 and value.startswith("UC") and set(value) <= _ID_CHARS


def channel_account(account: str) -> str:
    """A channel id or ``@handle`` (from an id, a handle or a youtube.com channel/handle URL)."""
    name = account.strip()
    for prefix in ("https://www.youtube.com/", "https://youtube.com/", "www.youtube.com/", "youtube.com/"):
        if name.lower().startswith(prefix):
            name = name[len(prefix) :]
    name = name.strip("/").removeprefix("channel/")
    if is_channel_id(name):
        return name
    if name.startswith("@") and 3 <= len(name) <= 31 and set(name[1:]) <= _ID_CHARS | {"."}:
        return name
    raise ValueError(f'"{account}" is not a YouTube channel id (UC...) or @handle')


class YoutubeConfig(WatcherConfig):
    """``accounts`` are channel ids (``UC...``) or ``@handles``."""

    #: the feed changes when a video is published; YouTube refreshes it every few minutes at most
    min_interval: ClassVar[float] = 300.0

    api_base: str = PUBLIC_BASE
    #: optional Data API key for re-checks (videos.list): without it, look-ups use oEmbed
    api_key: SecretStr | None = None
    data_api_base: Annotated[str, api_root("https://www.googleapis.com")] = "https://www.googleapis.com"

    @field_validator("accounts")
    @classmethod
    def _channels(cls, v: list[str]) -> list[str]:
        return [channel_account(a) for a in v]


class YoutubeWatcher(Watcher):
    platform = "youtube"
    config_model = YoutubeConfig
    lookup_batch_size = 50  # videos.list's limit

    def __init__(self, config: YoutubeConfig):
        super().__init__(config)
        self.config: YoutubeConfig = config
        self._base = config.api_base or PUBLIC_BASE
        self._session = requests.Session()
        self._session.headers["User-Agent"] = "afterimage (+https://github.com/afterimage)"
        self._channel_ids: dict[str, str] = {}
        #: video id -> channel id, learned while polling (lookups check the channel of a missing video)
        self._channel_of: dict[str, str] = {}
        self._youtube: Any = None
        if config.api_key is not None:
            register_secret(config.api_key.get_secret_value())

    def close(self) -> None:
        self._session.close()

    # ------------------------------------------------------------------ requests

    def _get(self, url: str, what: str, **kwargs: Any) -> requests.Response:
        try:
            response = self._session.get(url, timeout=self.config.timeout, allow_redirects=False, **kwargs)
        except requests.RequestException as e:
            raise PlatformError(f"youtube: {what} failed: {describe_error(e)}") from None
        if response.status_code == 429:
            raise RateLimited(self.platform, reset_time(response.headers), f"youtube: {what} answered 429")
        return response

    def _channel_id(self, account: str) -> str:
        account = channel_account(account)
        if is_channel_id(account):
            return account
        if account not in self._channel_ids:
            response = self._get(f"{self._base}/{quote(account)}", f"channel page of {account}")
            if response.status_code != 200:
                raise PlatformError(f"youtube: channel page of {account} answered HTTP {response.status_code}")
            tree = LexborHTMLParser(response.text)
            candidates = [n.attributes.get("href") or "" for n in tree.css('link[rel="canonical"]')]
            candidates += [n.attributes.get("content") or "" for n in tree.css('meta[itemprop="identifier"], meta[itemprop="channelId"]')]
            ids = [c.rstrip("/").rpartition("/")[2] for c in candidates]
            found = next((i for i in ids if is_channel_id(i)), None)
            if found is None:
                raise PlatformError(f"youtube: the page of {account} names no channel id (a consent or challenge page?)")
            self._channel_ids[account] = found
        return self._channel_ids[account]

    def _feed(self, channel_id: str) -> feedparser.FeedParserDict:
        response = self._get(f"{self._base}/feeds/videos.xml", f"feed of {channel_id}", params={"channel_id": channel_id})
        if response.status_code == 404:
            raise ChannelGone(f"youtube: channel {channel_id} has no feed (404: terminated or deleted)")
        if response.status_code != 200:
            raise PlatformError(f"youtube: feed of {channel_id} answered HTTP {response.status_code}")
        parsed = feedparser.parse(io.BytesIO(response.content), response_headers={"content-type": response.headers.get("Content-Type", "")})
        if not parsed.get("version", "").startswith("atom") or parsed.get("bozo") and not parsed.entries:
            raise PlatformError(f"youtube: feed of {channel_id} is not an Atom feed (a consent or challenge page?)")
        return parsed

    def _largest_thumbnail(self, feed_thumbnail: str) -> str:
        """The largest thumbnail of a video that exists: the feed names hqdefault, larger ones may exist."""
        parts = urlsplit(feed_thumbnail)
        host = (parts.hostname or "").lower()
        if not (host == "ytimg.com" or host.endswith(".ytimg.com") or host == urlsplit(self._base).hostname):
            return feed_thumbnail  # only YouTube's own image hosts are probed (media fetching has its own policy)
        folder = parts.path.rpartition("/")[0]
        for name in THUMBNAILS[:-1]:
            candidate = urlunsplit((parts.scheme, parts.netloc, f"{folder}/{name}", "", ""))
            try:
                response = self._session.head(candidate, timeout=self.config.timeout, allow_redirects=False)
            except requests.RequestException:
                continue
            if response.status_code == 200:
                return candidate
        return feed_thumbnail

    # ------------------------------------------------------------------ poll

    def poll(self, account: str, cursor: str | None) -> PollResult:
        channel_id = self._channel_id(account)
        since = parse_iso(cursor) if cursor else None
        parsed = self._feed(channel_id)
        posts: list[Post] = []
        rejected: list[RejectedItem] = []
        newest = since
        for entry in parsed.entries:
            try:
                post = to_post(entry, account)
            except MalformedItem as e:
                rejected.append(RejectedItem(self.platform, account, to_jsonable(entry), f"malformed feed entry: {e}"))
                continue
            if since is not None and post.created_at < since:
                continue
            thumbnail = post.media[0].url if post.media else None
            if thumbnail:
                best = self._largest_thumbnail(thumbnail)
                post = _with_thumbnail(post, best)
            self._channel_of[post.post_id] = channel_id
            posts.append(post)
            newest = post.created_at if newest is None or post.created_at > newest else newest
        posts.sort(key=lambda p: (p.created_at, p.post_id))
        return PollResult(posts, iso(newest) if newest is not None and newest != since else None, rejected)

    # ------------------------------------------------------------------ lookup

    def _lookup_state(self) -> LookupRun:
        return LookupRun()

    def _lookup_batch(self, batch: list[str], authors: Mapping[str, str | None], state: LookupRun) -> dict[str, PostStatus]:
        valid = [i for i in batch if len(i) == 11 and set(i) <= _ID_CHARS]
        out = {i: PostStatus.unknown(f"not a YouTube video id: {i!r}") for i in batch if i not in valid}
        for post_id in valid:
            if authors.get(post_id):
                self._channel_of.setdefault(post_id, str(authors[post_id]))
        if not valid:
            return out
        if self.config.api_key is not None:
            return {**out, **self._lookup_data_api(valid, state)}
        return {**out, **{i: self._lookup_oembed(i, state) for i in valid}}

    def _missing(
        self, video_id: str, state: LookupRun, absent: str, check: Callable[[str], PostStatus | None]
    ) -> PostStatus:
        """A video YouTube no longer shows (``absent`` says how it was found missing): deleted while its
        channel still exists, else gone with its channel. ``check`` asks about the channel (None: it exists),
        once per run."""
        channel = self._channel_of.get(video_id)
        if channel is None:
            return PostStatus.unknown(f"{absent} and its channel is not known")
        if channel not in state.authors:
            try:
                state.authors[channel] = check(channel)
            except PlatformError as e:
                return PostStatus.unknown(f"{absent}; channel check failed: {e}")
        return state.authors[channel] or PostStatus.deleted()

    def _channel_by_feed(self, channel: str) -> PostStatus | None:
        """None while the channel has a feed; its author status when the feed is gone."""
        try:
            self._feed(channel)
        except ChannelGone as e:
            return PostStatus.of(StatusKind.AUTHOR_DELETED, str(e))
        return None

    def _channel_by_api(self, channel: str) -> PostStatus | None:
        """None while ``channels.list`` lists the channel; its author status when it does not."""
        answer = self._api(self._client().channels().list(part="id", id=channel), "channels.list")
        found = any(isinstance(i, dict) and i.get("id") == channel for i in answer.get("items", []))
        return None if found else PostStatus.of(StatusKind.AUTHOR_DELETED, "channel absent from channels.list")

    def _lookup_oembed(self, video_id: str, state: LookupRun) -> PostStatus:
        if state.limited:
            return PostStatus.unknown(state.limited)
        watch = f"https://www.youtube.com/watch?v={video_id}"
        try:
            response = self._get(f"{self._base}/oembed", f"oEmbed of {video_id}", params={"url": watch, "format": "json"})
        except RateLimited as e:
            state.limited = str(e)
            return PostStatus.unknown(str(e))
        except PlatformError as e:
            return PostStatus.unknown(str(e))
        if response.status_code == 404:
            return self._missing(video_id, state, "video not found", self._channel_by_feed)
        if response.status_code in (401, 403):
            return PostStatus.of(StatusKind.AUTHOR_PROTECTED, f"oEmbed answered {response.status_code}: private or not embeddable")
        if response.status_code != 200:
            return PostStatus.unknown(f"oEmbed of {video_id} answered HTTP {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            return PostStatus.unknown(f"oEmbed of {video_id} is not JSON (a consent or challenge page?)")
        if not isinstance(data, dict) or not isinstance(data.get("title"), str):
            return PostStatus.unknown(f"oEmbed of {video_id}: malformed answer")
        return PostStatus.alive(None)  # the video stands; the feed is where its content is read

    def _client(self) -> Any:
        if self._youtube is None:
            import httplib2
            from googleapiclient.discovery import build

            assert self.config.api_key is not None
            self._youtube = build(
                "youtube",
                "v3",
                developerKey=self.config.api_key.get_secret_value(),
                static_discovery=True,
                cache_discovery=False,
                client_options={"api_endpoint": self.config.data_api_base},
                http=httplib2.Http(timeout=self.config.timeout),
            )
        return self._youtube

    def _api(self, request: Any, what: str) -> dict[str, Any]:
        from googleapiclient.errors import HttpError

        try:
            answer = request.execute(num_retries=0)
        except HttpError as e:
            status = getattr(e.resp, "status", None)
            reason = describe_error(str(getattr(e, "reason", "") or e))
            if status == 429 or (status == 403 and ("quota" in reason.lower() or "rate" in reason.lower())):
                raise RateLimited(self.platform, None, f"youtube: {what}: {status} {reason}") from None
            raise PlatformError(f"youtube: {what}: HTTP {status} {reason}") from None
        except Exception as e:  # timeouts (socket/httplib2), bad JSON
            raise PlatformError(f"youtube: {what} failed: {describe_error(e)}") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("items", []), list):
            raise PlatformError(f"youtube: {what}: malformed answer")
        return answer

    def _lookup_data_api(self, ids: list[str], state: LookupRun) -> dict[str, PostStatus]:
        if state.limited:
            return {i: PostStatus.unknown(state.limited) for i in ids}
        try:
            answer = self._api(self._client().videos().list(part="snippet,status", id=",".join(ids), maxResults=50), "videos.list")
        except RateLimited as e:
            state.limited = str(e)
            return {i: PostStatus.unknown(str(e)) for i in ids}
        except PlatformError as e:
            return {i: PostStatus.unknown(str(e)) for i in ids}
        items = {item.get("id"): item for item in answer.get("items", []) if isinstance(item, dict)}
        out: dict[str, PostStatus] = {}
        for video_id in ids:
            item = items.get(video_id)
            if item is None:
                out[video_id] = self._missing(video_id, state, "video absent from videos.list", self._channel_by_api)
                continue
            status = item.get("status") if isinstance(item.get("status"), dict) else {}
            snippet = item.get("snippet") if isinstance(item.get("snippet"), dict) else {}
            if isinstance(snippet.get("channelId"), str):
                self._channel_of[video_id] = snippet["channelId"]
            if status.get("uploadStatus") == "rejected":
                out[video_id] = PostStatus.of(StatusKind.WITHHELD, f"upload rejected: {status.get('rejectionReason', '?')}")
            elif status.get("privacyStatus") == "private":
                out[video_id] = PostStatus.of(StatusKind.AUTHOR_PROTECTED, "video is private")
            elif status.get("uploadStatus") in ("processed", "uploaded") or status.get("privacyStatus") in ("public", "unlisted"):
                out[video_id] = PostStatus.alive(None)
            else:
                out[video_id] = PostStatus.unknown(f"unexpected status {status!r}")
        return out


class ChannelGone(PlatformError):
    """The channel has no feed any more (terminated or deleted)."""


# ----------------------------------------------------------------------------- parsing (pure functions)


def to_post(entry: Any, account: str) -> Post:
    """One feed entry as a post (pure); the still is the feed's thumbnail. Raises :class:`MalformedItem`."""
    video_id = entry.get("yt_videoid")
    if not isinstance(video_id, str) or len(video_id) != 11:
        raise MalformedItem(f"entry has no yt:videoId ({video_id!r})")
    try:
        created: datetime = parse_time(entry.get("published"))
    except ValueError as e:
        raise MalformedItem(f"video {video_id}: {e}") from None
    title = entry.get("title") if isinstance(entry.get("title"), str) else ""
    description = entry.get("summary") if isinstance(entry.get("summary"), str) else ""
    thumbs = [t for t in entry.get("media_thumbnail") or [] if isinstance(t, dict) and isinstance(t.get("url"), str)]
    media = (Media(url=thumbs[0]["url"], kind=MediaKind.PHOTO, media_id=f"yt:{video_id}"),) if thumbs else ()
    channel = entry.get("yt_channelid") if isinstance(entry.get("yt_channelid"), str) else None
    text = "\n\n".join(p for p in (title, description) if p)
    return YoutubeWatcher.new_post(
        account, video_id, f"https://www.youtube.com/watch?v={video_id}", text, created, media=media,
        raw=to_jsonable(entry), author_id=channel,
    )


def _with_thumbnail(post: Post, url: str) -> Post:
    return replace(post, media=tuple(replace(m, url=url) for m in post.media))


WATCHER = YoutubeWatcher
