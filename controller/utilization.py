"""CPU and memory utilisation as ECS computes it for services (pure: what auto scaling reads).

ECS's service metrics (CloudWatch `CPUUtilization` / `MemoryUtilization` with dimensions
ClusterName and ServiceName, which Application Auto Scaling's predefined metrics
`ECSServiceAverageCPUUtilization` and `ECSServiceAverageMemoryUtilization` are the Average
statistic of) are, per the ECS developer guide ("service utilization metrics"):

    service CPU %    = (CPU units used by the service's tasks) x 100
                       / (CPU units the task definition reserves x number of tasks)
    service memory % = (MiB of memory used by the service's tasks) x 100
                       / (MiB of memory the task definition reserves x number of tasks)

A task's reservation is what placement counted (`controller.taskdef.task_resources`): the
task-level `cpu`/`memory`, else the sum of its containers' `cpu` and `memoryReservation`
(or `memory`). So a task may use more than it reserved and the figure exceed 100 %, as on
ECS (EC2 launch type: CPU shares are a floor, not a cap). During a deployment with two
definitions, the sum of used over the sum of reserved is the same formula. A task that
reserves none of a resource has nothing to be measured against: it is left out of that
resource's figure (ECS's formula divides by zero there), and a service whose tasks reserve
none gets None, never a made-up number.

The Average over a period (CloudWatch's 1-minute period, what target tracking evaluates) is
the same ratio over every sample in the period: used and reserved summed over samples, so a
task reported twice in the period weighs twice, as a task's two datapoints would.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class TaskSample:
    """One task's usage over one report window, with what it reserves."""

    at: float  # epoch seconds: the end of the window
    cpu_units: float  # CPU used, averaged over the window (1024 = one core)
    memory_bytes: int  # memory in use at the end of the window
    cpu_reserved: int  # CPU units the task reserves (0: none)
    memory_reserved_mib: int  # MiB the task reserves (0: none)


@dataclass(frozen=True)
class Utilization:
    cpu: float | None  # percent of the reserved CPU units; None: nothing reserved
    memory: float | None  # percent of the reserved memory; None: nothing reserved
    samples: int  # how many task samples it is computed from


def percent(used: float, reserved: float) -> float | None:
    """used x 100 / reserved, None when nothing is reserved."""
    return used * 100.0 / reserved if reserved > 0 else None


def task_cpu_percent(s: TaskSample) -> float | None:
    return percent(s.cpu_units, s.cpu_reserved)


def task_memory_percent(s: TaskSample) -> float | None:
    return percent(s.memory_bytes, s.memory_reserved_mib * MIB)


@dataclass
class Totals:
    """Running sums of the formula's terms: samples are added one at a time (a history
    bucket keeps one of these, not its samples) and the ratio read at any time."""

    cpu_used: float = 0.0
    cpu_reserved: float = 0.0
    memory_used: float = 0.0
    memory_reserved: float = 0.0
    samples: int = 0

    def add(self, s: TaskSample) -> None:
        self.samples += 1
        if s.cpu_reserved > 0:
            self.cpu_used += s.cpu_units
            self.cpu_reserved += s.cpu_reserved
        if s.memory_reserved_mib > 0:
            self.memory_used += s.memory_bytes
            self.memory_reserved += s.memory_reserved_mib * MIB

    def result(self) -> Utilization:
        return Utilization(
            percent(self.cpu_used, self.cpu_reserved),
            percent(self.memory_used, self.memory_reserved),
            self.samples,
        )


def average(samples: Iterable[TaskSample]) -> Utilization:
    """ECS's service average over these samples (one per task for "now", or every sample
    of a period): sum of used over sum of reserved, per resource, x 100."""
    totals = Totals()
    for s in samples:
        totals.add(s)
    return totals.result()


def in_period(samples: Iterable[TaskSample], end: float, period_s: float) -> list[TaskSample]:
    """The samples of the period (end - period_s, end]."""
    return [s for s in samples if end - period_s < s.at <= end]


def service_average(
    samples: Iterable[TaskSample], now: float, period_s: float = 60.0
) -> Utilization:
    """ECSServiceAverage{CPU,Memory}Utilization at `now`: the Average statistic over the last
    period (CloudWatch's 1-minute period by default) of the service's task samples."""
    return average(in_period(samples, now, period_s))
