"""The posts role (:class:`~bot.store.posts.PostStore`) in Redis: keys ``post:*``, ``versions:*``, the
``posts*`` and ``pending`` indexes, ``cursors``, ``rejected`` (layout in :mod:`bot.store.redis`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

from bot.models import Post, RejectedItem, iso, parse_iso
from bot.store.common import dumps, loads, micros, plan_versions, resolve_at
from bot.store.posts import AccountPoll, PostStore
from bot.store.records import Change, PostChange, PostVersion, StoredPost
from bot.store.redis_common import RedisRole, SEP, _hash_decode, _hash_encode, _member


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


class RedisPostsMixin(RedisRole, PostStore):
    """Posts, versions, cursors and rejected items under the host store's prefix."""

    #: the Lua scripts this role runs: the host store registers each as the attribute named
    SCRIPTS = {"_mark_processed": _MARK_PROCESSED}

    def _post_indexes(self, platform: str, account: str) -> list[str]:
        return [
            self._k("posts"),
            self._k("posts", "p", platform),
            self._k("posts", "a", account),
            self._k("posts", "pa", platform, account),
        ]

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
                pipe.rpush(self._k("versions", post.platform, post.post_id), dumps(plan.new_version.to_dict()))
                for index in self._post_indexes(post.platform, post.account):
                    pipe.zadd(index, {member: first_us})
                pipe.zadd(self._k("pending"), {member: first_us})
            if extra is not None:
                extra(pipe)
            return [plan.change for plan in plans]

        return self._r.transaction(attempt, *keys, value_from_callable=True)

    def record_poll(self, poll: AccountPoll) -> list[PostChange]:
        # a rejected item is stored once; checked before the transaction, which is safe because an account is
        # polled by one daemon at a time (poll lock)
        digests = {item.digest(): item for item in poll.rejected}
        known = self._r.smismember(self._k("rejected:digests"), list(digests)) if digests else []
        fresh = {d: item for (d, item), seen in zip(digests.items(), known) if not seen}

        def extra(pipe: Any) -> None:
            if poll.cursor is not None:
                pipe.hset(self._k("cursors"), _member(poll.platform, poll.account), poll.cursor)
            if fresh:
                pipe.sadd(self._k("rejected:digests"), *fresh)
                pipe.rpush(self._k("rejected"), *(dumps(item.to_dict()) for item in fresh.values()))

        return self._save_posts(poll.posts, resolve_at(poll.at), extra)

    def save_post_version(self, post: Post, at: datetime | None = None) -> PostChange:
        return self._save_posts([post], resolve_at(at), None)[0]

    @staticmethod
    def _stored(fields: dict[str, str]) -> StoredPost | None:
        if not fields or "post" not in fields:
            return None
        d = _hash_decode(fields)
        return StoredPost.from_stored(
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
        return [PostVersion.from_dict(loads(v)) for v in self._r.lrange(self._k("versions", platform, post_id), 0, -1)]

    def _posts_index(self, platform: str | None, account: str | None) -> str:
        if platform is not None and account is not None:
            return self._k("posts", "pa", platform, account)
        if platform is not None:
            return self._k("posts", "p", platform)
        if account is not None:
            return self._k("posts", "a", account)
        return self._k("posts")

    def iter_posts(self, platform: str | None = None, account: str | None = None) -> Iterator[StoredPost]:
        for members in self._zpages(self._posts_index(platform, account)):
            yield from self._stored_many(members)

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
        return [RejectedItem.from_dict(loads(v)) for v in self._r.lrange(self._k("rejected"), -limit, -1)]

    def get_cursor(self, platform: str, account: str) -> str | None:
        return self._r.hget(self._k("cursors"), _member(platform, account))
