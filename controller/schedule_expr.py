"""EventBridge schedule expressions (issue 22, scheduled tasks): parse and next firing (pure).

`rate(N unit)`: every N minutes/hours/days, counted from the rule's anchor (its creation, as
EventBridge counts), with AWS's singular/plural rule (`rate(1 hour)`, `rate(5 hours)`).
`cron(Minutes Hours Day-of-month Month Day-of-week Year)`: AWS's six fields, in UTC, with
`*`, `,`, `-`, `/` and `?` (one of day-of-month and day-of-week must be `?`); month and day
names (JAN-DEC, SUN-SAT; day-of-week 1 is Sunday). AWS's `L`, `W` and `#` are refused with a
clear error rather than misread. The clock is always passed in (`after`), so tests inject it.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from dockyard.errors import ApiError

_RATE = re.compile(r"rate\(\s*(\d+)\s+([a-z]+)\s*\)")
_CRON = re.compile(r"cron\((.*)\)")
_UNITS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split()
_DAYS = "SUN MON TUE WED THU FRI SAT".split()
# (name, low, high, names) of the six cron fields
_FIELDS: tuple[tuple[str, int, int, list[str]], ...] = (
    ("Minutes", 0, 59, []),
    ("Hours", 0, 23, []),
    ("Day-of-month", 1, 31, []),
    ("Month", 1, 12, _MONTHS),
    ("Day-of-week", 1, 7, _DAYS),
    ("Year", 1970, 2199, []),
)
SEARCH_YEARS = 5  # a cron that matches nothing within this many years never fires


def _bad(why: str) -> ApiError:
    return ApiError("ValidationException", f"Parameter ScheduleExpression is not valid: {why}")


@dataclass(frozen=True)
class Schedule:
    period: float = 0.0  # rate: seconds between firings; 0 for a cron
    fields: tuple[frozenset[int] | None, ...] = ()  # cron: allowed values (None: `?`)


def _value(text: str, low: int, names: list[str]) -> int:
    if text.upper() in names:
        return names.index(text.upper()) + low
    if not text.isdigit():
        raise ValueError(text)
    return int(text)


def _field(text: str, name: str, low: int, high: int, names: list[str]) -> frozenset[int] | None:
    if text == "?":
        return None
    tokens = [tok for tok in re.split(r"[,/-]", text.upper()) if tok not in names]
    if any(c in tok for tok in tokens for c in "LW#"):
        raise _bad(f"{name} {text!r}: L, W and # are not supported by Dockyard")
    out: set[int] = set()
    for part in text.split(","):
        span, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if span == "*":
                first, last = low, high
            elif "-" in span:
                a, b = span.split("-", 1)
                first, last = _value(a, low, names), _value(b, low, names)
            else:
                first = _value(span, low, names)
                last = high if step_text else first
        except ValueError:
            raise _bad(f"{name} {text!r} is not a value, range or list") from None
        if step < 1 or not low <= first <= high or not low <= last <= high or first > last:
            raise _bad(f"{name} {text!r} is outside {low}-{high}")
        out.update(range(first, last + 1, step))
    return frozenset(out)


def parse(expr: str) -> Schedule:
    """The schedule of `expr`, or ValidationException saying what is wrong."""
    rate = _RATE.fullmatch(expr.strip())
    if rate:
        n, unit = int(rate.group(1)), rate.group(2)
        base = unit[:-1] if unit.endswith("s") else unit
        if base not in _UNITS or n < 1 or (n == 1) != (unit == base):
            raise _bad(f"{expr!r}: rate(1 minute|hour|day) or rate(N minutes|hours|days)")
        return Schedule(period=float(n * _UNITS[base]))
    cron = _CRON.fullmatch(expr.strip())
    if not cron:
        raise _bad(f"{expr!r}: expected rate(...) or cron(...)")
    parts = cron.group(1).split()
    if len(parts) != 6:
        raise _bad(
            f"{expr!r}: cron takes 6 fields (minutes hours day-of-month month day-of-week year)"
        )
    fields = tuple(_field(p, *spec) for p, spec in zip(parts, _FIELDS, strict=True))
    if (fields[2] is None) == (fields[4] is None):
        raise _bad(f"{expr!r}: one of day-of-month and day-of-week must be '?'")
    if fields[0] is None or fields[1] is None or fields[3] is None or fields[5] is None:
        raise _bad(f"{expr!r}: '?' is only for day-of-month or day-of-week")
    return Schedule(fields=fields)


def next_firing(schedule: Schedule, after: float, anchor: float) -> float | None:
    """The first firing strictly after `after` (epoch s): for a rate, anchor + k x period;
    for a cron, the next matching minute (UTC). None: a cron that never fires again."""
    if schedule.period:
        if after < anchor:
            return anchor + schedule.period
        return anchor + ((after - anchor) // schedule.period + 1) * schedule.period
    minutes, hours, dom, months, dow, years = schedule.fields
    assert minutes is not None and hours is not None and months is not None and years
    start = dt.datetime.fromtimestamp(after, dt.UTC).replace(second=0, microsecond=0)
    day = start.replace(hour=0, minute=0)
    for _ in range(366 * SEARCH_YEARS):
        weekday = (day.weekday() + 1) % 7 + 1  # AWS: 1 is Sunday
        if (
            day.year in years
            and day.month in months
            and (dom is None or day.day in dom)
            and (dow is None or weekday in dow)
        ):
            for h in sorted(hours):
                for m in sorted(minutes):
                    at = day.replace(hour=h, minute=m).timestamp()
                    if at > after:
                        return at
        day += dt.timedelta(days=1)
    return None
