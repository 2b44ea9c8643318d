"""The work queue on Redis Streams: one stream per topic, one consumer group (``workers``) shared by every
daemon, each worker thread a consumer of its own.

==================================  ========  =========================================================
``P q:<topic>``                     stream    one entry per queued item (field ``item``); an entry is
                                              deleted (XDEL) when acknowledged, so XLEN counts the
                                              unfinished items and the first entry is the oldest
``P q:<topic>:items``               hash      item -> stream entry id: what is queued or claimed (a put
                                              of an item already there adds nothing)
``P q:<topic>:failures``            hash      item -> failures in a row so far (forgotten on success)
``P q:<topic>:failed``              hash      item -> JSON {attempts, error, failed_at}: parked items (a
                                              put skips them until a retry): failed every attempt, or
                                              their holders died with them (delivery count of the
                                              pending entry over the limit)
``P daemons``                       hash      daemon name -> JSON announcement with its expiry
==================================  ========  =========================================================

Claims are the group's pending entries list: ``XREADGROUP ... >`` hands out new entries, ``XAUTOCLAIM`` takes
over entries idle for longer than the lease (their consumer stopped extending them: it died), both in one
script (one round trip per claim); the pending entry's delivery count, which XAUTOCLAIM increments, is how
often its holders died with it; ``XCLAIM ... JUSTID`` by the owner resets the idle time (a lease
extension), ``XACK`` + ``XDEL`` finish an item.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import redis

from bot.store.queue import DIED_ERROR, LEASE_SECONDS, Backlog, Claim, DaemonInfo, FailedItem, WorkQueue, report_died
from bot.store.redis import RedisStore

GROUP = "workers"

# KEYS: stream, items hash, parked hash; ARGV: items -- XADD each item neither queued yet nor parked,
# remember its entry id
_PUT = """
local added = 0
for _, item in ipairs(ARGV) do
  if redis.call('HEXISTS', KEYS[2], item) == 0 and redis.call('HEXISTS', KEYS[3], item) == 0 then
    local id = redis.call('XADD', KEYS[1], '*', 'item', item)
    redis.call('HSET', KEYS[2], item, id)
    added = added + 1
  end
end
return added
"""

# KEYS: stream, items hash, failures hash; ARGV: group, entry id, item -- finish an item (whoever holds it)
_ACK = """
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if redis.call('HGET', KEYS[2], ARGV[3]) == ARGV[2] then redis.call('HDEL', KEYS[2], ARGV[3]) end
redis.call('HDEL', KEYS[3], ARGV[3])
return 1
"""

# KEYS: stream, items hash, failures hash, parked hash; ARGV: group, entry id, item, max attempts, JSON of the
# failure without its count -- finish a failed item, count the failure, park it at the maximum
_FAIL = """
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if redis.call('HGET', KEYS[2], ARGV[3]) == ARGV[2] then redis.call('HDEL', KEYS[2], ARGV[3]) end
local n = redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
if n < tonumber(ARGV[4]) then return 0 end
redis.call('HDEL', KEYS[3], ARGV[3])
local failure = cjson.decode(ARGV[5])
failure['attempts'] = n
redis.call('HSET', KEYS[4], ARGV[3], cjson.encode(failure))
return 1
"""

# KEYS: stream, items hash, failures hash, parked hash; ARGV: group, consumer, lease (ms), count, max deliveries
# (0: no limit), now (s), error format (deaths, holder) -- up to count claims, in one round trip: entries idle for
# longer than the lease first (a dead worker's, taken over), then new ones; each as {entry id, item, times
# delivered}. With a maximum: a taken-over entry delivered more than the maximum now (its holders died that
# often) is parked instead, like a failure of _FAIL; and taken-over entries go out one at a time (none while
# another one is being worked on), so the next death is blamed on that entry alone, not on the others its
# dead daemon held. Returns {claims, parked: {item, deaths, last holder}}.
_CLAIM = """
local count = tonumber(ARGV[4])
local limit = tonumber(ARGV[5])
local lease = tonumber(ARGV[3])
local function item_of(e)
  for i = 1, #e[2], 2 do
    if e[2][i] == 'item' then return e[2][i + 1] end
  end
  return nil
end
local function delivered(id)
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if p[1] then return p[1][4] end
  return 1
end
local claims, parked = {}, {}
if limit == 0 then
  local taken = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0', 'COUNT', count)
  for _, e in ipairs(taken[2]) do
    local item = type(e[2]) == 'table' and item_of(e) or nil
    if item then table.insert(claims, {e[1], item, delivered(e[1])}) end
  end
else
  -- the whole pending list (claims in progress and dead ones: about one per worker), oldest entry first
  local dead, busy = {}, false
  for _, p in ipairs(redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 10000)) do
    if p[3] >= lease then table.insert(dead, p) elseif p[4] > 1 then busy = true end
  end
  for _, p in ipairs(dead) do
    if busy then break end
    local id, holder, n = p[1], p[2], p[4] + 1
    local e = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], id)[1]  -- counts a delivery
    local item = e and type(e[2]) == 'table' and item_of(e) or nil
    if item and n > limit then
      redis.call('XACK', KEYS[1], ARGV[1], id)
      redis.call('XDEL', KEYS[1], id)
      if redis.call('HGET', KEYS[2], item) == id then redis.call('HDEL', KEYS[2], item) end
      redis.call('HDEL', KEYS[3], item)
      local failure = {attempts = n - 1, error = string.format(ARGV[7], n - 1, holder), failed_at = tonumber(ARGV[6])}
      redis.call('HSET', KEYS[4], item, cjson.encode(failure))
      table.insert(parked, {item, n - 1, holder})
    elseif item then
      table.insert(claims, {id, item, n})
      busy = true
    end
  end
end
if #claims < count then
  local fresh = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', count - #claims, 'STREAMS', KEYS[1], '>')
  if fresh then
    for _, e in ipairs(fresh[1][2]) do
      local item = item_of(e)
      if item then table.insert(claims, {e[1], item, 1}) end
    end
  end
end
return {claims, parked}
"""

# KEYS: stream; ARGV: group, entry id, consumer -- reset the idle time of a claim only if we still hold it
_EXTEND = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1, ARGV[3])
if #p == 0 then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
return 1
"""


def _entry_time(entry_id: str) -> datetime:
    """An automatic stream entry id starts with the server's time in milliseconds."""
    return datetime.fromtimestamp(int(entry_id.split("-")[0]) / 1000, timezone.utc)


class RedisWorkQueue(WorkQueue):
    """Work queue in the Redis store's server, under the store's key prefix."""

    def __init__(self, store: RedisStore, lease_seconds: float = LEASE_SECONDS):
        self.lease_seconds = lease_seconds
        self._store = store
        self._r = store._r
        self._put = self._r.register_script(_PUT)
        self._ack = self._r.register_script(_ACK)
        self._extend = self._r.register_script(_EXTEND)
        self._fail = self._r.register_script(_FAIL)
        self._claim = self._r.register_script(_CLAIM)
        self._groups: set[str] = set()

    def _stream(self, topic: str) -> str:
        return self._store._k("q", topic)

    def _items(self, topic: str) -> str:
        return self._store._k("q", topic, "items")

    def _failures(self, topic: str) -> str:
        return self._store._k("q", topic, "failures")

    def _parked(self, topic: str) -> str:
        return self._store._k("q", topic, "failed")

    def _group(self, topic: str) -> str:
        """The stream key, with its consumer group created (from the first entry) if it is not there yet."""
        stream = self._stream(topic)
        if topic not in self._groups:
            try:
                self._r.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self._groups.add(topic)
        return stream

    def put(self, topic: str, items: Sequence[str]) -> int:
        if not items:
            return 0
        stream = self._group(topic)
        return int(self._put(keys=[stream, self._items(topic), self._parked(topic)], args=list(items)))

    def claim(self, topic: str, consumer: str, count: int = 1, max_deliveries: int | None = None) -> list[Claim]:
        stream = self._group(topic)
        lease_ms = max(1, int(self.lease_seconds * 1000))
        rows, parked = self._claim(
            keys=[stream, self._items(topic), self._failures(topic), self._parked(topic)],
            args=[GROUP, consumer, lease_ms, max(1, int(count)), max(0, int(max_deliveries or 0)), time.time(), DIED_ERROR],
        )
        for item, deaths, holder in parked:
            report_died(topic, item, int(deaths), holder)
        return [Claim(topic, item, entry_id, _entry_time(entry_id), int(n)) for entry_id, item, n in rows]

    def claim_waiting(self, topic: str, consumer: str, wait: float, max_deliveries: int | None = None) -> list[Claim]:
        """A blocking ``XREADGROUP`` after an empty claim: Redis hands the next new entry to a waiting consumer
        the moment any client adds it. Claims whose lease ran out are looked at before each wait, as by
        :meth:`claim`."""
        claims = self.claim(topic, consumer, max_deliveries=max_deliveries)
        if claims or wait <= 0:
            return claims
        stream = self._group(topic)
        answer = self._r.xreadgroup(GROUP, consumer, {stream: ">"}, count=1, block=max(1, int(wait * 1000)))
        return [
            Claim(topic, fields["item"], entry_id, _entry_time(entry_id), 1)
            for _, entries in answer or [] for entry_id, fields in entries if fields and "item" in fields
        ]  # fmt: skip

    def extend(self, claim: Claim, consumer: str) -> bool:
        return bool(self._extend(keys=[self._stream(claim.topic)], args=[GROUP, claim.token, consumer]))

    def ack(self, claim: Claim) -> None:
        self._ack(
            keys=[self._stream(claim.topic), self._items(claim.topic), self._failures(claim.topic)],
            args=[GROUP, claim.token, claim.item],
        )

    def fail(self, claim: Claim, error: str, max_attempts: int) -> bool:
        topic = claim.topic
        failure = json.dumps({"error": error, "failed_at": time.time()})
        return bool(self._fail(
            keys=[self._stream(topic), self._items(topic), self._failures(topic), self._parked(topic)],
            args=[GROUP, claim.token, claim.item, max(1, int(max_attempts)), failure],
        ))  # fmt: skip

    def failed(self, topic: str) -> list[FailedItem]:
        found = [
            FailedItem(topic, item, int(d["attempts"]), str(d["error"]), datetime.fromtimestamp(d["failed_at"], timezone.utc))
            for item, d in ((item, json.loads(v)) for item, v in self._r.hgetall(self._parked(topic)).items())
        ]
        return sorted(found, key=lambda f: (f.failed_at, f.item))

    def retry(self, topic: str, item: str) -> bool:
        if not self._r.hdel(self._parked(topic), item):
            return False
        self.put(topic, [item])
        return True

    def expire_claims(self, topic: str, consumer: str) -> int:
        stream = self._group(topic)
        ids = [row["message_id"] for row in self._r.xpending_range(stream, GROUP, "-", "+", 10_000, consumername=consumer)]
        if ids:  # same owner, idle for longer than any lease: the next XAUTOCLAIM takes them over
            self._r.xclaim(stream, GROUP, consumer, 0, ids, idle=int(self.lease_seconds * 1000) + 1, justid=True)
        return len(ids)

    def prune_consumers(self, topic: str, idle_seconds: float) -> int:
        stream = self._group(topic)
        idle_ms = idle_seconds * 1000
        gone = [c["name"] for c in self._r.xinfo_consumers(stream, GROUP) if c["pending"] == 0 and c["idle"] >= idle_ms]
        for name in gone:
            self._r.xgroup_delconsumer(stream, GROUP, name)
        return len(gone)

    def backlog(self, topic: str) -> Backlog:
        stream = self._group(topic)
        pipe = self._r.pipeline(transaction=False)
        pipe.xlen(stream)
        pipe.xrange(stream, "-", "+", count=1)
        pipe.xpending(stream, GROUP)
        pipe.hlen(self._parked(topic))
        total, first, pending, failed = pipe.execute()
        in_progress = int(pending["pending"]) if pending else 0
        claims = {c["name"]: int(c["pending"]) for c in (pending or {}).get("consumers", [])}
        return Backlog(
            waiting=max(0, int(total) - in_progress),
            in_progress=in_progress,
            oldest_enqueued_at=_entry_time(first[0][0]) if first else None,
            claims=claims,
            failed=int(failed),
        )

    def announce(self, name: str, info: dict[str, Any], ttl_seconds: float) -> None:
        now = time.time()
        value = json.dumps({"info": info, "seen": now, "expires": now + ttl_seconds})
        self._r.hset(self._store._k("daemons"), name, value)

    def daemons(self) -> list[DaemonInfo]:
        key, now = self._store._k("daemons"), time.time()
        out, expired = [], []
        for name, value in sorted(self._r.hgetall(key).items()):
            data = json.loads(value)
            if data["expires"] < now:
                expired.append(name)
                continue
            out.append(DaemonInfo(name, data["info"], datetime.fromtimestamp(data["seen"], timezone.utc)))
        if expired:
            self._r.hdel(key, *expired)
        return out

    def withdraw(self, name: str) -> None:
        self._r.hdel(self._store._k("daemons"), name)


def _wrap_errors(method: Any) -> Any:
    """Re-raise redis-py errors of a queue method as StoreError, like the store's own methods."""

    @functools.wraps(method)
    def wrapper(self: RedisWorkQueue, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except redis.RedisError as exc:
            raise self._store._error(exc) from None

    return wrapper


for _name in (*WorkQueue.__abstractmethods__, "claim_waiting"):
    setattr(RedisWorkQueue, _name, _wrap_errors(getattr(RedisWorkQueue, _name)))
del _name
