"""The media role (:class:`~bot.store.media.MediaStore`) in Redis: keys ``media:<sha256>`` and
``post_media:<platform>:<id>`` (layout in :mod:`bot.store.redis`)."""

from __future__ import annotations

import redis

from bot.store.common import dumps, loads
from bot.store.media import MediaStore
from bot.store.records import MediaRecord, PostMediaLink
from bot.store.redis_common import RedisRole


class RedisMediaMixin(RedisRole, MediaStore):
    """Media records and post-media links under the host store's prefix."""

    @staticmethod
    def _media(fields: dict[str, str]) -> MediaRecord | None:
        if "record" not in fields:
            return None
        data = loads(fields["record"])
        data["signals"] = {k[4:]: v for k, v in fields.items() if k.startswith("sig:")}
        return MediaRecord.from_dict(data)

    def put_media(self, record: MediaRecord, link: PostMediaLink | None = None) -> MediaRecord:
        key = self._k("media", record.sha256)
        data = record.to_dict()
        data.pop("signals")
        pipe = self._r.pipeline(transaction=True)
        pipe.hsetnx(key, "record", dumps(data))
        if record.signals:
            pipe.hset(key, mapping={f"sig:{k}": v for k, v in record.signals.items()})
        if link is not None:
            self._link(pipe, link)
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
        self._link(self._r, link)

    def _link(self, client: redis.Redis | redis.client.Pipeline, link: PostMediaLink) -> None:
        client.hset(self._k("post_media", link.platform, link.post_id), str(link.index), dumps(link.to_dict()))

    def get_post_media(self, platform: str, post_id: str) -> list[PostMediaLink]:
        fields = self._r.hgetall(self._k("post_media", platform, post_id))
        return [PostMediaLink.from_dict(loads(fields[i])) for i in sorted(fields, key=int)]
