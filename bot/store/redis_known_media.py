"""The known-media role (:class:`~bot.store.known_media.KnownMediaStore`) in Redis: keys ``known:*``
(layout in :mod:`bot.store.redis`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from bot.store.common import dumps, loads, with_id
from bot.store.known_media import KnownMediaStore
from bot.store.records import KnownKind, KnownMedia, KnownState
from bot.store.redis_common import RedisRole, _PAGE

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


# KEYS: generation counter, epoch counter, order index; ARGV: insertion number, page size, entry key prefix --
# the known state and the entries inserted after that number, read together (a matcher's refresh after each
# post: one round trip instead of five), or no entries (false) when there are more than a page of them
_KNOWN_SINCE = """
local state = {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2]), redis.call('ZCARD', KEYS[3])}
if ARGV[1] == '' then return state end
local page = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. ARGV[1], '+inf', 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]) + 1)
if #page > 2 * tonumber(ARGV[2]) then state[4] = false return state end
local entries = {}
for i = 1, #page, 2 do
  entries[#entries + 1] = page[i + 1]
  entries[#entries + 1] = redis.call('GET', ARGV[3] .. page[i])
end
state[4] = entries
return state
"""


class RedisKnownMediaMixin(RedisRole, KnownMediaStore):
    """Known-media entries under the host store's prefix."""

    #: the Lua scripts this role runs: the host store registers each as the attribute named
    SCRIPTS = {"_add_seen": _ADD_SEEN, "_known_since": _KNOWN_SINCE}

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
        stored = [with_id(e) for e in entries]
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
        stored = with_id(entry)
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
        for ids in self._zpages(self._known_index(kind)):
            yield from self._known_many(ids)

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
        return self._read_known_since(None, 0)[0]

    def known_since(self, seq: int, limit: int) -> tuple[KnownState, list[tuple[int, KnownMedia]] | None]:
        return self._read_known_since(seq, limit)

    def _read_known_since(self, seq: int | None, limit: int) -> tuple[KnownState, list[tuple[int, KnownMedia]] | None]:
        keys = [self._k("known", "gen"), self._k("known", "epoch"), self._k("known", "order")]
        reply = self._known_since(keys=keys, args=["" if seq is None else seq, limit, self._k("known", "")])
        state = KnownState(int(reply[0] or 0), int(reply[1] or 0), int(reply[2]))
        if seq is None or reply[3] is None:
            return state, None
        pairs = reply[3]
        entries = [
            (int(float(pairs[i])), KnownMedia.from_dict(loads(pairs[i + 1])))
            for i in range(0, len(pairs), 2)
            if pairs[i + 1] is not None
        ]
        return state, entries

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
