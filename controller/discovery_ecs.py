"""ECS `serviceRegistries` (issue 21): a service's tasks as Cloud Map instances.

A task of a service with registries is registered (instance id = the task id, as ECS does)
while it is RUNNING, its instance connected, and - when its definition has a health check -
HEALTHY; it is deregistered as soon as any of that stops being true (stopped, unhealthy,
its instance lost). The attributes are ECS's: AWS_INSTANCE_IPV4 (the host's address: bridge
and host mode publish on it), AWS_INSTANCE_PORT (the host port of `containerName`:
`containerPort`), ECS_CLUSTER_NAME, ECS_SERVICE_NAME, ECS_TASK_DEFINITION_FAMILY and
AVAILABILITY_ZONE (the instance's `zone` attribute).

Driven by the change feed, never by calls in the task lifecycle: `EcsRegistrations`
subscribes to tasks, instances and services, notes which tasks to look at, and a loop
brings each one's registrations to what it should be (level-triggered: what it computes
does not depend on which change woke it).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from controller.feed import TASK_STOPPED, Change
from controller.model import Task
from controller.ops.discovery_state import Discovery
from dockyard.errors import ApiError, invalid

if TYPE_CHECKING:
    from controller.discovery import ServiceDiscovery
    from controller.model import TaskDefinition
    from controller.orchestrator.scheduler import ServiceScheduler

log = logging.getLogger(__name__)
ECS_ATTRS = ("ECS_CLUSTER_NAME", "ECS_SERVICE_NAME")


def check_registries(
    raw: list[dict[str, Any]], td: TaskDefinition, discovery: Discovery | None
) -> list[dict[str, Any]]:
    """CreateService/UpdateService's `serviceRegistries`, checked as ECS checks them for the
    bridge and host network modes: one registry, a Cloud Map service of this controller,
    and (for SRV records) the container and port of the task definition that serve it."""
    if not raw:
        return []
    if len(raw) > 1:
        raise invalid("serviceRegistries", "at most one registry per service (as ECS)")
    reg = dict(raw[0])
    where = "serviceRegistries[0]"
    if discovery is None:
        raise invalid(where, "service discovery is not available on this controller")
    arn = reg.get("registryArn", "")
    try:
        svc = discovery.service(arn)
    except ApiError:
        raise invalid(f"{where}.registryArn", f"{arn[:200]!r} is no Cloud Map service") from None
    if svc["Arn"] != arn:
        raise invalid(f"{where}.registryArn", "must be the Cloud Map service's ARN")
    if "port" in reg:
        raise invalid(
            f"{where}.port", "is for the awsvpc network mode: give containerName and containerPort"
        )
    srv = any(r["Type"] == "SRV" for r in svc.get("DnsConfig", {}).get("DnsRecords", []))
    named = "containerName" in reg or "containerPort" in reg
    if srv and not ("containerName" in reg and "containerPort" in reg):
        raise invalid(where, "the registry has SRV records: give containerName and containerPort")
    if named:
        _check_container(reg, td, where)
    return [reg]


def _check_container(reg: dict[str, Any], td: TaskDefinition, where: str) -> None:
    if "containerName" not in reg or "containerPort" not in reg:
        raise invalid(where, "containerName and containerPort go together")
    defs = {c["name"]: c for c in td.doc.get("containerDefinitions", [])}
    c = defs.get(reg["containerName"])
    if c is None:
        raise invalid(f"{where}.containerName", f"{td.key} has no container {reg['containerName']}")
    ports = {m.get("containerPort") for m in c.get("portMappings", [])}
    if reg["containerPort"] not in ports:
        raise invalid(
            f"{where}.containerPort",
            f"container {c['name']} maps no containerPort {reg['containerPort']}",
        )


def _has_health_check(td: TaskDefinition | None) -> bool:
    return td is not None and any(
        c.get("healthCheck") for c in td.doc.get("containerDefinitions", [])
    )


class EcsRegistrations:
    """Keeps each service task's Cloud Map registrations what they should be."""

    def __init__(self, sched: ServiceScheduler, discovery: ServiceDiscovery) -> None:
        self.sched = sched
        self.state = sched.cs.state
        self.d = discovery.state
        self.instances = discovery.instances
        self.pending: set[str] = set()  # task ARNs to look at
        self._wake = asyncio.Event()
        self._warned: set[str] = set()  # instances without an address, logged once
        self.by_task: dict[tuple[str, str], set[str]] = {}  # (cluster, task id) -> service ids
        self.settled: Callable[[], None] = lambda: None  # after each batch: the stop gate's
        for doc in self.d.instances.values():
            attrs = doc["Attributes"]
            if all(a in attrs for a in ECS_ATTRS):
                key = (attrs["ECS_CLUSTER_NAME"], doc["Id"])
                self.by_task.setdefault(key, set()).add(doc["ServiceId"])
                self.pending.add(sched.cs.arns.task(*key))  # may have stopped meanwhile
        feed = sched.cs.feed
        feed.subscribe(("task", TASK_STOPPED), self._tasks_changed)
        feed.subscribe(("instance",), self._instances_changed)
        feed.subscribe(("service",), self._services_changed)

    # ------------------------------------------------------------ feed subscribers

    def _note(self, arns: Any) -> None:
        self.pending.update(arns)
        if self.pending:
            self._wake.set()

    def _tasks_changed(self, changes: list[Change]) -> None:
        self._note(c.key for c in changes)

    def _instances_changed(self, changes: list[Change]) -> None:
        keys = {c.key for c in changes}
        self._note(t.arn for t in self.state.tasks.values() if t.instance_arn in keys and t.service)

    def _services_changed(self, changes: list[Change]) -> None:
        for c in changes:
            svc = self.sched.services.get(c.key)
            if svc is not None:
                tasks = self.state.service_tasks(svc.cluster, svc.name)
                self._note(t.arn for t in tasks)
                ids = [k for k in self.by_task if k[0] == svc.cluster]
                self._note(self.sched.cs.arns.task(*k) for k in ids)

    # ------------------------------------------------------------ the loop

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self.pending = self.pending, set()
            for arn in batch:
                try:
                    await self.reconcile(arn)
                except ApiError as err:  # a registry deleted under a service: say so, go on
                    log.warning("service registry of task %s: %s", arn, err.message)
                except Exception:
                    log.exception("service registry of task %s", arn)
            self.settled()  # stops waiting for these deregistrations may go (discovery_gate)

    def registered(self, task: Task) -> bool:
        """Whether the task is (still) registered in some Cloud Map service."""
        return (task.cluster, task.arn.rsplit("/", 1)[-1]) in self.by_task

    def wanted(self, task: Task) -> dict[str, dict[str, str]]:
        """Cloud Map service id -> the attributes the task should be registered with."""
        svc = self.sched.find(task.cluster, task.service) if task.service else None
        registries = getattr(svc, "registries", None) or []
        inst = self.state.instances.get(task.instance_arn)
        td = self.state.taskdefs.get(task.family, {}).get(task.revision)
        up = task.last_status == "RUNNING" and task.desired_status == "RUNNING"
        healthy = task.health == "HEALTHY" or (
            task.health != "UNHEALTHY" and not _has_health_check(td)
        )
        if svc is None or inst is None or not inst.connected or not up or not healthy:
            return {}
        if registries and not _ipv4(inst.address):
            if inst.arn not in self._warned:
                self._warned.add(inst.arn)
                log.warning(
                    "instance %s has no IPv4 address (%r): start its agent with --address to "
                    "register its tasks in Cloud Map",
                    inst.id,
                    inst.address,
                )
            return {}
        out = {}
        for reg in registries:
            sid = reg["registryArn"].rsplit("/", 1)[-1]
            attrs = {
                "AWS_INSTANCE_IPV4": inst.address,
                "ECS_CLUSTER_NAME": task.cluster,
                "ECS_SERVICE_NAME": svc.name,
                "ECS_TASK_DEFINITION_FAMILY": task.family,
            }
            zone = inst.all_attributes.get("zone")
            if zone:
                attrs["AVAILABILITY_ZONE"] = zone
            port = _host_port(task, reg)
            if port:
                attrs["AWS_INSTANCE_PORT"] = str(port)
            out[sid] = attrs
        return out

    async def reconcile(self, arn: str) -> None:
        task = self.state.tasks.get(arn)
        cluster, _, tid = arn.rpartition(":task/")[2].partition("/")
        key = (cluster, tid)
        want = self.wanted(task) if task is not None else {}
        have = self.by_task.get(key, set())
        for sid in have - set(want):
            if sid in self.d.services and tid in {i["Id"] for i in self.d.service_instances(sid)}:
                await self.instances.remove(sid, tid)
            have.discard(sid)
        for sid, attrs in want.items():
            current = self.d.instances.get(f"{sid}/{tid}")
            if current is None or current["Attributes"] != attrs:
                health = "HEALTHY"
                await self.instances.put(sid, tid, attrs, health)
            self.by_task.setdefault(key, set()).add(sid)
        if not self.by_task.get(key):
            self.by_task.pop(key, None)


def _ipv4(address: str) -> bool:
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        return False
    return True


def _host_port(task: Task, reg: dict[str, Any]) -> int:
    """The host port of the registry's containerName:containerPort (0: none named)."""
    for c in task.containers:
        if c.name != reg.get("containerName"):
            continue
        for p in c.ports:
            if p.container_port == reg.get("containerPort") and p.host_port:
                return p.host_port
        for b in c.bindings:
            if b.get("containerPort") == reg.get("containerPort") and b.get("hostPort"):
                return int(b["hostPort"])
    return 0
