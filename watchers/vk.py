"""VK watcher: the VK API through vk_api with a service token (``${VK_SERVICE_TOKEN}``).

- ``poll``: ``wall.get`` by ``domain`` (a short name such as ``mil``) or ``owner_id`` (``-<group id>`` for a
  community), 100 posts a page by ``offset`` until the cursor is reached (at most ``max_pages`` pages; the
  first poll reads one page). The cursor is the highest post id seen; a pinned post (listed first whatever
  its age) is not mistaken for a new one.
- ``lookup``: ``wall.getById`` with up to 100 ``<owner>_<id>`` per request. A post missing from the answer
  is a deletion candidate only when the wall itself still answers (one ``wall.get`` per owner and lookup);
  a wall that is private, blocked or gone is an author state.
- Errors, honestly: 6 (too many requests per second), 9 (flood control) and 29 (rate limit reached) are rate
  limits; 15, 30, 203 (access denied, private profile, closed community) and 18 (deleted or banned) are author
  states; 14 (captcha), 10 (internal error), HTTP 5xx, timeouts and malformed answers are ``unknown``, never
  ``deleted``. vk_api's own retry and captcha prompts are switched off: the scheduler decides when to retry.
- Media: photos at their largest size (``orig_photo``, else the biggest of ``sizes``), video thumbnails (the
  API gives no video file), the attachments of reposts (``copy_history``). Link cards are not attachments
  (the rule Bluesky and Facebook follow).

vk_api hard-codes ``https://api.vk.ru``; its ``requests`` session is a :class:`watchers._common.RoutedSession`
that sends those requests to ``api_base`` with ``timeout``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

import requests
from pydantic import SecretStr, field_validator

from bot.config_base import WatcherConfig
from bot.errors import PlatformError, RateLimited
from bot.models import Media, MediaKind, Post, PostStatus, RejectedItem, StatusKind
from bot.redact import register_secret
from watchers._common import LookupRun, MalformedItem, RoutedSession, describe_error, epoch_to_datetime, objects, reset_time
from watchers.base import PollResult, Watcher

log = logging.getLogger(__name__)

VK_API_HOST = "https://api.vk.ru"  # what vk_api builds its URLs with
RATE_LIMIT_CODES = {6, 9, 29}
#: error code -> the account-level state of the wall's posts
AUTHOR_CODES = {
    15: StatusKind.AUTHOR_PROTECTED,  # access denied (wall closed)
    30: StatusKind.AUTHOR_PROTECTED,  # this profile is private
    203: StatusKind.AUTHOR_PROTECTED,  # access to the community denied (closed)
    18: StatusKind.AUTHOR_DELETED,  # page deleted or banned
    19: StatusKind.WITHHELD,  # content blocked
}


def wall_name(account: str) -> str:
    """``mil``, ``-72580409``, ``vk.com/mil`` or ``https://vk.com/club72580409`` -> ``mil`` / ``-72580409``."""
    name = account.strip()
    for prefix in ("https://", "http://", "m.vk.com/", "vk.com/", "vk.ru/", "@"):
        if name.lower().startswith(prefix):
            name = name[len(prefix) :]
    name = name.strip("/")
    for prefix, sign in (("club", "-"), ("public", "-"), ("id", "")):
        rest = name[len(prefix) :]
        if name.startswith(prefix) and rest.isdigit():
            return sign + rest
    if name.lstrip("-").isdigit() or (name and all(c.isalnum() or c in "._" for c in name)):
        return name
    raise ValueError(f'"{account}" is not a VK wall (a short name like mil, or an owner id like -72580409)')


class VkConfig(WatcherConfig):
    """``accounts`` are walls: short names (``mil``) or owner ids (``-72580409`` for a community)."""

    #: VK allows 3 requests a second and a daily quota per method for a service token
    min_interval: ClassVar[float] = 60.0

    service_token: SecretStr
    api_base: str = VK_API_HOST
    api_version: str = "5.199"
    #: pages of 100 posts read back per poll at most
    max_pages: int = 10

    @field_validator("accounts")
    @classmethod
    def _walls(cls, v: list[str]) -> list[str]:
        return [wall_name(a) for a in v]


class VkError(PlatformError):
    def __init__(self, message: str, code: int | None):
        super().__init__(message)
        self.code = code


class VkWatcher(Watcher):
    platform = "vk"
    config_model = VkConfig
    lookup_batch_size = 100  # wall.getById's limit
    page_size = 100  # wall.get's limit

    def __init__(self, config: VkConfig):
        super().__init__(config)
        self.config: VkConfig = config
        import jconfig
        import vk_api

        token = config.service_token.get_secret_value()
        register_secret(token)
        self._session = RoutedSession(timeout=float(config.timeout), route_from=VK_API_HOST, route_to=config.api_base)
        self._session.headers["User-Agent"] = "afterimage (+https://github.com/afterimage)"
        self._api = vk_api.VkApi(token=token, api_version=config.api_version, session=self._session, config=jconfig.MemoryConfig)
        self._api.error_handlers = {}  # no sleeping retries or captcha prompts inside the library
        self._api_error = vk_api.exceptions.ApiError
        self._http_error = vk_api.exceptions.ApiHttpError

    def close(self) -> None:
        self._session.close()

    def _call(self, method: str, **values: Any) -> Any:
        """One API call; RateLimited, VkError (with VK's error code) or PlatformError, secrets masked."""
        try:
            return self._api.method(method, values)
        except self._api_error as e:
            code = getattr(e, "code", None)
            message = f"vk: {method}: error {code}: {describe_error(str(e.error.get('error_msg', '')))}"
            if code in RATE_LIMIT_CODES:
                raise RateLimited(self.platform, None, message) from None
            raise VkError(message, code) from None
        except self._http_error as e:
            response = e.response
            if response is not None and response.status_code == 429:
                raise RateLimited(self.platform, reset_time(response.headers), f"vk: {method}: HTTP 429") from None
            raise PlatformError(f"vk: {method}: HTTP {getattr(response, 'status_code', '?')}") from None
        except (requests.RequestException, ValueError, KeyError, TypeError) as e:  # ValueError: not JSON
            raise PlatformError(f"vk: {method} failed: {describe_error(e)}") from None

    @staticmethod
    def _wall_params(wall: str) -> dict[str, str]:
        return {"owner_id": wall} if wall.lstrip("-").isdigit() else {"domain": wall}

    # ------------------------------------------------------------------ poll

    def poll(self, account: str, cursor: str | None) -> PollResult:
        wall = wall_name(account)
        if cursor is not None and not cursor.isdigit():
            raise PlatformError(f"vk: cursor {cursor!r} is not a post id")
        last = int(cursor) if cursor else 0
        items: dict[str, Any] = {}
        pages = self.config.max_pages if last else 1
        for page in range(pages):
            answer = self._call("wall.get", count=self.page_size, offset=page * self.page_size, **self._wall_params(wall))
            batch = answer.get("items") if isinstance(answer, dict) else None
            if not isinstance(batch, list):
                raise PlatformError(f"vk: wall.get of {wall}: malformed answer (no items list)")
            for item in batch:
                key = f"{item.get('owner_id')}_{item.get('id')}" if isinstance(item, dict) else f"#{len(items)}"
                items.setdefault(key, item)
            ids = [i["id"] for i in batch if isinstance(i, dict) and isinstance(i.get("id"), int) and not i.get("is_pinned")]
            if len(batch) < self.page_size or not ids or min(ids) <= last:
                break
        posts: list[Post] = []
        rejected: list[RejectedItem] = []
        newest = last
        for item in items.values():
            item_id = item.get("id") if isinstance(item, dict) else None
            if isinstance(item_id, int) and item_id <= last:
                continue
            try:
                post = to_post(item, account)
            except MalformedItem as e:
                log.warning("vk: %s: skipped a malformed post: %s", wall, e)
                rejected.append(RejectedItem(self.platform, account, item, f"malformed post: {e}"))
                if isinstance(item_id, int):
                    newest = max(newest, item_id)
                continue
            posts.append(post)
            newest = max(newest, int(post.raw["id"]))
        posts.sort(key=lambda p: int(p.raw["id"]))
        return PollResult(posts, str(newest) if newest > last else None, rejected)

    # ------------------------------------------------------------------ lookup

    def _lookup_state(self) -> LookupRun:
        return LookupRun()

    def _lookup_batch(self, batch: list[str], authors: Mapping[str, str | None], state: LookupRun) -> dict[str, PostStatus]:
        valid = [i for i in batch if _post_key(i) is not None]
        out = {i: PostStatus.unknown(f"not a VK post id (<owner>_<id>): {i!r}") for i in batch if i not in valid}
        if not valid:
            return out
        if state.limited is not None:
            return {**out, **{i: PostStatus.unknown(state.limited) for i in valid}}
        try:
            answer = self._call("wall.getById", posts=",".join(valid))
        except RateLimited as e:
            state.limited = str(e)
            return {**out, **{i: PostStatus.unknown(str(e)) for i in valid}}
        except VkError as e:
            kind = AUTHOR_CODES.get(e.code or 0)
            if kind is not None and len({_post_key(i)[0] for i in valid}) == 1:  # type: ignore[index]
                return {**out, **{i: PostStatus.of(kind, str(e)) for i in valid}}
            return {**out, **{i: PostStatus.unknown(str(e)) for i in valid}}
        except PlatformError as e:
            return {**out, **{i: PostStatus.unknown(str(e)) for i in valid}}
        items = answer.get("items") if isinstance(answer, dict) else answer
        if not isinstance(items, list):
            return {**out, **{i: PostStatus.unknown("malformed wall.getById answer") for i in valid}}
        found: dict[str, Any] = {}
        for item in items:
            if isinstance(item, dict):
                found[f"{item.get('owner_id')}_{item.get('id')}"] = item
        unreadable = any(not isinstance(item, dict) for item in items)
        for post_id in valid:
            item = found.get(post_id)
            if item is not None:
                try:
                    out[post_id] = PostStatus.alive(to_post(item, _account_of(item)))
                except MalformedItem as e:
                    out[post_id] = PostStatus.unknown(f"malformed post in wall.getById answer: {e}")
            elif unreadable:
                out[post_id] = PostStatus.unknown("wall.getById answer has unreadable items")
            else:
                owner = _post_key(post_id)[0]  # type: ignore[index]
                out[post_id] = self._wall_state(owner, state) or PostStatus.deleted()
        return out

    def _wall_state(self, owner: str, state: LookupRun) -> PostStatus | None:
        """None while the wall answers (a missing post is then a deletion candidate), else the wall's state;
        unknown when the check itself failed."""
        if owner not in state.authors:
            try:
                answer = self._call("wall.get", owner_id=owner, count=1)
                if not isinstance(answer, dict) or not isinstance(answer.get("items"), list):
                    return PostStatus.unknown("post missing; wall check answer malformed")
                state.authors[owner] = None
            except RateLimited as e:
                state.limited = str(e)
                return PostStatus.unknown(f"post missing; wall check rate limited: {e}")
            except VkError as e:
                kind = AUTHOR_CODES.get(e.code or 0)
                if kind is None:
                    return PostStatus.unknown(f"post missing; wall check failed: {e}")
                state.authors[owner] = PostStatus.of(kind, str(e))
            except PlatformError as e:
                return PostStatus.unknown(f"post missing; wall check failed: {e}")
        return state.authors[owner]


# ----------------------------------------------------------------------------- parsing (pure functions)


def _post_key(post_id: str) -> tuple[str, str] | None:
    owner, sep, number = post_id.rpartition("_")
    if sep and owner.lstrip("-").isdigit() and number.isdigit():
        return owner, number
    return None


def _account_of(item: dict[str, Any]) -> str:
    return str(item.get("owner_id"))


def _largest(images: Any) -> dict[str, Any] | None:
    candidates = [i for i in images if isinstance(i, dict) and isinstance(i.get("url"), str)] if isinstance(images, list) else []
    return max(candidates, key=lambda i: (i.get("width") or 0) * (i.get("height") or 0), default=None)


def _media(attachments: Any, where: str) -> list[Media]:
    out: list[Media] = []
    for att in objects(attachments, where, "attachments", "an attachment"):
        kind = att.get("type")
        body = att.get(kind) if isinstance(kind, str) else None
        if kind == "photo":
            if not isinstance(body, dict):
                raise MalformedItem(f"{where}: photo attachment is not an object")
            best = body.get("orig_photo") if isinstance(body.get("orig_photo"), dict) else _largest(body.get("sizes"))
            if best is None or not isinstance(best.get("url"), str):
                raise MalformedItem(f"{where}: photo {body.get('id')!r} has no size with a url")
            alt = body.get("text")
            out.append(
                Media(
                    url=best["url"],
                    kind=MediaKind.PHOTO,
                    alt_text=alt if isinstance(alt, str) and alt else None,
                    media_id=f"photo{body.get('owner_id')}_{body.get('id')}",
                )
            )
        elif kind == "video":
            if not isinstance(body, dict):
                raise MalformedItem(f"{where}: video attachment is not an object")
            thumb = _largest(body.get("image")) or _largest(body.get("first_frame"))
            if thumb is not None:  # the API gives no video file: the thumbnail is the still to match
                out.append(Media(url=thumb["url"], kind=MediaKind.PHOTO, media_id=f"video{body.get('owner_id')}_{body.get('id')}"))
        # link cards, documents, audio, polls: not pictures of the post
    return out


def to_post(item: Any, account: str) -> Post:
    """One wall item as a post (pure). Raises :class:`MalformedItem` when it lacks id, owner or date."""
    if not isinstance(item, dict):
        raise MalformedItem(f"post is a {type(item).__name__}, not an object")
    post_id, owner = item.get("id"), item.get("owner_id")
    if not isinstance(post_id, int) or not isinstance(owner, int):
        raise MalformedItem(f"id {post_id!r} / owner_id {owner!r} are not numbers")
    created = epoch_to_datetime(item.get("date"))
    if created is None:
        raise MalformedItem(f"post {owner}_{post_id}: date {item.get('date')!r} is not a time")
    text = item.get("text") or ""
    if not isinstance(text, str):
        raise MalformedItem(f"post {owner}_{post_id}: text is not a string")
    media = _media(item.get("attachments"), f"post {owner}_{post_id}")
    for repost in objects(item.get("copy_history") or [], f"post {owner}_{post_id}", "copy_history", "a reposted item"):
        media += _media(repost.get("attachments"), f"post {owner}_{post_id} (repost)")
        if isinstance(repost.get("text"), str) and repost["text"]:
            text = f"{text}\n\n{repost['text']}" if text else repost["text"]
    return VkWatcher.new_post(
        account, f"{owner}_{post_id}", f"https://vk.com/wall{owner}_{post_id}", text, created, media=media, raw=item,
        author_id=str(owner),
    )


WATCHER = VkWatcher
