"""ECS's managed scaling, computed purely: the `CapacityProviderReservation` metric and the
group size that holds it at `targetCapacity`.

ECS defines the metric as M / N x 100, where N is the number of instances already in the
group and M the number of instances needed to run every task that is running or waiting for
placement (PROVISIONING). With nothing waiting, M is the number of instances running at least
one task; with tasks waiting, M is estimated by packing the waiting tasks onto new instances
of the group's shape, and is at least N + minimumScalingStepSize. Special cases, as ECS
documents: N = 0 and M > 0 gives 200; N = 0 and M = 0 gives 100.

The decision (`decide`) asks for ceil(M x 100 / targetCapacity) instances: scale-out moves by
at least minimumScalingStepSize and at most maximumScalingStepSize instances; scale-in is not
limited by the step sizes, and with managed termination protection only idle instances
(no task) may leave, so a busy host is drained first and removed on a later turn.
No I/O, no clock: the driver (`controller.capacity.driver`) feeds it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_TARGET = 100
DEFAULT_MIN_STEP = 1
DEFAULT_MAX_STEP = 10000
DEFAULT_WARMUP = 300


@dataclass(frozen=True)
class Host:
    """One instance of the group, as the scaler sees it."""

    id: str
    cpu: int  # registered CPU units
    memory: int  # registered MiB
    tasks: int  # tasks running (or assigned) on it
    warming: bool = False  # joined less than instanceWarmupPeriod ago (not counted in N)


@dataclass(frozen=True)
class Waiting:
    """A task waiting for placement on the provider: its reservation."""

    cpu: int
    memory: int


@dataclass(frozen=True)
class Scaling:
    target: int = DEFAULT_TARGET  # targetCapacity, 1..100 percent
    min_step: int = DEFAULT_MIN_STEP
    max_step: int = DEFAULT_MAX_STEP
    protect: bool = False  # managedTerminationProtection ENABLED


@dataclass(frozen=True)
class Decision:
    reservation: float  # CapacityProviderReservation, percent
    needed: int  # M
    current: int  # N (hosts past their warm-up)
    desired: int  # the group size to ask for
    remove: tuple[str, ...] = ()  # with protection: the idle hosts that may go (scale-in)
    reason: str = ""


def instances_for(waiting: Sequence[Waiting], cpu: int, memory: int) -> int:
    """How many new instances of (cpu, memory) the waiting tasks need, first-fit decreasing.
    A task bigger than the shape still needs one instance of its own (ECS counts it)."""
    bins: list[list[int]] = []
    for t in sorted(waiting, key=lambda w: (w.cpu, w.memory), reverse=True):
        for b in bins:
            if b[0] >= t.cpu and b[1] >= t.memory:
                b[0] -= t.cpu
                b[1] -= t.memory
                break
        else:
            bins.append([max(cpu - t.cpu, 0), max(memory - t.memory, 0)])
    return len(bins)


def needed(hosts: Sequence[Host], waiting: Sequence[Waiting], min_step: int) -> int:
    """M: the hosts running tasks, plus what the waiting tasks need (at least N + min step)."""
    counted = [h for h in hosts if not h.warming]
    busy = sum(1 for h in counted if h.tasks > 0)
    if not waiting:
        return busy
    shape = max(hosts, key=lambda h: (h.cpu, h.memory), default=None)
    cpu, memory = (shape.cpu, shape.memory) if shape else (1024, 1024)
    extra = instances_for(waiting, cpu, memory)
    return max(len(counted) + extra, len(counted) + min_step)


def reservation(m: int, n: int) -> float:
    """CapacityProviderReservation = M / N x 100 (200 when N = 0 < M, 100 when both are 0)."""
    if n == 0:
        return 200.0 if m > 0 else 100.0
    return m * 100.0 / n


def decide(hosts: Sequence[Host], waiting: Sequence[Waiting], scaling: Scaling) -> Decision:
    """The group size that holds the reservation at the target, within the steps."""
    n_all = len(hosts)
    n = sum(1 for h in hosts if not h.warming)
    m = needed(hosts, waiting, scaling.min_step)
    metric = reservation(m, n)
    want = math.ceil(m * 100 / scaling.target) if m else 0
    if want > n_all:
        step = min(max(want - n_all, scaling.min_step), scaling.max_step)
        return Decision(metric, m, n, n_all + step, reason=f"scale out by {step}")
    if want < n and not any(h.warming for h in hosts):
        idle = [h.id for h in hosts if h.tasks == 0]
        surplus = n - want
        if scaling.protect:
            gone = tuple(sorted(idle)[:surplus])
            if not gone:
                return Decision(metric, m, n, n_all, reason="scale in waits: hosts still run tasks")
            return Decision(metric, m, n, n_all - len(gone), gone, f"scale in by {len(gone)}")
        return Decision(metric, m, n, want, reason=f"scale in by {surplus}")
    return Decision(metric, m, n, n_all, reason="at target")
