"""The work queue: how posts to process (and re-check runs) are handed out to workers, one item at a time.

Why a queue and not a lock: under one cluster-wide ``pipeline`` lock only one worker of one daemon ever
matched, so more threads, daemons or machines added nothing. Items are instead *claimed* one by one:

- **At-least-once.** An item stays in the queue until it is acknowledged (:meth:`WorkQueue.ack`) after its
  work is done. A worker that dies (kill -9, a crashed machine) leaves its claims behind; once a claim's
  lease has run out (nobody extended it), the next :meth:`WorkQueue.claim` of any worker takes it over.
  The work itself must therefore be idempotent (the pipeline is: see :mod:`bot.pipeline`).
- **One copy of an item.** :meth:`WorkQueue.put` skips an item already queued or claimed, so sweeping the
  store's pending posts into the queue again and again is harmless.
- **Poison items are parked.** Work that raises is reported with :meth:`WorkQueue.fail`: the item leaves the
  queue (the daemon's sweep of pending posts queues it again, a retry) and its failures are counted; at the
  configured maximum it is *parked*: kept with its last error, listed by :meth:`WorkQueue.failed`, skipped by
  :meth:`WorkQueue.put`, until :meth:`WorkQueue.retry` (``afterimage posts retry``) queues it again. A
  success forgets the count. So a post that makes processing raise every time is not retried forever, and
  is not lost either: it stays unprocessed in the store, listed.
- **Items that kill their worker are parked too.** Work that crashes the whole process (a native library's
  segfault, the kernel's OOM killer) never reaches :meth:`WorkQueue.fail`: its claim just runs out and the
  next worker takes it over, and would crash in turn, forever. So a claim counts its deliveries, and a
  :meth:`WorkQueue.claim` given ``max_deliveries`` parks, instead of handing out, an item whose holders
  died that many times (its claim taken over each time), with the error :data:`DIED_ERROR`. One takeover
  after a daemon died for another reason is just a redelivery. A crash kills every claim of its daemon,
  not only the guilty one's; so such a claim also takes over one item at a time, and none while another
  taken-over item is being worked on: after a crash, the dead daemon's items are retried one by one (next
  to fresh work), the deadly one dies alone, and the others are not blamed for its crashes.
- **Leases.** A claim lasts the queue's ``lease_seconds`` (one value for every daemon on a store: with Redis
  it is the idle time after which any claimer takes an entry over); a long job (a video) extends its claims
  regularly (:meth:`WorkQueue.extend`) so it is not taken over while its worker is alive.

Two implementations pass the same contract suite (``tests/store/test_queue_contract.py``): Redis Streams
with a consumer group (``XADD``/``XREADGROUP``/``XACK``/``XAUTOCLAIM``, :mod:`bot.store.redis_queue`) and
leased rows in the SQLite store (:mod:`bot.store.sqlite_queue`). Daemons also announce themselves here
(:meth:`WorkQueue.announce`), so ``afterimage status`` can show the workers of every daemon.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

log = logging.getLogger(__name__)

#: topic of the posts waiting for the pipeline (items: :func:`post_item`)
POSTS = "posts"
#: topic of the re-check runs (items: a platform name; one run of a platform at a time)
RECHECKS = "rechecks"


@dataclass(frozen=True)
class Claim:
    """One item handed to one consumer. ``token`` identifies this queue entry (a stream entry id in Redis,
    the row's sequence number in SQLite); ``deliveries`` counts how often it was handed out (1: first time)."""

    topic: str
    item: str
    token: str
    enqueued_at: datetime
    deliveries: int


@dataclass(frozen=True)
class Backlog:
    """What a topic holds: items nobody claimed yet, items being worked on (``claims`` per consumer), and
    when the oldest unfinished item was queued."""

    waiting: int
    in_progress: int
    oldest_enqueued_at: datetime | None
    claims: dict[str, int] = field(default_factory=dict)
    #: items parked after failing every attempt (:meth:`WorkQueue.fail`)
    failed: int = 0


@dataclass(frozen=True)
class FailedItem:
    """An item parked after its work raised ``attempts`` times in a row; ``error`` is the last one."""

    topic: str
    item: str
    attempts: int
    error: str
    failed_at: datetime


@dataclass(frozen=True)
class DaemonInfo:
    """What a running daemon announced about itself (kept while it keeps announcing)."""

    name: str
    info: dict[str, Any]
    seen_at: datetime


#: the error of an item parked by :meth:`WorkQueue.claim` (``max_deliveries``): how often its holders died,
#: and the consumer it was last taken over from
DIED_ERROR = "the worker processing it died %d time(s); last taken over from %s"


def report_died(topic: str, item: str, deaths: int, holder: str) -> None:
    """Log an item parked because its workers kept dying (the queue's own record says the same)."""
    log.error(
        "%s: %s parked as failed: %s (`afterimage posts failed`; retry with `afterimage posts retry`)",
        topic, item, DIED_ERROR % (deaths, holder),
    )  # fmt: skip


#: default lease of a claim: a dead daemon's posts are taken over this long after its last extension
LEASE_SECONDS = 30.0

#: how often :meth:`WorkQueue.claim_waiting` asks again on a store that cannot block on its queue (SQLite)
POLL_SECONDS = 0.05


class WorkQueue(ABC):
    """Claimable work items per topic, shared by every daemon on one store."""

    lease_seconds: float = LEASE_SECONDS

    @abstractmethod
    def put(self, topic: str, items: Sequence[str]) -> int:
        """Queue each item unless it is queued or claimed already. Returns how many were added."""

    @abstractmethod
    def claim(self, topic: str, consumer: str, count: int = 1, max_deliveries: int | None = None) -> list[Claim]:
        """Hand up to ``count`` items to ``consumer``: first claims whose lease ran out (a dead worker's,
        taken over), then items nobody claimed yet, oldest first. Never blocks.

        ``max_deliveries``: an item whose claim ran out that many times already (each holder died with it)
        is parked (:meth:`failed`, error :data:`DIED_ERROR`) instead of being handed out once more, and at
        most one taken-over item is handed out, none while another one is being worked on (by any
        consumer). None: no limit, and every claim whose lease ran out may be taken over at once."""

    def claim_waiting(self, topic: str, consumer: str, wait: float, max_deliveries: int | None = None) -> list[Claim]:
        """:meth:`claim` one item, and when there is none, wait up to ``wait`` seconds for one queued by anyone
        (another daemon, a worker process, a command) and claim it: an idle worker starts on a new item at
        once, not at its next look. This default asks again every :data:`POLL_SECONDS`; a store with a
        blocking read on its queue overrides it."""
        deadline = time.monotonic() + wait
        while True:
            claims = self.claim(topic, consumer, max_deliveries=max_deliveries)
            left = deadline - time.monotonic()
            if claims or left <= 0:
                return claims
            time.sleep(min(POLL_SECONDS, left))

    @abstractmethod
    def extend(self, claim: Claim, consumer: str) -> bool:
        """Renew ``consumer``'s lease on a claim for another full lease. False when the claim was taken
        over by another consumer or acknowledged meanwhile."""

    @abstractmethod
    def ack(self, claim: Claim) -> None:
        """The claim's work is done: remove the item (whoever holds it now) and forget its failures."""

    @abstractmethod
    def fail(self, claim: Claim, error: str, max_attempts: int) -> bool:
        """The claim's work raised ``error``: remove the item from the queue and count the failure; at
        ``max_attempts`` failures in a row, park it (True). A later :meth:`put` queues an item that is not
        parked again (a retry); a parked one waits for :meth:`retry`."""

    @abstractmethod
    def failed(self, topic: str) -> list[FailedItem]:
        """The parked items of ``topic``, oldest failure first."""

    @abstractmethod
    def retry(self, topic: str, item: str) -> bool:
        """Queue a parked item again with its failures forgotten. False when ``item`` was not parked."""

    @abstractmethod
    def expire_claims(self, topic: str, consumer: str) -> int:
        """Make the claims of ``consumer``, known to be dead (a killed daemon of this host), claimable at once
        instead of after their lease. Returns how many."""

    @abstractmethod
    def prune_consumers(self, topic: str, idle_seconds: float) -> int:
        """Forget consumers without claims that have not claimed anything for ``idle_seconds`` (the worker
        names of daemons that stopped), so they do not pile up over restarts. Returns how many."""

    @abstractmethod
    def backlog(self, topic: str) -> Backlog: ...

    @abstractmethod
    def announce(self, name: str, info: dict[str, Any], ttl_seconds: float) -> None:
        """Record (or refresh) a daemon's self-description; it disappears ``ttl_seconds`` after the last call."""

    @abstractmethod
    def daemons(self) -> list[DaemonInfo]:
        """Daemons that announced themselves and have not expired, by name."""

    @abstractmethod
    def withdraw(self, name: str) -> None:
        """Remove a daemon's announcement (a clean stop)."""


def post_item(platform: str, post_id: str, version: int) -> str:
    """The queue item of one post version. The version is part of it: an edit queued while the previous
    version is being processed must not be skipped as "already queued"."""
    return f"{platform}:{version}:{post_id}"


def parse_post_item(item: str) -> tuple[str, str, int]:
    """(platform, post_id, version) of a :func:`post_item`; ValueError for anything else."""
    platform, version, post_id = item.split(":", 2)
    if not platform or not post_id:
        raise ValueError(f"not a post item: {item!r}")
    return platform, post_id, int(version)
