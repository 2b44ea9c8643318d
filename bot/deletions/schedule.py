"""The decaying re-check schedule, as pure functions of the posting time.

Step ``i`` of a post is due at ``posted_at + offset(i)``: the configured ``schedule`` offsets first
(default 2m, 5m, 15m, 30m, 1h, 2h, 6h, 12h, 24h), then one more every ``then_every`` (default daily), as long
as the offset stays within ``horizon`` (default 30 days). Steps whose time is already past are skipped
(catch-up): a post first seen 10 minutes after posting starts at the 15 minute step, and a re-check run
late moves on to the first step still in the future instead of firing the missed ones in a burst.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Protocol

from bot.models import as_utc


class ScheduleConfig(Protocol):  # satisfied by bot.config.RecheckConfig
    schedule: list[float]
    then_every: float
    horizon: float


def _offsets(config: ScheduleConfig) -> list[float]:
    return sorted(float(s) for s in config.schedule)


def step_offset(config: ScheduleConfig, step: int) -> float | None:
    """Seconds after posting at which ``step`` is due, or None when that is beyond the horizon."""
    if step < 0:
        raise ValueError("step must be >= 0")
    offsets = _offsets(config)
    if step < len(offsets):
        offset = offsets[step]
    else:
        if config.then_every <= 0:
            return None
        last = offsets[-1] if offsets else 0.0
        offset = last + (step - len(offsets) + 1) * float(config.then_every)
    return offset if offset <= float(config.horizon) else None


def horizon_end(posted_at: datetime, config: ScheduleConfig) -> datetime:
    """The time after which a post is no longer re-checked."""
    return as_utc(posted_at) + timedelta(seconds=float(config.horizon))


def due_at(posted_at: datetime, config: ScheduleConfig, step: int) -> datetime | None:
    offset = step_offset(config, step)
    return None if offset is None else as_utc(posted_at) + timedelta(seconds=offset)


def next_step(posted_at: datetime, config: ScheduleConfig, after_step: int, now: datetime) -> tuple[int, datetime] | None:
    """The first step after ``after_step`` (use -1 for a new post) whose due time is later than ``now``.

    Returns ``(step, due_at)``, or None when every remaining step is beyond the horizon."""
    posted_at, now = as_utc(posted_at), as_utc(now)
    elapsed = (now - posted_at).total_seconds()
    offsets = _offsets(config)
    step = max(after_step + 1, 0)
    while step < len(offsets):
        if offsets[step] > elapsed:
            break
        step += 1
    else:
        # in the periodic tail: jump straight to the first period after ``now``
        if config.then_every > 0:
            last = offsets[-1] if offsets else 0.0
            k_needed = math.floor((elapsed - last) / float(config.then_every)) + 1 if elapsed >= last else 1
            step = max(step, len(offsets) - 1 + k_needed)
    when = due_at(posted_at, config, step)
    if when is None:
        return None
    return step, when
