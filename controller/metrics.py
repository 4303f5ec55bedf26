"""The controller's state gauges, kept from the change feed (a subscriber, like the dispatcher).

`dockyard_tasks{status}` (tasks per lastStatus) and `dockyard_tasks_on_disconnected_instances`
(tasks desired RUNNING on instances whose agent is disconnected: what the disconnect grace
watches; the failure bench and the tests poll it) follow committed task and instance
changes, so a scrape reads two numbers instead of walking 50,000 tasks, and the state's save
path counts nothing. They start from the state as loaded (`StateMetrics` is built after
`StateOfRecord.load()`, the one loader of a restarted controller and of a standby that took
over, whose store's hot copy the load reads) and move with each change after it.

`dockyard_agents_connected` is the dispatcher's open streams, not stored state: it is read
when scraped. The gauges live in the controller's own registry, so two controllers in one
process (tests) do not report each other's counts.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from controller.feed import Change, ChangeFeed
from controller.model import Instance, Task, from_doc
from controller.state import ClusterState


def _obj(change: Change) -> Any:
    """The committed object (a document when another writer committed it: decode it)."""
    return from_doc(change.kind, change.new) if isinstance(change.new, dict) else change.new


def _running_on(task: Task) -> str:
    """The instance a task counts on while its agent is gone: desired RUNNING there."""
    return task.instance_arn if task.desired_status == "RUNNING" else ""


class TaskCounts:
    """Tasks per lastStatus and desired-RUNNING tasks per instance, kept from changes. Pure:
    `StateMetrics` sets the gauges from it."""

    def __init__(self) -> None:
        self.by_status: Counter[str] = Counter()  # zeros stay: a gauge must fall to 0
        self.on_disconnected = 0
        self._status: dict[str, str] = {}  # task ARN -> the lastStatus it is counted under
        self._placed: dict[str, str] = {}  # task ARN -> instance it is desired RUNNING on
        self._running: dict[str, set[str]] = defaultdict(set)  # instance -> those tasks
        self._disconnected: set[str] = set()  # known instances whose agent is gone

    def task(self, arn: str, task: Task | None) -> bool:
        """Count a task as it is now (None: deleted); whether its status count moved. Most
        changes move neither count (a task's other fields changed): those cost two lookups."""
        old = self._status.get(arn)
        status = task.last_status if task is not None else None
        moved = old != status
        if moved:
            if old is not None:
                self.by_status[old] -= 1
            if status is None:
                del self._status[arn]
            else:
                self._status[arn] = status
                self.by_status[status] += 1
        inst = _running_on(task) if task is not None else ""
        if self._placed.get(arn, "") != inst:
            self._place(arn, inst)
        return moved

    def _place(self, arn: str, inst: str) -> None:
        was = self._placed.pop(arn, "")
        if was:
            self._running[was].discard(arn)
            self.on_disconnected -= was in self._disconnected
        if inst:
            self._placed[arn] = inst
            self._running[inst].add(arn)
            self.on_disconnected += inst in self._disconnected

    def instance(self, arn: str, inst: Instance | None) -> None:
        """Note an instance's connection (None: deleted)."""
        gone = inst is not None and not inst.connected
        if gone != (arn in self._disconnected):
            sign = 1 if gone else -1
            self.on_disconnected += sign * len(self._running.get(arn, ()))
            if gone:
                self._disconnected.add(arn)
            else:
                self._disconnected.discard(arn)


class StateMetrics:
    """The gauges, set from `TaskCounts` as the feed reports committed changes."""

    def __init__(
        self, state: ClusterState, feed: ChangeFeed, agents_connected: Callable[[], int]
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.counts = TaskCounts()
        Gauge(
            "dockyard_agents_connected", "agent streams open", registry=self.registry
        ).set_function(lambda: float(agents_connected()))
        self._by_status = Gauge(
            "dockyard_tasks", "tasks by lastStatus", ("status",), registry=self.registry
        )
        self._on_disconnected = Gauge(
            "dockyard_tasks_on_disconnected_instances",
            "tasks desired RUNNING on instances whose agent is disconnected (the grace watches)",
            registry=self.registry,
        )
        for inst in state.instances.values():  # the state as loaded, then the feed
            self.counts.instance(inst.arn, inst)
        self._tasks([Change("task", t.arn, t) for t in state.tasks.values()])
        feed.subscribe(("instance",), self._instances)
        feed.subscribe(("task",), self._tasks)

    def _tasks(self, changes: list[Change]) -> None:
        if any([self.counts.task(c.key, _obj(c)) for c in changes]):  # every change counted
            by_status = self.counts.by_status
            for status, n in by_status.items():  # a handful of statuses
                self._by_status.labels(status).set(n)
        self._on_disconnected.set(self.counts.on_disconnected)

    def _instances(self, changes: list[Change]) -> None:
        for c in changes:
            self.counts.instance(c.key, _obj(c))
        self._on_disconnected.set(self.counts.on_disconnected)
