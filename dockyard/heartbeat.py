"""When an agent heartbeats: after a period of quiet, like a TCP keepalive.

The controller counts any message from an agent as a sign of life, and the agent counts
any message from the controller. A heartbeat (and its ack) is needed only when one of the
two directions has been quiet for a whole period, so a busy agent, whose status reports and
desired-state deltas already show both ends alive, sends none. Detection is unchanged: the
agent is never silent for longer than a period, and it asks for an ack as soon as it has
not heard from the controller for one. Shared by the real agent and `dockyard sim`, which
must load the controller the same way.
"""

from __future__ import annotations

MISSED_PERIODS = 3  # the controller silent this many periods (+1 s): the agent hangs up


def heartbeat_due_in(last_sent: float, last_heard: float, period: float, now: float) -> float:
    """Seconds until the next heartbeat is due; 0 when it is due now."""
    return max(0.0, min(last_sent, last_heard) + period - now)


def controller_silent(last_heard: float, period: float, now: float) -> bool:
    """The controller said nothing for MISSED_PERIODS periods: a partition (TCP half-open)."""
    return now - last_heard > MISSED_PERIODS * period + 1
