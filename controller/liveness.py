"""Liveness at scale: the heartbeat-period policy and admission of registration storms (pure).

Nomad's rule for heartbeats: the period grows with the cluster so the cluster-wide rate
stays under a budget (one heartbeat round trip costs ~100 µs of controller CPU in grpc.aio,
so 10,000 agents at 1 s would be a full core), while a small cluster keeps the base period
and detects a vanished host within three periods.

Admission: registrations beyond what the controller can work through soon are refused
with a retry hint, and the agents come back with jittered backoff, instead of piling up
in memory and timing out together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

DEFAULT_HEARTBEAT_BUDGET = 1000.0  # heartbeats per second, cluster-wide
MISSED_HEARTBEATS = 3
PERIOD_STEP_S = 0.5  # periods are rounded up to this, so joins do not change it each time
MAX_INFLIGHT_REGISTRATIONS = 256
MAX_WAITING_REGISTRATIONS = 4096
REGISTRATIONS_PER_S_HINT = 1000.0  # for the retry hint only


def heartbeat_period(agents: int, base: float, budget: float) -> float:
    """Seconds between heartbeats for a cluster of `agents`: base, or agents / budget."""
    if budget <= 0 or agents <= 0:
        return base
    need = agents / budget
    if need <= base:
        return base
    return max(base, math.ceil(need / PERIOD_STEP_S) * PERIOD_STEP_S)


def silence_limit(previous: float, current: float) -> float:
    """How long a session may stay silent: an agent asleep on the previous (longer) period
    learns the new one only with its next heartbeat's ack.

    Half a period short of MISSED_HEARTBEATS, and checked every quarter period
    (CHECKS_PER_PERIOD), so a host that vanishes right after a heartbeat is caught within
    three periods of it (1 s period: 1.5-2.75 s after the partition, median ~2.1 s)."""
    return (MISSED_HEARTBEATS - 0.5) * max(previous, current)


CHECKS_PER_PERIOD = 4
# A watchdog tick later than this means the event loop itself was stuck (a long pass, a GC
# pause, a starved host): heartbeats sat unread in socket buffers, not missing.
STALL_S = 0.25


@dataclass
class Admission:
    """Counts registrations in flight and waiting; decides who must come back later."""

    max_inflight: int = MAX_INFLIGHT_REGISTRATIONS
    max_waiting: int = MAX_WAITING_REGISTRATIONS
    inflight: int = 0
    waiting: int = 0
    refused: int = 0

    def admit(self) -> bool:
        """False: refuse this registration now (the queue is full)."""
        if self.waiting >= self.max_waiting:
            self.refused += 1
            return False
        self.waiting += 1
        return True

    def retry_hint(self) -> float:
        """Seconds after which the queue ahead should have drained."""
        return round(max(1.0, (self.waiting + self.inflight) / REGISTRATIONS_PER_S_HINT), 1)


# A burst of departures: this many sessions closed within BURST_WINDOW_S of each other; it
# lasts while more follow with gaps shorter than BURST_QUIET_S
BURST_MIN = 10
BURST_WINDOW_S = 0.1
BURST_QUIET_S = 0.25
HOLD_MAX_S = 2.0  # the longest a burst may hold the services' scheduler back


@dataclass
class Departures:
    """Sessions closing in numbers (a rack, a switch, a killed simulator), so that the
    services' scheduler can let their disconnects through before it plans.

    gRPC's asyncio server hands completions to the event loop about one per loop turn
    once a few hundred are pending, so while a planning pass holds the loop for a second
    at 10,000 instances, thousands of dropped streams wait for it, turn by turn. Nothing
    a pass could decide about a disconnected host happens before its grace runs out.
    On a loaded host the ends trickle in slower than they started: a burst lasts as long
    as they keep coming."""

    minimum: int = BURST_MIN
    window: float = BURST_WINDOW_S
    quiet: float = BURST_QUIET_S
    _since: float = field(default=-math.inf, repr=False)
    _count: int = field(default=0, repr=False)
    _last: float = field(default=-math.inf, repr=False)
    last_burst: float = -math.inf

    def note(self, now: float) -> None:
        """A session closed at `now` (monotonic seconds)."""
        if now - self._since > self.window:
            self._since, self._count = now, 0
        self._count += 1
        if self._count >= self.minimum or self.bursting(now):
            self.last_burst = now
        self._last = now

    def bursting(self, now: float) -> bool:
        """Whether a burst is going on: seen, and departures still coming."""
        return now - self.last_burst < self.quiet and now - self._last < self.quiet

    def quiet_in(self, now: float) -> float:
        """Seconds until the burst is over if no one else leaves (0: it is)."""
        return max(0.0, min(self.last_burst, self._last) + self.quiet - now)
