"""Service auto scaling's pure parts with an injected clock: target tracking decisions
(controller/autoscaling/target_tracking.py) and scheduled actions' firing times
(controller/autoscaling/schedule.py)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from controller.autoscaling import schedule as sched
from controller.autoscaling import target_tracking as tt

CPU50 = tt.Policy("cpu50", 50.0, scale_out_cooldown=60, scale_in_cooldown=120)
B = tt.Bounds(1, 10)
NOW = 10_000.0


def test_scales_out_proportionally_once_three_periods_are_above_target() -> None:
    assert tt.decide(CPU50, B, 1, [10, 90, 95], NOW) is None  # one low reading in the window
    d = tt.decide(CPU50, B, 2, [90, 95, 150], NOW)
    assert d is not None and (d.desired, d.direction) == (6, "out")  # ceil(2 x 150 / 50)


def test_scale_out_is_at_least_one_task_and_never_beyond_max() -> None:
    d = tt.decide(CPU50, B, 3, [51, 51, 51], NOW)
    assert d is not None and d.desired == 4
    d = tt.decide(CPU50, tt.Bounds(1, 4), 2, [400, 400, 400], NOW)
    assert d is not None and d.desired == 4
    assert tt.decide(CPU50, tt.Bounds(1, 4), 4, [400, 400, 400], NOW) is None


def test_scale_in_needs_fifteen_low_periods_and_follows_the_busiest() -> None:
    low = [10.0] * 14
    assert tt.decide(CPU50, B, 4, low, NOW) is None  # not sustained yet
    assert tt.decide(CPU50, B, 4, [*low, 46.0], NOW) is None  # 46 is not 10 % under 50
    d = tt.decide(CPU50, B, 4, [*low, 20.0], NOW)
    assert d is not None and (d.desired, d.direction) == (2, "in")  # ceil(4 x 20 / 50)


def test_scale_in_never_below_min_and_not_when_disabled_or_suspended() -> None:
    low = [1.0] * 15
    d = tt.decide(CPU50, tt.Bounds(2, 10), 5, low, NOW)
    assert d is not None and d.desired == 2
    assert tt.decide(CPU50, tt.Bounds(2, 10), 2, low, NOW) is None
    no_in = tt.Policy("p", 50.0, disable_scale_in=True)
    assert tt.decide(no_in, B, 5, low, NOW) is None
    assert tt.decide(CPU50, tt.Bounds(1, 10, scale_in_suspended=True), 5, low, NOW) is None
    assert tt.decide(CPU50, tt.Bounds(1, 10, scale_out_suspended=True), 1, [99] * 3, NOW) is None


def test_cooldowns() -> None:
    high = [90.0] * 3
    assert tt.decide(CPU50, B, 2, high, NOW, last_out=NOW - 30) is None
    assert tt.decide(CPU50, B, 2, high, NOW, last_out=NOW - 61) is not None
    low = [5.0] * 15
    assert tt.decide(CPU50, B, 4, low, NOW, last_out=NOW - 100) is None  # scale-in cooldown
    assert tt.decide(CPU50, B, 4, low, NOW, last_in=NOW - 100) is None
    assert tt.decide(CPU50, B, 4, low, NOW, last_in=NOW - 121) is not None
    assert tt.decide(CPU50, B, 2, high, NOW, last_in=NOW - 1) is not None  # out in in-cooldown


def test_nothing_during_a_rollback_or_without_data() -> None:
    assert tt.decide(CPU50, B, 1, [99] * 3, NOW, rolling_back=True) is None
    assert tt.decide(CPU50, B, 1, [99, None, 99], NOW) is None
    assert tt.decide(CPU50, B, 4, [None] * 15, NOW) is None


def test_combine_out_wins_in_needs_everyone() -> None:
    out = tt.Decision(5, "out", 90.0)
    a_in, b_in = tt.Decision(2, "in", 10.0), tt.Decision(3, "in", 20.0)
    assert tt.combine([a_in, out], 4) == out
    assert tt.combine([a_in, None], 4) is None
    assert tt.combine([a_in, b_in], 4) == b_in


def _ts(text: str, tz: str = "UTC") -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


def test_at_fires_once_in_its_time_zone() -> None:
    s = sched.Schedule("at(2026-03-01T09:00:00)", "Europe/Paris")
    assert sched.next_firing(s, _ts("2026-03-01T00:00:00")) == _ts("2026-03-01T08:00:00")
    assert sched.next_firing(s, _ts("2026-03-01T08:00:00")) is None


def test_rate_counts_from_start_or_creation() -> None:
    created = _ts("2026-01-01T00:00:00")
    s = sched.Schedule("rate(5 minutes)", created=created)
    assert sched.next_firing(s, created + 1) == created + 300
    assert sched.next_firing(s, created + 300) == created + 600
    started = sched.Schedule("rate(1 hour)", start=created + 7200, end=created + 10_000)
    assert sched.next_firing(started, created) == created + 7200
    assert sched.next_firing(started, created + 7200) is None  # the next would pass EndTime


def test_cron_aws_fields_days_of_week_and_dst() -> None:
    # every weekday (MON-FRI = 2-6) at 08:30 New York time
    s = sched.Schedule("cron(30 8 ? * 2-6 *)", "America/New_York")
    friday = _ts("2026-03-06T09:00:00", "America/New_York")
    assert sched.next_firing(s, friday) == _ts("2026-03-09T08:30:00", "America/New_York")
    # across the DST change (2026-03-08): still 08:30 local
    sunday = sched.Schedule("cron(0 12 ? * 1 *)", "America/New_York")  # 1 = SUN
    after = _ts("2026-03-02T00:00:00", "America/New_York")
    assert sched.next_firing(sunday, after) == _ts("2026-03-08T12:00:00", "America/New_York")
    yearly = sched.Schedule("cron(0 0 1 1 ? 2028)")
    assert sched.next_firing(yearly, _ts("2026-06-01T00:00:00")) == _ts("2028-01-01T00:00:00")
    assert sched.next_firing(yearly, _ts("2028-01-01T00:00:00")) is None


@pytest.mark.parametrize(
    "expr,tz,why",
    [
        ("cron(0 8 * * * *)", "UTC", "exactly one of"),
        ("cron(0 8 * * ?)", "UTC", "six fields"),
        ("rate(1 minutes)", "UTC", "singular"),
        ("rate(0 minutes)", "UTC", "positive"),
        ("every day", "UTC", "is not at("),
        ("at(2026-02-30T00:00:00)", "UTC", "at()"),
        ("cron(0 8 ? * 9 *)", "UTC", "day-of-week 9"),
        ("rate(5 minutes)", "Mars/Olympus", "IANA"),
    ],
)
def test_bad_schedules_are_refused_with_the_reason(expr: str, tz: str, why: str) -> None:
    with pytest.raises(ValueError, match=why.replace("(", r"\(").replace(")", r"\)")):
        sched.check(sched.Schedule(expr, tz))
