"""The deletion-log role (:class:`~bot.store.deletion_log.DeletionLogStore`) in Redis: keys ``recheck:*``,
``rechecks*`` and ``events*`` (layout in :mod:`bot.store.redis`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.store.common import dumps, loads, micros, status_for_event, with_id
from bot.store.deletion_log import DeletionLogStore, EventFilter
from bot.store.records import OutboxAlert, PostEvent, Recheck
from bot.store.redis_common import RedisRole, _PAGE, _member


# KEYS: events zset, events data hash, seq counter; ARGV: id, JSON, score -- an id is logged once
_APPEND_EVENT = """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
local seq = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[3], string.format('%015d', seq) .. ':' .. ARGV[1])
return 1
"""


# KEYS: the post's re-check key, the platform's due index, the set of every re-check; ARGV: the re-check JSON,
# its due time, the post id, its member in the set -- the existing state, or the new one stored (false)
_START_RECHECK = """
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[4])
return false
"""


class RedisDeletionLogMixin(RedisRole, DeletionLogStore):
    """Re-checks and events under the host store's prefix."""

    #: the Lua scripts this role runs: the host store registers each as the attribute named
    SCRIPTS = {"_append_event": _APPEND_EVENT, "_start_recheck": _START_RECHECK}

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

    def start_recheck(self, recheck: Recheck) -> Recheck:
        keys = [self._k("recheck", recheck.platform, recheck.post_id), self._k("rechecks", recheck.platform), self._k("rechecks")]
        args = [dumps(recheck.to_dict()), micros(recheck.due_at), recheck.post_id, _member(recheck.platform, recheck.post_id)]
        existing = self._start_recheck(keys=keys, args=args)
        return Recheck.from_dict(loads(existing)) if existing is not None else recheck

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

    def record_event(
        self, event: PostEvent, next_recheck: Recheck | None, alert: OutboxAlert | None = None
    ) -> PostEvent:
        event = with_id(event)
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

    def list_events(self, where: EventFilter = EventFilter()) -> list[PostEvent]:
        if where.none_wanted:
            return []
        low = "-inf" if where.since is None else micros(where.since)
        high = "+inf" if where.until is None else f"({micros(where.until)}"
        members = self._r.zrangebyscore(self._k("events"), low, high)
        events: list[PostEvent] = []
        for start in range(0, len(members), _PAGE):
            ids = [m.split(":", 1)[1] for m in members[start : start + _PAGE]]
            for value in self._r.hmget(self._k("events", "data"), ids):
                if value is None:
                    continue
                event = PostEvent.from_dict(loads(value))
                if where.matches(event):
                    events.append(event)
        return events
