"""What the Redis role modules (``bot.store.redis_*``) share: the member separator, the per-field JSON codec
of hashes, and the host store's client, key builder and scripts they use, declared here so each role module
type-checks on its own. The key layout is documented once, in :mod:`bot.store.redis`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from bot.store.common import dumps, loads

if TYPE_CHECKING:
    import redis

    from bot.store.records import OutboxAlert

SEP = "\x1f"
_PAGE = 500


def _hash_encode(values: dict[str, Any]) -> dict[str, str]:
    return {k: dumps(v) for k, v in values.items()}


def _hash_decode(values: dict[str, str]) -> dict[str, Any]:
    return {k: loads(v) for k, v in values.items()}


def _member(a: str, b: str) -> str:
    return f"{a}{SEP}{b}"


class RedisRole:
    """Base of the Redis role mixins: ``_r`` is the client, ``_k`` builds a key under the store's prefix."""

    if TYPE_CHECKING:  # provided by RedisStore
        _r: redis.Redis
        url: str
        _hset_if_exists: Any

        def _k(self, *parts: str) -> str: ...
        def _post_key(self, platform: str, post_id: str) -> str: ...
        def _error(self, exc: Exception) -> Exception: ...

        # of the outbox role, for the deletion log (an event and its alert in one MULTI/EXEC)
        def _enqueue_alert(self, alert: OutboxAlert, client: Any = None) -> Any: ...

    def _zpages(self, index: str) -> Iterator[list[str]]:
        """The members of a sorted set in order, a page at a time (memory stays bounded on a large store)."""
        start = 0
        while True:
            members = self._r.zrange(index, start, start + _PAGE - 1)
            yield members
            if len(members) < _PAGE:
                return
            start += _PAGE
