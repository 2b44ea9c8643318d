"""The state store, as the composition of its roles. Each role is an interface of its own module, and a
component is handed (and typed with) only the roles it uses:

=====================  ==========================================  ===============================================
role                   interface (module)                          what it keeps
=====================  ==========================================  ===============================================
posts                  :class:`~bot.store.posts.PostStore`         posts, versions, cursors, rejected items, status
media                  :class:`~bot.store.media.MediaStore`        media records, post-media links
known media            :class:`~bot.store.known_media.KnownMediaStore`  the library the matcher searches
outbox                 :class:`~bot.store.outbox.OutboxStore`      alerts to deliver, parked and sent alerts
deletion log           :class:`~bot.store.deletion_log.DeletionLogStore`  re-checks and the events they confirmed
coordination           :class:`~bot.store.coordination.CoordinationStore`  account poll states, budgets, locks
cases, users           :class:`~bot.store.review.CaseStore`,       the review loop and the console's users
                       :class:`~bot.store.review.UserStore`
=====================  ==========================================  ===============================================

Each role is a :class:`typing.Protocol` that the backends subclass explicitly (so a missing method fails at
class creation, as with an ABC), and that composes structurally: a component using several roles types its
store with a Protocol of those roles (the tracker's ``TrackerStore``, the pipeline's ``PipelineStore``, ...),
which any :class:`StateStore` satisfies. The roles read by reports have a reading half (``PostReader``, ``MediaReader``, ...): :class:`StoreReader` is
everything a report may read, so an export typed with it cannot write. The work queue is a separate object
(:class:`~bot.store.queue.WorkQueue`, :func:`bot.store.open_work_queue`).

Two backends implement every role, one module per role (``bot/store/sqlite_<role>.py``,
``bot/store/redis_<role>.py``) mixed into :class:`~bot.store.sqlite.SqliteStore` and
:class:`~bot.store.redis.RedisStore`, and pass the same contract suite, one file per role in ``tests/store/``.

Design rules every backend keeps:
- Writes that belong together happen in one transaction (SQLite) or one MULTI/EXEC or Lua script (Redis):
  ``record_poll`` (posts + cursor), ``record_event`` (event + recheck update + its alert), ``enqueue_alert``
  (alert + the per-post and creation-time alert indexes).
- Every method that adds something is idempotent, so a pipeline step retried after a crash is harmless.
- Times go in and come out as timezone-aware UTC datetimes.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Protocol

from bot.store.coordination import CoordinationStore
from bot.store.deletion_log import DeletionLogReader, DeletionLogStore
from bot.store.known_media import KnownMediaReader, KnownMediaStore
from bot.store.media import MediaReader, MediaStore
from bot.store.outbox import OutboxReader, OutboxStore
from bot.store.posts import PostReader, PostStore
from bot.store.review import CaseReader, CaseStore, UserStore


class StoreReader(
    PostReader, MediaReader, KnownMediaReader, OutboxReader, DeletionLogReader, CaseReader, Protocol
):
    """Every reading method of the roles a report reads (posts, media, known media, alerts, the deletion log,
    cases): what exports and the HTML report are given, so they cannot modify what they report on."""

    url: str  # the store URL with any password redacted, for status and logs


class StateStore(
    StoreReader,
    PostStore,
    MediaStore,
    KnownMediaStore,
    OutboxStore,
    DeletionLogStore,
    CoordinationStore,
    CaseStore,
    UserStore,
):
    """Everything afterimage remembers between runs, except the media bytes (those are in the archive)."""

    url: str  # the store URL with any password redacted, for status and logs

    @abstractmethod
    def close(self) -> None: ...

    def after_fork(self) -> None:
        """Called first in a process forked from the one that opened this store (a daemon's worker process):
        reopen what a fork must not share. Redis's client reconnects in a new process by itself."""

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
