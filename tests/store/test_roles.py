"""The store's roles: each is implemented whole by one module per backend, ``StateStore`` is exactly their
composition, and the read-only view that exports get offers every reading method and no writing one."""

from __future__ import annotations

import pytest

from bot.export.rows import ReadOnlyStore
from bot.store.base import StateStore, StoreReader
from bot.store.coordination import CoordinationStore
from bot.store.deletion_log import DeletionLogReader, DeletionLogStore
from bot.store.known_media import KnownMediaReader, KnownMediaStore
from bot.store.media import MediaReader, MediaStore
from bot.store.outbox import OutboxReader, OutboxStore
from bot.store.posts import PostReader, PostStore
from bot.store.redis_coordination import RedisCoordinationMixin
from bot.store.redis_deletion_log import RedisDeletionLogMixin
from bot.store.redis_known_media import RedisKnownMediaMixin
from bot.store.redis_media import RedisMediaMixin
from bot.store.redis_outbox import RedisOutboxMixin
from bot.store.redis_posts import RedisPostsMixin
from bot.store.redis_review import RedisReviewMixin
from bot.store.review import CaseReader, CaseStore, UserStore
from bot.store.sqlite import SqliteStore
from bot.store.sqlite_coordination import SqliteCoordinationMixin
from bot.store.sqlite_deletion_log import SqliteDeletionLogMixin
from bot.store.sqlite_known_media import SqliteKnownMediaMixin
from bot.store.sqlite_media import SqliteMediaMixin
from bot.store.sqlite_outbox import SqliteOutboxMixin
from bot.store.sqlite_posts import SqlitePostsMixin
from bot.store.sqlite_review import SqliteReviewMixin

#: role interface(s) -> (its SQLite module's mixin, its Redis module's mixin)
ROLES = [
    ((PostStore,), SqlitePostsMixin, RedisPostsMixin),
    ((MediaStore,), SqliteMediaMixin, RedisMediaMixin),
    ((KnownMediaStore,), SqliteKnownMediaMixin, RedisKnownMediaMixin),
    ((OutboxStore,), SqliteOutboxMixin, RedisOutboxMixin),
    ((DeletionLogStore,), SqliteDeletionLogMixin, RedisDeletionLogMixin),
    ((CoordinationStore,), SqliteCoordinationMixin, RedisCoordinationMixin),
    ((CaseStore, UserStore), SqliteReviewMixin, RedisReviewMixin),
]
READERS = [PostReader, MediaReader, KnownMediaReader, OutboxReader, DeletionLogReader, CaseReader]


def _abstract(*roles: type) -> set[str]:
    return set().union(*(role.__abstractmethods__ for role in roles))


@pytest.mark.parametrize("roles, sqlite_mixin, redis_mixin", ROLES, ids=lambda v: getattr(v, "__name__", ""))
def test_each_role_is_implemented_whole_by_one_module_per_backend(roles, sqlite_mixin, redis_mixin):
    wanted = _abstract(*roles)
    assert wanted
    for mixin in (sqlite_mixin, redis_mixin):
        assert all(role in mixin.__mro__ for role in roles)
        missing = wanted - set(vars(mixin))
        assert not missing, f"{mixin.__module__}.{mixin.__name__} leaves {sorted(missing)} to another module"


def test_state_store_is_exactly_the_composition_of_the_roles():
    everything = _abstract(*(role for roles, _, _ in ROLES for role in roles))
    assert set(StateStore.__abstractmethods__) == everything | {"close"}
    for roles, sqlite_mixin, redis_mixin in ROLES:
        assert all(role in StateStore.__mro__ for role in roles)
    others = [set(role.__abstractmethods__) for roles, _, _ in ROLES for role in roles]
    assert sum(map(len, others)) == len(everything), "a method belongs to two roles"


def test_read_only_view_offers_every_reading_method_and_no_writing_one(tmp_path):
    store = SqliteStore(str(tmp_path / "state.db"))
    view = ReadOnlyStore(store)
    reading = _abstract(*READERS)
    assert reading == set(StoreReader.__abstractmethods__)
    for name in reading:
        assert callable(getattr(view, name))
    writing = _abstract(*(role for roles, _, _ in ROLES for role in roles)) - reading
    assert {"record_poll", "enqueue_alert", "record_event", "add_known_many", "acquire_lock", "put_user"} <= writing
    for name in writing | {"close"}:
        with pytest.raises(AttributeError, match="read-only"):
            getattr(view, name)
    assert view.count_posts() == 0 and view.known_generation() == 0 and view.url == store.url
    store.close()
