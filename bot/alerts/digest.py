"""The daily digest: what happened on the watched accounts in the 24 hours before the digest time.

:func:`build_digest` counts, per account, the match / recycled / suggest alerts raised and the deletion-log
events detected in the window ``[until - 24h, until)``, where ``until`` is the configured time of day
(``alerts.digest.at``, UTC) on the digest's date, so the same day always yields the same digest.
:func:`enqueue_digest_if_due` is safe to call as often as the daemon likes: the key ``digest:YYYY-MM-DD``
makes the store refuse a second digest for a day.

Match alerts are read with ``OutboxReader.alerts_between`` (an index on the alerts' creation time) and events
with ``DeletionLogReader.list_events``, so every digest counts both.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Protocol

from bot.alerts.payloads import MATCH_KINDS, digest_key
from bot.store.records import EVENT_KINDS
from bot.config import DigestConfig
from bot.models import as_utc, iso, utcnow
from bot.store.deletion_log import DeletionLogReader, EventFilter
from bot.store.outbox import OutboxReader, OutboxStore
from bot.store.records import OutboxAlert

log = logging.getLogger(__name__)

WINDOW = timedelta(hours=24)
COUNTERS = ("match", "recycled", "suggest", "deleted", "edited", "other_events")


def digest_window(day: date, at: str = "00:00") -> tuple[datetime, datetime]:
    hh, mm = (int(x) for x in at.split(":"))
    until = datetime.combine(day, time(hh, mm), tzinfo=timezone.utc)
    return until - WINDOW, until


def digest_payload(
    day: date,
    since: datetime,
    until: datetime,
    events: Iterable[Any],
    alerts: Iterable[OutboxAlert],
) -> dict[str, Any]:
    """The ``digest`` payload from deletion-log events and match alerts (see :mod:`bot.alerts.payloads`)."""
    per: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTERS, 0))
    totals = dict.fromkeys(COUNTERS, 0)
    for ev in events:
        counter = ev.kind if ev.kind in ("deleted", "edited") else "other_events"
        if ev.kind not in EVENT_KINDS:
            continue
        per[(ev.platform, ev.account)][counter] += 1
        totals[counter] += 1
    for alert in alerts:  # the store's match alerts of [since, until) (build_digest asks for just those)
        p = alert.payload
        # one message per post: the cases it lists beside its own (bot.cases.CaseDesk.post_message) count too
        for item in [{**p, "kind": alert.kind}, *(a for a in p.get("also") or [] if isinstance(a, dict))]:
            counter = "suggest" if item.get("tier") == "suggest" else item.get("kind", alert.kind)
            if counter not in totals:
                continue
            per[(str(p.get("platform")), str(p.get("account")))][counter] += 1
            totals[counter] += 1
    accounts = [{"platform": k[0], "account": k[1], **v} for k, v in sorted(per.items())]
    return {
        "date": day.isoformat(),
        "since": iso(since),
        "until": iso(until),
        "totals": totals,
        "accounts": accounts,
    }


class DigestSource(OutboxReader, DeletionLogReader, Protocol):
    """What a digest counts: the day's alerts and the day's events."""


class DigestStore(OutboxStore, DeletionLogReader, Protocol):
    """What sending a digest needs: what it counts, and the outbox it goes into."""


def build_digest(store: DigestSource, day: date, at: str = "00:00", now: datetime | None = None) -> OutboxAlert:
    """The digest alert of ``day`` (kind ``digest``, key ``digest:YYYY-MM-DD``): the deletion-log events and
    the match / recycled alerts created in the window, both read from the store."""
    since, until = digest_window(day, at)
    events = store.list_events(EventFilter(since=since, until=until))
    alerts = store.alerts_between(since, until, kinds=MATCH_KINDS)
    payload = digest_payload(day, since, until, events, alerts)
    return OutboxAlert(key=digest_key(day.isoformat()), kind="digest", payload=payload, created_at=now or utcnow())


def enqueue_digest_if_due(store: DigestStore, config: DigestConfig, now: datetime | None = None) -> OutboxAlert | None:
    """Enqueue today's digest once ``config.at`` has passed (when enabled). Returns the alert when it was added."""
    if not config.enabled:
        return None
    now = as_utc(now or utcnow())
    since, until = digest_window(now.date(), config.at)
    if now < until:
        return None
    key = digest_key(now.date().isoformat())
    if store.get_alert(key) is not None:
        return None
    alert = build_digest(store, now.date(), config.at, now=now)
    if store.enqueue_alert(alert):
        log.info("daily digest %s queued", key)
        return alert
    return None
