"""The re-check tracker: looks archived posts up again and turns the answers into confirmed events.

The rules, and why:

- Every new post gets a re-check on the decaying schedule of :mod:`bot.deletions.schedule`; the state lives
  in the store (:class:`bot.store.records.Recheck`), so a restarted daemon continues where it stopped.
- ``unknown`` answers (429, 5xx, timeouts, malformed answers, ids missing from an answer, a watcher that
  raised) never count: they leave the confirmation streak as it was and the post moves on to its next step
  (while a confirmation is pending, it is retried after 15 minutes instead when that is sooner).
- A "gone" answer (``deleted``, ``author_*``, ``withheld``) starts a streak and brings the next check forward
  to ``confirm_after`` later. The event is recorded only when the same gone answer came twice in a row (no
  decisive answer in between), the two at least ``confirm_after`` apart.
- ``alive`` resets the streak, saves the observed version (``store.save_post_version``: last seen alive, and a
  changed text or media set becomes a new version the pipeline archives and matches) and, when it changed,
  records an ``edited`` event with before and after. A post whose state was gone and that answers ``alive``
  again gets a ``restored`` event; the earlier event stays in the log.
- Account-level states (``author_suspended``, ``author_protected``, ``author_deleted``) are events of the
  account, not of each post: the first confirmed one is recorded once (``details.scope = "account"``, on the
  post that revealed it) and every other post of the account only gets its status set. The account coming
  back is likewise one ``restored`` event with scope ``account``.
- Re-checks continue after a confirmed deletion, until the horizon, so a restored post is noticed, but only
  every ``deleted_every`` (default a week): each look-up is a paid read on some platforms, and a deleted post
  rarely comes back. Account states (suspended, protected...) keep the normal schedule: they are often lifted.
- Two different gone answers in a row (deleted, then suspended) start a new streak without an early check,
  so a platform flapping between answers cannot make a post be looked up every minute.
- Budget: at most ``budget_per_hour`` look-up requests per platform in any sliding hour, and, when set,
  ``budget_per_day`` per UTC day. The spend is kept in the store (budget ``recheck:<platform>``, see
  :class:`HourlyBudget`), so a restarted daemon still sees the day's spend and daemons sharing one store share
  the platform's quota (a platform's re-check run is one work-queue item, claimed by one daemon at a time, so
  reading and spending do not race). Counted per minute: a request counts for 60 to 61 minutes. When the budget is short, pending confirmations go first, then the
  youngest posts (their deletions matter most and their schedule is densest); the rest stay due.
- Every event enqueues one alert in the store outbox, key ``{kind}:{platform}:{post_id}:{event.id}``, in the
  same store transaction as the event and its re-check change (``record_event(event, next, alert)``).
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from bot.alerts.payloads import event_alert
from bot.config_base import RecheckConfig
from bot.deletions import schedule
from bot.errors import StoreError
from bot.models import Post, PostStatus, StatusKind, as_utc, iso
from bot.store.coordination import CoordinationStore
from bot.store.deletion_log import DeletionLogStore, EventFilter
from bot.store.media import MediaReader
from bot.store.posts import PostStore
from bot.store.common import with_id
from bot.store.records import Change, OutboxAlert, PostChange, PostEvent, Recheck, StoredPost

if TYPE_CHECKING:  # the daemon hands watchers in; the tracker only calls their lookup
    from watchers.base import Watcher

log = logging.getLogger(__name__)


class TrackerStore(PostStore, MediaReader, DeletionLogStore, CoordinationStore, Protocol):
    """The store roles the tracker uses: the posts it looks up again (saving what a look-up saw), their media
    (what an event shows), the re-checks and deletion log it keeps, and the request budgets it spends."""

#: answers that say a post is gone (each needs confirmation before it becomes an event)
GONE_KINDS = frozenset(
    {
        StatusKind.DELETED.value,
        StatusKind.WITHHELD.value,
        StatusKind.AUTHOR_SUSPENDED.value,
        StatusKind.AUTHOR_PROTECTED.value,
        StatusKind.AUTHOR_DELETED.value,
    }
)
#: gone answers that describe the account rather than the post
ACCOUNT_KINDS = frozenset(
    {StatusKind.AUTHOR_SUSPENDED.value, StatusKind.AUTHOR_PROTECTED.value, StatusKind.AUTHOR_DELETED.value}
)
#: while a deletion awaits confirmation, an ``unknown`` answer is retried this soon (seconds)
UNKNOWN_RETRY_SECONDS = 900.0
EDITED = "edited"
RESTORED = "restored"


class HourlyBudget:
    """Look-up requests spent per platform in a sliding hour, kept in the store (budget ``recheck:<platform>``).

    A store that fails must neither stop re-checks for good nor let them run unbounded:
    - a failed read counts the budget as spent for that run: re-checks wait until the store answers again
      (logged once, and once more when it recovers);
    - a spend the store did not take is counted here, in memory, for the hour, so a store that reads but
      cannot write (a full disk) does not hand out the same quota again at every run.
    """

    WINDOW = timedelta(hours=1)

    def __init__(self, store: CoordinationStore) -> None:
        self.store = store
        self._unrecorded: dict[str, deque[tuple[datetime, int]]] = {}
        self._failing: set[tuple[str, str]] = set()  # (platform, "read" | "record") now failing, logged

    @staticmethod
    def name(platform: str) -> str:
        return f"recheck:{platform}"

    def available(self, platform: str, per_hour: int, now: datetime, per_day: int | None = None) -> int:
        """Requests left in the sliding hour and, with ``per_day``, in the UTC day (the smaller of the two)."""
        now = as_utc(now)
        try:
            spent, today = self.spent(platform, now)
        except StoreError as e:
            self._failed(platform, "read", e, "no re-check until the store answers")
            return 0
        self._recovered(platform, "read")
        unrecorded = self._unrecorded_spend(platform, now)
        left = per_hour - spent - unrecorded
        if per_day is not None:
            left = min(left, per_day - today - unrecorded)
        return max(0, left)

    def spent(self, platform: str, now: datetime) -> tuple[int, int]:
        """Requests spent (as the store recorded them) in the last hour and since the UTC day began."""
        now = as_utc(now)
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        name = self.name(platform)
        return self.store.budget_spent(name, now - self.WINDOW), self.store.budget_spent(name, midnight)

    def spend(self, platform: str, now: datetime, requests: int = 1) -> None:
        now = as_utc(now)
        try:
            self.store.spend_budget(self.name(platform), now, requests)
        except StoreError as e:
            self._failed(platform, "record", e, "counted in memory for the hour")
            self._unrecorded.setdefault(platform, deque()).append((now, requests))
            return
        self._recovered(platform, "record")

    def _unrecorded_spend(self, platform: str, now: datetime) -> int:
        spent = self._unrecorded.get(platform, deque())
        while spent and spent[0][0] <= now - self.WINDOW:
            spent.popleft()
        return sum(requests for _, requests in spent)

    def _failed(self, platform: str, what: str, error: Exception, consequence: str) -> None:
        if (platform, what) not in self._failing:
            self._failing.add((platform, what))
            log.warning("%s: cannot %s the re-check budget in the store (%s): %s", platform, what, error, consequence)

    def _recovered(self, platform: str, what: str) -> None:
        if (platform, what) in self._failing:
            self._failing.discard((platform, what))
            log.info("%s: the store can %s the re-check budget again", platform, what)


@dataclass
class RecheckReport:
    """What one :meth:`RecheckTracker.run` did."""

    platform: str
    due: int = 0
    checked: int = 0
    requests: int = 0
    deferred: int = 0  # due but left for a later run: the hourly budget was spent
    answers: Counter[str] = field(default_factory=Counter)
    events: list[PostEvent] = field(default_factory=list)
    alerts: int = 0
    errors: list[str] = field(default_factory=list)


class RecheckTracker:
    def __init__(
        self,
        store: TrackerStore,
        config_by_platform: Mapping[str, RecheckConfig],
        budget: HourlyBudget | None = None,
    ):
        """``config_by_platform`` maps a platform to its :class:`bot.config.RecheckConfig`."""
        self.store = store
        self.configs = dict(config_by_platform)
        self.budget = budget or HourlyBudget(store)
        self._account_state: dict[tuple[str, str], str] = {}

    def _config(self, platform: str) -> RecheckConfig:
        try:
            return self.configs[platform]
        except KeyError:
            return self.configs.setdefault(platform, RecheckConfig())

    # ------------------------------------------------------------------ scheduling
    def schedule_new(self, post: Post, now: datetime) -> Recheck | None:
        """Start the re-check schedule of a newly archived post (called once per new post by the pipeline).

        Idempotent: an existing schedule is kept (a retried pipeline step does not restart it). Returns the
        re-check, or None when the post is already older than the horizon."""
        nxt = schedule.next_step(post.created_at, self._config(post.platform), -1, now)
        if nxt is None:
            return self.store.get_recheck(post.platform, post.post_id)
        step, due = nxt
        recheck = Recheck(
            platform=post.platform,
            post_id=post.post_id,
            account=post.account,
            posted_at=post.created_at,
            due_at=due,
            step=step,
        )
        return self.store.start_recheck(recheck)

    def record_edit(self, change: PostChange, now: datetime) -> PostEvent | None:
        """Log an edit the pipeline found by polling (``record_poll`` returned ``Change.EDITED``): the same
        ``edited`` event and alert as one found by a re-check. The re-check schedule is left as it is.
        Returns the event, or None when ``change`` is not an edit."""
        if change.change != Change.EDITED:
            return None
        post = change.post
        stored = self.store.get_post(post.platform, post.post_id)
        if stored is None:
            return None
        current = self.store.get_recheck(post.platform, post.post_id)
        rc = current or Recheck(post.platform, post.post_id, post.account, post.created_at, due_at=as_utc(now))
        report = RecheckReport(post.platform)
        self._record(self._edited_event(rc, stored, as_utc(now)), current, as_utc(now), report)
        return report.events[0]

    # ------------------------------------------------------------------ running
    def run(self, platform: str, watcher: Watcher, now: datetime, limit: int = 10000) -> RecheckReport:
        """Look up every due post of ``platform`` the hourly budget allows, in batches of
        ``watcher.lookup_batch_size``, and record what changed."""
        now = as_utc(now)
        cfg = self._config(platform)
        report = RecheckReport(platform)
        self._account_state.clear()  # re-read from the log each run (another daemon may have written)
        due = self.store.due_rechecks(platform, now, limit=limit)
        report.due = len(due)
        if not due:
            return report
        # pending confirmations first, then youngest posts first
        due.sort(key=lambda r: (r.deleted_streak == 0, -as_utc(r.posted_at).timestamp()))
        batch_size = max(1, int(getattr(watcher, "lookup_batch_size", 100) or 100))
        requests = self.budget.available(platform, int(cfg.budget_per_hour), now, getattr(cfg, "budget_per_day", None))
        chosen = due[: requests * batch_size]
        report.deferred = len(due) - len(chosen)
        for start in range(0, len(chosen), batch_size):
            batch = chosen[start : start + batch_size]
            stored_posts = {r.post_id: self.store.get_post(platform, r.post_id) for r in batch}
            authors = {pid: s.post.author_id for pid, s in stored_posts.items() if s is not None}
            answers = self._lookup(watcher, [r.post_id for r in batch], authors, report)
            self.budget.spend(platform, now)
            report.requests += 1
            for recheck in batch:
                status = _validate(answers.get(recheck.post_id), recheck)
                report.answers[status.kind.value] += 1
                report.checked += 1
                try:
                    self._apply(recheck, stored_posts[recheck.post_id], status, cfg, now, report)
                except Exception as e:  # one bad post must not stop the others; it stays due
                    log.exception("re-check of %s:%s failed", platform, recheck.post_id)
                    report.errors.append(f"{recheck.post_id}: {e}")
        return report

    def _lookup(
        self, watcher: Watcher, ids: Sequence[str], authors: Mapping[str, str | None], report: RecheckReport
    ) -> Mapping[str, Any]:
        answers = watcher.lookup(list(ids), authors=authors)  # never raises: Watcher.lookup's contract
        if not isinstance(answers, Mapping):
            report.errors.append(f"lookup returned {type(answers).__name__}, not a mapping")
            return {}
        return answers

    def _apply(
        self, rc: Recheck, stored: StoredPost | None, status: PostStatus, cfg: RecheckConfig, now: datetime, report: RecheckReport
    ) -> None:
        if stored is None:  # nothing to compare with (store cleaned up): stop checking it
            self.store.remove_recheck(rc.platform, rc.post_id)
            return
        kind = status.kind.value
        if kind == StatusKind.UNKNOWN.value:
            nxt = self._advance(rc, cfg, now)
            if rc.deleted_streak > 0 and rc.last_status not in (None, StatusKind.ALIVE.value):
                # a confirmation is pending: retry it soon, not only at the next (possibly daily) step
                retry = now + timedelta(seconds=max(float(cfg.confirm_after), UNKNOWN_RETRY_SECONDS))
                if nxt is None or retry < nxt.due_at:
                    nxt = replace(rc, due_at=retry)
            self._reschedule(rc, nxt)
        elif kind == StatusKind.ALIVE.value:
            self._alive(rc, stored, status.post, cfg, now, report)
        else:
            self._gone(rc, stored, kind, status, cfg, now, report)

    # ------------------------------------------------------------------ answers
    def _alive(self, rc: Recheck, stored: StoredPost, post: Post | None, cfg: RecheckConfig, now: datetime, report: RecheckReport) -> None:
        if post is None:  # the platform only confirmed the post stands: no version to compare
            self.store.mark_seen_alive(rc.platform, rc.post_id, now)
            change = None
        else:
            if post.account != rc.account:  # a look-up does not know under which account the post was found
                post = replace(post, account=rc.account)
            change = self.store.save_post_version(post, at=now)
        nxt = self._advance(replace(rc, deleted_streak=0, first_deleted_at=None, last_status=StatusKind.ALIVE.value), cfg, now)
        events: list[PostEvent] = []
        if stored.status in GONE_KINDS:
            restored = self._restored_event(rc, stored, now)
            if restored is not None:
                events.append(restored)
            else:
                self.store.set_post_status(rc.platform, rc.post_id, StatusKind.ALIVE.value)
        if change is not None and change.change.value == EDITED:
            events.append(self._edited_event(rc, stored, now))
        if not events:
            self._reschedule(rc, nxt)
        for event in events:
            self._record(event, nxt, now, report)

    def _gone(
        self, rc: Recheck, stored: StoredPost, kind: str, status: PostStatus, cfg: RecheckConfig, now: datetime, report: RecheckReport
    ) -> None:
        if rc.last_status == kind and rc.deleted_streak > 0 and rc.first_deleted_at is not None:
            streak, first = rc.deleted_streak + 1, as_utc(rc.first_deleted_at)
        else:
            streak, first = 1, now
        current = replace(rc, deleted_streak=streak, first_deleted_at=first, last_status=kind)
        confirm_after = timedelta(seconds=float(cfg.confirm_after))

        if self._already_in_state(stored, kind):
            self._reschedule(rc, self._advance_gone(current, cfg, now, kind))
            return
        if streak == 1 and rc.last_status in GONE_KINDS:
            # flapping between two gone answers (deleted, then suspended...): no early check, or a post whose
            # platform keeps changing its mind would be looked up every confirm_after until the horizon
            self._reschedule(rc, self._advance(current, cfg, now))
            return
        if streak < 2 or now - first < confirm_after:
            # not confirmed yet: look again once confirm_after has passed since the first gone answer
            when = max(first + confirm_after, now + timedelta(seconds=1))
            self._reschedule(rc, replace(current, due_at=when))
            return

        nxt = self._advance_gone(current, cfg, now, kind)
        details: dict[str, Any] = {
            "scope": "post",
            "first_answer_at": iso(first),
            "confirmed_at": iso(now),
            "answers": streak,
            "last_seen_alive": iso(stored.last_seen_alive),
            "version": stored.version,
            "raw_sha256": stored.post.raw_sha256(),
        }
        if status.error:
            details["platform_said"] = status.error
        if kind in ACCOUNT_KINDS:
            if self._account_kind(rc.platform, rc.account) == kind:
                # the account's state is already in the log: only this post's status changes
                if stored.status != StatusKind.DELETED.value:
                    self.store.set_post_status(rc.platform, rc.post_id, kind)
                self._reschedule(rc, nxt)
                return
            details["scope"] = "account"
            self._account_state[(rc.platform, rc.account)] = kind
        event = PostEvent(rc.platform, rc.account, rc.post_id, kind, detected_at=now, details=details)
        self._record(event, nxt, now, report)

    def _already_in_state(self, stored: StoredPost, kind: str) -> bool:
        if stored.status == kind:
            return True
        # a post already confirmed deleted stays deleted while its author is away
        return kind in ACCOUNT_KINDS and stored.status == StatusKind.DELETED.value

    # ------------------------------------------------------------------ events
    def _restored_event(self, rc: Recheck, stored: StoredPost, now: datetime) -> PostEvent | None:
        details: dict[str, Any] = {
            "scope": "post",
            "previous": stored.status,
            "last_seen_alive_before": iso(stored.last_seen_alive),
            "raw_sha256": stored.post.raw_sha256(),
        }
        if stored.status in ACCOUNT_KINDS:
            if self._account_kind(rc.platform, rc.account) not in ACCOUNT_KINDS:
                return None  # the account's return is already logged
            details["scope"] = "account"
            self._account_state[(rc.platform, rc.account)] = StatusKind.ALIVE.value
        return PostEvent(rc.platform, rc.account, rc.post_id, RESTORED, detected_at=now, details=details)

    def _edited_event(self, rc: Recheck, stored: StoredPost, now: datetime) -> PostEvent:
        versions = self.store.get_versions(rc.platform, rc.post_id)
        after = versions[-1]
        before = versions[-2] if len(versions) >= 2 else None

        def side(post: Post, version: int, raw_sha: str, observed: datetime | None) -> dict[str, Any]:
            return {
                "version": version,
                "observed_at": iso(observed),
                "text": post.text,
                "media": [m.identity() for m in post.media],
                "media_urls": [m.url for m in post.media],
                "raw_sha256": raw_sha,
            }

        if before is not None:
            b = side(before.post, before.version, before.raw_sha256, before.observed_at)
        else:
            b = side(stored.post, stored.version, stored.post.raw_sha256(), stored.last_seen_alive)
        a = side(after.post, after.version, after.raw_sha256, after.observed_at)
        return PostEvent(
            rc.platform,
            rc.account,
            rc.post_id,
            EDITED,
            detected_at=now,
            details={"scope": "post", "before": b, "after": a, "raw_sha256": after.raw_sha256},
        )

    def _record(self, event: PostEvent, nxt: Recheck | None, now: datetime, report: RecheckReport) -> None:
        # the alert key names the event id, so the id is chosen here; the event, the re-check change and the
        # alert are then one store transaction (a crash cannot log the event and lose its alert)
        event = with_id(event)
        alert = self._alert_for(event, now)
        event = self.store.record_event(event, nxt, alert)
        report.events.append(event)
        report.alerts += 1  # a fresh event id: its alert key was never enqueued before
        log.info("%s: %s %s (%s)", event.platform, event.kind, event.post_id, event.account)

    def _alert_for(self, event: PostEvent, now: datetime) -> OutboxAlert:
        media = []
        for link in self.store.get_post_media(event.platform, event.post_id):
            if link.sha256:
                record = self.store.get_media(link.sha256)
                media.append({"sha256": link.sha256, "archive_path": record.archive_path if record else None})
        return event_alert(event, self.store.get_post(event.platform, event.post_id), media=media, created_at=now)

    # ------------------------------------------------------------------ helpers
    def _account_kind(self, platform: str, account: str) -> str:
        """The account's last logged state: an ``author_*`` kind, or ``alive``."""
        key = (platform, account)
        if key not in self._account_state:
            state = StatusKind.ALIVE.value
            for event in self.store.list_events(EventFilter(platform=platform, account=account, kinds=[*ACCOUNT_KINDS, RESTORED])):
                if event.details.get("scope") == "account":
                    state = event.kind if event.kind in ACCOUNT_KINDS else StatusKind.ALIVE.value
            self._account_state[key] = state
        return self._account_state[key]

    def _advance(self, rc: Recheck, cfg: RecheckConfig, now: datetime) -> Recheck | None:
        nxt = schedule.next_step(rc.posted_at, cfg, rc.step, now)
        if nxt is None:
            return None
        step, due = nxt
        return replace(rc, step=step, due_at=due)

    def _advance_gone(self, rc: Recheck, cfg: RecheckConfig, now: datetime, kind: str) -> Recheck | None:
        """The next look-up of a post confirmed gone. A deleted post is looked at only to notice a restore, at
        most every ``deleted_every``; an account state (a suspension is often lifted) keeps the schedule."""
        nxt = self._advance(rc, cfg, now)
        if kind != StatusKind.DELETED.value:
            return nxt
        floor = now + timedelta(seconds=float(getattr(cfg, "deleted_every", 0.0)))
        if nxt is None or nxt.due_at >= floor:
            return nxt
        if floor > schedule.horizon_end(rc.posted_at, cfg):
            return None  # the next look allowed would be past the horizon
        return replace(nxt, due_at=floor)

    def _reschedule(self, rc: Recheck, nxt: Recheck | None) -> None:
        if nxt is None:
            self.store.remove_recheck(rc.platform, rc.post_id)
        else:
            self.store.schedule_recheck(nxt)


def _validate(answer: Any, rc: Recheck) -> PostStatus:
    """Anything but a well-formed answer about this very post is ``unknown``."""
    if answer is None:
        return PostStatus.unknown("no answer for this id")
    if not isinstance(answer, PostStatus) or not isinstance(answer.kind, StatusKind):
        return PostStatus.unknown(f"malformed answer: {answer!r:.200}")
    if answer.kind is StatusKind.ALIVE and answer.post is not None:  # no post: alive, content not observed
        post = answer.post
        if not isinstance(post, Post) or post.post_id != rc.post_id or post.platform != rc.platform:
            return PostStatus.unknown("alive answer without this post")
    return answer
