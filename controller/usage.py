"""Recent CPU and memory of tasks, services and instances, in memory, bounded (~1 h).

Agents send a UsageReport every 15 s or so (agent/stats.py): per task, per container, the
CPU units used over the window and the memory in use. `UsageHistory` keeps
- per task: its latest sample and a few before it (`TASK_SAMPLES`), and its containers'
  latest figures: for `dockyard top`, /metrics and "now" averages;
- per service: one `Totals` per `BUCKET_S` (20 s) bucket for `HORIZON_S` (1 h): the
  service's utilisation over time, as ECS's formula on every sample of the bucket
  (controller/utilization.py). Memory is O(services x 180 + tasks x 8), whatever the
  report rate.
Nothing is stored: a controller restart starts an empty history (agents refill it).

The one interface for readers (the web console plots it; auto scaling reads the average):
    service_history(cluster, service) -> [(t, cpu %, mem %)]   # t: bucket start, epoch s
    service_now(cluster, service, now=None) -> Utilization    # ECSServiceAverage*Utilization
    tasks(cluster) -> [TaskRow]                               # latest per task
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.model import Task
from controller.utilization import TaskSample, Totals, Utilization, average, in_period
from dockyard.v1 import agent_pb2

HORIZON_S = 3600.0  # how far back the history goes
BUCKET_S = 20.0  # one point of a service's history (ECS publishes per 20 s as well)
TASK_SAMPLES = 8  # per task: enough for a minute's average at the default report rate
PRUNE_EVERY_S = 60.0
CURRENT_S = 60.0  # a task's latest sample counts as "now" for this long (the ECS period)


@dataclass
class ContainerRow:
    name: str
    cpu_units: float
    memory_bytes: int
    memory_limit_bytes: int


@dataclass
class TaskRow:
    """A task's latest usage and where it runs."""

    task_arn: str
    cluster: str
    service: str  # "" for a task of no service
    group: str
    family: str
    instance_arn: str
    containers: list[ContainerRow]
    samples: deque[TaskSample] = field(default_factory=lambda: deque(maxlen=TASK_SAMPLES))

    @property
    def latest(self) -> TaskSample:
        return self.samples[-1]


Series = list[tuple[float, float | None, float | None]]


class UsageHistory:
    def __init__(self, horizon_s: float = HORIZON_S, bucket_s: float = BUCKET_S) -> None:
        self.horizon_s, self.bucket_s = horizon_s, bucket_s
        self.by_task: dict[str, TaskRow] = {}
        # (cluster, service) -> bucket index -> Totals
        self.buckets: dict[tuple[str, str], dict[int, Totals]] = {}
        self._pruned_at = 0.0

    # ------------------------------------------------------------ writing

    def ingest(
        self,
        instance_arn: str,
        report: agent_pb2.UsageReport,
        tasks: Mapping[str, Task],
        now: float | None = None,
    ) -> list[str]:
        """Record a report from an instance's agent. Only tasks the state has on that
        instance are taken (an agent speaks for its own tasks only); the others' ARNs are
        returned, for the dispatcher to refuse."""
        now = time.time() if now is None else now
        refused = []
        for tu in report.tasks:
            task = tasks.get(tu.task_arn)
            if task is None or task.instance_arn != instance_arn:
                refused.append(tu.task_arn)
                continue
            self._record(task, tu, now)
        if now - self._pruned_at >= PRUNE_EVERY_S:  # not per report: O(tasks) each time
            self.prune(now)
        return refused

    def _record(self, task: Task, tu: agent_pb2.TaskUsage, now: float) -> None:
        containers = [
            ContainerRow(c.name, c.cpu_units, c.memory_bytes, c.memory_limit_bytes)
            for c in tu.containers
        ]
        row = self.by_task.get(task.arn)
        if row is None:
            row = self.by_task[task.arn] = TaskRow(
                task.arn, task.cluster, task.service, task.group, task.family, "", []
            )
        row.instance_arn, row.containers = task.instance_arn, containers
        sample = TaskSample(
            at=now,
            cpu_units=sum(c.cpu_units for c in containers),
            memory_bytes=sum(c.memory_bytes for c in containers),
            cpu_reserved=task.cpu,
            memory_reserved_mib=task.memory,
        )
        row.samples.append(sample)
        if task.service:
            series = self.buckets.setdefault((task.cluster, task.service), {})
            series.setdefault(int(now // self.bucket_s), Totals()).add(sample)

    def prune(self, now: float) -> None:
        """Forget what is older than the horizon: tasks last heard of then, old buckets."""
        self._pruned_at = now
        oldest = now - self.horizon_s
        for arn in [a for a, r in self.by_task.items() if r.latest.at < oldest]:
            del self.by_task[arn]
        first = int(oldest // self.bucket_s)
        for key, series in list(self.buckets.items()):
            for b in [b for b in series if b < first]:
                del series[b]
            if not series:
                del self.buckets[key]

    # ------------------------------------------------------------ reading

    def tasks(self, cluster: str, now: float | None = None) -> list[TaskRow]:
        """Tasks of the cluster with a sample in the last CURRENT_S (running now)."""
        now = time.time() if now is None else now
        return [
            r
            for r in self.by_task.values()
            if r.cluster == cluster and r.latest.at > now - CURRENT_S
        ]

    def service_history(self, cluster: str, service: str) -> Series:
        """The service's utilisation per bucket over the last hour, oldest first:
        (bucket start in epoch seconds, CPU %, memory %), None where nothing is reserved."""
        series = self.buckets.get((cluster, service), {})
        out: Series = []
        for b in sorted(series):
            u = series[b].result()
            out.append((b * self.bucket_s, u.cpu, u.memory))
        return out

    def service_now(self, cluster: str, service: str, now: float | None = None) -> Utilization:
        """ECSServiceAverage{CPU,Memory}Utilization now: every sample of the service's
        tasks in the last CURRENT_S (one minute)."""
        now = time.time() if now is None else now
        samples = [
            s
            for r in self.by_task.values()
            if r.cluster == cluster and r.service == service
            for s in in_period(r.samples, now, CURRENT_S)
        ]
        return average(samples)

    def services(self, cluster: str, now: float | None = None) -> dict[str, list[TaskRow]]:
        """The cluster's current tasks by service (tasks of no service left out)."""
        out: dict[str, list[TaskRow]] = {}
        for r in self.tasks(cluster, now):
            if r.service:
                out.setdefault(r.service, []).append(r)
        return out

    def instances(self, cluster: str, now: float | None = None) -> dict[str, list[TaskRow]]:
        """The cluster's current tasks by instance ARN."""
        out: dict[str, list[TaskRow]] = {}
        for r in self.tasks(cluster, now):
            out.setdefault(r.instance_arn, []).append(r)
        return out

    def clusters(self) -> set[str]:
        return {r.cluster for r in self.by_task.values()}
