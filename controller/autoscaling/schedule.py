"""When a scheduled action fires: Application Auto Scaling's `at(...)`, `rate(...)` and
`cron(...)` expressions, in the action's time zone. Pure: every answer is computed from the
`after` instant it is given (tests inject it).

- `at(yyyy-mm-ddThh:mm:ss)`: once, at that wall-clock time in the time zone (UTC default).
- `rate(N minute|minutes|hour|hours|day|days)`: every N units from the action's StartTime
  (else from when it was created).
- `cron(min hour day-of-month month day-of-week year)`: AWS's six fields: `?` for "any" in
  one of the two day fields, day-of-week 1-7 = SUN-SAT (or names), year `*` or a year or
  a range of years. Evaluated in the time zone (DST handled by zoneinfo, croniter).
Bad expressions raise ValueError with the reason (the API turns it into ValidationException).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_AT = re.compile(r"at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)")
_RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")
_CRON = re.compile(r"cron\(([^()]+)\)")
_UNIT_S = {"minute": 60, "hour": 3600, "day": 86400}
_MAX_YEAR_SKIPS = 1000


@dataclass(frozen=True)
class Schedule:
    expression: str
    timezone: str = "UTC"
    start: float | None = None  # epoch seconds: no firing before
    end: float | None = None  # epoch seconds: no firing after
    created: float = 0.0  # epoch seconds: where a rate counts from without a start


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"Timezone {name!r} is not a valid IANA time zone name") from None


def check(s: Schedule) -> None:
    """Raise ValueError if the expression or the time zone is not one AWS takes."""
    zone(s.timezone)
    if _AT.fullmatch(s.expression):
        _parse_at(s)
    elif m := _RATE.fullmatch(s.expression):
        if int(m.group(1)) < 1:
            raise ValueError("a rate must be a positive number of units")
        if (m.group(1) == "1") != (not m.group(2).endswith("s")):
            raise ValueError("rate: use the singular unit for 1 and the plural otherwise")
    elif m := _CRON.fullmatch(s.expression):
        _cron_fields(m.group(1))
    else:
        raise ValueError(
            f"Schedule {s.expression!r} is not at(yyyy-mm-ddThh:mm:ss), rate(N unit) or "
            "cron(minutes hours day-of-month month day-of-week year)"
        )


def next_firing(s: Schedule, after: float) -> float | None:
    """The first firing strictly after `after` (epoch seconds), or None (never again)."""
    check(s)
    lower = max(after, (s.start - 1e-6) if s.start is not None else after)
    if _AT.fullmatch(s.expression):
        at = _parse_at(s)
        found: float | None = at if at > lower else None
    elif m := _RATE.fullmatch(s.expression):
        found = _next_rate(s, int(m.group(1)) * _UNIT_S[m.group(2).rstrip("s")], lower)
    else:
        found = _next_cron(s, lower)
    if found is None or (s.end is not None and found > s.end):
        return None
    return found


def _parse_at(s: Schedule) -> float:
    m = _AT.fullmatch(s.expression)
    assert m is not None
    try:
        local = dt.datetime.fromisoformat(m.group(1))
    except ValueError as exc:
        raise ValueError(f"at(): {exc}") from None
    return local.replace(tzinfo=zone(s.timezone)).timestamp()


def _next_rate(s: Schedule, period: int, after: float) -> float:
    origin = s.start if s.start is not None else s.created
    if after < origin:
        return origin if s.start is not None else origin + period
    return origin + (int((after - origin) // period) + 1) * period


_DOW_NAMES = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}


def _aws_dow(field: str) -> str:
    """AWS's day-of-week (1-7 = SUN-SAT) in croniter's (0-6 = SUN-SAT)."""

    def shift(m: re.Match[str]) -> str:
        n = int(m.group(0))
        if not 1 <= n <= 7:
            raise ValueError(f"cron: day-of-week {n} is not 1-7 (SUN-SAT)")
        return str(n - 1)

    if "#" in field:  # nth weekday: only the weekday shifts
        day, _, nth = field.partition("#")
        return re.sub(r"\d+", shift, day) + "#" + nth
    return re.sub(r"(?<![/#])\d+", shift, field)


def _cron_fields(text: str) -> tuple[str, str]:
    """(croniter's 5-field expression, AWS's year field)."""
    fields = text.split()
    if len(fields) != 6:
        raise ValueError(
            "cron: AWS's cron takes six fields: minutes hours day-of-month month day-of-week year"
        )
    minute, hour, dom, month, dow, year = fields
    if (dom == "?") == (dow == "?"):
        raise ValueError("cron: exactly one of day-of-month and day-of-week must be ?")
    if year != "*" and not re.fullmatch(r"\d{4}(-\d{4})?", year):
        raise ValueError(f"cron: year {year!r} is not *, a year or a range of years")
    dom, dow = ("*" if dom == "?" else dom), ("*" if dow == "?" else _aws_dow(dow))
    expr = f"{minute} {hour} {dom} {month} {dow}"
    from croniter import croniter  # here: its module imports subprocess (never run)

    if not croniter.is_valid(expr):
        raise ValueError(f"cron: {text!r} is not a valid cron expression")
    return expr, year


def _years(year: str) -> tuple[int, int]:
    if year == "*":
        return 0, 9999
    low, _, high = year.partition("-")
    return int(low), int(high or low)


def _next_cron(s: Schedule, after: float) -> float | None:
    m = _CRON.fullmatch(s.expression)
    assert m is not None
    expr, year = _cron_fields(m.group(1))
    low, high = _years(year)
    tz = zone(s.timezone)
    start = dt.datetime.fromtimestamp(after, tz)
    if start.year < low:
        start = dt.datetime(low, 1, 1, tzinfo=tz) - dt.timedelta(seconds=1)
    from croniter import croniter  # as above: the core loads no I/O module

    it = croniter(expr, start)
    for _ in range(_MAX_YEAR_SKIPS):
        when: dt.datetime = it.get_next(dt.datetime)
        if when.year > high:
            return None
        if when.year >= low and when.timestamp() > after:
            return when.timestamp()
    return None
