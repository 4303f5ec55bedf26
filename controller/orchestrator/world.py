"""What the planner sees and what it answers: small frozen snapshots, no I/O.

The scheduler builds a `World` per service from the cluster state (instances as `Node`s,
the service's unfinished tasks as `Member`s); the planner answers with a `Plan`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.orchestrator.model import Service


@dataclass(frozen=True)
class Node:
    """A container instance as the service scheduler sees it."""

    arn: str
    id: str
    status: str  # ACTIVE | DRAINING | ...
    reachable: bool  # agent connected and its Docker engine answering
    down_for: float = 0.0  # seconds since it became unreachable
    zone: str = ""  # value of the spread attribute used to balance scale-in
    eligible: bool = True  # meets the service's memberOf constraints (DAEMON)


@dataclass(frozen=True)
class Member:
    """One unfinished task of the service."""

    arn: str
    deployment: str  # the deployment id (the task's startedBy)
    instance: str
    status: str  # lastStatus
    desired: str  # desiredStatus
    health: str  # HEALTHY when running and every checked essential container is healthy
    created_at: float = 0.0
    protected_until: float = 0.0  # scale-in protection's expiry: until then scale-in and
    # rollouts skip the task (0: not protected)

    def protected(self, now: float) -> bool:
        return self.protected_until > now

    @property
    def running(self) -> bool:
        return self.status == "RUNNING"

    @property
    def healthy(self) -> bool:
        return self.running and self.health == "HEALTHY"


@dataclass(frozen=True)
class World:
    nodes: dict[str, Node]
    tasks: list[Member]
    now: float
    grace: float  # the disconnect grace for this service


@dataclass(frozen=True)
class Start:
    deployment: str
    count: int
    instance: str = ""  # DAEMON: on this instance only


@dataclass(frozen=True)
class Stop:
    task: str
    reason: str
    failure: bool = False  # counts against the deployment and the retry delay (unhealthy)
    # a lost task stopped only once a replacement has started (planner.replaced): while
    # none can be placed (the whole fleet gone), the original is kept for its agent's return
    until_replaced: bool = False


@dataclass
class Plan:
    service: Service  # the service's next state (a copy; the input is not touched)
    starts: list[Start] = field(default_factory=list)
    stops: list[Stop] = field(default_factory=list)
