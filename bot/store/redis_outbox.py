"""The outbox role (:class:`~bot.store.outbox.OutboxStore`) in Redis: keys ``alert:<key>``, ``outbox*``
and ``alerts:*`` (layout in :mod:`bot.store.redis`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from bot.models import iso, parse_iso
from bot.store.common import alert_post, dumps, loads, micros
from bot.store.outbox import OutboxStore
from bot.store.records import OutboxAlert
from bot.store.redis_common import RedisRole, _PAGE, _hash_decode, _hash_encode


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


class RedisOutboxMixin(RedisRole, OutboxStore):
    """The alert outbox under the host store's prefix."""

    #: the Lua scripts this role runs: the host store registers each as the attribute named
    SCRIPTS = {
        "_enqueue": _ENQUEUE,
        "_alert_sent": _ALERT_SENT,
        "_alert_failed": _ALERT_FAILED,
        "_alert_move": _ALERT_MOVE,
    }

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

    def _alert_index(self, platform: str, post_id: str) -> str:
        return self._k("alerts", "post", platform, post_id)

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
