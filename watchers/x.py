"""X (Twitter) watcher: API v2 through ``tweepy.Client``.

- ``poll``: the account's username is resolved to a user id once (``/2/users/by/username/:username``),
  then ``/2/users/:id/tweets`` is read with ``since_id=<cursor>`` across all pages. Pages are kept whole
  (``Paginator.flatten`` would drop ``includes.media``). The cursor is the newest tweet id seen.
- ``lookup``: ``/2/tweets?ids=`` in batches of 100. A ``resource-not-found`` error is a deletion
  candidate; ``not-authorized-for-resource`` is resolved by looking the author up (``/2/users?ids=``)
  into suspended / protected / deleted account. Anything else undecidable is ``unknown``.

Edits: X gives every version of a tweet its own id and lists them all, oldest first, in
``edit_history_tweet_ids``. A post's identity here is the *first* id of that list, so a new version
found by ``poll`` and the current version found by ``lookup`` are both reported under the id of the
original tweet, with the current text and media (an edit, for the store). ``raw`` holds the version
actually served, plus the includes it references, in the API's own ``{"data", "includes"}`` shape.

tweepy hard-codes its API host and sets no timeout, so its ``requests`` session is replaced by a
:class:`watchers._common.RoutedSession` that sends it to ``config.api_base`` with ``config.timeout``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import requests
from pydantic import SecretStr, field_validator
import tweepy

from bot.errors import PlatformError, RateLimited
from bot.config_base import WatcherConfig
from bot.models import Media, MediaKind, Post, PostStatus, RejectedItem, StatusKind, parse_iso
from bot.redact import register_secret
from watchers._common import MalformedItem, RoutedSession, chunks, describe_error, epoch_to_datetime, objects, unique
from watchers.base import PollResult, Watcher

log = logging.getLogger(__name__)

TWITTER_HOST = "https://api.twitter.com"  # what tweepy builds its URLs with
_USERNAME = re.compile(r"[A-Za-z0-9_]{1,50}")

EXPANSIONS = [
    "attachments.media_keys",
    "referenced_tweets.id",
    "referenced_tweets.id.attachments.media_keys",
    "edit_history_tweet_ids",
    "author_id",
]
TWEET_FIELDS = [
    "id",
    "text",
    "created_at",
    "author_id",
    "attachments",
    "referenced_tweets",
    "edit_history_tweet_ids",
    "edit_controls",
    "withheld",
    "entities",
    "conversation_id",
    "lang",
    "possibly_sensitive",
]
MEDIA_FIELDS = ["media_key", "type", "url", "preview_image_url", "variants", "alt_text", "width", "height", "duration_ms"]
USER_FIELDS = ["id", "username", "name", "protected", "withheld"]

NOT_FOUND = "https://api.twitter.com/2/problems/resource-not-found"
NOT_AUTHORIZED = "https://api.twitter.com/2/problems/not-authorized-for-resource"


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and value.isdigit() or isinstance(value, int) and not isinstance(value, bool)


def _id_key(tweet_id: str) -> int:
    return int(tweet_id)


class XConfig(WatcherConfig):
    """``accounts`` are usernames (``@`` optional, normalized away)."""

    #: X's API allows 1 500 timeline reads per 15 minutes per app (Basic); 60 s per account stays well inside
    min_interval: ClassVar[float] = 60.0

    bearer_token: SecretStr
    api_base: str = "https://api.twitter.com"

    @field_validator("accounts")
    @classmethod
    def _usernames(cls, v: list[str]) -> list[str]:
        names = []
        for account in v:
            name = account.strip().removeprefix("@")
            if not _USERNAME.fullmatch(name):
                raise ValueError(f'"{account}" is not an X username (letters, digits and _ only, e.g. DefenceMinistry)')
            names.append(name)
        return names


class XWatcher(Watcher):
    """Watches X accounts (``config.accounts`` are usernames, with or without ``@``)."""

    platform = "x"
    config_model = XConfig
    lookup_batch_size = 100
    #: pages read per poll at most (100 tweets each; the timeline endpoint serves 3200 at most anyway)
    max_pages = 40

    def __init__(self, config: XConfig, client: tweepy.Client | None = None):
        super().__init__(config)
        token = config.bearer_token.get_secret_value()
        register_secret(token)
        self.client = client or tweepy.Client(bearer_token=token, return_type=dict, wait_on_rate_limit=False)
        self.client.session = RoutedSession(
            timeout=float(config.timeout), route_from=TWITTER_HOST, route_to=config.api_base or TWITTER_HOST
        )
        self.client.session.headers["User-Agent"] = self.client.user_agent
        #: lower-cased username -> (user id, username as X spells it)
        self._users: dict[str, tuple[str, str]] = {}
        #: user id -> configured account name
        self._accounts_by_id: dict[str, str] = {}
        #: user id -> username, from every includes.users seen
        self._usernames: dict[str, str] = {}
        #: post id -> author id, from every tweet seen (lookup needs the author of a tweet it cannot see)
        self._authors: dict[str, str] = {}

    def close(self) -> None:
        self.client.session.close()

    # ------------------------------------------------------------------------------------------ requests

    def _call(self, method: Any, *args: Any, _allow_none: bool = False, **kwargs: Any) -> Any:
        """Call a tweepy method; map every failure to RateLimited or PlatformError (secret-free)."""
        try:
            response = method(*args, **kwargs)
        except tweepy.TooManyRequests as e:
            reset_at = epoch_to_datetime(e.reset_time)
            raise RateLimited(self.platform, reset_at, f"x: rate limited ({describe_error(e)})") from None
        except (tweepy.TweepyException, requests.RequestException, ValueError, TypeError, AttributeError, KeyError) as e:
            # ValueError covers truncated JSON (requests' JSONDecodeError); RuntimeError is Paginator on a
            # non-object answer; the others odd shapes tweepy trips on
            raise PlatformError(f"x: {describe_error(e)}") from None
        except RuntimeError as e:
            raise PlatformError(f"x: {describe_error(e)}") from None
        if not isinstance(response, dict) and not (_allow_none and response is None):
            raise PlatformError(f"x: answer is a {type(response).__name__}, not a JSON object")
        return response

    def _resolve(self, account: str) -> tuple[str, str]:
        username = account.strip().lstrip("@")
        key = username.lower()
        if key not in self._users:
            answer = self._call(self.client.get_user, username=username, user_fields=USER_FIELDS)
            user = answer.get("data")
            if not isinstance(user, dict) or not _is_id(user.get("id")):
                problems = "; ".join(_error_text(e) for e in _as_list(answer.get("errors"))) or "no user in answer"
                raise PlatformError(f"x: cannot resolve @{username}: {problems}")
            user_id = str(user["id"])
            spelled = user.get("username") if isinstance(user.get("username"), str) else username
            self._users[key] = (user_id, spelled)
            self._accounts_by_id[user_id] = account
            self._usernames[user_id] = spelled
        return self._users[key]

    # ------------------------------------------------------------------------------------------ poll

    def poll(self, account: str, cursor: str | None) -> PollResult:
        if cursor is not None and not str(cursor).isdigit():
            raise PlatformError(f"x: cursor {cursor!r} is not a tweet id")
        user_id, username = self._resolve(account)
        pages = self._page_list(user_id, cursor)

        posts: dict[str, Post] = {}
        newest: dict[str, int] = {}  # post id -> id of the version it was built from
        rejected: list[RejectedItem] = []
        max_seen = int(cursor) if cursor else 0
        for page in pages:
            tweets = page.get("data", [])
            includes = page.get("includes", {})
            if not isinstance(tweets, list) or not isinstance(includes, dict):
                raise PlatformError("x: timeline page malformed: data is not a list or includes not an object")
            if not tweets and page.get("errors") and not page.get("meta"):
                problems = "; ".join(_error_text(e) for e in _as_list(page.get("errors")))
                raise PlatformError(f"x: timeline of @{username} refused: {problems}")
            index = _Includes(includes)
            for tweet in tweets:
                tweet_id = tweet.get("id") if isinstance(tweet, dict) else None
                if _is_id(tweet_id):
                    max_seen = max(max_seen, int(tweet_id))
                    if cursor and int(tweet_id) <= int(cursor):
                        continue
                try:
                    post, missing = self._to_post(tweet, index, account, username)
                except MalformedItem as e:
                    log.warning("x: skipping malformed tweet from @%s: %s", username, e)
                    rejected.append(RejectedItem(self.platform, account, tweet, f"malformed tweet: {e}"))
                    continue
                self._learn(post, str(tweet["id"]), index)
                for media_key in missing:
                    rejected.append(
                        RejectedItem(
                            self.platform,
                            account,
                            {"tweet_id": post.raw["data"]["id"], "media_key": media_key},
                            "media key referenced by the tweet is missing from includes.media",
                        )
                    )
                version = int(tweet["id"])
                if post.post_id not in posts or version > newest[post.post_id]:
                    posts[post.post_id] = post
                    newest[post.post_id] = version
        ordered = sorted(posts.values(), key=lambda p: _id_key(p.post_id))
        new_cursor = str(max_seen) if max_seen and str(max_seen) != cursor else None
        return PollResult(ordered, new_cursor, rejected)

    def _page_list(self, user_id: str, since_id: str | None) -> list[dict[str, Any]]:
        paginator = tweepy.Paginator(
            self.client.get_users_tweets,
            user_id,
            since_id=since_id,
            max_results=100,
            expansions=EXPANSIONS,
            tweet_fields=TWEET_FIELDS,
            media_fields=MEDIA_FIELDS,
            user_fields=USER_FIELDS,
            limit=self.max_pages,
        )
        iterator = iter(paginator)
        pages = []
        while True:
            page = self._call(next, iterator, None, _allow_none=True)
            if page is None:
                return pages
            pages.append(page)

    # ------------------------------------------------------------------------------------------ lookup

    def _lookup_state(self) -> dict[str, RateLimited]:
        return {}  # "limited": the rate limit hit by an earlier batch of this lookup

    def _lookup_batch(
        self, batch: list[str], authors: Mapping[str, str | None], state: dict[str, RateLimited]
    ) -> dict[str, PostStatus]:
        """``authors`` (post id -> author user id, from stored ``Post.author_id``) lets a tweet that X refuses
        to show be attributed to its author when this watcher has not seen it."""
        result = {i: PostStatus.unknown("not an X tweet id") for i in batch if not i.isdigit()}
        for author_post, author in authors.items():
            if author and str(author).isdigit():
                self._authors.setdefault(str(author_post), str(author))
        valid = [i for i in batch if i not in result]
        if not valid:
            return result
        if "limited" in state:
            return {**result, **{i: PostStatus.unknown(f"rate limited: {state['limited']}") for i in valid}}
        try:
            answer = self._call(
                self.client.get_tweets,
                ids=valid,
                expansions=EXPANSIONS,
                tweet_fields=TWEET_FIELDS,
                media_fields=MEDIA_FIELDS,
                user_fields=USER_FIELDS,
            )
        except RateLimited as e:
            state["limited"] = e
            return {**result, **{i: PostStatus.unknown(f"rate limited: {e}") for i in valid}}
        except PlatformError as e:
            return {**result, **{i: PostStatus.unknown(str(e)) for i in valid}}
        return {**result, **self._classify(valid, answer)}

    def _classify(self, batch: list[str], answer: dict[str, Any]) -> dict[str, PostStatus]:
        out: dict[str, PostStatus] = {}
        tweets = answer.get("data", [])
        includes = answer.get("includes", {})
        errors = answer.get("errors", [])
        if not isinstance(tweets, list) or not isinstance(includes, dict) or not isinstance(errors, list):
            return {i: PostStatus.unknown("malformed answer: data, includes or errors of the wrong type") for i in batch}
        index = _Includes(includes)
        wanted = set(batch)
        for tweet in tweets:
            tweet_id = str(tweet.get("id")) if isinstance(tweet, dict) else None
            if tweet_id not in wanted:
                continue
            try:
                current = self._current_version(tweet, index)
                post, _missing = self._to_post(current, index, None, None, identity=tweet_id)
            except MalformedItem as e:
                out[tweet_id] = PostStatus.unknown(f"malformed tweet: {e}")
                continue
            self._learn(post, str(current["id"]), index)
            if current.get("withheld") or tweet.get("withheld"):
                out[tweet_id] = PostStatus(StatusKind.WITHHELD, post=post, error=_withheld_text(current.get("withheld") or tweet.get("withheld")))
            else:
                out[tweet_id] = PostStatus.alive(post)

        check_authors: dict[str, str] = {}  # post id -> the kind of error the tweet gave
        for error in errors:
            if not isinstance(error, dict):
                continue
            post_id = str(error.get("resource_id") or error.get("value") or "")
            if post_id not in wanted or post_id in out or error.get("resource_type", "tweet") != "tweet":
                continue
            kind = error.get("type")
            if kind == NOT_FOUND:
                check_authors[post_id] = "not_found"
            elif kind == NOT_AUTHORIZED:
                check_authors[post_id] = "not_authorized"
            else:
                out[post_id] = PostStatus.unknown(f"x error: {_error_text(error)}")
        out.update(self._resolve_by_author(check_authors))
        for post_id in batch:
            out.setdefault(post_id, PostStatus.unknown("id missing from the answer (neither data nor errors)"))
        return out

    def _resolve_by_author(self, problems: dict[str, str]) -> dict[str, PostStatus]:
        """Decide tweets X did not show by their author's state: a tweet not found from a live account is
        deleted; one hidden because its author is suspended, protected or gone says so."""
        out: dict[str, PostStatus] = {}
        author_of = {post_id: self._authors.get(post_id) for post_id in problems}
        for post_id, author in author_of.items():
            if author is None:
                if problems[post_id] == "not_found":
                    out[post_id] = PostStatus.deleted()  # deletion candidate; the author could not be checked
                else:
                    out[post_id] = PostStatus.unknown("not authorized to see the tweet, and its author is not known")
        author_ids = unique(a for a in author_of.values() if a)
        if not author_ids:
            return out
        states: dict[str, PostStatus | str] = {}
        try:
            for batch in chunks(author_ids, 100):
                answer = self._call(self.client.get_users, ids=batch, user_fields=USER_FIELDS)
                states.update(self._author_states(batch, answer))
        except PlatformError as e:  # includes RateLimited
            for post_id, author in author_of.items():
                if author and post_id not in out:
                    out[post_id] = PostStatus.unknown(f"tweet {problems[post_id].replace('_', ' ')}; author check failed: {e}")
            return out
        for post_id, author in author_of.items():
            if not author or post_id in out:
                continue
            state = states.get(author, "unknown")
            if state == "active":
                if problems[post_id] == "not_found":
                    out[post_id] = PostStatus.deleted()
                else:
                    out[post_id] = PostStatus.unknown("not authorized to see the tweet, though its author is public")
            elif state == "protected":
                out[post_id] = PostStatus.of(StatusKind.AUTHOR_PROTECTED)
            elif state == "suspended":
                out[post_id] = PostStatus.of(StatusKind.AUTHOR_SUSPENDED)
            elif state == "deleted":
                out[post_id] = PostStatus.of(StatusKind.AUTHOR_DELETED)
            elif state == "withheld":
                out[post_id] = PostStatus.of(StatusKind.WITHHELD, "author withheld")
            else:
                out[post_id] = PostStatus.unknown(f"tweet {problems[post_id].replace('_', ' ')}; author state unknown")
        return out

    def _author_states(self, batch: list[str], answer: dict[str, Any]) -> dict[str, str]:
        states: dict[str, str] = {}
        users = answer.get("data", [])
        errors = answer.get("errors", [])
        if not isinstance(users, list) or not isinstance(errors, list):
            raise PlatformError("x: malformed users answer")
        for user in users:
            if not isinstance(user, dict) or not _is_id(user.get("id")):
                continue
            user_id = str(user["id"])
            if user.get("protected") is True:
                states[user_id] = "protected"
            elif user.get("withheld"):
                states[user_id] = "withheld"
            else:
                states[user_id] = "active"
            if isinstance(user.get("username"), str):
                self._usernames[user_id] = user["username"]
        for error in errors:
            if not isinstance(error, dict):
                continue
            user_id = str(error.get("resource_id") or error.get("value") or "")
            detail = f"{error.get('title', '')} {error.get('detail', '')}".lower()
            if "suspended" in detail:
                states[user_id] = "suspended"
            elif error.get("type") == NOT_FOUND:
                states[user_id] = "deleted"
        return states

    # ------------------------------------------------------------------------------------------ normalizing

    def _current_version(self, tweet: dict[str, Any], index: _Includes) -> dict[str, Any]:
        """The newest version of ``tweet`` the answer carries (lookup of an edited tweet's first id serves
        that first version, and its later versions through the ``edit_history_tweet_ids`` expansion)."""
        history = tweet.get("edit_history_tweet_ids")
        if isinstance(history, list) and history:
            latest = str(history[-1])
            if latest != str(tweet.get("id")):
                newer = index.tweets.get(latest)
                if isinstance(newer, dict):
                    return newer
                log.info("x: tweet %s was edited (now %s) but the new version is not in includes", tweet.get("id"), latest)
        return tweet

    def _to_post(
        self,
        tweet: Any,
        index: _Includes,
        account: str | None,
        username: str | None,
        identity: str | None = None,
    ) -> tuple[Post, list[str]]:
        """Normalize one tweet. Returns the post and the media keys it referenced that includes lacks."""
        if not isinstance(tweet, dict):
            raise MalformedItem(f"tweet is a {type(tweet).__name__}, not an object")
        tweet_id = tweet.get("id")
        if not _is_id(tweet_id):
            raise MalformedItem(f"id {tweet_id!r} is not a tweet id")
        tweet_id = str(tweet_id)
        text = tweet.get("text")
        if not isinstance(text, str):
            raise MalformedItem(f"tweet {tweet_id}: text is {type(text).__name__}, not a string")
        created_raw = tweet.get("created_at")
        try:
            created = parse_iso(created_raw) if isinstance(created_raw, str) else None
        except ValueError:
            created = None
        if created is None:
            raise MalformedItem(f"tweet {tweet_id}: created_at {created_raw!r} is not a time")
        author = tweet.get("author_id")
        author = str(author) if _is_id(author) else None

        history = tweet.get("edit_history_tweet_ids")
        if history is not None and not (isinstance(history, list) and all(_is_id(h) for h in history)):
            raise MalformedItem(f"tweet {tweet_id}: edit_history_tweet_ids is not a list of ids")
        post_id = identity or (str(history[0]) if history else tweet_id)

        media: list[Media] = []
        missing: list[str] = []
        raw_media: list[Any] = []
        attachment_sources = [tweet]
        referenced_raw: list[Any] = []
        refs = objects(tweet.get("referenced_tweets") or [], f"tweet {tweet_id}", "referenced_tweets", "a referenced tweet")
        for ref in refs:
            included = index.tweets.get(str(ref.get("id")))
            if included is not None:
                referenced_raw.append(included)
                if ref.get("type") == "retweeted" and isinstance(included, dict):
                    attachment_sources.append(included)  # a retweet shows the retweeted tweet's media
        seen_keys: set[str] = set()
        for source in attachment_sources:
            attachments = source.get("attachments") or {}
            if not isinstance(attachments, dict):
                raise MalformedItem(f"tweet {tweet_id}: attachments is not an object")
            keys = attachments.get("media_keys") or []
            if not isinstance(keys, list):
                raise MalformedItem(f"tweet {tweet_id}: attachments.media_keys is not a list")
            for key in keys:
                if str(key) in seen_keys:  # a retweet lists the original's media keys again
                    continue
                seen_keys.add(str(key))
                item = index.media.get(str(key))
                if item is None:
                    missing.append(str(key))
                    continue
                raw_media.append(item)
                media.append(_to_media(item, tweet_id))

        if author is not None:
            spelled = _username_in(index, author) or self._usernames.get(author)
            if account is None:
                account = self._accounts_by_id.get(author) or spelled
            username = username or spelled
        url = f"https://x.com/{username}/status/{post_id}" if username else f"https://x.com/i/web/status/{post_id}"

        raw_includes: dict[str, Any] = {}
        if raw_media:
            raw_includes["media"] = raw_media
        if author is not None and author in index.users:
            raw_includes["users"] = [index.users[author]]
        if referenced_raw:
            raw_includes["tweets"] = referenced_raw
        raw: dict[str, Any] = {"data": tweet}
        if raw_includes:
            raw["includes"] = raw_includes
        post = self.new_post(account or (username or ""), post_id, url, text, created, media=media, raw=raw, author_id=author)
        return post, missing

    def _learn(self, post: Post, tweet_id: str, index: _Includes) -> None:
        """Remember who wrote ``post`` (lookup needs the author of a tweet it can no longer see) and how X
        spells their username; kept out of :meth:`_to_post` so normalizing stays free of side effects."""
        author = post.author_id
        if author is None:
            return
        spelled = _username_in(index, author)
        if spelled:
            self._usernames[author] = spelled
        self._authors[post.post_id] = author
        self._authors[tweet_id] = author


def _username_in(index: _Includes, user_id: str) -> str | None:
    user = index.users.get(user_id)
    return user["username"] if isinstance(user, dict) and isinstance(user.get("username"), str) else None


def _to_media(item: Any, tweet_id: str) -> Media:
    if not isinstance(item, dict):
        raise MalformedItem(f"tweet {tweet_id}: a media object is not an object")
    kind = item.get("type")
    key = item.get("media_key")
    key = key if isinstance(key, str) else None
    alt = item.get("alt_text") if isinstance(item.get("alt_text"), str) else None
    if kind == "photo":
        url = item.get("url")
        if not isinstance(url, str) or not url:
            raise MalformedItem(f"tweet {tweet_id}: photo {key} has no url")
        return Media(url=url, kind=MediaKind.PHOTO, alt_text=alt, media_id=key)
    if kind in ("video", "animated_gif"):
        preview = item.get("preview_image_url")
        preview = preview if isinstance(preview, str) and preview else None
        best = _best_mp4(item.get("variants"))
        url = best or preview
        if url is None:
            raise MalformedItem(f"tweet {tweet_id}: {kind} {key} has neither an mp4 variant nor a preview image")
        if best is None:
            log.warning("x: %s %s of tweet %s has no mp4 variant; archiving its preview image only", kind, key, tweet_id)
        return Media(
            url=url,
            kind=MediaKind.VIDEO if kind == "video" else MediaKind.GIF,
            alt_text=alt,
            preview_url=preview,
            media_id=key,
        )
    raise MalformedItem(f"tweet {tweet_id}: media {key} has unknown type {kind!r}")


def _best_mp4(variants: Any) -> str | None:
    if not isinstance(variants, list):
        return None
    best: tuple[int, str] | None = None
    for v in variants:
        if not isinstance(v, dict) or v.get("content_type") != "video/mp4" or not isinstance(v.get("url"), str):
            continue
        rate = v.get("bit_rate")
        rate = rate if isinstance(rate, int) and not isinstance(rate, bool) else 0
        if best is None or rate > best[0]:
            best = (rate, v["url"])
    return best[1] if best else None


class _Includes:
    """``includes`` of one answer indexed by key; entries that are not objects are ignored."""

    def __init__(self, includes: dict[str, Any]):
        self.media = _index(includes.get("media"), "media_key")
        self.users = _index(includes.get("users"), "id")
        self.tweets = _index(includes.get("tweets"), "id")


def _index(items: Any, key: str) -> dict[str, Any]:
    if not isinstance(items, list):
        return {}
    return {str(i[key]): i for i in items if isinstance(i, dict) and key in i}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _error_text(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error)[:200]
    return f"{error.get('title', 'error')}: {error.get('detail', '')}".strip()[:300]


def _withheld_text(withheld: Any) -> str:
    if isinstance(withheld, dict):
        countries = withheld.get("country_codes")
        if isinstance(countries, list):
            return "withheld in " + ",".join(str(c) for c in countries)
    return "withheld"


WATCHER = XWatcher
