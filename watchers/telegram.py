"""Telegram channel watcher: Telegram's own public web preview, no login, HTML parsed with selectolax.

- ``poll``: ``<api_base>/s/<channel>`` is the newest page of a channel (about 20 messages, oldest first);
  older pages are ``?before=<id>``. Pages are read back until the cursor is reached, at most
  ``history_pages`` pages (the first poll reads that many pages of history). The cursor is the highest
  message id seen; album members (``<id>?single`` links inside a grouped message) count as seen, since
  the album is reported once under its first id. A message the page shows with the ``edited`` marker is
  returned again even when older than the cursor, so the store records the edit (before/after).
- ``lookup``: ``<api_base>/<channel>/<id>?embed=1`` per message. An embed whose error block says "Post
  not found" is a deletion candidate only while the channel's preview is still readable (checked once per
  lookup); a channel whose preview redirects away (deleted, renamed, made private) is an author state,
  never a deletion of its posts. The current version of a live message comes back, so edits are seen.
- Answers that are not what a preview page looks like (a challenge or captcha page, a truncated page,
  an unknown layout), 429 (``Retry-After`` respected: no request goes out before it ends, polls raise
  :class:`bot.errors.RateLimited`), 5xx,
  timeouts and connection failures are ``unknown`` in lookup and :class:`bot.errors.PlatformError` in poll.

Per message: id, link (``https://t.me/<channel>/<id>``), date, text (entities flattened to plain text;
a link whose text is not its address is written ``text (address)``), photos and album photos (their
``background-image`` URLs), videos with their thumbnail (a video too big for the preview keeps its
thumbnail as a still), forwarded-from, the ``edited`` marker. ``raw`` holds those fields and the
message's HTML as served.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests
from pydantic import Field, field_validator
from selectolax.lexbor import LexborHTMLParser, LexborNode

from bot.config_base import WatcherConfig
from bot.errors import PlatformError, RateLimited
from bot.models import Media, MediaKind, Post, PostStatus, RejectedItem, StatusKind, iso, utcnow
from watchers._common import LookupRun, MalformedItem, describe_error, parse_time, read_capped, reset_time
from watchers.base import PollResult, Watcher

log = logging.getLogger(__name__)

PUBLIC_BASE = "https://t.me"
#: seconds to hold off after a 429 that named no Retry-After
DEFAULT_BACKOFF = 60.0
_USERNAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
#: blocks of a message text that end a line in the app
_BLOCKS = {"blockquote", "p", "div", "pre"}


def channel_name(account: str) -> str:
    """A channel username from ``name``, ``@name`` or ``https://t.me/name``; ValueError otherwise."""
    name = account.strip()
    for prefix in ("https://t.me/s/", "https://t.me/", "t.me/", "@"):
        if name.lower().startswith(prefix):
            name = name[len(prefix) :]
    name = name.strip("/")
    if not (4 <= len(name) <= 32 and name[0].isalpha() and set(name) <= _USERNAME_CHARS):
        raise ValueError(f'"{account}" is not a Telegram channel username (letters, digits and _, e.g. mod_russia_en)')
    return name


class TelegramConfig(WatcherConfig):
    """``accounts`` are public channel usernames (``mod_russia_en``, ``@mod_russia_en`` or its t.me link)."""

    #: the preview site is a public web page, not an API: one page per channel a minute at most
    min_interval: ClassVar[float] = 60.0

    api_base: str = PUBLIC_BASE
    #: pages of about 20 messages read back per poll at most (the first poll's history)
    history_pages: int = Field(default=5, ge=1, le=100)
    user_agent: str = "afterimage/1.0 (monitoring public channels for fact-checkers; +https://github.com/afterimage)"

    @field_validator("accounts")
    @classmethod
    def _channels(cls, v: list[str]) -> list[str]:
        return [channel_name(a) for a in v]


class ChannelGone(PlatformError):
    """The channel has no public preview (deleted, renamed, made private or preview disabled)."""


@dataclass
class _Page:
    """One preview page: its messages, and the ``?before=`` link to older ones."""

    messages: list[LexborNode]
    before: int | None


class TelegramWatcher(Watcher):
    platform = "telegram"
    config_model = TelegramConfig
    #: one embed page per message
    lookup_batch_size = 1
    #: a page larger than this is refused (real pages are about 100 KB)
    max_page_bytes = 5 * 1024 * 1024

    def __init__(self, config: TelegramConfig):
        super().__init__(config)
        self.config: TelegramConfig = config
        self._base = config.api_base or PUBLIC_BASE
        self._session = requests.Session()
        self._session.headers["User-Agent"] = config.user_agent
        self._session.headers["Accept-Language"] = "en"
        #: the end of the last 429's Retry-After: until then no request goes out (polls and look-ups alike)
        self._limited_until: datetime | None = None

    def close(self) -> None:
        self._session.close()

    # ------------------------------------------------------------------ fetching

    def _get(self, path: str, what: str) -> str:
        """The HTML at ``path``; raises RateLimited (429, or still within the last 429's ``Retry-After``: no
        request is sent then), ChannelGone (a redirect away from the preview) or PlatformError (anything else
        that is not a whole page)."""
        now = utcnow()
        if self._limited_until is not None and now < self._limited_until:
            raise RateLimited(self.platform, self._limited_until, f"telegram: {what} not sent: rate limited until {iso(self._limited_until)}")
        url = self._base + path
        try:
            response = self._session.get(url, timeout=self.config.timeout, allow_redirects=False, stream=True)
            try:
                if response.status_code == 429:
                    self._limited_until = reset_time(response.headers) or now + timedelta(seconds=DEFAULT_BACKOFF)
                    raise RateLimited(self.platform, self._limited_until, f"telegram: {what} answered 429")
                if response.status_code in (301, 302, 303, 307, 308):
                    raise ChannelGone(f"telegram: {what} redirects to {response.headers.get('Location', '?')}")
                if response.status_code != 200:
                    raise PlatformError(f"telegram: {what} answered HTTP {response.status_code}")
                body = read_capped(response, self.max_page_bytes, f"telegram: {what}")
            finally:
                response.close()
        except requests.RequestException as e:
            raise PlatformError(f"telegram: {what} failed: {describe_error(e)}") from e
        text = body.decode(response.encoding or "utf-8", errors="replace")
        if "</html>" not in text[-4096:].lower():
            raise PlatformError(f"telegram: {what}: truncated page (no closing </html>)")
        return text

    def _page(self, channel: str, before: int | None) -> _Page:
        path = f"/s/{channel}" + (f"?before={before}" if before else "")
        html = self._get(path, f"channel page {path}")
        tree = LexborHTMLParser(html)
        if tree.css_first("section.tgme_channel_history") is None:
            if tree.css_first("div.tgme_page_extra, a.tgme_username_link") is not None:
                raise ChannelGone(f"telegram: {channel} has no public preview (deleted, renamed or private)")
            raise PlatformError(f"telegram: {path} is not a channel preview page (a challenge page or a new layout)")
        more = tree.css_first("a.tme_messages_more[data-before]")
        before_id = _int(more.attributes.get("data-before")) if more is not None else None
        return _Page(tree.css("div.tgme_widget_message[data-post]"), before_id)

    # ------------------------------------------------------------------ poll

    def poll(self, account: str, cursor: str | None) -> PollResult:
        channel = channel_name(account)
        if cursor is not None and not cursor.isdigit():
            raise PlatformError(f"telegram: cursor {cursor!r} is not a message id")
        last = int(cursor) if cursor else 0
        nodes: list[LexborNode] = []
        seen: set[int] = set()
        before: int | None = None
        for _ in range(self.config.history_pages):
            page = self._page(channel, before)
            fresh = [n for n in page.messages if _post_number(n) not in seen]
            ids = [i for i in (_post_number(n) for n in fresh) if i is not None]
            nodes = fresh + nodes
            seen.update(ids)
            if not ids or (last and min(ids) <= last + 1) or page.before is None:
                break
            before = min(ids) if before is None else min(min(ids), before)
        else:
            if last:
                log.warning("telegram: %s: stopped after %d pages; older new messages were not read", channel, self.config.history_pages)

        posts: dict[str, Post] = {}
        rejected: list[RejectedItem] = []
        newest = last
        for node in nodes:
            number = _post_number(node)
            try:
                post, members = to_post(node, channel)
            except MalformedItem as e:
                log.warning("telegram: %s: skipped a malformed message: %s", channel, e)
                rejected.append(RejectedItem(self.platform, account, {"html": node.html}, f"malformed message: {e}"))
                newest = max(newest, number or 0)
                continue
            newest = max([newest, *members])
            if post.raw["id"] > last or post.raw["edited"]:
                posts[post.post_id] = post
        ordered = sorted(posts.values(), key=lambda p: p.raw["id"])
        return PollResult(ordered, str(newest) if newest > last else None, rejected)

    # ------------------------------------------------------------------ lookup

    def _lookup_state(self) -> LookupRun:
        return LookupRun()

    def _lookup_batch(self, batch: list[str], authors: Mapping[str, str | None], state: LookupRun) -> dict[str, PostStatus]:
        return {post_id: self._lookup_one(post_id, state) for post_id in batch}

    def _lookup_one(self, post_id: str, state: LookupRun) -> PostStatus:
        channel, _, number = post_id.partition("/")
        if not number.isdigit():
            return PostStatus.unknown(f"not a Telegram message id (channel/number): {post_id!r}")
        try:
            html = self._get(f"/{channel}/{number}?embed=1", f"message {post_id}")
        except RateLimited as e:
            return PostStatus.unknown(str(e))
        except ChannelGone:
            return self._channel_state(channel, state) or PostStatus.unknown(f"embed of {post_id} redirects away")
        except PlatformError as e:
            return PostStatus.unknown(str(e))
        tree = LexborHTMLParser(html)
        error = tree.css_first("div.tgme_widget_message_error")
        if error is not None:
            reason = " ".join(error.text().split())
            if reason.lower() not in ("post not found", "message not found"):
                return self._channel_state(channel, state) or PostStatus.unknown(f"embed error: {reason}")
            return self._channel_state(channel, state) or PostStatus.deleted()
        node = tree.css_first(f'div.tgme_widget_message[data-post="{channel}/{number}"]')
        if node is None:
            return PostStatus.unknown(f"embed of {post_id} shows neither the message nor an error (challenge page?)")
        try:
            post, _ = to_post(node, channel)
        except MalformedItem as e:
            return PostStatus.unknown(f"malformed message in embed: {e}")
        return PostStatus.alive(post)

    def _channel_state(self, channel: str, state: LookupRun) -> PostStatus | None:
        """None while the channel's preview is readable; its account-level status when it is gone; unknown
        when the check itself failed (a message cannot be called deleted without it)."""
        if channel not in state.authors:
            try:
                self._page(channel, None)
                state.authors[channel] = None
            except ChannelGone as e:
                state.authors[channel] = PostStatus.of(StatusKind.AUTHOR_DELETED, str(e))
            except RateLimited as e:
                return PostStatus.unknown(f"message not found; channel check rate limited: {e}")
            except PlatformError as e:
                return PostStatus.unknown(f"message not found; channel check failed: {e}")
        return state.authors[channel]


# ----------------------------------------------------------------------------- parsing (pure functions)


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _post_number(node: LexborNode) -> int | None:
    _, _, number = (node.attributes.get("data-post") or "").partition("/")
    return _int(number)


def background_url(style: str | None) -> str | None:
    """The URL of ``background-image:url('...')`` in an inline style (None if there is none)."""
    if not style:
        return None
    for declaration in style.split(";"):
        name, _, value = declaration.partition(":")
        if name.strip().lower() != "background-image":
            continue
        value = value.strip()
        if value.lower().startswith("url(") and value.endswith(")"):
            url = value[4:-1].strip().strip("'\"")
            return "https:" + url if url.startswith("//") else url or None
    return None


def flatten_text(node: LexborNode | None) -> str:
    """Plain text of a message text block: ``<br>`` and blocks are line breaks, emoji images their
    character, links kept as ``text (address)`` unless the text already is the address."""
    if node is None:
        return ""
    parts: list[str] = []
    _walk(node, parts)
    lines = [" ".join(line.replace("\xa0", " ").split()) for line in "".join(parts).split("\n")]
    text = "\n".join(lines).strip()
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text


def _walk(node: LexborNode, parts: list[str]) -> None:
    for child in node.iter(include_text=True):
        tag = child.tag
        if tag == "-text":
            parts.append(child.text_content or "")
        elif tag == "br":
            parts.append("\n")
        elif tag == "a":
            label = child.text(deep=True)
            href = (child.attributes.get("href") or "").strip()
            parts.append(label)
            if href and not href.startswith("?") and href.rstrip("/") not in label and label.strip():
                parts.append(f" ({href})")
        elif tag in ("script", "style"):
            continue
        else:
            if tag in _BLOCKS:
                parts.append("\n")
            _walk(child, parts)
            if tag in _BLOCKS:
                parts.append("\n")


def _message_id_of(href: str | None) -> str | None:
    """``https://t.me/<channel>/<id>?single`` -> ``<id>``."""
    if not href:
        return None
    last = urlsplit(href).path.rstrip("/").rpartition("/")[2]
    return last if last.isdigit() else None


def to_post(node: LexborNode, channel: str) -> tuple[Post, list[int]]:
    """One message of a preview or embed page as a post, and every message id it covers (album members).

    Pure: reads the node only. Raises :class:`MalformedItem` when the message lacks its id or date."""
    data_post = node.attributes.get("data-post") or ""
    author, _, number = data_post.partition("/")
    if not number.isdigit():
        raise MalformedItem(f"data-post {data_post!r} is not <channel>/<id>")
    time_node = node.css_first("a.tgme_widget_message_date time[datetime], time[datetime]")
    if time_node is None:
        raise MalformedItem(f"message {number} has no date")
    try:
        created: datetime = parse_time(time_node.attributes.get("datetime"))
    except ValueError as e:
        raise MalformedItem(f"message {number}: {e}") from None
    text = flatten_text(node.css_first(".tgme_widget_message_text"))
    members = [int(number)]
    media: list[Media] = []
    for wrap in node.css("a.tgme_widget_message_photo_wrap"):
        url = background_url(wrap.attributes.get("style"))
        if not url:
            raise MalformedItem(f"message {number}: a photo has no background-image URL")
        member = _message_id_of(wrap.attributes.get("href")) or number
        members.append(int(member))
        media.append(Media(url=url, kind=MediaKind.PHOTO, media_id=f"{author}/{member}"))
    for player in node.css("a.tgme_widget_message_video_player"):
        member = _message_id_of(player.attributes.get("href")) or number
        members.append(int(member))
        thumb_node = player.css_first("i.tgme_widget_message_video_thumb")
        thumb = background_url(thumb_node.attributes.get("style")) if thumb_node is not None else None
        video = player.css_first("video.tgme_widget_message_video[src]")
        src = video.attributes.get("src") if video is not None else None
        if src:
            media.append(Media(url=src, kind=MediaKind.VIDEO, preview_url=thumb, media_id=f"{author}/{member}"))
        elif thumb:  # "Media is too big": the preview has the thumbnail only, still a picture to match
            media.append(Media(url=thumb, kind=MediaKind.PHOTO, media_id=f"{author}/{member}:thumb"))
    forwarded = node.css_first(".tgme_widget_message_forwarded_from")
    forwarded_from = None
    if forwarded is not None:
        name = forwarded.css_first(".tgme_widget_message_forwarded_from_name")
        forwarded_from = {
            "name": " ".join((name or forwarded).text().replace("Forwarded from", "").split()),
            "url": name.attributes.get("href") if name is not None else None,
        }
    edited = any("edited" in meta.text().lower() for meta in node.css(".tgme_widget_message_meta"))
    raw = {
        "channel": author,
        "id": int(number),
        "date": time_node.attributes.get("datetime"),
        "text": text,
        "media": [m.to_dict() for m in media],
        "forwarded_from": forwarded_from,
        "edited": edited,
        "html": node.html,
    }
    post = TelegramWatcher.new_post(
        channel, f"{author}/{number}", f"{PUBLIC_BASE}/{author}/{number}", text, created, media=media, raw=raw,
        author_id=author,
    )
    return post, sorted(set(members))


WATCHER = TelegramWatcher
