"""Services and deployments: plain dataclasses, stored as JSON documents of kind "service".

Field names are Dockyard's; `controller.orchestrator.views` renders ECS's shapes. Everything
the planner needs to remember between passes (failure streak, retry time, steady flag,
notice times) is a field here, so the planner's state is explicit and survives restarts.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from dataclasses import dataclass, field
from typing import Any

from dockyard.errors import invalid

MAX_EVENTS = 100  # ECS keeps the newest 100 service events
MAX_PAST = 50  # finished deployments kept per service (ECS: 90 days' worth)
PAST_KEEP_S = 90 * 86400
GRACE_TAG = "dockyard:disconnect-grace"  # per-service override of the disconnect grace (s)


def grace_from_tags(tags: list[dict[str, str]]) -> float | None:
    """The service's disconnect grace from its GRACE_TAG tag (None: the cluster default)."""
    for i, tag in enumerate(tags):
        if tag.get("key") != GRACE_TAG:
            continue
        try:
            value = float(tag.get("value", ""))
        except ValueError:
            value = -1.0
        if not (0 <= value <= 86400 and math.isfinite(value)):
            raise invalid(f"tags[{i}].value", f"{GRACE_TAG} takes seconds from 0 to 86400")
        return value
    return None


@dataclass
class Deployment:
    id: str
    task_definition: str  # family:revision
    task_definition_arn: str
    created_at: float
    updated_at: float
    status: str = "PRIMARY"  # PRIMARY | ACTIVE
    rollout_state: str = "IN_PROGRESS"  # IN_PROGRESS | COMPLETED | FAILED
    rollout_reason: str = ""
    failed_tasks: int = 0
    sources: list[str] = field(default_factory=list)  # deployments live when it started
    superseded_at: float = 0.0  # when a newer deployment replaced it as PRIMARY
    rollback_of: str = ""  # the failed deployment whose circuit breaker started this one


@dataclass
class ServiceEvent:
    id: str
    at: float
    message: str


@dataclass
class Service:
    name: str
    arn: str
    cluster: str
    task_definition: str  # family:revision of the PRIMARY deployment
    task_definition_arn: str
    desired_count: int
    scheduling: str = "REPLICA"  # REPLICA | DAEMON
    status: str = "ACTIVE"  # ACTIVE | DRAINING | INACTIVE
    min_healthy: int = 100
    max_percent: int = 200
    breaker: bool = False
    rollback: bool = False
    constraints: list[dict[str, str]] = field(default_factory=list)
    strategies: list[dict[str, str]] = field(default_factory=list)
    # capacityProviderStrategy (issue 22): [{capacityProvider, base, weight}]
    capacity_strategy: list[dict[str, Any]] = field(default_factory=list)
    tags: list[dict[str, str]] = field(default_factory=list)
    propagate_tags: str = "NONE"  # NONE | SERVICE | TASK_DEFINITION: tags its tasks get
    managed_tags: bool = False  # enableECSManagedTags: aws:ecs:{cluster,service}Name on tasks
    exec_enabled: bool = False  # enableExecuteCommand: its new tasks allow `dockyard exec`
    registries: list[dict[str, Any]] = field(default_factory=list)  # serviceRegistries (21)
    role_arn: str = ""  # CreateService's role, shown as roleArn (Dockyard assumes no role)
    client_token: str = ""
    grace: float | None = None  # from the GRACE_TAG tag; None = the cluster default
    created_at: float = 0.0
    deployments: list[Deployment] = field(default_factory=list)  # PRIMARY first
    past: list[Deployment] = field(default_factory=list)  # drained ones, newest first
    events: list[ServiceEvent] = field(default_factory=list)  # newest first
    event_seq: int = 0
    last_completed: tuple[str, str] | None = None  # (family:revision, arn) last COMPLETED
    failure_streak: int = 0  # failed tasks in a row (reset by a steady state or a deployment)
    retry_at: float = 0.0  # no launches before this (growing delays after failures)
    steady: bool = False
    steady_event_at: float = 0.0
    notices: dict[str, float] = field(default_factory=dict)  # message key -> last posted

    @property
    def key(self) -> str:
        return self.arn

    @property
    def primary(self) -> Deployment:
        return self.deployments[0]

    def deployment(self, dep_id: str) -> Deployment | None:
        return next((d for d in self.deployments if d.id == dep_id), None)


def add_event(svc: Service, message: str, at: float) -> None:
    """Prepend an ECS service event (newest first, capped like ECS's)."""
    svc.event_seq += 1
    eid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{svc.arn}#{svc.event_seq}"))
    svc.events.insert(0, ServiceEvent(eid, at, f"(service {svc.name}) {message}"))
    del svc.events[MAX_EVENTS:]


def notice(svc: Service, key: str, message: str, at: float, every: float = 60.0) -> bool:
    """Post a repeated condition (unable to place, backing off) at most every `every` s."""
    if at - svc.notices.get(key, float("-inf")) < every:
        return False
    svc.notices[key] = at
    add_event(svc, message, at)
    return True


def deployment_id(svc: Service, now: float) -> str:
    """ECS's `ecs-svc/<19 digits>`: from the time, unique within the service."""
    n = int(now * 1e6) % 10**19
    taken = {d.id for d in svc.deployments}
    while f"ecs-svc/{n:019d}" in taken:
        n += 1
    return f"ecs-svc/{n:019d}"


def new_deployment(svc: Service, family_rev: str, arn: str, now: float) -> Deployment:
    """Make a PRIMARY deployment of `family_rev`; the previous PRIMARY becomes ACTIVE."""
    sources = [d.id for d in svc.deployments]
    for d in svc.deployments:
        if d.status == "PRIMARY":
            d.superseded_at = now
        d.status = "ACTIVE"
    dep = Deployment(deployment_id(svc, now), family_rev, arn, now, now, sources=sources)
    svc.deployments.insert(0, dep)
    svc.task_definition, svc.task_definition_arn = family_rev, arn
    svc.failure_streak, svc.retry_at, svc.steady = 0, 0.0, False
    return dep


def retire(svc: Service, drained: list[Deployment], now: float) -> None:
    """Keep drained deployments as history (ListServiceDeployments), as ECS does for 90
    days; at most MAX_PAST per service so a service document stays small."""
    svc.past[:0] = drained
    svc.past = [d for d in svc.past[:MAX_PAST] if now - d.updated_at < PAST_KEEP_S]


def to_doc(svc: Service) -> dict[str, Any]:
    return dataclasses.asdict(svc)


def service_from_doc(doc: dict[str, Any]) -> Service:
    doc = dict(doc)
    doc["deployments"] = [Deployment(**d) for d in doc.get("deployments", [])]
    doc["past"] = [Deployment(**d) for d in doc.get("past", [])]
    doc["events"] = [ServiceEvent(**e) for e in doc.get("events", [])]
    if doc.get("last_completed"):
        doc["last_completed"] = tuple(doc["last_completed"])
    return Service(**doc)
