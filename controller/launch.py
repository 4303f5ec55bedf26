"""A typed task launch: what RunTask, StartTask and the services' orchestrator all hand to
`controller.ops.task_writes.launch`.

A `LaunchSpec` is built once per launch, already checked: the request path
(`from_request`) checks a RunTask/StartTask body's overrides, tags and placement; the
orchestrator builds one from its Service (no request JSON, nothing re-parsed). The task's
reservation (`taskdef.task_resources`) is computed once, into the placement demand, and the
new tasks are made from the spec and their placement (`new_task`). Pure: no I/O.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from controller import placement, taskdef
from controller.capacity.strategy import PROVIDER_ATTRIBUTE
from controller.ecs_extra import Tags, check_tags
from controller.model import Cluster, ContainerState, PortAssignment, Task, TaskDefinition
from controller.placement.model import Constraint, InstanceView, Strategy, TaskDemand
from controller.request_limits import check_overrides_size
from controller.validation import text
from dockyard.arns import ArnFactory
from dockyard.errors import invalid


@dataclass(frozen=True)
class LaunchSpec:
    """`count` tasks of `td` in `cluster`, placed on one of `instances`."""

    cluster: Cluster
    td: TaskDefinition
    count: int
    instances: Sequence[InstanceView]
    demand: TaskDemand  # the reservation (cpu, memory: computed once), ports and group
    constraints: list[Constraint]
    strategies: list[Strategy]
    overrides: dict[str, Any] = field(default_factory=dict)
    started_by: str = ""
    tags: Tags = field(default_factory=list)
    client_token: str = ""
    service: str = ""  # the ECS service the tasks belong to ("" for RunTask/StartTask)
    exec_enabled: bool = False  # enableExecuteCommand: `dockyard exec` may run in the tasks
    capacity_provider: str = ""  # the provider the strategy chose (issue 22)

    @property
    def group(self) -> str:
        return self.demand.group


def from_request(
    cluster: Cluster,
    td: TaskDefinition,
    body: dict[str, Any],
    count: int,
    instances: Sequence[InstanceView],
    td_tags: Tags,
    token: str = "",
) -> LaunchSpec:
    """A RunTask / StartTask body, checked, as a launch (InvalidParameter naming the field)."""
    overrides = check_overrides(td, body.get("overrides") or {})
    given = check_tags(body.get("tags"))
    if body.get("propagateTags", "NONE") == "SERVICE":
        raise invalid("propagateTags", "SERVICE applies to a service's tasks only")
    tags = task_tags(
        given,
        body.get("propagateTags", "NONE"),
        td_tags,
        [],
        bool(body.get("enableECSManagedTags")),
        cluster.name,
    )
    group = text(body, "group") or f"family:{td.family}"
    strategies = strategies_of(body.get("placementStrategy"))
    constraints = constraints_of(body.get("placementConstraints"), td, strategies)
    return LaunchSpec(
        cluster=cluster,
        td=td,
        count=count,
        instances=instances,
        demand=demand_of(td, overrides, group),
        constraints=constraints,
        strategies=strategies,
        overrides=overrides,
        started_by=text(body, "startedBy"),
        tags=tags,
        client_token=token,
        exec_enabled=bool(body.get("enableExecuteCommand", False)),
    )


def on_provider(spec: LaunchSpec, provider: str, count: int) -> LaunchSpec:
    """`count` of the spec's tasks on one capacity provider's instances (issue 22): the
    provider chosen by the strategy becomes an implied memberOf constraint on the attribute
    its agents join with."""
    rule = Constraint("memberOf", f"attribute:{PROVIDER_ATTRIBUTE} == {provider}")
    return replace(
        spec, count=count, constraints=[*spec.constraints, rule], capacity_provider=provider
    )


def waiting_task(spec: LaunchSpec, arns: ArnFactory) -> Task:
    """A task of a provider's launch that found no room (issue 22): PROVISIONING with no
    instance, keeping the placement it waits for, as ECS keeps such a task until its
    provider's group has grown."""
    task = new_task(spec, None, arns)
    task.waiting_for = {
        "constraints": [[c.type, c.expression] for c in spec.constraints],
        "strategies": [[s.type, s.field] for s in spec.strategies],
    }
    return task


def waiting_placement(
    task: Task, td: TaskDefinition
) -> tuple[TaskDemand, list[Constraint], list[Strategy]]:
    """What a waiting task asks of placement: its demand, constraints and strategies."""
    constraints = [Constraint(t, e) for t, e in task.waiting_for.get("constraints", [])]
    strategies = [Strategy(t, f) for t, f in task.waiting_for.get("strategies", [])]
    return demand_of(td, task.overrides, task.group), constraints, strategies


def bind(task: Task, placed: Any) -> None:
    """A waiting task placed at last: its instance and the dynamic host ports chosen (the
    ports `new_task` left at 0, in the same order)."""
    dyn = {"tcp": list(placed.tcp_host_ports), "udp": list(placed.udp_host_ports)}
    for c in task.containers:
        c.ports = [
            p if p.host_port else replace(p, host_port=dyn[p.protocol].pop(0)) for p in c.ports
        ]
    task.instance_arn = placed.instance_arn
    task.waiting_for = {}


def task_tags(
    given: Tags,
    propagate: str,
    td_tags: Tags,
    service_tags: Tags,
    managed: bool,
    cluster: str,
    service: str = "",
) -> Tags:
    """A new task's tags as ECS makes them: the request's own, then those propagated from
    the task definition or the service for keys not given, then ECS's managed tags when
    `enableECSManagedTags` asks for them."""
    tags = list(given)
    source = {"TASK_DEFINITION": td_tags, "SERVICE": service_tags}.get(propagate, [])
    keys = {t["key"] for t in tags}
    tags += [dict(t) for t in source if t["key"] not in keys]
    if managed:
        tags.append({"key": "aws:ecs:clusterName", "value": cluster})
        if service:
            tags.append({"key": "aws:ecs:serviceName", "value": service})
    return tags


def check_overrides(td: TaskDefinition, ov: Any) -> dict[str, Any]:
    """A task's overrides, checked against its definition (names, size, cpu / memory)."""
    if not isinstance(ov, dict):
        raise invalid("overrides", "must be an object")
    check_overrides_size(ov)
    names = {c["name"] for c in td.doc["containerDefinitions"]}
    cos = ov.get("containerOverrides", [])
    if not isinstance(cos, list):
        raise invalid("overrides.containerOverrides", "must be a list")
    for i, co in enumerate(cos):
        name = co.get("name") if isinstance(co, dict) else co
        if name not in names:
            raise invalid(
                f"overrides.containerOverrides[{i}].name",
                f"Override for container named {name!r} is not a container in the TaskDefinition",
            )
    return ov


def constraints_of(raw: Any, td: TaskDefinition, strategies: list[Strategy]) -> list[Constraint]:
    """The launch's constraints (its own, then its definition's), checked with strategies."""
    raw = list(raw or []) + list(td.doc.get("placementConstraints") or [])
    raw += taskdef.taskdef_host.implied_constraints(td.doc)  # issue 18: agent policies
    out = []
    for i, c in enumerate(raw):
        if not isinstance(c, dict):
            raise invalid(f"placementConstraints[{i}]", "must be an object")
        out.append(Constraint(type=str(c.get("type", "")), expression=str(c.get("expression", ""))))
    placement.validate(out, strategies)
    return out


def strategies_of(raw: Any) -> list[Strategy]:
    """The launch's strategies; none given: placement's default for tasks."""
    raw = raw or []
    if not isinstance(raw, list):
        raise invalid("placementStrategy", "must be a list")
    out = []
    for i, s in enumerate(raw):
        if not isinstance(s, dict):
            raise invalid(f"placementStrategy[{i}]", "must be an object")
        out.append(Strategy(type=str(s.get("type", "")), field=str(s.get("field", ""))))
    return out or list(placement.DEFAULT_TASK_STRATEGIES)


def demand_of(td: TaskDefinition, overrides: dict[str, Any], group: str) -> TaskDemand:
    """What one task asks of an instance: its reservation (checks cpu / memory overrides)
    and its ports."""
    cpu, memory = taskdef.task_resources(td.doc, overrides)
    tcp: list[int] = []
    udp: list[int] = []
    dyn_tcp = dyn_udp = 0
    for c in td.doc["containerDefinitions"]:
        for pm in c["portMappings"]:
            is_udp = pm["protocol"] == "udp"
            if pm["hostPort"]:
                (udp if is_udp else tcp).append(pm["hostPort"])
            elif is_udp:
                dyn_udp += 1
            else:
                dyn_tcp += 1
    return TaskDemand(
        cpu=cpu,
        memory=memory,
        tcp_ports=tcp,
        udp_ports=udp,
        dynamic_tcp=dyn_tcp,
        dynamic_udp=dyn_udp,
        group=group,
        gpus=taskdef.taskdef_host.task_gpus(td.doc),  # issue 18: resourceRequirements GPU
    )


def new_task(spec: LaunchSpec, placed: Any, arns: ArnFactory) -> Task:
    """One task of the launch on the instance (and dynamic host ports) placement chose;
    `placed` None: no instance yet, dynamic host ports 0 (`waiting_task`)."""
    task_id = uuid.uuid4().hex
    dyn = {
        "tcp": list(placed.tcp_host_ports) if placed else [],
        "udp": list(placed.udp_host_ports) if placed else [],
    }
    by_name = {o["name"]: o for o in spec.overrides.get("containerOverrides", [])}
    containers = []
    for c in spec.td.doc["containerDefinitions"]:
        o = by_name.get(c["name"], {})
        ports = [
            PortAssignment(
                pm["containerPort"],
                pm["hostPort"] or (dyn[pm["protocol"]].pop(0) if placed else 0),
                pm["protocol"],
            )
            for pm in c["portMappings"]
        ]
        containers.append(
            ContainerState(
                name=c["name"],
                image=c["image"],
                essential=c["essential"],
                cpu=o.get("cpu", c.get("cpu", 0)),
                memory=o.get("memory", c.get("memory", 0)),
                memory_reservation=o.get("memoryReservation", c.get("memoryReservation", 0)),
                ports=ports,
                command=o.get("command"),
                environment=o.get("environment"),
            )
        )
    td = spec.td
    return Task(
        arn=arns.task(spec.cluster.name, task_id),
        id=task_id,
        cluster=spec.cluster.name,
        family=td.family,
        revision=td.revision,
        task_definition_arn=td.arn,
        instance_arn=placed.instance_arn if placed else "",
        containers=containers,
        cpu=spec.demand.cpu,
        memory=spec.demand.memory,
        group=spec.group,
        started_by=spec.started_by,
        service=spec.service,
        client_token=spec.client_token,
        overrides=spec.overrides,
        tags=spec.tags,
        exec_enabled=spec.exec_enabled,
        capacity_provider=spec.capacity_provider,
    )
