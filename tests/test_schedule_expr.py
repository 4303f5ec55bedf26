"""EventBridge schedule expressions (issue 22): parsing and the next firing, with the clock
injected (pure)."""

from __future__ import annotations

import datetime as dt

import pytest

from controller.schedule_expr import next_firing, parse
from dockyard.errors import ApiError


def t(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


def firings(expr: str, after: str, n: int = 3, anchor: str = "2026-01-01T00:00") -> list[str]:
    s, at, out = parse(expr), t(after), []
    for _ in range(n):
        nxt = next_firing(s, at, t(anchor))
        assert nxt is not None
        out.append(dt.datetime.fromtimestamp(nxt, dt.UTC).strftime("%Y-%m-%dT%H:%M"))
        at = nxt
    return out


def test_rate_counts_from_the_anchor() -> None:
    assert firings("rate(5 minutes)", "2026-01-01T00:07") == [
        "2026-01-01T00:10",
        "2026-01-01T00:15",
        "2026-01-01T00:20",
    ]
    assert firings("rate(1 hour)", "2025-12-31T10:00", 2) == [
        "2026-01-01T01:00",
        "2026-01-01T02:00",
    ]
    # a firing exactly at `after` is past: the next one comes (no double on restart)
    assert firings("rate(1 day)", "2026-01-02T00:00", 1) == ["2026-01-03T00:00"]


def test_cron_six_fields_utc() -> None:
    assert firings("cron(0 12 * * ? *)", "2026-03-01T12:00", 2) == [
        "2026-03-02T12:00",
        "2026-03-03T12:00",
    ]
    assert firings("cron(0/15 10-11 ? * MON-FRI *)", "2026-12-04T11:40") == [  # a Friday
        "2026-12-04T11:45",
        "2026-12-07T10:00",  # Monday
        "2026-12-07T10:15",
    ]
    assert firings("cron(30 8 1 JAN,JUL ? 2027)", "2026-06-01T00:00", 2) == [
        "2027-01-01T08:30",
        "2027-07-01T08:30",
    ]
    assert firings("cron(0 0 ? * 1 *)", "2026-12-01T00:00", 1) == ["2026-12-06T00:00"]  # SUN
    assert next_firing(parse("cron(0 0 1 1 ? 2020)"), t("2026-01-01T00:00"), 0.0) is None


@pytest.mark.parametrize(
    ("expr", "why"),
    [
        ("rate(1 minutes)", "rate(1 minute"),
        ("rate(5 minute)", "rate(1 minute"),
        ("rate(0 hours)", "rate("),
        ("rate(5 weeks)", "rate("),
        ("cron(0 12 * * *)", "6 fields"),
        ("cron(0 12 * * * *)", "must be '?'"),
        ("cron(0 12 ? * ? *)", "must be '?'"),
        ("cron(61 12 * * ? *)", "outside 0-59"),
        ("cron(0 12 L * ? *)", "L, W and #"),
        ("cron(0 12 ? * 6#3 *)", "L, W and #"),
        ("every hour", "rate(...) or cron(...)"),
    ],
)
def test_bad_expressions_are_refused_with_the_reason(expr: str, why: str) -> None:
    with pytest.raises(ApiError) as err:
        parse(expr)
    assert err.value.name == "ValidationException" and why in err.value.message
