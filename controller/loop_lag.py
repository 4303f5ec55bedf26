"""How late the controller's event loop runs what is due: its lag, as metrics.

Everything the controller does (API calls, agent streams, the orchestrator's passes) shares
one event loop, so one long synchronous turn delays every API call waiting behind it. A
watcher sleeps `PERIOD_S` over and over; how much later than asked it wakes is the loop's
lag. `dockyard_event_loop_lag_seconds` (histogram) is for dashboards and for the scale
bench's p99; `dockyard_event_loop_lag_recent_max_seconds` is the longest lag of the last
`WINDOW_S` to `2 * WINDOW_S` seconds, exact, for a poller that wants the worst turn.
"""

from __future__ import annotations

import asyncio
import time

from prometheus_client import Gauge, Histogram

PERIOD_S = 0.02
WINDOW_S = 5.0
BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.25,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    3.0,
    5.0,
    float("inf"),
)

LAG = Histogram(
    "dockyard_event_loop_lag_seconds",
    "how late the controller's event loop woke a timer (its longest turns)",
    buckets=BUCKETS,
)
RECENT_MAX = Gauge(
    "dockyard_event_loop_lag_recent_max_seconds",
    "the longest event-loop lag of the last 5-10 s",
)


class _WindowMax:
    """The maximum over the current and the previous window (two rotating slots)."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.started = time.monotonic()
        self.current = self.previous = 0.0

    def add(self, value: float, at: float) -> float:
        if at - self.started >= self.window:
            elapsed = int((at - self.started) // self.window)
            self.previous = self.current if elapsed == 1 else 0.0
            self.current, self.started = 0.0, self.started + elapsed * self.window
        self.current = max(self.current, value)
        return max(self.current, self.previous)


async def watch(period: float = PERIOD_S) -> None:
    """Sample the loop's lag forever (cancel to stop)."""
    recent = _WindowMax(WINDOW_S)
    while True:
        t0 = time.monotonic()
        await asyncio.sleep(period)
        at = time.monotonic()
        lag = max(0.0, at - t0 - period)
        LAG.observe(lag)
        RECENT_MAX.set(recent.add(lag, at))
