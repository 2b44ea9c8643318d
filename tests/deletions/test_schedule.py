from __future__ import annotations

from datetime import timedelta

import pytest

from bot.config import RecheckConfig
from bot.deletions import schedule
from scripted import T0

CFG = RecheckConfig()
DEFAULT_OFFSETS = [120, 300, 900, 1800, 3600, 7200, 21600, 43200, 86400]


def test_default_schedule_then_daily_until_horizon():
    offsets = []
    step = 0
    while (o := schedule.step_offset(CFG, step)) is not None:
        offsets.append(o)
        step += 1
    assert offsets[:9] == DEFAULT_OFFSETS
    assert offsets[9:] == [86400 * d for d in range(2, 31)]  # daily, the last one at exactly 30 days
    assert schedule.horizon_end(T0, CFG) == T0 + timedelta(days=30)


def test_new_post_starts_at_first_step():
    assert schedule.next_step(T0, CFG, -1, T0 + timedelta(seconds=20)) == (0, T0 + timedelta(minutes=2))


def test_catch_up_skips_steps_in_the_past():
    # first seen 10 minutes after posting: 2m and 5m are gone, 15m is next
    assert schedule.next_step(T0, CFG, -1, T0 + timedelta(minutes=10)) == (2, T0 + timedelta(minutes=15))
    # a run 3 hours late after the 30m step lands on the 6h step
    assert schedule.next_step(T0, CFG, 3, T0 + timedelta(hours=3, minutes=30)) == (6, T0 + timedelta(hours=6))
    # deep in the daily tail: the next whole day after now
    step, due = schedule.next_step(T0, CFG, 8, T0 + timedelta(days=5, hours=1))
    assert due == T0 + timedelta(days=6) and schedule.step_offset(CFG, step) == 6 * 86400


def test_exactly_on_time_moves_to_the_following_step():
    assert schedule.next_step(T0, CFG, 0, T0 + timedelta(minutes=2)) == (1, T0 + timedelta(minutes=5))


def test_past_horizon_is_none():
    assert schedule.next_step(T0, CFG, -1, T0 + timedelta(days=31)) is None
    assert schedule.next_step(T0, CFG, 37, T0 + timedelta(days=30)) is None


def test_custom_schedule_and_horizon():
    cfg = RecheckConfig(schedule=["1m", "10m"], then_every="1h", horizon="3h")
    due = [schedule.due_at(T0, cfg, s) for s in range(6)]
    assert due == [T0 + timedelta(minutes=1), T0 + timedelta(minutes=10), T0 + timedelta(minutes=70),
                   T0 + timedelta(minutes=130), None, None]


def test_unsorted_schedule_is_sorted_and_negative_step_refused():
    cfg = RecheckConfig(schedule=["10m", "1m"])
    assert schedule.step_offset(cfg, 0) == 60
    with pytest.raises(ValueError):
        schedule.step_offset(cfg, -1)
