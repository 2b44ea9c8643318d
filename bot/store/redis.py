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

The review roles (cases, dismissals, users) have their keys listed in :mod:`bot.store.redis_review`.

Hash values are JSON-encoded per field, so numbers can be incremented in place (HINCRBY). Writes that belong
together run in one MULTI/EXEC (with WATCH and retry where a decision depends on stored state, as in
``record_poll``) or in a Lua script. Every redis-py error is re-raised as :class:`StoreError`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from bot.errors import StoreError
from bot.models import Post, RejectedItem, iso, parse_iso
from bot.redact import redact, redact_url, register_secret
from bot.store.base import StateStore
from bot.store.redis_review import RedisReviewMixin, review_methods
from bot.store.common import (
    BUDGET_KEEP_MINUTES,
    account_from_dict,
    alert_post,
    budget_minute,
    check_account_fields,
    check_budget_spend,
    dumps,
    loads,
    micros,
    new_id,
    plan_versions,
    rejected_digest,
    rejected_from_dict,
    rejected_to_dict,
    resolve_at,
    status_for_event,
    stored_post,
    version_from_dict,
    version_to_dict,
)
from bot.store.records import (
    AccountState,
    Change,
    KnownKind,
    KnownMedia,
    KnownState,
    MediaRecord,
    OutboxAlert,
    PostChange,
    PostEvent,
    PostMediaLink,
    PostVersion,
    Recheck,
    StoredPost,
)

DEFAULT_PREFIX = "afterimage"
SEP = "\x1f"
_PAGE = 500

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

# KEYS: post hash, pending zset; ARGV: version, member -- processed_version only grows
_MARK_PROCESSED = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local done = tonumber(redis.call('HGET', KEYS[1], 'processed_version') or '0')
local v = tonumber(ARGV[1])
if v > done then
  redis.call('HSET', KEYS[1], 'processed_version', v)
  done = v
end
if done >= tonumber(redis.call('HGET', KEYS[1], 'version')) then
  redis.call('ZREM', KEYS[2], ARGV[2])
end
return 1
"""

# KEYS: the file's sha index, the seen-kind index, the entry key, seq counter, generation counter, then every
# index the entry goes into; ARGV: entry id, entry JSON -- the id of the file's first seen entry if there is
# one, else add the entry (one round trip, atomic: two daemons never both add one for a file)
_ADD_SEEN = """
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if redis.call('ZSCORE', KEYS[2], id) then return id end
end
local seq = redis.call('INCR', KEYS[4])
redis.call('SET', KEYS[3], ARGV[2])
for i = 6, #KEYS do redis.call('ZADD', KEYS[i], seq, ARGV[1]) end
redis.call('INCR', KEYS[5])
return false
"""

# KEYS: alert hash, outbox zset, seq counter, creation-time index zset, parked zset[, the post's alert index
# zset]; ARGV: key, state (queued/sent/parked), created_at (µs), field, value, ...
_ENQUEUE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local seq = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], 'seq', seq, unpack(ARGV, 4))
if ARGV[2] == 'queued' then redis.call('ZADD', KEYS[2], seq, ARGV[1]) end
if ARGV[2] == 'parked' then redis.call('ZADD', KEYS[5], seq, ARGV[1]) end
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
if KEYS[6] then redis.call('ZADD', KEYS[6], seq, ARGV[1]) end
return 1
"""

# KEYS: alert hash, outbox zset, parked zset; ARGV: key, sent_at (JSON)
_ALERT_SENT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'sent_at', ARGV[2], 'parked', 'false')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""

# KEYS: alert hash, from zset, to zset; ARGV: key, field, value, ... -- move a queued alert to the parked zset
# (or back), keeping its seq, and set the given fields; only when the alert is in the "from" zset
_ALERT_MOVE = """
local seq = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not seq or redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], seq, ARGV[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""

# KEYS: alert hash; ARGV: last_error (JSON), next_attempt_at (JSON)
_ALERT_FAILED = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'last_error', ARGV[1], 'next_attempt_at', ARGV[2])
return 1
"""

# KEYS: events zset, events data hash, seq counter; ARGV: id, JSON, score -- an id is logged once
_APPEND_EVENT = """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
local seq = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[3], string.format('%015d', seq) .. ':' .. ARGV[1])
return 1
"""

# KEYS: lock; ARGV: owner, ttl ms -- renew only our own lock
_LOCK_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: lock; ARGV: owner -- delete only our own lock
_LOCK_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: budget hash; ARGV: minute, requests, oldest minute kept, ttl ms -- count a spend, drop aged minutes
_SPEND_BUDGET = """
redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
local oldest = tonumber(ARGV[3])
for _, minute in ipairs(redis.call('HKEYS', KEYS[1])) do
  if tonumber(minute) < oldest then redis.call('HDEL', KEYS[1], minute) end
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
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


def _hash_encode(values: dict[str, Any]) -> dict[str, str]:
    return {k: dumps(v) for k, v in values.items()}


def _hash_decode(values: dict[str, str]) -> dict[str, Any]:
    return {k: loads(v) for k, v in values.items()}


def _member(a: str, b: str) -> str:
    return f"{a}{SEP}{b}"


class RedisStore(RedisReviewMixin, StateStore):
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
        self._mark_processed = self._r.register_script(_MARK_PROCESSED)
        self._enqueue = self._r.register_script(_ENQUEUE)
        self._alert_sent = self._r.register_script(_ALERT_SENT)
        self._alert_failed = self._r.register_script(_ALERT_FAILED)
        self._alert_move = self._r.register_script(_ALERT_MOVE)
        self._append_event = self._r.register_script(_APPEND_EVENT)
        self._lock_renew = self._r.register_script(_LOCK_RENEW)
        self._lock_release = self._r.register_script(_LOCK_RELEASE)
        self._spend_budget = self._r.register_script(_SPEND_BUDGET)
        self._add_seen = self._r.register_script(_ADD_SEEN)
        self._review_scripts()
        self.ping()
        try:
            self._index_old_alerts()
            self._index_old_known_groups()
        except redis.RedisError as exc:
            raise self._error(exc) from None

    def _index_old_alerts(self) -> None:
        """Add alerts enqueued before an alert index existed to it (the per-post index, flag ``alerts:indexed``;
        the creation-time index, flag ``alerts:created:indexed``), once per store and index: a flag key records
        it. Idempotent (ZADD of the alert's own seq / creation time), so two daemons doing it at once is
        harmless."""
        post_flag, created_flag = self._k("alerts", "indexed"), self._k("alerts", "created", "indexed")
        do_post, do_created = (not self._r.exists(flag) for flag in (post_flag, created_flag))
        if not (do_post or do_created):
            return
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in self._k("alert", "")) + "*"
        keys = list(self._r.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), _PAGE):
            chunk = keys[start : start + _PAGE]
            pipe = self._r.pipeline(transaction=False)
            for key in chunk:
                pipe.hmget(key, "key", "seq", "payload", "created_at")
            writes = self._r.pipeline(transaction=False)
            for fields in pipe.execute():
                if None in fields[:3]:
                    continue
                key = loads(fields[0])
                ref = alert_post(loads(fields[2])) if do_post else None
                if ref is not None:
                    writes.zadd(self._alert_index(*ref), {key: int(fields[1])})
                created = parse_iso(loads(fields[3])) if do_created and fields[3] is not None else None
                if created is not None:
                    writes.zadd(self._k("alerts", "created"), {key: micros(created)})
            writes.execute()
        for flag, done in ((post_flag, do_post), (created_flag, do_created)):
            if done:
                self._r.set(flag, "1")

    def _index_old_known_groups(self) -> None:
        """Add known entries stored before the group index existed to it, once per store (flag
        ``known:group:indexed``). Idempotent (ZADD of the entry's own seq)."""
        flag = self._k("known", "group", "indexed")
        if self._r.exists(flag):
            return
        start = 0
        while True:
            page = self._r.zrange(self._k("known", "order"), start, start + _PAGE - 1, withscores=True)
            values = self._r.mget([self._k("known", i) for i, _ in page]) if page else []
            writes = self._r.pipeline(transaction=False)
            for (known_id, seq), value in zip(page, values):
                group = loads(value).get("group") if value is not None else None
                if group:
                    writes.zadd(self._k("known", "group", group), {known_id: int(seq)})
            writes.execute()
            if len(page) < _PAGE:
                break
            start += _PAGE
        self._r.set(flag, "1")

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

    def _alert_index(self, platform: str, post_id: str) -> str:
        return self._k("alerts", "post", platform, post_id)

    def _post_indexes(self, platform: str, account: str) -> list[str]:
        return [
            self._k("posts"),
            self._k("posts", "p", platform),
            self._k("posts", "a", account),
            self._k("posts", "pa", platform, account),
        ]

    # ----------------------------------------------------------------- posts
    def _save_posts(self, posts: Sequence[Post], at: datetime, extra: Callable[[Any], None] | None) -> list[PostChange]:
        """Versioning under WATCH of the posts' hashes: the decision and the writes are one atomic unit
        (a concurrent change to one of these posts makes EXEC fail, and the whole poll is decided again)."""
        keys = sorted({self._post_key(p.platform, p.post_id) for p in posts})
        at_iso, at_us = iso(at), micros(at)

        def attempt(pipe: Any) -> list[PostChange]:
            stored: dict[str, dict[str, Any]] = {}
            for key in keys:
                fields = pipe.hmget(key, "version", "fingerprint", "account", "first_seen")
                if fields[0] is not None:
                    stored[key] = dict(zip(("version", "fingerprint", "account", "first_seen"), map(loads, fields)))

            def current(post: Post) -> tuple[int, str] | None:
                row = stored.get(self._post_key(post.platform, post.post_id))
                return (row["version"], row["fingerprint"]) if row else None

            plans = plan_versions(posts, current, at)
            pipe.multi()
            for plan in plans:
                post = plan.change.post
                key = self._post_key(post.platform, post.post_id)
                member = _member(post.platform, post.post_id)
                if plan.new_version is None:
                    pipe.hset(key, "last_seen_alive", dumps(at_iso))
                    continue
                values: dict[str, Any] = {
                    "post": post.to_dict(),
                    "account": post.account,
                    "version": plan.change.version,
                    "fingerprint": plan.fingerprint,
                    "last_seen_alive": at_iso,
                }
                old = stored.get(key)
                if plan.change.change is Change.NEW and old is None:
                    values.update(first_seen=at_iso, processed_version=0, status="alive")
                    first_us = at_us
                    stored[key] = {"account": post.account, "first_seen": at_iso}
                else:
                    first_us = micros(parse_iso(stored[key]["first_seen"]))  # type: ignore[arg-type]
                    if stored[key]["account"] != post.account:
                        for index in self._post_indexes(post.platform, stored[key]["account"])[2:]:
                            pipe.zrem(index, member)
                        stored[key]["account"] = post.account
                pipe.hset(key, mapping=_hash_encode(values))
                pipe.rpush(self._k("versions", post.platform, post.post_id), dumps(version_to_dict(plan.new_version)))
                for index in self._post_indexes(post.platform, post.account):
                    pipe.zadd(index, {member: first_us})
                pipe.zadd(self._k("pending"), {member: first_us})
            if extra is not None:
                extra(pipe)
            return [plan.change for plan in plans]

        return self._r.transaction(attempt, *keys, value_from_callable=True)

    def record_poll(
        self,
        platform: str,
        account: str,
        posts: Sequence[Post],
        cursor: str | None,
        rejected: Sequence[RejectedItem] = (),
        at: datetime | None = None,
    ) -> list[PostChange]:
        at = resolve_at(at)
        # a rejected item is stored once; checked before the transaction, which is safe because an account is
        # polled by one daemon at a time (poll lock)
        digests = {rejected_digest(item): item for item in rejected}
        known = self._r.smismember(self._k("rejected:digests"), list(digests)) if digests else []
        fresh = {d: item for (d, item), seen in zip(digests.items(), known) if not seen}

        def extra(pipe: Any) -> None:
            if cursor is not None:
                pipe.hset(self._k("cursors"), _member(platform, account), cursor)
            if fresh:
                pipe.sadd(self._k("rejected:digests"), *fresh)
                pipe.rpush(self._k("rejected"), *(dumps(rejected_to_dict(item)) for item in fresh.values()))

        return self._save_posts(posts, at, extra)

    def save_post_version(self, post: Post, at: datetime | None = None) -> PostChange:
        return self._save_posts([post], resolve_at(at), None)[0]

    @staticmethod
    def _stored(fields: dict[str, str]) -> StoredPost | None:
        if not fields or "post" not in fields:
            return None
        d = _hash_decode(fields)
        return stored_post(
            d["post"], d["version"], d["first_seen"], d["last_seen_alive"], d.get("processed_version", 0),
            d.get("status", "alive"),
        )

    def _stored_many(self, members: Sequence[str]) -> list[StoredPost]:
        pipe = self._r.pipeline(transaction=False)
        for member in members:
            platform, post_id = member.split(SEP, 1)
            pipe.hgetall(self._post_key(platform, post_id))
        return [s for s in map(self._stored, pipe.execute()) if s is not None]

    def get_post(self, platform: str, post_id: str) -> StoredPost | None:
        return self._stored(self._r.hgetall(self._post_key(platform, post_id)))

    def get_versions(self, platform: str, post_id: str) -> list[PostVersion]:
        return [version_from_dict(loads(v)) for v in self._r.lrange(self._k("versions", platform, post_id), 0, -1)]

    def _posts_index(self, platform: str | None, account: str | None) -> str:
        if platform is not None and account is not None:
            return self._k("posts", "pa", platform, account)
        if platform is not None:
            return self._k("posts", "p", platform)
        if account is not None:
            return self._k("posts", "a", account)
        return self._k("posts")

    def iter_posts(self, platform: str | None = None, account: str | None = None) -> Iterator[StoredPost]:
        index, start = self._posts_index(platform, account), 0
        while True:
            members = self._r.zrange(index, start, start + _PAGE - 1)
            yield from self._stored_many(members)
            if len(members) < _PAGE:
                return
            start += _PAGE

    def count_posts(self, platform: str | None = None, account: str | None = None) -> int:
        return int(self._r.zcard(self._posts_index(platform, account)))

    def mark_seen_alive(self, platform: str, post_id: str, at: datetime) -> None:
        self._hset_if_exists(keys=[self._post_key(platform, post_id)], args=["last_seen_alive", dumps(iso(at))])

    def set_post_status(self, platform: str, post_id: str, status: str) -> None:
        self._hset_if_exists(keys=[self._post_key(platform, post_id)], args=["status", dumps(status)])

    def pending_posts(self, limit: int = 100) -> list[StoredPost]:
        if limit <= 0:
            return []
        return self._stored_many(self._r.zrange(self._k("pending"), 0, limit - 1))

    def mark_processed(self, platform: str, post_id: str, version: int) -> None:
        self._mark_processed(
            keys=[self._post_key(platform, post_id), self._k("pending")], args=[int(version), _member(platform, post_id)]
        )

    def list_rejected(self, limit: int = 100) -> list[RejectedItem]:
        if limit <= 0:
            return []
        return [rejected_from_dict(loads(v)) for v in self._r.lrange(self._k("rejected"), -limit, -1)]

    # ----------------------------------------------------------------- cursors
    def get_cursor(self, platform: str, account: str) -> str | None:
        return self._r.hget(self._k("cursors"), _member(platform, account))

    # ----------------------------------------------------------------- media
    @staticmethod
    def _media(fields: dict[str, str]) -> MediaRecord | None:
        if "record" not in fields:
            return None
        data = loads(fields["record"])
        data["signals"] = {k[4:]: v for k, v in fields.items() if k.startswith("sig:")}
        return MediaRecord.from_dict(data)

    def put_media(self, record: MediaRecord) -> MediaRecord:
        key = self._k("media", record.sha256)
        data = record.to_dict()
        data.pop("signals")
        pipe = self._r.pipeline(transaction=True)
        pipe.hsetnx(key, "record", dumps(data))
        if record.signals:
            pipe.hset(key, mapping={f"sig:{k}": v for k, v in record.signals.items()})
        pipe.hgetall(key)
        stored = self._media(pipe.execute()[-1])
        assert stored is not None
        return stored

    def get_media(self, sha256: str) -> MediaRecord | None:
        return self._media(self._r.hgetall(self._k("media", sha256)))

    def set_media_signals(self, sha256: str, signals: dict[str, str]) -> None:
        if signals:
            args = [x for k, v in signals.items() for x in (f"sig:{k}", v)]
            self._hset_if_exists(keys=[self._k("media", sha256)], args=args)

    def link_post_media(self, link: PostMediaLink) -> None:
        self._r.hset(self._k("post_media", link.platform, link.post_id), str(link.index), dumps(link.to_dict()))

    def get_post_media(self, platform: str, post_id: str) -> list[PostMediaLink]:
        fields = self._r.hgetall(self._k("post_media", platform, post_id))
        return [PostMediaLink.from_dict(loads(fields[i])) for i in sorted(fields, key=int)]

    # ----------------------------------------------------------------- known media
    def _known_indexes(self, entry: KnownMedia) -> list[str]:
        indexes = [self._k("known", "order"), self._k("known", "kind", entry.kind.value)]
        if entry.sha256:
            indexes.append(self._k("known", "sha", entry.sha256))
        if entry.group:
            indexes.append(self._k("known", "group", entry.group))
        return indexes

    def _known_many(self, ids: Sequence[str]) -> list[KnownMedia]:
        if not ids:
            return []
        values = self._r.mget([self._k("known", i) for i in ids])
        return [KnownMedia.from_dict(loads(v)) for v in values if v is not None]

    def add_known_many(self, entries: Sequence[KnownMedia]) -> list[KnownMedia]:
        stored = [e if e.id else replace(e, id=new_id()) for e in entries]
        if not stored:
            return []
        latest = {e.id: e for e in stored}  # an id given twice: the last one is stored, as in SQLite
        ids = list(latest)
        keys = [self._k("known", i) for i in ids]
        order = self._k("known", "order")

        def attempt(pipe: Any) -> None:
            olds = pipe.mget(keys)
            seqs = pipe.zmscore(order, ids)
            fresh = sum(1 for s in seqs if s is None)
            top = int(pipe.incrby(self._k("known", "seq"), fresh)) if fresh else 0  # a gap after a retry is harmless
            next_seq = top - fresh + 1
            pipe.multi()
            for known_id, key, old_json, seq in zip(ids, keys, olds, seqs):
                entry = latest[known_id]
                if seq is None:
                    seq, next_seq = next_seq, next_seq + 1
                if old_json is not None:
                    for index in self._known_indexes(KnownMedia.from_dict(loads(old_json))):
                        pipe.zrem(index, known_id)
                pipe.set(key, dumps(entry.to_dict()))
                for index in self._known_indexes(entry):
                    pipe.zadd(index, {known_id: int(seq)})
            if any(o is not None for o in olds):
                pipe.incr(self._k("known", "epoch"))  # replaced in place: indexes must reload
            pipe.incr(self._k("known", "gen"))

        self._r.transaction(attempt, *keys)
        return stored

    def add_seen(self, entry: KnownMedia) -> tuple[KnownMedia, bool]:
        if not entry.sha256 or entry.kind != KnownKind.SEEN:
            raise ValueError("add_seen takes a seen entry with the file's sha256")
        stored = entry if entry.id else replace(entry, id=new_id())
        keys = [
            self._k("known", "sha", entry.sha256),
            self._k("known", "kind", KnownKind.SEEN.value),
            self._k("known", stored.id),
            self._k("known", "seq"),
            self._k("known", "gen"),
            *self._known_indexes(stored),
        ]
        first = self._add_seen(keys=keys, args=[stored.id, dumps(stored.to_dict())])
        if first is None:
            return stored, True
        existing = self.get_known(first)
        if existing is None:  # removed in between (a person deleted the entry): remember this post instead
            return self.add_seen(entry)
        return existing, False

    def get_known(self, known_id: str) -> KnownMedia | None:
        value = self._r.get(self._k("known", known_id))
        return KnownMedia.from_dict(loads(value)) if value is not None else None

    def find_known_by_sha256(self, sha256: str) -> list[KnownMedia]:
        return self._known_many(self._r.zrange(self._k("known", "sha", sha256), 0, -1))

    def find_known_by_group(self, group: str, kind: KnownKind | None = None) -> list[KnownMedia]:
        entries = self._known_many(self._r.zrange(self._k("known", "group", group), 0, -1))
        return [e for e in entries if kind is None or e.kind == KnownKind(kind)]

    def _known_index(self, kind: KnownKind | None) -> str:
        return self._k("known", "order") if kind is None else self._k("known", "kind", KnownKind(kind).value)

    def list_known(self, kind: KnownKind | None = None, limit: int | None = None, offset: int = 0) -> list[KnownMedia]:
        if limit is not None and limit <= 0:
            return []
        end = -1 if limit is None else offset + limit - 1
        return self._known_many(self._r.zrange(self._known_index(kind), offset, end))

    def iter_known(self, kind: KnownKind | None = None) -> Iterator[KnownMedia]:
        index, start = self._known_index(kind), 0
        while True:
            ids = self._r.zrange(index, start, start + _PAGE - 1)
            yield from self._known_many(ids)
            if len(ids) < _PAGE:
                return
            start += _PAGE

    def count_known(self, kind: KnownKind | None = None) -> int:
        return int(self._r.zcard(self._known_index(kind)))

    def remove_known(self, known_id: str) -> bool:
        key = self._k("known", known_id)

        def attempt(pipe: Any) -> bool:
            old_json = pipe.get(key)
            if old_json is None:
                pipe.multi()  # nothing to do; EXEC of an empty transaction
                return False
            pipe.multi()
            pipe.delete(key)
            for index in self._known_indexes(KnownMedia.from_dict(loads(old_json))):
                pipe.zrem(index, known_id)
            pipe.incr(self._k("known", "gen"))
            pipe.incr(self._k("known", "epoch"))
            return True

        return bool(self._r.transaction(attempt, key, value_from_callable=True))

    def remove_known_group(self, group: str, kind: KnownKind | None = None) -> int:
        group_key = self._k("known", "group", group)

        def attempt(pipe: Any) -> int:
            ids = pipe.zrange(group_key, 0, -1)
            olds = pipe.mget([self._k("known", i) for i in ids]) if ids else []
            gone = [
                (known_id, KnownMedia.from_dict(loads(old)))
                for known_id, old in zip(ids, olds)
                if old is not None and (kind is None or KnownMedia.from_dict(loads(old)).kind == KnownKind(kind))
            ]
            pipe.multi()
            for known_id, entry in gone:
                pipe.delete(self._k("known", known_id))
                for index in self._known_indexes(entry):
                    pipe.zrem(index, known_id)
            if gone:
                pipe.incr(self._k("known", "gen"))
                pipe.incr(self._k("known", "epoch"))
            return len(gone)

        return int(self._r.transaction(attempt, group_key, value_from_callable=True))

    def known_state(self) -> KnownState:
        pipe = self._r.pipeline(transaction=True)  # MULTI/EXEC: the three read together
        pipe.get(self._k("known", "gen"))
        pipe.get(self._k("known", "epoch"))
        pipe.zcard(self._k("known", "order"))
        generation, epoch, count = pipe.execute()
        return KnownState(int(generation or 0), int(epoch or 0), int(count))

    def iter_known_since(self, seq: int) -> Iterator[tuple[int, KnownMedia]]:
        last = seq
        while True:
            page = self._r.zrangebyscore(self._k("known", "order"), f"({last}", "+inf", start=0, num=_PAGE, withscores=True)
            if not page:
                return
            values = self._r.mget([self._k("known", i) for i, _ in page])
            for (_, score), value in zip(page, values):
                if value is not None:  # removed meanwhile: the epoch tells the reader
                    yield int(score), KnownMedia.from_dict(loads(value))
            if len(page) < _PAGE:
                return
            last = int(page[-1][1])

    # ----------------------------------------------------------------- alert outbox
    @staticmethod
    def _alert(fields: dict[str, str]) -> OutboxAlert | None:
        return OutboxAlert.from_dict(_hash_decode(fields)) if fields else None

    def _enqueue_alert(self, alert: OutboxAlert, client: Any = None) -> Any:
        """Run the enqueue script (on ``client``, a pipeline, when given: then it runs inside its EXEC)."""
        data = alert.to_dict()
        data.pop("seq")
        args = [x for k, v in _hash_encode(data).items() for x in (k, v)]
        keys = [
            self._k("alert", alert.key),
            self._k("outbox"),
            self._k("outbox", "seq"),
            self._k("alerts", "created"),
            self._k("outbox", "parked"),
        ]
        ref = alert_post(alert.payload)
        if ref is not None:
            keys.append(self._alert_index(*ref))
        state = "sent" if alert.sent_at else "parked" if alert.parked else "queued"
        args = [alert.key, state, micros(alert.created_at), *args]
        return self._enqueue(keys=keys, args=args, client=client)

    def enqueue_alert(self, alert: OutboxAlert) -> bool:
        return bool(self._enqueue_alert(alert))

    def due_alerts(self, now: datetime, limit: int = 50) -> list[OutboxAlert]:
        if limit <= 0:
            return []
        keys = self._r.zrange(self._k("outbox"), 0, limit - 1)
        pipe = self._r.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(self._k("alert", key))
        return [a for a in map(self._alert, pipe.execute()) if a is not None]

    def mark_alert_sent(self, key: str, at: datetime) -> None:
        self._alert_sent(
            keys=[self._k("alert", key), self._k("outbox"), self._k("outbox", "parked")], args=[key, dumps(iso(at))]
        )

    def mark_alert_failed(self, key: str, error: str, next_attempt_at: datetime) -> None:
        self._alert_failed(keys=[self._k("alert", key)], args=[dumps(error), dumps(iso(next_attempt_at))])

    def get_alert(self, key: str) -> OutboxAlert | None:
        return self._alert(self._r.hgetall(self._k("alert", key)))

    def outbox_size(self) -> int:
        return int(self._r.zcard(self._k("outbox")))

    def park_alert(self, key: str, error: str) -> bool:
        keys = [self._k("alert", key), self._k("outbox"), self._k("outbox", "parked")]
        return bool(self._alert_move(keys=keys, args=[key, "parked", dumps(True), "last_error", dumps(error)]))

    def parked_alerts(self) -> list[OutboxAlert]:
        return self._alerts_of(self._r.zrange(self._k("outbox", "parked"), 0, -1), None)

    def parked_count(self) -> int:
        return int(self._r.zcard(self._k("outbox", "parked")))

    def unpark_alert(self, key: str) -> bool:
        keys = [self._k("alert", key), self._k("outbox", "parked"), self._k("outbox")]
        fields = {"parked": False, "attempts": 0, "next_attempt_at": None}
        args = [x for k, v in _hash_encode(fields).items() for x in (k, v)]
        return bool(self._alert_move(keys=keys, args=[key, *args]))

    def list_alerts(self, platform: str, post_id: str, kinds: Iterable[str] | None = None) -> list[OutboxAlert]:
        if kinds is not None and not (kinds := list(kinds)):
            return []
        return self._alerts_of(self._r.zrange(self._alert_index(platform, str(post_id)), 0, -1), kinds)

    def alerts_between(
        self, since: datetime, until: datetime, kinds: Iterable[str] | None = None
    ) -> list[OutboxAlert]:
        if kinds is not None and not (kinds := list(kinds)):
            return []
        return self._alerts_of(self._r.zrangebyscore(self._k("alerts", "created"), micros(since), f"({micros(until)}"), kinds)

    def _alerts_of(self, keys: list[str], kinds: list[str] | None) -> list[OutboxAlert]:
        """The alerts of these keys (read in pages), optionally only of some kinds, in FIFO order."""
        wanted = None if kinds is None else {str(k) for k in kinds}
        alerts: list[OutboxAlert] = []
        for start in range(0, len(keys), _PAGE):
            pipe = self._r.pipeline(transaction=False)
            for key in keys[start : start + _PAGE]:
                pipe.hgetall(self._k("alert", key))
            alerts.extend(a for a in map(self._alert, pipe.execute()) if a is not None)
        return sorted((a for a in alerts if wanted is None or a.kind in wanted), key=lambda a: a.seq)

    # ----------------------------------------------------------------- re-checks
    def _queue_recheck(self, pipe: Any, recheck: Recheck) -> None:
        pipe.set(self._k("recheck", recheck.platform, recheck.post_id), dumps(recheck.to_dict()))
        pipe.zadd(self._k("rechecks", recheck.platform), {recheck.post_id: micros(recheck.due_at)})
        pipe.sadd(self._k("rechecks"), _member(recheck.platform, recheck.post_id))

    def _queue_remove_recheck(self, pipe: Any, platform: str, post_id: str) -> None:
        pipe.delete(self._k("recheck", platform, post_id))
        pipe.zrem(self._k("rechecks", platform), post_id)
        pipe.srem(self._k("rechecks"), _member(platform, post_id))

    def schedule_recheck(self, recheck: Recheck) -> None:
        pipe = self._r.pipeline(transaction=True)
        self._queue_recheck(pipe, recheck)
        pipe.execute()

    def get_recheck(self, platform: str, post_id: str) -> Recheck | None:
        value = self._r.get(self._k("recheck", platform, post_id))
        return Recheck.from_dict(loads(value)) if value is not None else None

    def due_rechecks(self, platform: str, now: datetime, limit: int = 1000) -> list[Recheck]:
        if limit <= 0:
            return []
        post_ids = self._r.zrangebyscore(self._k("rechecks", platform), "-inf", micros(now), start=0, num=limit)
        if not post_ids:
            return []
        values = self._r.mget([self._k("recheck", platform, p) for p in post_ids])
        return [Recheck.from_dict(loads(v)) for v in values if v is not None]

    def count_rechecks(self, platform: str | None = None) -> int:
        if platform is None:
            return int(self._r.scard(self._k("rechecks")))
        return int(self._r.zcard(self._k("rechecks", platform)))

    def remove_recheck(self, platform: str, post_id: str) -> None:
        pipe = self._r.pipeline(transaction=True)
        self._queue_remove_recheck(pipe, platform, post_id)
        pipe.execute()

    # ----------------------------------------------------------------- deletion log
    def record_event(
        self, event: PostEvent, next_recheck: Recheck | None, alert: OutboxAlert | None = None
    ) -> PostEvent:
        if not event.id:
            event = PostEvent.from_dict({**event.to_dict(), "id": new_id()})
        status = status_for_event(event.kind)
        pipe = self._r.pipeline(transaction=True)
        self._append_event(
            keys=[self._k("events"), self._k("events", "data"), self._k("events", "seq")],
            args=[event.id, dumps(event.to_dict()), micros(event.detected_at)],
            client=pipe,
        )
        if status is not None:
            self._hset_if_exists(
                keys=[self._post_key(event.platform, event.post_id)], args=["status", dumps(status)], client=pipe
            )
        if next_recheck is None:
            self._queue_remove_recheck(pipe, event.platform, event.post_id)
        else:
            self._queue_recheck(pipe, next_recheck)
        if alert is not None:
            self._enqueue_alert(alert, client=pipe)
        pipe.execute()
        return event

    def list_events(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        platform: str | None = None,
        account: str | None = None,
        kinds: Iterable[str] | None = None,
    ) -> list[PostEvent]:
        wanted = None if kinds is None else {str(k) for k in kinds}
        if wanted is not None and not wanted:
            return []
        low = "-inf" if since is None else micros(since)
        high = "+inf" if until is None else f"({micros(until)}"
        members = self._r.zrangebyscore(self._k("events"), low, high)
        events: list[PostEvent] = []
        for start in range(0, len(members), _PAGE):
            ids = [m.split(":", 1)[1] for m in members[start : start + _PAGE]]
            for value in self._r.hmget(self._k("events", "data"), ids):
                if value is None:
                    continue
                event = PostEvent.from_dict(loads(value))
                if platform is not None and event.platform != platform:
                    continue
                if account is not None and event.account != account:
                    continue
                if wanted is not None and event.kind not in wanted:
                    continue
                events.append(event)
        return events

    # ----------------------------------------------------------------- accounts
    def update_account_state(self, platform: str, account: str, **fields: Any) -> AccountState:
        values = check_account_fields(fields)
        key = self._k("account", platform, account)
        pipe = self._r.pipeline(transaction=True)
        if values:
            pipe.hset(key, mapping=_hash_encode(values))
        pipe.sadd(self._k("accounts"), _member(platform, account))
        pipe.hgetall(key)
        return account_from_dict(platform, account, _hash_decode(pipe.execute()[-1]))

    def get_account_state(self, platform: str, account: str) -> AccountState | None:
        fields = self._r.hgetall(self._k("account", platform, account))
        return account_from_dict(platform, account, _hash_decode(fields)) if fields else None

    def get_account_states(self) -> list[AccountState]:
        members = sorted(self._r.smembers(self._k("accounts")), key=lambda m: tuple(m.split(SEP, 1)))
        pipe = self._r.pipeline(transaction=False)
        for member in members:
            pipe.hgetall(self._k("account", *member.split(SEP, 1)))
        return [
            account_from_dict(*member.split(SEP, 1), _hash_decode(fields))
            for member, fields in zip(members, pipe.execute())
        ]

    # ----------------------------------------------------------------- request budgets
    def spend_budget(self, name: str, at: datetime, requests: int = 1) -> None:
        check_budget_spend(requests)
        minute = budget_minute(at)
        self._spend_budget(
            keys=[self._k("budget", name)],
            args=[minute, requests, minute - BUDGET_KEEP_MINUTES, BUDGET_KEEP_MINUTES * 60_000],
        )

    def budget_spent(self, name: str, since: datetime) -> int:
        first = budget_minute(since)
        spent = self._r.hgetall(self._k("budget", name))
        return sum(int(requests) for minute, requests in spent.items() if int(minute) >= first)

    # ----------------------------------------------------------------- locks
    def acquire_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        key, ttl_ms = self._k("lock", name), max(1, int(ttl_seconds * 1000))
        if self._r.set(key, owner, nx=True, px=ttl_ms):
            return True
        return bool(self._lock_renew(keys=[key], args=[owner, ttl_ms]))

    def release_lock(self, name: str, owner: str) -> None:
        self._lock_release(keys=[self._k("lock", name)], args=[owner])

    def lock_owner(self, name: str) -> str | None:
        return self._r.get(self._k("lock", name))

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


for _name in (StateStore.__abstractmethods__ | review_methods()) - {"close"}:
    setattr(RedisStore, _name, _wrap_errors(getattr(RedisStore, _name)))
del _name
