"""Facebook Pages watcher: Graph API through python-facebook-api (``pyfacebook.GraphAPI``).

- ``poll``: ``/{version}/{page}/posts`` with the post fields and ``attachments{...,subattachments}``,
  ``since=<cursor>`` and every ``paging.next`` page. The cursor is the newest ``created_time`` seen (ISO
  8601, UTC); Graph's ``since`` is inclusive, so posts not newer than the cursor are dropped.
- ``lookup``: ``/{version}/?ids=a,b,...`` in batches of 50. Graph fails a whole multi-id request when one id
  does not exist, so such a batch falls back to one request per id. Error code 100 / subcode 33 ("does not
  exist, cannot be loaded due to missing permissions, ...") is a deletion candidate only if a control
  request for the post's page succeeds with the same token; otherwise the token has lost access and the
  answer is ``unknown`` with a permission error.
- Rate limits (HTTP 429, error codes 4, 17, 32, 613, 80001-80014) raise :class:`RateLimited` in ``poll``
  (reset from ``estimated_time_to_regain_access`` in the usage headers) and make ``lookup`` answers
  ``unknown``. The library's own sleeping on usage headers is switched off: the scheduler decides.

The access token travels in query strings; it is registered for redaction and every message built from a
request error is scrubbed (:func:`watchers._common.describe_error`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import requests
from pydantic import SecretStr
from pyfacebook import FacebookError, GraphAPI, LibraryError, RateLimit

from bot.errors import ConfigError, PlatformError, RateLimited
from bot.config_base import WatcherConfig
from bot.models import Media, MediaKind, Post, PostStatus, RejectedItem, iso, parse_iso
from bot.redact import register_secret
from watchers._common import MalformedItem, RoutedSession, describe_error, scrub
from watchers.base import PollResult, Watcher

log = logging.getLogger(__name__)

GRAPH_HOST = "https://graph.facebook.com"

ATTACHMENT_FIELDS = "media,media_type,type,url,target,title,description,subattachments"
POST_FIELDS = f"id,message,created_time,updated_time,permalink_url,from{{id,name}},attachments{{{ATTACHMENT_FIELDS}}}"

RATE_LIMIT_CODES = {4, 17, 32, 613} | set(range(80000, 80015))
PERMISSION_CODES = {10, 190, 200} | set(range(200, 300))
_ACCOUNT = re.compile(r"^[A-Za-z0-9._\-]+$")


class GraphError(PlatformError):
    """Graph answered with an error object (``{"error": {"message", "type", "code", "error_subcode"}}``)."""

    def __init__(self, code: int | None, subcode: int | None, message: str, status: int | None):
        self.code = code
        self.subcode = subcode
        self.status = status
        super().__init__(message)


class _TolerantRateLimit(RateLimit):
    """pyfacebook parses usage headers on every response and would raise on an unexpected key; the
    watcher reads those headers itself, so a malformed one must not fail the request."""

    def set_limit(self, headers: Any) -> None:
        try:
            super().set_limit(headers)
        except Exception as e:  # noqa: BLE001 - headers are advisory
            log.debug("facebook: ignoring unparsable usage header: %s", e)


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class FacebookConfig(WatcherConfig):
    """``accounts`` are page ids or page usernames."""

    #: Graph allows 200 calls per hour per user token and app; 60 s per page stays inside for a few pages
    min_interval: ClassVar[float] = 60.0

    access_token: SecretStr
    api_base: str = "https://graph.facebook.com"
    version: str = "v24.0"


class FacebookWatcher(Watcher):
    """Watches Facebook pages (``config.accounts`` are page ids or page usernames)."""

    platform = "facebook"
    config_model = FacebookConfig
    lookup_batch_size = 50  # Graph's limit for ?ids=
    #: pages of 100 posts read per poll at most
    max_pages = 50

    def __init__(self, config: FacebookConfig, api: GraphAPI | None = None):
        super().__init__(config)
        token = config.access_token.get_secret_value()
        register_secret(token)
        base = (config.api_base or GRAPH_HOST).rstrip("/") + "/"
        if api is None:
            try:
                api = GraphAPI(
                    access_token=token,
                    version=config.version,
                    base_url=base,
                    timeout=config.timeout,
                    sleep_on_rate_limit=False,
                )
            except LibraryError as e:
                raise ConfigError([f"watchers.facebook: {scrub(getattr(e, 'message', str(e)))}"]) from None
        self.api = api
        self.session = RoutedSession(timeout=float(config.timeout))
        self.api.session = self.session
        self.api.rate_limit = _TolerantRateLimit()
        #: page id -> configured account name, and post id -> account, learned while polling
        self._account_of_page: dict[str, str] = {}
        self._account_of_post: dict[str, str] = {}

    def close(self) -> None:
        self.session.close()

    # ------------------------------------------------------------------------------------------ requests

    def _call(self, method: Callable[..., Any], **kwargs: Any) -> dict[str, Any]:
        """Call a GraphAPI method; map every failure to RateLimited, GraphError or PlatformError."""
        try:
            data = method(**kwargs)
        except FacebookError as e:
            code, subcode = _as_int(getattr(e, "code", None)), _as_int(getattr(e, "error_subcode", None))
            message = scrub(f"graph error {code}/{subcode}: {getattr(e, 'message', '')}")
            response = self.session.last_response
            status = response.status_code if response is not None else None
            if code in RATE_LIMIT_CODES or status == 429:
                raise RateLimited(self.platform, _reset_at(response), f"facebook: rate limited ({message})") from None
            raise GraphError(code, subcode, f"facebook: {message}", status) from None
        except (LibraryError, requests.RequestException, ValueError, KeyError, TypeError, AttributeError) as e:
            # ValueError covers truncated JSON; LibraryError a body that is not JSON; KeyError no Content-Type
            response = self.session.last_response
            if response is not None and response.status_code == 429:
                raise RateLimited(self.platform, _reset_at(response), f"facebook: rate limited ({describe_error(e)})") from None
            status = f"HTTP {response.status_code}: " if response is not None else ""
            raise PlatformError(f"facebook: {status}{describe_error(e)}") from None
        response = self.session.last_response
        if response is not None and response.status_code == 429:
            raise RateLimited(self.platform, _reset_at(response), "facebook: rate limited (HTTP 429)")
        if response is not None and response.status_code >= 400:
            raise PlatformError(f"facebook: HTTP {response.status_code} without an error object")
        if not isinstance(data, dict):
            raise PlatformError(f"facebook: answer is a {type(data).__name__}, not a JSON object")
        return data

    # ------------------------------------------------------------------------------------------ poll

    def poll(self, account: str, cursor: str | None) -> PollResult:
        page = account.strip()
        if not _ACCOUNT.match(page):
            raise PlatformError(f"facebook: {account!r} is not a page id or username")
        since = _parse_cursor(cursor)
        args: dict[str, Any] = {"fields": POST_FIELDS, "limit": 100}
        if since is not None:
            args["since"] = int(since.timestamp())
        items: list[Any] = []
        for _ in range(self.max_pages):
            answer = self._call(self.api.get_connection, object_id=page, connection="posts", **args)
            data = answer.get("data")
            if not isinstance(data, list):
                raise PlatformError("facebook: posts page malformed: data is not a list")
            items.extend(data)
            paging = answer.get("paging")
            next_url = paging.get("next") if isinstance(paging, dict) else None
            if not data or not isinstance(next_url, str) or not next_url:
                break
            # keep the paging parameters of the next URL (after, until, __paging_token...), never its token,
            # and always ask for the full set of fields
            args = {k: v for k, v in parse_qsl(urlsplit(next_url).query) if k not in ("access_token", "appsecret_proof")}
            args["fields"] = POST_FIELDS
        else:
            log.warning("facebook: stopped reading %s after %d pages", account, self.max_pages)

        posts: dict[str, Post] = {}
        rejected: list[RejectedItem] = []
        newest = since
        for item in items:
            created = _created(item)
            # inclusive: Graph times have one-second resolution, so a post published in the same second as the
            # cursor may arrive later; the store reports a post seen before as unchanged
            if created is not None and since is not None and created < since:
                continue
            try:
                post = self._to_post(item, account)
            except MalformedItem as e:
                log.warning("facebook: skipping malformed post from %s: %s", account, e)
                rejected.append(RejectedItem(self.platform, account, item, f"malformed post: {e}"))
                if created is not None and (newest is None or created > newest):
                    newest = created
                continue
            posts[post.post_id] = post
            if newest is None or post.created_at > newest:
                newest = post.created_at
            self._account_of_post[post.post_id] = account
            page_id = post.author_id or post.post_id.split("_")[0]
            self._account_of_page.setdefault(page_id, account)
        ordered = sorted(posts.values(), key=lambda p: (p.created_at, p.post_id))
        new_cursor = iso(newest) if newest is not None and newest != since else None
        return PollResult(ordered, new_cursor, rejected)

    # ------------------------------------------------------------------------------------------ lookup

    def _lookup_state(self) -> _LookupState:
        return _LookupState()

    def _lookup_batch(self, batch: list[str], authors: Mapping[str, str | None], state: _LookupState) -> dict[str, PostStatus]:
        result = {i: PostStatus.unknown("not a Facebook post id") for i in batch if not _ACCOUNT.match(i)}
        valid = [i for i in batch if i not in result]
        return {**result, **self._query_batch(valid, state, retry=True)} if valid else result

    def _query_batch(self, batch: list[str], state: _LookupState, retry: bool) -> dict[str, PostStatus]:
        if state.limited is not None:
            return {i: PostStatus.unknown(f"rate limited: {state.limited}") for i in batch}
        try:
            answer = self._call(self.api.get_objects, ids=",".join(batch), fields=POST_FIELDS)
        except RateLimited as e:
            state.limited = e
            return {i: PostStatus.unknown(f"rate limited: {e}") for i in batch}
        except GraphError as e:
            if e.code not in (100, 803):
                return {i: PostStatus.unknown(_explain(e)) for i in batch}
            # Graph fails the whole request when one id does not resolve ("Some of the aliases you
            # requested do not exist: a,b"): ask again without the ids it named, and for those alone
            named = _aliases_named(str(e), batch)
            out: dict[str, PostStatus] = {}
            rest = [i for i in batch if i not in named]
            if retry and named and rest:
                out.update(self._query_batch(rest, state, retry=False))
                alone = named
            else:
                alone = batch
            for post_id in alone:
                out[post_id] = self._lookup_one(post_id, state)
            return out
        except PlatformError as e:
            return {i: PostStatus.unknown(str(e)) for i in batch}
        out = {}
        for post_id in batch:
            item = answer.get(post_id)
            out[post_id] = self._lookup_one(post_id, state) if item is None else self._alive(item, post_id)
        return out

    def _alive(self, item: Any, post_id: str) -> PostStatus:
        try:
            post = self._to_post(item, self._account_for(post_id))
        except MalformedItem as e:
            return PostStatus.unknown(f"malformed post: {e}")
        if post.post_id != post_id:
            return PostStatus.unknown(f"answer for {post_id} carries id {post.post_id}")
        return PostStatus.alive(post)

    def _lookup_one(self, post_id: str, state: _LookupState) -> PostStatus:
        if state.limited is not None:
            return PostStatus.unknown(f"rate limited: {state.limited}")
        try:
            item = self._call(self.api.get_object, object_id=post_id, fields=POST_FIELDS)
        except RateLimited as e:
            state.limited = e
            return PostStatus.unknown(f"rate limited: {e}")
        except GraphError as e:
            if (e.code == 100 and e.subcode == 33) or e.code == 803:
                return self._deletion_candidate(post_id, e, state)
            return PostStatus.unknown(_explain(e))
        except PlatformError as e:
            return PostStatus.unknown(str(e))
        return self._alive(item, post_id)

    def _deletion_candidate(self, post_id: str, error: GraphError, state: _LookupState) -> PostStatus:
        """The post cannot be loaded: deleted only if the same token can still load its page."""
        page_id = post_id.split("_")[0] if "_" in post_id else None
        if page_id is None:
            return PostStatus.unknown(f"cannot be loaded and its page is not known: {error}")
        if page_id not in state.pages:
            try:
                answer = self._call(self.api.get_object, object_id=page_id, fields="id,name")
                state.pages[page_id] = None if _as_str(answer.get("id")) else "control answer has no id"
            except RateLimited as e:
                state.limited = e
                return PostStatus.unknown(f"post cannot be loaded; control request rate limited: {e}")
            except PlatformError as e:
                state.pages[page_id] = str(e)
        problem = state.pages[page_id]
        if problem is None:
            return PostStatus.deleted()
        return PostStatus.unknown(
            f"permission problem: post {post_id} cannot be loaded and the control request for page {page_id} "
            f"failed too ({problem}); the token may lack Page Public Content Access or the page is unavailable"
        )

    def _account_for(self, post_id: str) -> str:
        return self._account_of_post.get(post_id) or self._account_of_page.get(post_id.split("_")[0]) or post_id.split("_")[0]

    # ------------------------------------------------------------------------------------------ normalizing

    def _to_post(self, item: Any, account: str) -> Post:
        if not isinstance(item, dict):
            raise MalformedItem(f"post is a {type(item).__name__}, not an object")
        post_id = item.get("id")
        if not isinstance(post_id, str) or not _ACCOUNT.match(post_id):
            raise MalformedItem(f"id {post_id!r} is not a post id")
        created = _created(item)
        if created is None:
            raise MalformedItem(f"post {post_id}: created_time {item.get('created_time')!r} is not a time")
        message = item.get("message", "")
        if not isinstance(message, str):
            raise MalformedItem(f"post {post_id}: message is {type(message).__name__}, not a string")
        permalink = item.get("permalink_url")
        if permalink is not None and not isinstance(permalink, str):
            raise MalformedItem(f"post {post_id}: permalink_url is not a string")
        author = item.get("from")
        author_id = _as_str(author.get("id")) if isinstance(author, dict) else None
        media = _media_of(item.get("attachments"), post_id)
        return self.new_post(
            account, post_id, permalink or f"https://www.facebook.com/{post_id}", message, created, media=media, raw=item,
            author_id=author_id or (post_id.split("_")[0] if "_" in post_id else None),
        )


class _LookupState:
    """What one lookup call learned: a rate limit stops further requests; control answers are reused."""

    def __init__(self) -> None:
        self.limited: RateLimited | None = None
        #: page id -> None when the page loads, else why not
        self.pages: dict[str, str | None] = {}


def _media_of(attachments: Any, post_id: str) -> list[Media]:
    if attachments is None:
        return []
    if not isinstance(attachments, dict) or not isinstance(attachments.get("data", []), list):
        raise MalformedItem(f"post {post_id}: attachments is not {{'data': [...]}}")
    media: list[Media] = []
    for attachment in attachments.get("data", []):
        media.extend(_attachment_media(attachment, post_id))
    # an album can repeat its cover image; keep each attachment once
    seen: set[str] = set()
    unique_media = []
    for m in media:
        if m.identity() not in seen:
            seen.add(m.identity())
            unique_media.append(m)
    return unique_media


def _attachment_media(attachment: Any, post_id: str) -> list[Media]:
    if not isinstance(attachment, dict):
        raise MalformedItem(f"post {post_id}: an attachment is not an object")
    subs = attachment.get("subattachments")
    if subs is not None:
        if not isinstance(subs, dict) or not isinstance(subs.get("data"), list):
            raise MalformedItem(f"post {post_id}: subattachments is not {{'data': [...]}}")
        if subs["data"]:  # an album: its items, not its cover
            out: list[Media] = []
            for sub in subs["data"]:
                out.extend(_attachment_media(sub, post_id))
            return out
    if attachment.get("type") == "share":
        # a shared link's preview card: Bluesky's rule, link cards are not attachments (the picture belongs to
        # the linked page, changes with it, and is not what the page posted); a shared GIF is kept
        # (``animated_image_share``), as Bluesky keeps a linked GIF
        return []
    media = attachment.get("media")
    if media is None:
        return []  # a status attachment without an image
    if not isinstance(media, dict):
        raise MalformedItem(f"post {post_id}: attachment media is not an object")
    image = media.get("image")
    if image is not None and not isinstance(image, dict):
        raise MalformedItem(f"post {post_id}: attachment media.image is not an object")
    src = _as_str((image or {}).get("src"))
    source = _as_str(media.get("source"))
    media_type = str(attachment.get("media_type") or "")
    kind_name = str(attachment.get("type") or "")
    target = attachment.get("target")
    target_id = _as_str(target.get("id")) if isinstance(target, dict) else None
    if "animated" in kind_name or "animated" in media_type or media_type == "gif":
        kind = MediaKind.GIF
    elif media_type == "video" or kind_name.startswith("video"):
        kind = MediaKind.VIDEO
    else:
        kind = MediaKind.PHOTO
    if kind is MediaKind.PHOTO:
        if not src:
            raise MalformedItem(f"post {post_id}: photo attachment has no media.image.src")
        return [Media(url=src, kind=kind, media_id=target_id)]
    url = source or src
    if not url:
        raise MalformedItem(f"post {post_id}: {kind.value} attachment has neither media.source nor media.image.src")
    if not source:
        log.info("facebook: %s of post %s has no media.source; archiving its preview image only", kind.value, post_id)
    return [Media(url=url, kind=kind, preview_url=src, media_id=target_id)]


def _as_str(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _created(item: Any) -> datetime | None:
    if not isinstance(item, dict):
        return None
    return _parse_time(item.get("created_time"))


def _parse_time(value: Any) -> datetime | None:
    """Graph times: ``2024-06-10T12:00:00+0000`` (default) or unix seconds (``date_format=U``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(value, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        if value.isdigit():
            return _parse_time(int(value))
        try:
            return parse_iso(value)
        except ValueError:
            return None
    return None


def _parse_cursor(cursor: str | None) -> datetime | None:
    if cursor is None or cursor == "":
        return None
    parsed = _parse_time(cursor)
    if parsed is None:
        raise PlatformError(f"facebook: cursor {cursor!r} is not a time (ISO 8601 or unix seconds)")
    return parsed


def _reset_at(response: requests.Response | None) -> datetime | None:
    """When Graph allows requests again: ``estimated_time_to_regain_access`` (minutes) in the usage
    headers, else ``Retry-After`` seconds; None when the answer does not say."""
    if response is None:
        return None
    minutes: list[float] = []

    def collect(value: Any) -> None:
        if isinstance(value, dict):
            eta = value.get("estimated_time_to_regain_access")
            if isinstance(eta, (int, float)) and not isinstance(eta, bool) and eta > 0:
                minutes.append(float(eta))
            for v in value.values():
                if isinstance(v, (dict, list)):
                    collect(v)
        elif isinstance(value, list):
            for v in value:
                collect(v)

    for header in ("x-business-use-case-usage", "x-app-usage", "x-page-usage"):
        text = response.headers.get(header)
        if text:
            try:
                collect(json.loads(text))
            except ValueError:
                log.debug("facebook: %s header is not JSON", header)
    now = datetime.now(timezone.utc)
    if minutes:
        return now + timedelta(minutes=max(minutes))
    retry_after = _as_int(response.headers.get("Retry-After"))
    if retry_after is not None and retry_after > 0:
        return now + timedelta(seconds=retry_after)
    return None


def _aliases_named(message: str, batch: list[str]) -> list[str]:
    """The ids of ``batch`` that an "aliases ... do not exist: a,b" error message names."""
    _, sep, tail = message.partition("do not exist:")
    if not sep:
        return []
    named = {part.strip() for part in re.split(r"[,\s]+", tail) if part.strip()}
    return [i for i in batch if i in named]


def _explain(error: GraphError) -> str:
    if error.code in PERMISSION_CODES:
        return f"permission problem: {error}"
    return str(error)


WATCHER = FacebookWatcher
