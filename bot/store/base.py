"""The one state-store interface. Two backends implement it (SQLite embedded default, Redis for production
and several daemons) and pass the same contract suite in ``tests/store/``.

Design rules every backend keeps:
- Writes that belong together happen in one transaction (SQLite) or one MULTI/EXEC or Lua script (Redis):
  ``record_poll`` (posts + cursor), ``record_event`` (event + recheck update + its alert), ``enqueue_alert``
  (alert + the per-post and creation-time alert indexes).
- Every method that adds something is idempotent, so a pipeline step retried after a crash is harmless.
- Times go in and come out as timezone-aware UTC datetimes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from bot.models import Post, RejectedItem
from bot.store.records import (
    AccountState,
    KnownKind,
    KnownMedia,
    KnownState,
    MediaRecord,
    OutboxAlert,
    PostChange,
    PostEvent,
    PostMediaLink,
    PostVersion,
    Recheck,
    StoredPost,
)


class StateStore(ABC):
    """Everything afterimage remembers between runs, except the media bytes (those are in the archive)."""

    url: str  # the store URL with any password redacted, for status and logs

    # ----------------------------------------------------------------- posts
    @abstractmethod
    def record_poll(
        self,
        platform: str,
        account: str,
        posts: Sequence[Post],
        cursor: str | None,
        rejected: Sequence[RejectedItem] = (),
        at: datetime | None = None,
    ) -> list[PostChange]:
        """Persist one poll atomically: every post (new, or a new version if its content fingerprint
        changed), the account's new cursor (unchanged when ``cursor`` is None) and the rejected raw items.
        A new or edited post becomes pending for the pipeline. Returns one change per post, in order."""

    @abstractmethod
    def save_post_version(self, post: Post, at: datetime | None = None) -> PostChange:
        """Save a post observed outside a poll (a re-check that found it alive). Same versioning rules as
        ``record_poll``; also sets ``last_seen_alive``."""

    @abstractmethod
    def get_post(self, platform: str, post_id: str) -> StoredPost | None: ...

    @abstractmethod
    def get_versions(self, platform: str, post_id: str) -> list[PostVersion]:
        """All observed versions, oldest first."""

    @abstractmethod
    def iter_posts(self, platform: str | None = None, account: str | None = None) -> Iterator[StoredPost]: ...

    @abstractmethod
    def count_posts(self, platform: str | None = None, account: str | None = None) -> int: ...

    @abstractmethod
    def mark_seen_alive(self, platform: str, post_id: str, at: datetime) -> None: ...

    @abstractmethod
    def set_post_status(self, platform: str, post_id: str, status: str) -> None:
        """Record the last confirmed state of a post (alive, deleted, author_suspended, ...)."""

    @abstractmethod
    def pending_posts(self, limit: int = 100) -> list[StoredPost]:
        """Posts whose latest version the pipeline has not finished, oldest first seen first."""

    @abstractmethod
    def mark_processed(self, platform: str, post_id: str, version: int) -> None:
        """The pipeline finished ``version`` of this post (a later version stays pending)."""

    @abstractmethod
    def list_rejected(self, limit: int = 100) -> list[RejectedItem]: ...

    # ----------------------------------------------------------------- cursors
    @abstractmethod
    def get_cursor(self, platform: str, account: str) -> str | None: ...

    # ----------------------------------------------------------------- media
    @abstractmethod
    def put_media(self, record: MediaRecord) -> MediaRecord:
        """Insert a media record if its sha256 is new; returns the stored record (the first one wins,
        except that ``signals`` are merged)."""

    @abstractmethod
    def get_media(self, sha256: str) -> MediaRecord | None: ...

    @abstractmethod
    def set_media_signals(self, sha256: str, signals: dict[str, str]) -> None:
        """Merge computed hashes into a media record."""

    @abstractmethod
    def link_post_media(self, link: PostMediaLink) -> None:
        """Record which file attachment ``index`` of a post resolved to (replaces an earlier link)."""

    @abstractmethod
    def get_post_media(self, platform: str, post_id: str) -> list[PostMediaLink]:
        """Links of a post ordered by index."""

    # ----------------------------------------------------------------- known media
    def add_known(self, entry: KnownMedia) -> KnownMedia:
        """Add an entry (assigning ``id`` when empty; an existing id is replaced in place) and bump the
        known-media generation."""
        return self.add_known_many([entry])[0]

    @abstractmethod
    def add_seen(self, entry: KnownMedia) -> tuple[KnownMedia, bool]:
        """Add a ``seen`` entry (``entry.sha256`` set) unless the store holds a ``seen`` entry of that file
        already, atomically: (the stored entry, True) when added, (the first existing one, False) otherwise.

        Why atomic: two daemons processing two posts of the same file at the same instant would otherwise
        both find no entry and both add one, and neither post would be reported as recycling the other's."""

    @abstractmethod
    def add_known_many(self, entries: Sequence[KnownMedia]) -> list[KnownMedia]:
        """Add several entries in ONE transaction, in order (ids assigned when empty; an existing id is
        replaced in place), bumping the generation once. Returns the stored entries.

        Why: an item is all of its entries or none of them. The keyframes of a video or the rows of an
        imported list go in together, so an interrupted add never leaves half a video that matches (and
        alerts) as if it were the whole."""

    @abstractmethod
    def get_known(self, known_id: str) -> KnownMedia | None: ...

    @abstractmethod
    def find_known_by_sha256(self, sha256: str) -> list[KnownMedia]: ...

    @abstractmethod
    def find_known_by_group(self, group: str, kind: KnownKind | None = None) -> list[KnownMedia]:
        """Entries of one item (the keyframes of one video share ``group``), in insertion order, optionally
        only of one kind (a known trailer and the same file seen in a post share the group)."""

    @abstractmethod
    def list_known(self, kind: KnownKind | None = None, limit: int | None = None, offset: int = 0) -> list[KnownMedia]:
        """Entries in insertion order."""

    @abstractmethod
    def iter_known(self, kind: KnownKind | None = None) -> Iterator[KnownMedia]: ...

    @abstractmethod
    def count_known(self, kind: KnownKind | None = None) -> int: ...

    @abstractmethod
    def remove_known(self, known_id: str) -> bool:
        """Remove an entry; bumps the generation. False when there was no such id."""

    @abstractmethod
    def remove_known_group(self, group: str, kind: KnownKind | None = None) -> int:
        """Remove every entry of an item (``group``, optionally only of ``kind``) in one transaction; bumps
        the generation and epoch when anything went. Returns the number of entries removed."""

    def known_generation(self) -> int:
        """A counter that changes whenever known media change, so an index knows when to reload."""
        return self.known_state().generation

    @abstractmethod
    def known_state(self) -> KnownState:
        """Generation, epoch and entry count read together: what an index needs to decide between
        appending the entries added since it loaded (:meth:`iter_known_since`) and reloading everything."""

    @abstractmethod
    def iter_known_since(self, seq: int) -> Iterator[tuple[int, KnownMedia]]:
        """``(seq, entry)`` of every entry inserted after insertion number ``seq``, in insertion order.

        Why: the daemon remembers every archived image as a *seen* entry, so known media change on every
        post with pictures; reloading 100 k entries (and retraining their indexes) each time would stall
        matching. An entry replaced in place keeps its number (and bumps the epoch instead)."""

    # ----------------------------------------------------------------- alert outbox
    @abstractmethod
    def enqueue_alert(self, alert: OutboxAlert) -> bool:
        """Add an alert unless its key was ever enqueued (pending, parked or sent). True when added. It goes
        into the delivery queue unless it is already sent (or parked)."""

    @abstractmethod
    def due_alerts(self, now: datetime, limit: int = 50) -> list[OutboxAlert]:
        """Unsent, unparked alerts in FIFO order. The head is returned even when not yet due, so a caller that
        keeps order can see that it must wait; callers check ``next_attempt_at`` themselves."""

    @abstractmethod
    def mark_alert_sent(self, key: str, at: datetime) -> None: ...

    @abstractmethod
    def mark_alert_failed(self, key: str, error: str, next_attempt_at: datetime) -> None:
        """Count a failed delivery attempt and when to try again."""

    @abstractmethod
    def get_alert(self, key: str) -> OutboxAlert | None: ...

    @abstractmethod
    def outbox_size(self) -> int:
        """Number of alerts waiting for delivery (parked alerts are not counted: they wait for an operator)."""

    @abstractmethod
    def park_alert(self, key: str, error: str) -> bool:
        """Atomically take a queued alert out of the delivery queue, keeping it (``parked``, ``last_error`` =
        ``error``) so the alerts behind it can go out. False (nothing changed) unless the alert is queued:
        unknown, sent or already parked."""

    @abstractmethod
    def parked_alerts(self) -> list[OutboxAlert]:
        """Every parked alert, in FIFO (seq) order."""

    @abstractmethod
    def parked_count(self) -> int:
        """Number of parked alerts (what status and health report, without reading the alerts)."""

    @abstractmethod
    def unpark_alert(self, key: str) -> bool:
        """Atomically put a parked alert back into the delivery queue at its original position (its ``seq``
        is kept: it is older than the alerts queued behind it, so it is tried first), due now, with
        ``attempts`` reset so it gets the full ``park_after`` tries again. ``last_error`` is kept: it carries
        the targets that already accepted the alert (see :func:`bot.alerts.sender.delivered_targets`), which
        must not get it twice. False (nothing changed) unless the alert is parked."""

    @abstractmethod
    def list_alerts(self, platform: str, post_id: str, kinds: Iterable[str] | None = None) -> list[OutboxAlert]:
        """Every alert (pending or sent) whose payload's ``platform`` and ``post_id`` are these, in FIFO (seq)
        order, optionally only of the given kinds (an empty ``kinds`` gives nothing). Read from a per-post
        index, never a scan of the outbox. Alerts without both payload fields (a digest) are never listed;
        a numeric ``post_id`` in a payload is listed under its decimal text."""

    @abstractmethod
    def alerts_between(
        self, since: datetime, until: datetime, kinds: Iterable[str] | None = None
    ) -> list[OutboxAlert]:
        """Every alert (pending or sent) whose ``created_at`` is in [since, until), in FIFO (seq) order,
        optionally only of the given kinds (an empty ``kinds`` gives nothing). Read from an index on the
        creation time (integer microseconds), never a scan of the outbox."""

    # ----------------------------------------------------------------- re-checks
    @abstractmethod
    def schedule_recheck(self, recheck: Recheck) -> None:
        """Insert or replace the re-check state of a post."""

    @abstractmethod
    def get_recheck(self, platform: str, post_id: str) -> Recheck | None: ...

    @abstractmethod
    def due_rechecks(self, platform: str, now: datetime, limit: int = 1000) -> list[Recheck]:
        """Re-checks of a platform due at ``now`` or earlier, earliest due first."""

    @abstractmethod
    def count_rechecks(self, platform: str | None = None) -> int: ...

    @abstractmethod
    def remove_recheck(self, platform: str, post_id: str) -> None: ...

    # ----------------------------------------------------------------- deletion log
    @abstractmethod
    def record_event(
        self, event: PostEvent, next_recheck: Recheck | None, alert: OutboxAlert | None = None
    ) -> PostEvent:
        """Atomically append an event (assigning ``id`` when empty; an event id already logged is not logged
        again), set the post's status to the event kind where it is a state (not for ``edited``), replace the
        post's re-check by ``next_recheck`` (remove it when None) and, when given, enqueue ``alert`` exactly
        as :meth:`enqueue_alert` does (a key ever enqueued is not enqueued again). All in one transaction:
        after a crash either all of it happened or none. A caller whose alert key names the event id
        assigns the id itself (:func:`bot.store.common.new_id`) before building the alert."""

    @abstractmethod
    def list_events(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        platform: str | None = None,
        account: str | None = None,
        kinds: Iterable[str] | None = None,
    ) -> list[PostEvent]:
        """Events in detection order, filtered by detection time [since, until), platform, account, kind."""

    # ----------------------------------------------------------------- accounts
    @abstractmethod
    def update_account_state(self, platform: str, account: str, **fields: Any) -> AccountState:
        """Merge the given AccountState fields into the stored state and return it."""

    @abstractmethod
    def get_account_states(self) -> list[AccountState]: ...

    @abstractmethod
    def get_account_state(self, platform: str, account: str) -> AccountState | None:
        """One account's state (None when never written), without reading every account's: a poll reads its
        own before each run, and with 1,000 accounts reading all of them per poll was a million reads a round."""

    # ----------------------------------------------------------------- request budgets (several daemons)
    @abstractmethod
    def spend_budget(self, name: str, at: datetime, requests: int = 1) -> None:
        """Add ``requests`` (a positive integer) to the spend of budget ``name`` in the minute of ``at``, as an
        atomic increment: two daemons spending at once both count. Storage stays bounded: minutes older than
        :data:`bot.store.common.BUDGET_KEEP_MINUTES` before ``at`` are dropped, and a budget nobody spends on
        any more goes within that time too (SQLite prunes every budget at each spend, Redis expires the key).

        Why in the store: a restarted daemon must still see the last hour's spend, and daemons sharing a
        store must share a platform's quota."""

    @abstractmethod
    def budget_spent(self, name: str, since: datetime) -> int:
        """Requests spent on budget ``name`` in the minute of ``since`` and after. Exact to the minute: spend
        from the first seconds of that minute still counts, so a sliding hour errs on the safe side (a spend
        counts for 60 to 61 minutes)."""

    # ----------------------------------------------------------------- locks (several daemons)
    @abstractmethod
    def acquire_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Take (or renew, when ``owner`` already holds it) a lock that expires after ``ttl_seconds``."""

    @abstractmethod
    def release_lock(self, name: str, owner: str) -> None:
        """Release the lock if ``owner`` holds it (someone else's lock is left alone)."""

    @abstractmethod
    def lock_owner(self, name: str) -> str | None:
        """Who holds the lock now (None when free or expired)."""

    # ----------------------------------------------------------------- lifecycle
    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
