"""What the daemon is doing, read from the store: shown by ``afterimage status`` and served as Prometheus
metrics by the health endpoint. Read-only, so any process (CLI, another daemon) can compute it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.deletions.tracker import HourlyBudget
from bot.evidence.ledger import EvidenceLedger, TimestampQueue
from bot.models import iso
from bot.store import StateStore, open_work_queue
from bot.store.queue import POSTS, Backlog, DaemonInfo
from bot.store.records import AccountState


@dataclass(frozen=True)
class AccountStatus:
    state: AccountState
    posts_seen: int


@dataclass(frozen=True)
class BudgetStatus:
    """A platform's re-check spend (look-up requests) against its limits."""

    platform: str
    spent_hour: int
    per_hour: int
    spent_today: int
    per_day: int | None


@dataclass(frozen=True)
class Snapshot:
    accounts: list[AccountStatus]
    pending_rechecks: dict[str, int]
    outbox_size: int
    known_media: int
    parked_alerts: int
    taken_at: datetime
    extra: dict[str, float] = field(default_factory=dict)
    backlog: Backlog = field(default_factory=lambda: Backlog(0, 0, None))
    daemons: list[DaemonInfo] = field(default_factory=list)
    budgets: list[BudgetStatus] = field(default_factory=list)
    #: the trusted-timestamp queue; None when no TSA is configured
    timestamps: TimestampQueue | None = None

    @property
    def oldest_waiting_seconds(self) -> float:
        """Age of the oldest post queued and not finished (0 when none)."""
        oldest = self.backlog.oldest_enqueued_at
        return max(0.0, (self.taken_at - oldest).total_seconds()) if oldest else 0.0


def take_snapshot(
    store: StateStore,
    configured: dict[str, list[str]],
    now: datetime,
    rechecks: Mapping[str, Any] | None = None,
    evidence: EvidenceLedger | None = None,
) -> Snapshot:
    """Status of every configured account (also those never polled yet) plus store-wide counters: the posts
    waiting in the work queue, the daemons working on it, given each platform's re-check config
    (``rechecks``) the re-check spend against its budgets, and given the evidence folder (with a TSA
    configured) the items waiting for a trusted timestamp."""
    states = {(s.platform, s.account): s for s in store.get_account_states()}
    accounts = []
    for platform, names in configured.items():
        for account in names:
            state = states.get((platform, account)) or AccountState(platform, account)
            accounts.append(AccountStatus(state, store.count_posts(platform, account)))
    queue = open_work_queue(store)
    budget = HourlyBudget(store)
    budgets = []
    for platform, cfg in (rechecks or {}).items():
        hour, today = budget.spent(platform, now)
        budgets.append(BudgetStatus(platform, hour, int(cfg.budget_per_hour), today, cfg.budget_per_day))
    return Snapshot(
        backlog=queue.backlog(POSTS),
        daemons=queue.daemons(),
        budgets=budgets,
        accounts=accounts,
        pending_rechecks={p: store.count_rechecks(p) for p in configured},
        outbox_size=store.outbox_size(),
        known_media=store.count_known(),
        parked_alerts=store.parked_count(),
        taken_at=now,
        timestamps=evidence.queue_status() if evidence is not None else None,
    )


#: how each ``pipeline.workers_mode`` reads in a daemon's status line
_WORKER_MODES = {"threads": "threads", "processes": "threads, hashing in processes", "forked": "worker processes"}


def render_text(snapshot: Snapshot) -> str:
    lines = [f"{'ACCOUNT':32} {'LAST POLL':21} {'NEXT POLL':21} {'POSTS':>6}  LAST ERROR"]
    for a in snapshot.accounts:
        s = a.state
        error = ""
        if s.last_error:
            error = f"{s.last_error} ({s.consecutive_errors} in a row, at {iso(s.last_error_at)})"
            if s.paused_until and s.paused_until > snapshot.taken_at:
                error += f"; paused until {iso(s.paused_until)}"
        name = f"{s.platform}/{s.account}"
        lines.append(f"{name:32} {iso(s.last_poll_at) or 'never':21} {iso(s.next_poll_at) or '-':21} {a.posts_seen:>6}  {error}")
    if not snapshot.accounts:
        lines.append("(no accounts configured)")
    rechecks = ", ".join(f"{p} {n}" for p, n in snapshot.pending_rechecks.items()) or "none"
    lines.append(f"pending re-checks: {rechecks}")
    lines.append(f"alert outbox: {snapshot.outbox_size} not yet delivered")
    parked = snapshot.parked_alerts
    hint = " (refused by a target: see `afterimage alerts parked`)" if parked else ""
    lines.append(f"parked alerts: {parked}{hint}")
    lines.append(f"known media: {snapshot.known_media}")
    b = snapshot.backlog
    age = f", oldest waiting {snapshot.oldest_waiting_seconds:.0f}s" if b.oldest_enqueued_at else ""
    lines.append(f"posts queued for processing: {b.waiting} waiting, {b.in_progress} in progress{age}")
    hint = " (processing raised, or killed its worker, every attempt: see `afterimage posts failed`)" if b.failed else ""
    lines.append(f"failed posts: {b.failed}{hint}")
    for d in snapshot.daemons:
        workers, busy = d.info.get("workers", 0), d.info.get("busy", 0)
        mode = f" ({_WORKER_MODES.get(d.info['mode'], d.info['mode'])})" if d.info.get("mode") else ""
        lines.append(f"daemon {d.name}: {busy}/{workers} worker(s) busy{mode}, {d.info.get('done', 0)} post(s) done")
    if not snapshot.daemons:
        lines.append("daemons: none running")
    for bs in snapshot.budgets:
        day = f"{bs.spent_today}/{bs.per_day} today" if bs.per_day else f"{bs.spent_today} today (no daily limit)"
        lines.append(f"re-check spend {bs.platform}: {bs.spent_hour}/{bs.per_hour} this hour, {day}")
    lines.append(_timestamp_line(snapshot))
    return "\n".join(lines)


def _timestamp_line(snapshot: Snapshot) -> str:
    t = snapshot.timestamps
    if t is None:
        return "trusted timestamps: off (no evidence.tsa_urls)"
    line = f"trusted timestamps: {t.waiting} item(s) waiting"
    if t.oldest_queued_at:
        line += f", oldest queued {t.oldest_seconds(snapshot.taken_at):.0f}s ago"
    if t.failing:
        line += f"; TSA failing since {iso(t.last_error_at)}: {t.last_error}"
    elif t.last_error:
        line += f"; last TSA error {iso(t.last_error_at)} (recovered {iso(t.last_stamped_at)}): {t.last_error}"
    return line


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _sample(value: float) -> str:
    """A sample value at full precision: counts as integers, anything else as the shortest exact float
    (``%g`` would round a Unix timestamp to six digits, i.e. to about 10,000 seconds)."""
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def render_prometheus(snapshot: Snapshot) -> str:
    """Prometheus text exposition format (version 0.0.4)."""
    out: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], float]]) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            label_text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            shown = _sample(value)
            out.append(f"{name}{{{label_text}}} {shown}" if label_text else f"{name} {shown}")

    def acct(a: AccountStatus) -> dict[str, str]:
        return {"platform": a.state.platform, "account": a.state.account}

    metric("afterimage_posts_seen", "gauge", "Posts stored per watched account.",
           [(acct(a), a.posts_seen) for a in snapshot.accounts])
    metric("afterimage_last_poll_timestamp_seconds", "gauge", "Unix time of the last successful poll.",
           [(acct(a), a.state.last_poll_at.timestamp()) for a in snapshot.accounts if a.state.last_poll_at])
    metric("afterimage_consecutive_poll_errors", "gauge", "Failed polls in a row per account.",
           [(acct(a), a.state.consecutive_errors) for a in snapshot.accounts])
    metric("afterimage_pending_rechecks", "gauge", "Posts waiting for a re-check, per platform.",
           [({"platform": p}, n) for p, n in snapshot.pending_rechecks.items()])
    metric("afterimage_alert_outbox", "gauge", "Alerts queued and not yet delivered.", [({}, snapshot.outbox_size)])
    metric("afterimage_alerts_parked", "gauge", "Alerts a target refused, parked out of the queue.",
           [({}, snapshot.parked_alerts)])
    metric("afterimage_known_media", "gauge", "Entries in the known-media store.", [({}, snapshot.known_media)])
    metric("afterimage_posts_waiting", "gauge", "Posts queued for processing that no worker has claimed yet.",
           [({}, snapshot.backlog.waiting)])
    metric("afterimage_posts_in_progress", "gauge", "Posts claimed by a worker and not finished.",
           [({}, snapshot.backlog.in_progress)])
    metric("afterimage_posts_failed", "gauge", "Posts parked as failed after their processing raised (or killed its worker) every attempt.",
           [({}, snapshot.backlog.failed)])
    metric("afterimage_oldest_waiting_post_seconds", "gauge", "Age of the oldest queued, unfinished post.",
           [({}, snapshot.oldest_waiting_seconds)])
    metric("afterimage_daemon_workers", "gauge", "Worker threads per running daemon.",
           [({"daemon": d.name}, d.info.get("workers", 0)) for d in snapshot.daemons])
    metric("afterimage_daemon_workers_busy", "gauge", "Worker threads busy with a post, per running daemon.",
           [({"daemon": d.name}, d.info.get("busy", 0)) for d in snapshot.daemons])
    metric("afterimage_recheck_requests_hour", "gauge", "Re-check look-up requests spent in the last hour.",
           [({"platform": b.platform}, b.spent_hour) for b in snapshot.budgets])
    metric("afterimage_recheck_requests_today", "gauge", "Re-check look-up requests spent since 00:00 UTC.",
           [({"platform": b.platform}, b.spent_today) for b in snapshot.budgets])
    t = snapshot.timestamps
    if t is not None:
        metric("afterimage_timestamp_queue_items", "gauge", "Items (files, chain entries, manifests) waiting for a "
               "trusted timestamp.", [({}, t.waiting)])
        metric("afterimage_timestamp_queue_oldest_seconds", "gauge", "Age of the oldest item waiting for a timestamp.",
               [({}, t.oldest_seconds(snapshot.taken_at))])
        metric("afterimage_timestamp_tsa_failing", "gauge", "1 while the last timestamp request failed (label: "
               "the TSA error, TSAs named by scheme and host only), else 0.",
               [({"error": t.last_error or ""} if t.failing else {}, 1 if t.failing else 0)])
        metric("afterimage_timestamp_last_error_timestamp_seconds", "gauge", "Unix time of the last failed "
               "timestamp request.", [({}, t.last_error_at.timestamp())] if t.last_error_at else [])
        metric("afterimage_timestamp_last_success_timestamp_seconds", "gauge", "Unix time of the last token kept.",
               [({}, t.last_stamped_at.timestamp())] if t.last_stamped_at else [])
    return "\n".join(out) + "\n"
