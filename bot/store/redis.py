"""Redis backend, for production and for several daemons sharing one state.

URL: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS; redis-py's ``ssl_*`` query options
such as ``ssl_cert_reqs``, ``ssl_ca_certs`` pass through), ``unix:///path/redis.sock``, plus our own query
parameter ``prefix`` (default ``afterimage``), removed before the URL reaches redis-py. Every key lives
under ``<prefix>:``.

Key layout (``P`` = ``<prefix>:``; ``M(a, b)`` = ``a + "\\x1f" + b``, a member that sorts like (a, b)):

==================================  ========  =========================================================
``P post:<platform>:<post_id>``     hash      post, account, version, fingerprint, first_seen,
                                              last_seen_alive, processed_version, status
``P versions:<platform>:<post_id>`` list      one JSON version per entry, oldest first
``P posts`` / ``P posts:p:<plat>``  zset      M(platform, post_id) by first_seen (µs); also
``P posts:a:<account>``                       ``posts:pa:<platform>:<account>``
``P pending``                       zset      posts whose latest version is not processed, same order
``P cursors``                       hash      M(platform, account) -> cursor
``P rejected``                      list      JSON rejected items, oldest first
``P rejected:digests``              set       digests of stored rejected items (each stored once)
``P media:<sha256>``                hash      record (JSON, first wins) and ``sig:<type>`` fields
``P post_media:<platform>:<id>``    hash      index -> JSON link
``P known:<id>``                    string    JSON entry; ``known:order``, ``known:kind:<kind>`` and
                                              ``known:sha:<sha256>`` zsets by insertion seq
``P known:seq`` / ``P known:gen``   counter   insertion sequence / generation; ``known:epoch`` counts
                                              replacements and removals (indexes reload on a change)
``P known:group:<group>``           zset      ids of the entries of one item by insertion seq;
                                              ``known:group:indexed`` flag: entries older than the index
                                              were indexed once, at the first open by a version that has it
``P alert:<key>``                   hash      OutboxAlert fields (JSON values); ``outbox`` zset of queued
                                              keys by seq (``outbox:seq`` counter); ``outbox:parked``
                                              zset of parked keys by seq (never in both zsets)
``P alerts:post:<platform>:<id>``   zset      keys of every alert (pending or sent) whose payload names
                                              this post, by seq; written by the enqueue script.
                                              ``alerts:indexed`` flag: alerts older than the index were
                                              indexed once, at the first open by a version that has it
``P alerts:created``                zset      keys of every alert (pending or sent) by created_at (µs);
                                              written by the enqueue script. ``alerts:created:indexed``
                                              flag: older alerts were added once, like the per-post index
``P recheck:<platform>:<post_id>``  string    JSON re-check; ``rechecks:<platform>`` zset post_id by due
                                              (µs); ``rechecks`` set of M(platform, post_id)
``P events``                        zset      ``<seq:015d>:<id>`` by detected_at (µs); ``events:data``
                                              hash id -> JSON; ``events:seq`` counter
``P account:<platform>:<account>``  hash      AccountState fields (JSON values); ``accounts`` set
``P lock:<name>``                   string    owner, with a PX expiry
``P budget:<name>``                 hash      minute (since the epoch) -> requests spent; fields older than
                                              ``BUDGET_KEEP_MINUTES`` pruned at each spend, and the key
                                              expires that long after the last spend
==================================  ========  =========================================================

Each role is implemented in its own module (``bot.store.redis_posts``, ``redis_media``, ``redis_known_media``,
``redis_outbox``, ``redis_deletion_log``, ``redis_coordination``) mixed into :class:`RedisStore`; the review
roles (cases, dismissals, users) have their keys listed in :mod:`bot.store.redis_review`.

Hash values are JSON-encoded per field, so numbers can be incremented in place (HINCRBY). Writes that belong
together run in one MULTI/EXEC (with WATCH and retry where a decision depends on stored state, as in
``record_poll``) or in a Lua script. Every redis-py error is re-raised as :class:`StoreError`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from bot.errors import StoreError
from bot.redact import redact, redact_url, register_secret
from bot.store.base import StateStore
from bot.store.redis_posts import RedisPostsMixin
from bot.store.redis_media import RedisMediaMixin
from bot.store.redis_known_media import RedisKnownMediaMixin
from bot.store.redis_outbox import RedisOutboxMixin
from bot.store.redis_deletion_log import RedisDeletionLogMixin
from bot.store.redis_coordination import RedisCoordinationMixin
from bot.store.redis_review import RedisReviewMixin

DEFAULT_PREFIX = "afterimage"

# Defaults the URL's query string can override (socket_timeout=..., socket_connect_timeout=...).
_CLIENT_DEFAULTS: dict[str, Any] = {
    "socket_timeout": 10.0,
    "socket_connect_timeout": 5.0,
    "health_check_interval": 30,
}

# KEYS[1] hash; ARGV: field, value, ... -- set fields only when the hash exists (never creates half a record)
_HSET_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""


F = TypeVar("F", bound=Callable[..., Any])


def parse_store_url(url: str) -> tuple[str, str, str | None]:
    """Split a store URL into (URL for redis-py without ``prefix``, prefix, password or None)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise StoreError("Redis store URL must start with redis://, rediss:// or unix://")
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [v for k, v in query if k == "prefix"]
    prefix = prefixes[-1] if prefixes else DEFAULT_PREFIX
    if not prefix or any(c.isspace() for c in prefix):
        raise StoreError("Redis store URL: prefix must be a non-empty word")
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    password = unquote(parts.password) if parts.password else None
    base = url.split("?", 1)[0].split("#", 1)[0]  # keeps "unix:///path" intact, unlike urlunsplit
    return (f"{base}?{rest}" if rest else base), prefix, password


class RedisStore(
    RedisPostsMixin,
    RedisMediaMixin,
    RedisKnownMediaMixin,
    RedisOutboxMixin,
    RedisDeletionLogMixin,
    RedisCoordinationMixin,
    RedisReviewMixin,
    StateStore,
):
    """State store in Redis (see the module docstring for the key layout)."""

    def __init__(self, url: str):
        client_url, self.prefix, password = parse_store_url(url)
        if password:
            register_secret(password)
            register_secret(urlsplit(url).password)
        self.url = f"{redact_url(url)}?prefix={self.prefix}"
        try:
            self._r = redis.Redis.from_url(
                client_url,
                decode_responses=True,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
                **_CLIENT_DEFAULTS,
            )
        except (ValueError, TypeError) as exc:
            raise StoreError(f"invalid Redis store URL {self.url}: {redact(str(exc))}") from exc
        self._hset_if_exists = self._r.register_script(_HSET_IF_EXISTS)
        for role in type(self).__mro__:  # each role mixin names its scripts in ``SCRIPTS``
            for name, source in vars(role).get("SCRIPTS", {}).items():
                setattr(self, name, self._r.register_script(source))
        self.ping()
        try:
            self._index_old_alerts()
            self._index_old_known_groups()
        except redis.RedisError as exc:
            raise self._error(exc) from None

    def _error(self, exc: Exception) -> StoreError:
        kind = "cannot reach" if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)) else "error from"
        return StoreError(f"{kind} Redis store {self.url}: {redact(str(exc)) or type(exc).__name__}")

    def ping(self) -> None:
        """Check the server answers (raises :class:`StoreError` otherwise)."""
        try:
            self._r.ping()
        except redis.RedisError as exc:
            raise self._error(exc) from None

    # ----------------------------------------------------------------- keys
    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _post_key(self, platform: str, post_id: str) -> str:
        return self._k("post", platform, post_id)

    # ----------------------------------------------------------------- lifecycle
    def close(self) -> None:
        self._r.close()

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r})"


def _wrap_errors(method: F) -> F:
    """Re-raise redis-py errors of a store method (or of iterating its generator) as StoreError."""
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def gen_wrapper(self: RedisStore, *args: Any, **kwargs: Any) -> Any:
            try:
                yield from method(self, *args, **kwargs)
            except redis.RedisError as exc:
                raise self._error(exc) from None

        return gen_wrapper  # type: ignore[return-value]

    @functools.wraps(method)
    def wrapper(self: RedisStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except redis.RedisError as exc:
            raise self._error(exc) from None

    return wrapper  # type: ignore[return-value]


for _name in StateStore.__abstractmethods__ - {"close"}:  # every role's methods
    setattr(RedisStore, _name, _wrap_errors(getattr(RedisStore, _name)))
del _name
