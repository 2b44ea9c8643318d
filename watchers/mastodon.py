"""Mastodon watcher (Mastodon.py): public statuses of accounts on any instance (``api_base`` = instance URL).

- Accounts are ``@user@instance``, ``user@instance`` or ``user`` (local to ``api_base``); each is resolved
  once with ``/api/v1/accounts/lookup`` and cached.
- ``poll``: the cursor is the id of the newest status seen. With a cursor, statuses are read oldest page
  first with ``min_id=cursor`` and followed with ``fetch_previous`` (the Link ``rel="prev"`` page, i.e. the
  next-newer one) until an empty page, so nothing newer than the cursor is skipped however many there are.
  Without a cursor (first poll of an account) only the newest page is read: a new account's whole history
  is not a "new post". Reblogs are excluded server-side. Posts are returned oldest first.
- ``lookup``: ``GET /api/v1/statuses/:id`` per id. 200 -> alive (edits show in ``edited_at``/content/media);
  410 -> author_suspended; 404 -> deleted only after the author's account was checked and is fine
  (account 404 -> author_deleted, ``suspended: true`` or 403/410 -> author_suspended). Mastodon has no
  "protected" or "withheld" state for public posts. Anything else (429, 5xx, timeouts, bad JSON) -> unknown.
- Rate limits: ``ratelimit_method="throw"``; a 429 becomes :class:`bot.errors.RateLimited` with the reset
  time from ``X-RateLimit-Reset``.

The raw payload kept with each post is the status JSON exactly as the server sent it (captured with a
response hook on the library's session), not Mastodon.py's converted objects.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests
from pydantic import SecretStr
from mastodon import Mastodon
from mastodon.errors import (
    MastodonAPIError,
    MastodonError,
    MastodonNotFoundError,
    MastodonRatelimitError,
)

from bot.errors import PlatformError, RateLimited
from bot.config_base import WatcherConfig
from bot.models import Media, MediaKind, Post, PostStatus, RejectedItem, StatusKind
from bot.redact import redact, register_secret
from watchers._common import describe_error, html_to_text, parse_time, require, reset_time
from watchers.base import PollResult, Watcher

log = logging.getLogger(__name__)

_MEDIA_KINDS = {"image": MediaKind.PHOTO, "video": MediaKind.VIDEO, "gifv": MediaKind.GIF}
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class _RawCapture:
    """Response hook: keeps the last response (JSON body and headers) the library received."""

    def __init__(self) -> None:
        self.json: Any = None
        self.headers: dict[str, str] = {}
        self.status: int | None = None

    def __call__(self, response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        self.status = response.status_code
        self.headers = dict(response.headers)
        try:
            self.json = response.json()
        except ValueError:
            self.json = None
        return response


def _status_code(exc: MastodonError) -> int | None:
    """HTTP status of a Mastodon.py API error (its args are: message, status, reason, error)."""
    if len(exc.args) > 1 and isinstance(exc.args[1], int):
        return exc.args[1]
    return None


class MastodonConfig(WatcherConfig):
    """``accounts`` are ``@user`` or ``@user@instance``; ``api_base`` is the instance."""

    #: Mastodon allows 300 requests per 5 minutes; every instance is somebody's public service, so the floor
    #: holds whatever ``api_base`` says
    min_interval: ClassVar[float] = 30.0

    access_token: SecretStr | None = None
    api_base: str = "https://mastodon.social"

    @classmethod
    def interval_floor(cls, api_base: str) -> float:
        return cls.min_interval


class MastodonWatcher(Watcher):
    platform = "mastodon"
    config_model = MastodonConfig
    #: one status per request (``/api/v1/statuses?id[]=`` needs Mastodon 4.3 and drops unknown ids silently)
    lookup_batch_size = 1
    #: statuses per page (Mastodon's maximum for account statuses)
    page_limit = 40
    #: safety stop for one poll; the cursor still advances, so the next poll continues where this stopped
    max_pages = 50

    def __init__(self, config: MastodonConfig):
        super().__init__(config)
        token = config.access_token.get_secret_value() if config.access_token else None
        register_secret(token)
        self._raw = _RawCapture()
        session = requests.Session()
        session.hooks["response"].append(self._raw)
        self._api = Mastodon(
            access_token=token,
            api_base_url=config.api_base,
            ratelimit_method="throw",
            request_timeout=config.timeout,
            session=session,
            version_check_mode="none",
            user_agent="afterimage",
        )
        self._host = (urlsplit(config.api_base).hostname or "").lower()
        self._account_ids: dict[str, str] = {}
        #: account id -> configured account name, to label posts found by lookup
        self._names: dict[str, str] = {}
        #: status id -> author account id, learned while polling (lost on restart; see lookup)
        self._authors: dict[str, str] = {}

    # ------------------------------------------------------------------ helpers

    def _acct(self, account: str) -> str:
        acct = account.strip().lstrip("@")
        user, _, domain = acct.partition("@")
        if domain.lower() == self._host:
            return user
        return acct

    def _call(self, what: str, fn, *args: Any, **kwargs: Any) -> Any:
        """Run one library call; translate its errors into afterimage's (secrets masked)."""
        try:
            return fn(*args, **kwargs)
        except MastodonRatelimitError as e:
            if self._raw.status != 429:  # Mastodon.py also raises this for an unparsable X-RateLimit-Reset
                raise PlatformError(f"mastodon: {what} failed: {describe_error(e)}") from e
            raise RateLimited(self.platform, reset_time(self._raw.headers), redact(f"mastodon: rate limited ({what})")) from e
        except MastodonError as e:
            raise PlatformError(f"mastodon: {what} failed: {describe_error(e)}") from e

    def _account_id(self, account: str) -> str:
        if account in self._account_ids:
            return self._account_ids[account]
        acct = self._acct(account)
        try:
            self._call(f"account lookup of {acct}", self._api.account_lookup, acct)
        except PlatformError as e:
            if isinstance(e.__cause__, MastodonNotFoundError):
                raise PlatformError(f"mastodon: account {acct} not found on {self._host}") from e.__cause__
            raise
        raw = self._raw.json
        try:
            account_id = str(require(raw, "id", (str, int)))
        except ValueError as e:
            raise PlatformError(f"mastodon: malformed account lookup answer for {acct}: {e}") from None
        if raw.get("suspended") is True:
            raise PlatformError(f"mastodon: account {acct} is suspended")
        self._account_ids[account] = account_id
        self._names[account_id] = account
        return account_id

    def _normalize(self, raw: Any, account: str) -> Post:
        status_id = str(require(raw, "id", (str, int)))
        created = parse_time(require(raw, "created_at"))
        url = raw.get("url") or raw.get("uri")
        if not isinstance(url, str) or not url:
            raise ValueError("missing field 'url'")
        content = raw.get("content")
        if content is not None and not isinstance(content, str):
            raise ValueError(f"field 'content' has unexpected type {type(content).__name__}")
        text = html_to_text(content)
        spoiler = raw.get("spoiler_text")
        if isinstance(spoiler, str) and spoiler.strip():
            text = f"{spoiler.strip()}\n\n{text}" if text else spoiler.strip()
        author = raw.get("account")
        author_id = str(author["id"]) if isinstance(author, dict) and author.get("id") is not None else None
        attachments = raw.get("media_attachments") or []
        if not isinstance(attachments, list):
            raise ValueError(f"field 'media_attachments' has unexpected type {type(attachments).__name__}")
        media = []
        for att in attachments:
            if not isinstance(att, dict):
                raise ValueError(f"media attachment has unexpected type {type(att).__name__}")
            kind = _MEDIA_KINDS.get(att.get("type"))
            if kind is None:  # audio, unknown: nothing to hash
                continue
            media_url = att.get("url") or att.get("remote_url")
            if not isinstance(media_url, str) or not media_url:
                raise ValueError(f"media attachment {att.get('id')!r} has no url")
            preview = att.get("preview_url")
            alt = att.get("description")
            media.append(
                Media(
                    url=media_url,
                    kind=kind,
                    alt_text=alt if isinstance(alt, str) and alt else None,
                    preview_url=preview if isinstance(preview, str) and preview else None,
                    media_id=str(att["id"]) if att.get("id") is not None else None,
                )
            )
        return self.new_post(account, status_id, url, text, created, media=media, raw=raw, author_id=author_id)

    # ------------------------------------------------------------------ poll

    def poll(self, account: str, cursor: str | None) -> PollResult:
        account_id = self._account_id(account)
        what = f"statuses of {self._acct(account)}"
        if cursor:
            page = self._call(
                what, self._api.account_statuses, account_id, min_id=cursor, exclude_reblogs=True, limit=self.page_limit
            )
        else:
            page = self._call(what, self._api.account_statuses, account_id, exclude_reblogs=True, limit=self.page_limit)
        pages: list[list[Any]] = []
        while True:
            raw_page = self._raw.json
            if not isinstance(raw_page, list):
                raise PlatformError(f"mastodon: malformed answer for {what}: expected a list, got {type(raw_page).__name__}")
            if not raw_page:
                break
            pages.append(raw_page)
            if not cursor or len(pages) >= self.max_pages:
                if cursor:
                    log.warning("mastodon: %s: stopped after %d pages; the next poll continues", what, len(pages))
                break
            page = self._call(what, self._api.fetch_previous, page)
            if page is None:
                break

        posts: list[Post] = []
        rejected: list[RejectedItem] = []
        new_cursor: str | None = None
        for raw_page in pages:  # oldest page first; each page is newest first
            for raw in reversed(raw_page):
                try:
                    post = self._normalize(raw, account)
                except (ValueError, TypeError, KeyError) as e:
                    log.warning("mastodon: %s: skipped a malformed status: %s", what, e)
                    rejected.append(RejectedItem(self.platform, account, raw, str(e)))
                    if isinstance(raw, dict) and isinstance(raw.get("id"), (str, int)):
                        new_cursor = str(raw["id"])
                    continue
                posts.append(post)
                new_cursor = post.post_id
                if post.author_id:
                    self._authors[post.post_id] = post.author_id
        return PollResult(posts, new_cursor, rejected)

    # ------------------------------------------------------------------ lookup

    def _lookup_batch(
        self, batch: list[str], authors: Mapping[str, str | None], state: dict[str, PostStatus | None]
    ) -> dict[str, PostStatus]:
        """One status per request; ``state`` holds the account states checked during this lookup."""
        return {post_id: self._lookup_one(post_id, state) for post_id in batch}

    def _look_up(
        self, what: str, fn: Callable[[str], Any], ident: str, answers: Mapping[int, Callable[[int], PostStatus]]
    ) -> PostStatus | None:
        """Ask the API about one status or account: None when it answered (the answer is in ``self._raw``),
        else what the failure says of the post. ``answers`` maps an HTTP status to that; a rate limit, a
        network failure or any other status is unknown."""
        try:
            self._call(what, fn, ident)
        except RateLimited as e:
            return PostStatus.unknown(str(e))
        except PlatformError as e:
            cause = e.__cause__
            code = _status_code(cause) if isinstance(cause, MastodonAPIError) else None
            answer = answers.get(code) if code is not None else None
            return answer(code) if answer is not None else PostStatus.unknown(str(e))  # type: ignore[arg-type]
        return None

    def _lookup_one(self, post_id: str, account_states: dict[str, PostStatus | None]) -> PostStatus:
        if not _ID.match(post_id):
            return PostStatus.unknown(f"not a Mastodon status id: {post_id!r}")
        failed = self._look_up(
            f"status {post_id}",
            self._api.status,
            post_id,
            {
                410: lambda _: PostStatus.of(StatusKind.AUTHOR_SUSPENDED, "status answered 410 Gone"),
                404: lambda _: self._after_404(post_id, account_states),
            },
        )
        if failed is not None:
            return failed
        raw = self._raw.json
        try:
            author = raw.get("account") if isinstance(raw, dict) else None
            author_id = str(author["id"]) if isinstance(author, dict) and author.get("id") is not None else None
            name = self._names.get(author_id or "") or (
                "@" + author["acct"] if isinstance(author, dict) and isinstance(author.get("acct"), str) else ""
            )
            post = self._normalize(raw, name)
        except (ValueError, TypeError, KeyError) as e:
            return PostStatus.unknown(f"malformed status answer: {e}")
        if post.post_id != post_id:
            return PostStatus.unknown(f"asked for status {post_id}, got {post.post_id}")
        if isinstance(author, dict) and author.get("suspended") is True:
            return PostStatus.of(StatusKind.AUTHOR_SUSPENDED, "author account is suspended")
        return PostStatus.alive(post)

    def _account_state(self, account_id: str) -> PostStatus | None:
        """None if the account is fine, else the account-level status of its posts (unknown if unsure)."""

        def suspended(code: int) -> PostStatus:
            return PostStatus.of(StatusKind.AUTHOR_SUSPENDED, f"author account answered {code}")

        failed = self._look_up(
            f"account {account_id}",
            self._api.account,
            account_id,
            {404: lambda _: PostStatus.of(StatusKind.AUTHOR_DELETED, "author account not found"), 403: suspended, 410: suspended},
        )
        if failed is not None:
            return failed
        raw = self._raw.json
        if not isinstance(raw, dict) or raw.get("id") is None:
            return PostStatus.unknown("malformed account answer")
        if raw.get("suspended") is True:
            return PostStatus.of(StatusKind.AUTHOR_SUSPENDED, "author account is suspended")
        return None

    def _after_404(self, post_id: str, account_states: dict[str, PostStatus | None]) -> PostStatus:
        """A status 404s when it was deleted, but also when its author was suspended or deleted: check
        the author (known from polling) or, after a restart, every configured account."""
        author = self._authors.get(post_id)
        if author is not None:
            candidates = [author]
        else:
            candidates = []
            for account in getattr(self.config, "accounts", []):
                try:
                    candidates.append(self._account_id(account))
                except PlatformError as e:
                    return PostStatus.unknown(f"status 404 and configured account {account} cannot be checked: {e}")
        for account_id in candidates:
            if account_id not in account_states:
                account_states[account_id] = self._account_state(account_id)
            state = account_states[account_id]
            if state is None:
                continue
            if author is not None or state.kind == StatusKind.UNKNOWN:
                return state
            # author unknown and some configured account is not fine: it may be the author
            return PostStatus.unknown(f"status 404, author unknown, and a configured account is {state.kind.value}")
        return PostStatus.deleted()

    def close(self) -> None:
        self._api.session.close()


WATCHER = MastodonWatcher
