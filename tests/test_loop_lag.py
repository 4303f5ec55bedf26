"""The controller's event-loop lag metric: a long synchronous turn shows up in it."""

from __future__ import annotations

import asyncio
import contextlib
import time

from prometheus_client import REGISTRY

from controller import loop_lag


def _sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def _hold_loop(seconds: float) -> None:
    """A long synchronous turn, as one big batch of work makes."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


async def test_a_blocked_loop_shows_as_lag() -> None:
    """A turn that holds the loop 0.3 s is seen by the histogram and the recent max."""
    before = _sample("dockyard_event_loop_lag_seconds_sum")
    watcher = asyncio.create_task(loop_lag.watch(period=0.01))
    try:
        await asyncio.sleep(0.05)
        _hold_loop(0.3)
        await asyncio.sleep(0.05)
        assert _sample("dockyard_event_loop_lag_recent_max_seconds") >= 0.25
        assert _sample("dockyard_event_loop_lag_seconds_sum") - before >= 0.25
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


def test_recent_max_forgets_after_two_windows() -> None:
    """The recent max keeps a spike for one to two windows, then lets it go."""
    w = loop_lag._WindowMax(5.0)
    t = w.started
    assert w.add(0.8, t + 1) == 0.8
    assert w.add(0.01, t + 6) == 0.8  # the previous window still holds it
    assert w.add(0.01, t + 11) == 0.01
    assert w.add(0.02, t + 40) == 0.02  # a long gap: nothing older survives
