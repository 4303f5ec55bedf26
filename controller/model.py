"""The controller's state objects: plain dataclasses, serialised to JSON documents in the store.

They carry Dockyard's own field names; `controller.ecs_views` renders them in ECS's
response shapes. Status values are ECS's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

TASK_STATUSES = (
    "PROVISIONING",
    "PENDING",
    "ACTIVATING",
    "RUNNING",
    "DEACTIVATING",
    "STOPPING",
    "DEPROVISIONING",
    "STOPPED",
)
STATUS_RANK = {s: i for i, s in enumerate(TASK_STATUSES)}
CONTAINER_STATUSES = ("PENDING", "RUNNING", "STOPPED")
INSTANCE_STATUSES = ("ACTIVE", "DRAINING", "INACTIVE", "DEREGISTERING", "REGISTERING")


def now() -> float:
    return time.time()


@dataclass
class Cluster:
    name: str
    arn: str
    status: str = "ACTIVE"
    created_at: float = field(default_factory=now)
    tags: list[dict[str, str]] = field(default_factory=list)
    # kept as given and returned (controller.ops.clusters; README lists what they change)
    settings: list[dict[str, str]] = field(default_factory=list)
    configuration: dict[str, Any] = field(default_factory=dict)
    service_connect_namespace: str = ""

    @property
    def key(self) -> str:
        return self.name


@dataclass
class TaskDefinition:
    """A registered revision. `doc` is the normalised ECS document (what Describe returns)."""

    family: str
    revision: int
    status: str
    doc: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{self.family}:{self.revision}"

    @property
    def arn(self) -> str:
        return str(self.doc["taskDefinitionArn"])


@dataclass
class PortAssignment:
    container_port: int
    host_port: int
    protocol: str = "tcp"


@dataclass
class ContainerState:
    """One container of a task: its resolved spec (after overrides) and its runtime state."""

    name: str
    image: str
    essential: bool = True
    cpu: int = 0
    memory: int = 0
    memory_reservation: int = 0
    ports: list[PortAssignment] = field(default_factory=list)
    last_status: str = "PENDING"
    exit_code: int | None = None
    reason: str = ""
    runtime_id: str = ""
    health: str = "UNKNOWN"
    bindings: list[dict[str, Any]] = field(default_factory=list)
    image_digest: str = ""  # what the agent ran (registry digest, else image id)
    command: list[str] | None = None
    environment: list[dict[str, str]] | None = None
    restart_count: int = 0  # restarts by the container's restartPolicy (issue 18)
    gpu_ids: list[str] = field(default_factory=list)  # the GPUs the agent gave it


@dataclass
class Task:
    arn: str
    id: str
    cluster: str
    family: str
    revision: int
    task_definition_arn: str
    instance_arn: str
    containers: list[ContainerState]
    cpu: int
    memory: int
    group: str
    desired_status: str = "RUNNING"
    last_status: str = "PROVISIONING"
    stop_code: str = ""
    stopped_reason: str = ""
    started_by: str = ""
    service: str = ""
    client_token: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    tags: list[dict[str, str]] = field(default_factory=list)
    connectivity: str = "CONNECTED"
    connectivity_at: float = field(default_factory=now)
    created_at: float = field(default_factory=now)
    pull_started_at: float | None = None
    pull_stopped_at: float | None = None
    started_at: float | None = None
    stopping_at: float | None = None
    stopped_at: float | None = None
    health: str = "UNKNOWN"
    version: int = 1
    exec_enabled: bool = False  # enableExecuteCommand (RunTask/StartTask or its service)
    protected_until: float = 0.0  # scale-in protection's expiry (epoch s); 0: not protected
    # issue 22: the capacity provider the task was launched on (ECS's capacityProviderName)
    capacity_provider: str = ""
    # a PROVISIONING task waiting for its provider's capacity (no instance yet): the
    # placement it waits for, {"constraints": [[type, expression]], "strategies": [[type,
    # field]]}; emptied once placed
    waiting_for: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.arn

    @property
    def active(self) -> bool:
        """Holds resources on its instance: everything short of STOPPED."""
        return self.last_status != "STOPPED"

    @property
    def waiting(self) -> bool:
        """PROVISIONING without an instance: waiting for its capacity provider's room."""
        return self.active and not self.instance_arn and bool(self.waiting_for)

    @property
    def token_key(self) -> tuple[str, str] | None:
        """RunTask idempotency key: (cluster, clientToken)."""
        return (self.cluster, self.client_token) if self.client_token else None


@dataclass
class Instance:
    """A container instance: a Docker host whose agent registered."""

    arn: str
    id: str
    cluster: str
    hostname: str = ""
    address: str = ""
    status: str = "ACTIVE"
    connected: bool = False
    registered_at: float = field(default_factory=now)
    agent_version: str = ""
    docker_version: str = ""
    cpu_total: int = 0
    memory_total: int = 0
    reserved_tcp: list[int] = field(default_factory=list)
    reserved_udp: list[int] = field(default_factory=list)
    gpu_ids: list[str] = field(default_factory=list)  # reported by the agent (issue 18)
    attributes: dict[str, str] = field(default_factory=dict)  # reported by the agent
    custom_attributes: dict[str, str] = field(default_factory=dict)  # set with PutAttributes
    epoch: int = 0
    docker_healthy: bool = True
    disconnected_at: float | None = None
    tags: list[dict[str, str]] = field(default_factory=list)
    version: int = 1

    @property
    def key(self) -> str:
        return self.arn

    @property
    def all_attributes(self) -> dict[str, str]:
        return self.attributes | self.custom_attributes


def to_doc(obj: Any) -> dict[str, Any]:
    """A JSON-ready dict of a state object. Shallow copies: json.dumps in the store writer
    reads them on the same event loop, and dataclasses.asdict's deep copy was the store's
    main cost at scale."""
    doc = dict(obj.__dict__)
    if isinstance(obj, Task):
        doc["containers"] = [
            {**c.__dict__, "ports": [dict(p.__dict__) for p in c.ports]} for c in obj.containers
        ]
    return doc


def task_from_doc(doc: dict[str, Any]) -> Task:
    containers = [
        ContainerState(**{**c, "ports": [PortAssignment(**p) for p in c.get("ports", [])]})
        for c in doc.pop("containers")
    ]
    return Task(containers=containers, **doc)


def from_doc(kind: str, doc: dict[str, Any]) -> Any:
    """Rebuild an object from its stored document (the inverse of to_doc)."""
    if kind == "task":
        return task_from_doc(dict(doc))
    return {"cluster": Cluster, "taskdef": TaskDefinition, "instance": Instance}[kind](**doc)
