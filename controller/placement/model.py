"""What placement sees and what it answers: plain snapshots, no I/O.

The controller builds an `InstanceView` per container instance and a `TaskDemand` per task,
calls `engine.place`, and commits the `Placement`s it gets back; `Failure`s carry an ECS-style
reason and the instance counts behind it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Failure reasons, in the order the filters run (see feasible.FILTER_ORDER). The "closest" reason -
# the filter furthest along the chain that still eliminated an instance - becomes Failure.reason.
MISSING = "MISSING"  # no container instance in the cluster at all
INACTIVE = "INACTIVE"  # instance status is neither ACTIVE nor DRAINING (e.g. INACTIVE, REGISTERING)
DRAINING = "DRAINING"  # instance is DRAINING: ECS places nothing new on it
AGENT = "AGENT"  # ACTIVE instance whose agent is not connected (ECS's AGENT reason)
CPU = "RESOURCE:CPU"
MEMORY = "RESOURCE:MEMORY"
GPU = "RESOURCE:GPU"  # fewer free GPUs than the task's resourceRequirements ask (issue 18)
PORTS = "RESOURCE:PORTS"  # a static tcp host port is taken, or too few free ephemeral tcp ports
PORTS_UDP = "RESOURCE:PORTS_UDP"  # the same for udp
MISSING_ATTRIBUTE = "MissingAttribute"  # memberOf is false and names an attribute the host lacks
ATTRIBUTE = "ATTRIBUTE"  # memberOf is false on this instance's attributes / fields
DISTINCT_INSTANCE = "DistinctInstance"  # distinctInstance: a task of the group is already there


@dataclass(slots=True)
class InstanceView:
    """One container instance as placement sees it: a snapshot the engine never mutates."""

    arn: str
    instance_id: str
    status: str
    connected: bool
    attributes: dict[str, str]
    agent_version: str
    registered_at: float
    cpu_free: int
    memory_free: int
    tcp_ports_used: set[int]
    udp_ports_used: set[int]
    running_tasks_count: int
    task_groups: dict[str, int]
    cpu_total: int = 0
    memory_total: int = 0
    gpu_free: int = 0


@dataclass(slots=True)
class TaskDemand:
    """One task to place; identical demands in one call are placed as a group."""

    cpu: int
    memory: int
    tcp_ports: list[int] = field(default_factory=list)
    udp_ports: list[int] = field(default_factory=list)
    dynamic_tcp: int = 0
    dynamic_udp: int = 0
    group: str = ""
    gpus: int = 0

    def shape(self) -> tuple[object, ...]:
        """A hashable key: demands with equal shapes are interchangeable."""
        return (
            self.cpu,
            self.memory,
            tuple(self.tcp_ports),
            tuple(self.udp_ports),
            self.dynamic_tcp,
            self.dynamic_udp,
            self.group,
            self.gpus,
        )


@dataclass(slots=True)
class Constraint:
    """ECS placementConstraint: `distinctInstance` or `memberOf` with a query expression."""

    type: str
    expression: str = ""


@dataclass(slots=True)
class Strategy:
    """ECS placementStrategy: binpack(cpu|memory), spread(instanceId|host|attribute:X), random."""

    type: str
    field: str = ""


@dataclass(slots=True)
class Placement:
    instance_arn: str
    tcp_host_ports: list[int]
    udp_host_ports: list[int]


@dataclass(slots=True)
class Failure:
    """Why a task could not be placed: the closest reason and a sentence with all counts."""

    reason: str
    detail: str
    counts: dict[str, int] = field(default_factory=dict)


class ChangeLog:
    """ARNs of instances whose views changed in place, in order: readers keep a cursor and
    re-check only what changed since (standing placement trees). Bounded: a reader whose
    cursor fell off the start is told to start over."""

    def __init__(self, limit: int = 1 << 16) -> None:
        self._items: list[str] = []
        self._base = 0  # the cursor of _items[0]
        self._limit = limit

    @property
    def cursor(self) -> int:
        return self._base + len(self._items)

    def append(self, arn: str) -> None:
        self._items.append(arn)
        if len(self._items) > self._limit:
            drop = len(self._items) // 2
            del self._items[:drop]
            self._base += drop

    def since(self, cursor: int) -> list[str] | None:
        """What changed after `cursor`, or None when that history is gone."""
        if cursor < self._base:
            return None
        return self._items[cursor - self._base :]


class LiveViews(list[InstanceView]):
    """A cluster's views as the state keeps them: each view changes in place as tasks claim
    and release resources, and every such change is appended to `changes`. Any other change
    (status, connection, attributes) replaces the view and so the whole list."""

    def __init__(self, views: list[InstanceView], changes: ChangeLog) -> None:
        super().__init__(views)
        self.changes = changes
        self.position = {v.arn: n for n, v in enumerate(views)}  # ARN -> index
