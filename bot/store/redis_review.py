"""The Redis implementation of the review roles (:class:`~bot.store.review.CaseStore`,
:class:`~bot.store.review.UserStore`), mixed into :class:`~bot.store.redis.RedisStore` (same client, prefix
and error wrapping).

Key layout (``P`` = ``<prefix>:``):

==================================  ========  =========================================================
``P case:<id>``                     string    JSON case
``P cases:key``                     hash      case key (platform:post_id:sha:item) -> id
``P cases`` / ``P cases:status:<s>`` zset     ids by creation seq (``cases:seq`` counter); also
``P cases:post:<platform>:<id>``              per status and per post
``P cases:updated``                 zset      ids by last change (microseconds since the epoch)
``P dismissals:<known_item>``       hash      case id -> JSON dismissal
``P user:<name>``                   string    JSON user; ``users`` set of names
``P users:token``                   hash      token hash -> name
==================================  ========  =========================================================

Opening a case is one Lua script (check the key, number, write, index), deciding one MULTI/EXEC under WATCH
of the case. Filters beyond the index read (tier, or status within a post) are applied while paging.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import redis

from bot.store.common import dumps, loads, micros, with_id
from bot.store.review import Case, CaseNotFound, CaseQuery, CaseStore, Dismissal, User, UserStore, check_case_filters

# KEYS: cases:key, case:<id>, cases:seq, cases, cases:status:<status>, cases:post:<platform>:<post_id>,
#       cases:updated
# ARGV: key, id, json, change time (micros) -- returns the id of the existing case, or nil when this one was added
_OPEN_CASE = """
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then return existing end
local seq = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[4], seq, ARGV[2])
redis.call('ZADD', KEYS[5], seq, ARGV[2])
redis.call('ZADD', KEYS[6], seq, ARGV[2])
redis.call('ZADD', KEYS[7], ARGV[4], ARGV[2])
return false
"""

_PAGE = 200


class RedisReviewMixin(CaseStore, UserStore):
    """Needs the host store's ``_r`` client and ``_k`` key builder."""

    if TYPE_CHECKING:
        _r: redis.Redis

        def _k(self, *parts: str) -> str: ...

    #: the Lua scripts this role runs: the host store registers each as the attribute named
    SCRIPTS = {"_open_case_script": _OPEN_CASE}

    # ----------------------------------------------------------------- cases
    def _case_key(self, case_id: str) -> str:
        return self._k("case", case_id)

    def open_case(self, case: Case) -> tuple[Case, bool]:
        case = with_id(case)
        existing = self._open_case_script(
            keys=[
                self._k("cases", "key"),
                self._case_key(case.id),
                self._k("cases", "seq"),
                self._k("cases"),
                self._k("cases", "status", case.status),
                self._k("cases", "post", case.platform, case.post_id),
                self._k("cases", "updated"),
            ],
            args=[case.key, case.id, dumps(case.to_dict()), micros(case.changed_at)],
        )
        if existing:
            stored = self.get_case(existing)
            if stored is not None:
                return stored, False
        return case, True

    def get_case(self, case_id: str) -> Case | None:
        raw = self._r.get(self._case_key(case_id))
        return Case.from_dict(loads(raw)) if raw else None

    def list_cases(self, query: CaseQuery = CaseQuery()) -> list[Case]:
        if query.platform is not None and query.post_id is not None:
            index = self._k("cases", "post", query.platform, query.post_id)
        elif query.status is not None:
            index = self._k("cases", "status", query.status)
        else:
            index = self._k("cases")
        out: list[Case] = []
        skipped, start = 0, 0
        while len(out) < query.limit:
            ids = self._r.zrevrange(index, start, start + _PAGE - 1)
            if not ids:
                break
            start += len(ids)
            for raw in self._r.mget([self._case_key(i) for i in ids]):
                if raw is None:
                    continue
                case = Case.from_dict(loads(raw))
                if not query.matches(case):
                    continue
                if skipped < query.offset:
                    skipped += 1
                    continue
                out.append(case)
                if len(out) >= query.limit:
                    break
        return out

    def count_cases(self, status: str | None = None) -> int:
        check_case_filters(status, None)
        return int(self._r.zcard(self._k("cases", "status", status) if status else self._k("cases")))

    def update_case(self, case: Case, dismissal: Dismissal | None) -> Case:
        key = self._case_key(case.id)
        with self._r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is None:
                        raise CaseNotFound(case.id)
                    before = Case.from_dict(loads(raw))
                    seq = pipe.zscore(self._k("cases"), case.id) or 0
                    pipe.multi()
                    pipe.set(key, dumps(case.to_dict()))
                    pipe.zrem(self._k("cases", "status", before.status), case.id)
                    pipe.zadd(self._k("cases", "status", case.status), {case.id: seq})
                    pipe.zadd(self._k("cases", "updated"), {case.id: micros(case.changed_at)})
                    pipe.hdel(self._k("dismissals", before.known_item), case.id)
                    if dismissal is not None:
                        pipe.hset(self._k("dismissals", dismissal.known_item), case.id, dumps(dismissal.to_dict()))
                    pipe.execute()
                    return case
                except redis.WatchError:
                    continue

    def dismissals_for(self, known_item: str) -> list[Dismissal]:
        found = [Dismissal.from_dict(loads(v)) for v in self._r.hvals(self._k("dismissals", known_item))]
        return sorted(found, key=lambda d: (d.at, d.case_id))

    def cases_changed_since(self, since: datetime | None) -> list[Case]:
        # every case: the creation index (cases opened before ``cases:updated`` existed are only in it)
        index = self._k("cases") if since is None else self._k("cases", "updated")
        ids = self._r.zrange(index, 0, -1) if since is None else self._r.zrangebyscore(index, micros(since), "+inf")
        found: list[tuple[Case, float]] = []
        for start in range(0, len(ids), _PAGE):
            chunk = ids[start : start + _PAGE]
            pipe = self._r.pipeline(transaction=False)
            for i in chunk:
                pipe.zscore(self._k("cases"), i)
            seqs = pipe.execute()
            raws = self._r.mget([self._case_key(i) for i in chunk])
            found += [(Case.from_dict(loads(raw)), seq or 0) for raw, seq in zip(raws, seqs, strict=True) if raw]
        # ties in time go by opening order, as in SQLite
        return [c for c, _ in sorted(found, key=lambda x: (micros(x[0].changed_at), x[1]))]

    # ----------------------------------------------------------------- users
    def put_user(self, user: User) -> None:
        key = self._k("user", user.name)
        with self._r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    old_token = loads(raw).get("token_hash") if raw else None
                    pipe.multi()
                    if old_token and old_token != user.token_hash:
                        pipe.hdel(self._k("users", "token"), old_token)
                    pipe.set(key, dumps(user.to_dict()))
                    pipe.sadd(self._k("users"), user.name)
                    if user.token_hash:
                        pipe.hset(self._k("users", "token"), user.token_hash, user.name)
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue

    def get_user(self, name: str) -> User | None:
        raw = self._r.get(self._k("user", name))
        return User.from_dict(loads(raw)) if raw else None

    def user_by_token(self, token_hash: str) -> User | None:
        name = self._r.hget(self._k("users", "token"), token_hash)
        user = self.get_user(name) if name else None
        return user if user is not None and user.token_hash == token_hash else None

    def list_users(self) -> list[User]:
        names = sorted(self._r.smembers(self._k("users")))
        raws = self._r.mget([self._k("user", n) for n in names]) if names else []
        return [User.from_dict(loads(r)) for r in raws if r]

    def remove_user(self, name: str) -> bool:
        user = self.get_user(name)
        if user is None:
            return False
        pipe = self._r.pipeline()
        pipe.delete(self._k("user", name))
        pipe.srem(self._k("users"), name)
        if user.token_hash:
            pipe.hdel(self._k("users", "token"), user.token_hash)
        pipe.execute()
        return True
