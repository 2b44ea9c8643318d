"""What the daemon is doing, read from the store: shown by ``afterimage status`` and served as Prometheus
metrics by the health endpoint. Read-only, so any process (CLI, another daemon) can compute it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from bot.models import iso
from bot.store import StateStore
from bot.store.records import AccountState


@dataclass(frozen=True)
class AccountStatus:
    state: AccountState
    posts_seen: int


@dataclass(frozen=True)
class Snapshot:
    accounts: list[AccountStatus]
    pending_rechecks: dict[str, int]
    outbox_size: int
    known_media: int
    parked_alerts: int
    taken_at: datetime
    extra: dict[str, float] = field(default_factory=dict)


def take_snapshot(store: StateStore, configured: dict[str, list[str]], now: datetime) -> Snapshot:
    """Status of every configured account (also those never polled yet) plus store-wide counters."""
    states = {(s.platform, s.account): s for s in store.get_account_states()}
    accounts = []
    for platform, names in configured.items():
        for account in names:
            state = states.get((platform, account)) or AccountState(platform, account)
            accounts.append(AccountStatus(state, store.count_posts(platform, account)))
    return Snapshot(
        accounts=accounts,
        pending_rechecks={p: store.count_rechecks(p) for p in configured},
        outbox_size=store.outbox_size(),
        known_media=store.count_known(),
        parked_alerts=store.parked_count(),
        taken_at=now,
    )


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
    return "\n".join(lines)


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
    return "\n".join(out) + "\n"
