"""The coordination role (:class:`~bot.store.coordination.CoordinationStore`) in Redis: keys ``account:*``,
``accounts``, ``budget:<name>`` and ``lock:<name>`` (layout in :mod:`bot.store.redis`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.store.common import (
    BUDGET_KEEP_MINUTES,
    account_from_dict,
    budget_minute,
    check_account_fields,
    check_budget_spend,
)
from bot.store.coordination import CoordinationStore
from bot.store.records import AccountState
from bot.store.redis_common import RedisRole, SEP, _hash_decode, _hash_encode, _member


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


class RedisCoordinationMixin(RedisRole, CoordinationStore):
    """Account states, budgets and locks under the host store's prefix."""

    #: the Lua scripts this role runs: the host store registers each as the attribute named
    SCRIPTS = {"_lock_renew": _LOCK_RENEW, "_lock_release": _LOCK_RELEASE, "_spend_budget": _SPEND_BUDGET}

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

    def acquire_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        key, ttl_ms = self._k("lock", name), max(1, int(ttl_seconds * 1000))
        if self._r.set(key, owner, nx=True, px=ttl_ms):
            return True
        return bool(self._lock_renew(keys=[key], args=[owner, ttl_ms]))

    def release_lock(self, name: str, owner: str) -> None:
        self._lock_release(keys=[self._k("lock", name)], args=[owner])

    def lock_owner(self, name: str) -> str | None:
        return self._r.get(self._k("lock", name))
