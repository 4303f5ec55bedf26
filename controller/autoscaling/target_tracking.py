"""Target tracking, as Application Auto Scaling documents it for ECS services: pure.

Given a policy, the scalable target's bounds, the service's current desired count, the
metric's recent readings (one per evaluation period) and when the service last scaled, say
what the desired count should become, or None.

What Dockyard chose (AWS's CloudWatch alarms, without CloudWatch):
- Scale out promptly: the last OUT_PERIODS (3) readings all above the target value (AWS's
  high alarm: 3 datapoints of 1 minute). New count = ceil(count x metric / target),
  proportional, at least count + 1.
- Scale in conservatively: the last IN_PERIODS (15) readings all below 90 % of the target
  (AWS's low alarm: 15 datapoints, at a threshold 10 % under the target), and the
  proportional count computed from the HIGHEST of those readings, so a brief dip removes
  nothing and a service never scales in below what its busiest recent minute needed.
- Never beyond MinCapacity/MaxCapacity; a count outside them is brought inside them.
- Cooldowns: no scale-out within ScaleOutCooldown of the last scale-out; no scale-in within
  ScaleInCooldown of the last scaling activity (either way), so a scale-out is never undone
  before it has had time to show. A scale-out is allowed during a scale-in cooldown (AWS).
- DisableScaleIn, the target's DynamicScalingIn/OutSuspended: that direction never happens.
- Never while the service's deployment is rolling back (the caller says so).
- Insufficient data (fewer readings than the window, or a reading of None): no change.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

OUT_PERIODS = 3
IN_PERIODS = 15
IN_THRESHOLD = 0.9  # the scale-in alarm's threshold, as a fraction of the target value


@dataclass(frozen=True)
class Policy:
    name: str
    target_value: float
    scale_out_cooldown: float = 300.0  # seconds (AWS's default for ECS)
    scale_in_cooldown: float = 300.0
    disable_scale_in: bool = False


@dataclass(frozen=True)
class Bounds:
    min_capacity: int
    max_capacity: int
    scale_in_suspended: bool = False
    scale_out_suspended: bool = False


@dataclass(frozen=True)
class Decision:
    desired: int
    direction: str  # "out" | "in" | "bounds"
    metric: float | None  # the reading that decided it (None: only the bounds)


def clamp(count: int, b: Bounds) -> int:
    return max(b.min_capacity, min(b.max_capacity, count))


def decide(
    policy: Policy,
    bounds: Bounds,
    count: int,
    readings: Sequence[float | None],
    now: float,
    last_out: float | None = None,
    last_in: float | None = None,
    rolling_back: bool = False,
    out_periods: int = OUT_PERIODS,
    in_periods: int = IN_PERIODS,
) -> Decision | None:
    """The new desired count for one policy, or None (readings: oldest first)."""
    if rolling_back or policy.target_value <= 0:
        return None
    out = _scale_out(policy, bounds, count, readings, now, last_out, out_periods)
    if out is not None:
        return out
    return _scale_in(policy, bounds, count, readings, now, last_out, last_in, in_periods)


def _window(readings: Sequence[float | None], n: int) -> list[float] | None:
    recent = list(readings[-n:]) if n > 0 else []
    if len(recent) < n or any(r is None for r in recent):
        return None
    return [float(r) for r in recent if r is not None]


def _scale_out(
    p: Policy,
    b: Bounds,
    count: int,
    readings: Sequence[float | None],
    now: float,
    last_out: float | None,
    periods: int,
) -> Decision | None:
    window = _window(readings, periods)
    if b.scale_out_suspended or window is None or min(window) <= p.target_value:
        return None
    if last_out is not None and now - last_out < p.scale_out_cooldown:
        return None
    metric = window[-1]
    wanted = max(count + 1, math.ceil(count * metric / p.target_value - 1e-9))
    desired = clamp(wanted, b)
    return Decision(desired, "out", metric) if desired > count else None


def _scale_in(
    p: Policy,
    b: Bounds,
    count: int,
    readings: Sequence[float | None],
    now: float,
    last_out: float | None,
    last_in: float | None,
    periods: int,
) -> Decision | None:
    if p.disable_scale_in or b.scale_in_suspended or count <= b.min_capacity:
        return None
    window = _window(readings, periods)
    if window is None or max(window) >= p.target_value * IN_THRESHOLD:
        return None
    last = max((t for t in (last_out, last_in) if t is not None), default=None)
    if last is not None and now - last < p.scale_in_cooldown:
        return None
    metric = max(window)
    wanted = max(1, math.ceil(count * metric / p.target_value - 1e-9))
    desired = clamp(min(wanted, count - 1), b)
    return Decision(desired, "in", metric) if desired < count else None


def combine(decisions: Sequence[Decision | None], count: int) -> Decision | None:
    """Several policies on one target (AWS): scale out if any says out (the largest count);
    scale in only if every policy says in (the largest of their counts)."""
    outs = [d for d in decisions if d is not None and d.direction == "out"]
    if outs:
        return max(outs, key=lambda d: d.desired)
    ins = [d for d in decisions if d is not None and d.direction == "in"]
    if ins and len(ins) == len(decisions):
        best = max(ins, key=lambda d: d.desired)
        return best if best.desired < count else None
    return None
