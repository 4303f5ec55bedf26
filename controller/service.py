"""The service layer: ECS's operations over the cluster state, one home for every API.

The native gRPC API, the CLI and the ECS-compatible HTTP endpoint all call
`ClusterService.call(operation, body)`. Each write follows one pattern: decide and mutate
the in-memory state synchronously (so a decision never races another), commit what changed
to the store, and only then acknowledge and tell the agents.
"""

from __future__ import annotations

import logging
import random
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from controller import ecs_views, lifecycle, placement, taskdef
from controller.ecs_extra import EcsExtraOps, check_tags
from controller.ecs_paging import paginate
from controller.events import EventLog
from controller.model import (
    Cluster,
    ContainerState,
    Instance,
    PortAssignment,
    Task,
    TaskDefinition,
    now,
)
from controller.ops import clusters as cluster_config
from controller.ops.account_settings import AccountSettings
from controller.placement.model import Constraint, Strategy, TaskDemand
from controller.placement_batch import PlacementBatcher
from controller.request_limits import check_overrides_size
from controller.roles import RoleService
from controller.state import ClusterState
from controller.store import Op, Store
from dockyard.arns import ArnFactory, last_part, resource_name
from dockyard.errors import (
    TASKDEF_NOT_FOUND,
    ApiError,
    client_error,
    cluster_not_found,
    invalid,
)

log = logging.getLogger(__name__)

DEFAULT_CLUSTER = "default"
MAX_RUN_COUNT = 10
NO_INSTANCES = "Container Instances cannot be empty."  # ECS's words
MAX_CUSTOM_ATTRIBUTES = 10  # ECS: "up to 10 custom attributes for each resource"
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class AgentNotifier(Protocol):
    """The dispatcher, as the service layer sees it: tell an instance its tasks changed."""

    def tasks_changed(self, instance_arn: str, tasks: list[Task]) -> None: ...


class _NoAgents:
    def tasks_changed(self, instance_arn: str, tasks: list[Task]) -> None:
        return None


def _page(
    items: list[Any],
    body: dict[str, Any],
    key: Callable[[Any], Any] = lambda x: x,
    render: Callable[[Any], Any] = lambda x: x,
    descending: bool = False,
) -> tuple[list[Any], dict[str, str]]:
    """ECS pagination of items already sorted by `key`: (rendered page, {nextToken})."""
    page, token = paginate(
        items, body.get("nextToken"), body.get("maxResults"), key=key, descending=descending
    )
    return [render(i) for i in page], ({"nextToken": token} if token else {})


def _describe(
    refs: list[str], find: Callable[[str], Any], render: Callable[[Any], dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """ECS's Describe* shape: what was found, rendered, and a MISSING failure for the rest."""
    found, failures = [], []
    for ref in refs:
        obj = find(ref)
        if obj is None:
            failures.append({"arn": ref, "reason": "MISSING"})
        else:
            found.append(render(obj))
    return found, failures


def _with_tags(body: dict[str, Any]) -> bool:
    """Whether a Describe* request asks for tags (ECS shows them only with include TAGS)."""
    return "TAGS" in (body.get("include") or [])


def _run_view(task: Task, arns: ArnFactory) -> dict[str, Any]:
    """A task as RunTask and StartTask answer: its tags shown when it has any."""
    return ecs_views.task_view(task, arns, tags=bool(task.tags))


def _str(body: dict[str, Any], field: str, default: str = "") -> str:
    value = body.get(field, default)
    if not isinstance(value, str):
        raise invalid(field, "must be a string")
    return value


def _str_list(body: dict[str, Any], field: str, limit: int = 100) -> list[str]:
    value = body.get(field, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid(field, "must be a list of strings")
    if len(value) > limit:
        raise invalid(field, f"at most {limit} items")
    return value


class ClusterService(EcsExtraOps):  # tags, DeleteTaskDefinitions: controller.ecs_extra
    def __init__(
        self,
        store: Store,
        state: ClusterState,
        events: EventLog,
        arns: ArnFactory | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.state = state
        self.events = events
        self.arns = arns or ArnFactory()
        self.rng = rng or random.Random()
        self.placer = PlacementBatcher(self.rng)
        self.agents: AgentNotifier = _NoAgents()
        # called with tasks that reached STOPPED (the services' orchestrator listens)
        self.stop_listeners: list[Callable[[list[Task]], None]] = []
        # counts a cluster's live services (the services' orchestrator sets it)
        self.service_counter: Callable[[str], int] = lambda cluster: 0
        self.scheduler: Any = None  # the services' scheduler, set by orchestrator.install
        self._ops: dict[str, Handler] = {
            name[3:]: getattr(self, name) for name in dir(self) if name.startswith("op_")
        }
        self.roles = RoleService(self)  # roles, secrets, task credentials (issue 7)
        self._ops.update(self.roles.operations())
        self.account_settings = AccountSettings(store, self.arns)  # controller.ops (issue 16)
        self._ops.update(self.account_settings.handlers())
        self._ops.update(cluster_config.ClusterOps(self).handlers())

    def operations(self) -> set[str]:
        return set(self._ops)

    def add_operations(self, handlers: dict[str, Handler]) -> None:
        """Operations implemented elsewhere (the services' orchestrator)."""
        self._ops.update(handlers)

    async def call(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        handler = self._ops.get(operation)
        if handler is None:
            raise client_error(f"operation {operation} is not supported by Dockyard")
        if not isinstance(body, dict):
            raise ApiError("SerializationException", "the request body must be a JSON object")
        return await handler(body)

    async def commit(self, ops: list[Op]) -> None:
        await self.store.write(ops)

    def event(
        self,
        cluster: str,
        kind: str,
        subject: str,
        message: str,
        detail: dict[str, Any] | None = None,
    ) -> Op:
        return self.events.record(cluster, kind, subject, message, detail)

    # ------------------------------------------------------------------ lookups

    def cluster(self, ref: str | None) -> Cluster:
        name = resource_name(ref or DEFAULT_CLUSTER)
        c = self.state.clusters.get(name)
        if c is None or c.status != "ACTIVE":
            raise cluster_not_found()
        return c

    def taskdef(self, ref: Any, field: str = "taskDefinition") -> TaskDefinition:
        if not isinstance(ref, str) or not ref:
            raise invalid(field, "is required: family, family:revision or an ARN")
        name = resource_name(ref)
        family, _, rev = name.partition(":")
        revisions = self.state.taskdefs.get(family, {})
        if rev:
            if not rev.isdigit() or int(rev) not in revisions:
                raise client_error(TASKDEF_NOT_FOUND)
            return revisions[int(rev)]
        active = [td for td in revisions.values() if td.status == "ACTIVE"]
        if not active:
            raise client_error(TASKDEF_NOT_FOUND)
        return max(active, key=lambda td: td.revision)

    def find_task(self, cluster: Cluster, ref: str) -> Task | None:
        """A task of the cluster by ARN or id."""
        t = self.state.tasks.get(ref) or self.state.tasks.get(
            self.arns.task(cluster.name, last_part(ref))
        )
        return t if t is not None and t.cluster == cluster.name else None

    def find_instance(self, cluster: Cluster, ref: str) -> Instance | None:
        """A container instance of the cluster by ARN or id."""
        inst = self.state.instances.get(ref) or self.state.instance_by_id(
            cluster.name, last_part(ref)
        )
        return inst if inst is not None and inst.cluster == cluster.name else None

    def task(self, cluster: Cluster, ref: Any, field: str = "task") -> Task:
        if not isinstance(ref, str) or not ref:
            raise invalid(field, "is required: a task ARN or id")
        t = self.find_task(cluster, ref)
        if t is None:
            raise invalid(field, f"task {ref} was not found in cluster {cluster.name}")
        return t

    def instance(self, cluster: Cluster, ref: Any, field: str = "containerInstance") -> Instance:
        if not isinstance(ref, str) or not ref:
            raise invalid(field, "is required: a container instance ARN or id")
        inst = self.find_instance(cluster, ref)
        if inst is None:
            raise invalid(
                field, f"container instance {ref} was not found in cluster {cluster.name}"
            )
        return inst

    # ------------------------------------------------------------------ clusters

    async def ensure_default_cluster(self) -> None:
        """ECS creates `default` when it is first needed (an agent joining it), not before."""
        c = self.state.clusters.get(DEFAULT_CLUSTER)
        if c is None or c.status != "ACTIVE":
            await self.op_CreateCluster({"clusterName": DEFAULT_CLUSTER})

    async def op_CreateCluster(self, body: dict[str, Any]) -> dict[str, Any]:
        name = _str(body, "clusterName", DEFAULT_CLUSTER)
        if not re.fullmatch(r"[a-zA-Z0-9_-]{1,255}", name):
            raise invalid("clusterName", "1-255 letters, digits, hyphens and underscores")
        cluster_config.refuse_capacity_providers(body)
        # the account's default, read before the check: no await between check and put, so
        # agents joining `default` at once create it once
        insights = await self.account_settings.effective("containerInsights")
        c = self.state.clusters.get(name)
        if c is None or c.status != "ACTIVE":  # ECS: creating an existing cluster returns it
            c = Cluster(name=name, arn=self.arns.cluster(name), tags=check_tags(body.get("tags")))
            c.settings = [{"name": "containerInsights", "value": insights}]
            cluster_config.configure(c, body)
            await self.commit(
                [self.state.put_cluster(c), self.event(name, "cluster", c.arn, "cluster created")]
            )
        return {"cluster": ecs_views.cluster_view(c, self.state, self.arns, tags=True)}

    async def op_DescribeClusters(self, body: dict[str, Any]) -> dict[str, Any]:
        refs = _str_list(body, "clusters") or [DEFAULT_CLUSTER]
        tags = _with_tags(body)
        clusters, failures = [], []
        for ref in refs:
            c = self.state.clusters.get(resource_name(ref))
            if c is None:
                failures.append({"arn": self.arns.cluster(resource_name(ref)), "reason": "MISSING"})
            else:
                services = self.active_services(c.name)
                view = ecs_views.cluster_view(c, self.state, self.arns, services, tags)
                clusters.append(cluster_config.as_described(view, body.get("include") or []))
        return {"clusters": clusters, "failures": failures}

    def active_services(self, cluster: str) -> int:
        return self.service_counter(cluster)

    def notify_agents(self, tasks: list[Task]) -> None:
        """Tell each instance's agent which of its tasks changed (after they are committed)."""
        by_instance: dict[str, list[Task]] = {}
        for t in tasks:
            by_instance.setdefault(t.instance_arn, []).append(t)
        for arn, ts in by_instance.items():
            self.agents.tasks_changed(arn, ts)

    def tasks_stopped(self, tasks: list[Task]) -> None:
        for listener in self.stop_listeners:
            listener(tasks)

    async def op_ListClusters(self, body: dict[str, Any]) -> dict[str, Any]:
        arns = sorted(c.arn for c in self.state.clusters.values() if c.status == "ACTIVE")
        page, more = _page(arns, body)
        return {"clusterArns": page, **more}

    async def op_DeleteCluster(self, body: dict[str, Any]) -> dict[str, Any]:
        c = self.cluster(_str(body, "cluster") or None)
        # tasks first: deregistering instances stops their tasks, so checking instances
        # first would leave ClusterContainsTasksException unreachable
        if any(t.active for t in self.state.cluster_tasks(c.name)):
            raise ApiError(
                "ClusterContainsTasksException",
                f"cluster {c.name} has running tasks: stop them first",
            )
        if self.active_services(c.name):
            raise ApiError(
                "ClusterContainsServicesException",
                f"cluster {c.name} has active services: delete them first",
            )
        if any(i.status != "INACTIVE" for i in self.state.cluster_instances(c.name)):
            raise ApiError(
                "ClusterContainsContainerInstancesException",
                f"cluster {c.name} has registered container instances: deregister them first",
            )
        c.status = "INACTIVE"
        await self.commit(
            [self.state.put_cluster(c), self.event(c.name, "cluster", c.arn, "cluster deleted")]
        )
        return {"cluster": ecs_views.cluster_view(c, self.state, self.arns)}

    # ------------------------------------------------------------------ task definitions

    async def op_RegisterTaskDefinition(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            doc = taskdef.validate(body)
        except ApiError as err:  # ECS answers a definition it cannot take with ClientException
            raise client_error(err.message) from None
        family = doc["family"]
        tags = check_tags(body.get("tags"))
        revision = await self.next_revision(family)  # no await from here to put_taskdef
        doc.update(
            taskDefinitionArn=self.arns.task_definition(family, revision),
            revision=revision,
            status="ACTIVE",
            registeredAt=now(),
            registeredBy="dockyard",
            requiresAttributes=[],
        )
        td = TaskDefinition(family=family, revision=revision, status="ACTIVE", doc=doc)
        await self.commit(
            [
                self.state.put_taskdef(td),
                *self.taskdef_tag_ops(td.arn, tags),
                self.event("", "taskdef", td.arn, "task definition registered"),
            ]
        )
        return {"taskDefinition": ecs_views.taskdef_view(td), **({"tags": tags} if tags else {})}

    async def op_DescribeTaskDefinition(self, body: dict[str, Any]) -> dict[str, Any]:
        td = self.taskdef(body.get("taskDefinition"))
        out: dict[str, Any] = {"taskDefinition": ecs_views.taskdef_view(td)}
        if _with_tags(body):  # ECS: tags only when asked for
            out["tags"] = await self.taskdef_tags(td.arn)
        return out

    async def op_ListTaskDefinitions(self, body: dict[str, Any]) -> dict[str, Any]:
        prefix = _str(body, "familyPrefix")
        status = _str(body, "status", "ACTIVE")
        if status not in ("ACTIVE", "INACTIVE", "DELETE_IN_PROGRESS"):
            raise invalid("status", "must be ACTIVE, INACTIVE or DELETE_IN_PROGRESS")
        sort = _str(body, "sort", "ASC")
        if sort not in ("ASC", "DESC"):
            raise invalid("sort", "must be ASC or DESC")
        tds = [
            td
            for fam, revs in self.state.taskdefs.items()
            if not prefix or fam == prefix  # ECS: familyPrefix names one family, in full
            for td in revs.values()
            if td.status == status
        ]
        tds.sort(key=lambda td: (td.family, td.revision), reverse=sort == "DESC")
        page, more = _page(
            tds,
            body,
            key=lambda td: (td.family, td.revision),
            render=lambda td: td.arn,
            descending=sort == "DESC",
        )
        return {"taskDefinitionArns": page, **more}

    async def op_ListTaskDefinitionFamilies(self, body: dict[str, Any]) -> dict[str, Any]:
        prefix = _str(body, "familyPrefix")
        status = _str(body, "status", "ACTIVE")
        if status not in ("ACTIVE", "INACTIVE", "ALL"):
            raise invalid("status", "must be ACTIVE, INACTIVE or ALL")
        families = sorted(
            fam
            for fam, revs in self.state.taskdefs.items()
            if fam.startswith(prefix)
            and (
                status == "ALL"
                or (status == "ACTIVE") == any(td.status == "ACTIVE" for td in revs.values())
            )
        )
        page, more = _page(families, body)
        return {"families": page, **more}

    async def op_DeregisterTaskDefinition(self, body: dict[str, Any]) -> dict[str, Any]:
        ref = _str(body, "taskDefinition")
        rev = resource_name(ref).partition(":")[2]
        if ":" not in resource_name(ref):  # ECS's words for each case
            raise client_error("Revision is missing.")
        if not rev.isdigit():
            raise ApiError("InvalidParameterException", f"Invalid revision number. Number: {rev}")
        td = self.taskdef(ref)
        if td.status == "ACTIVE":
            td.status = td.doc["status"] = "INACTIVE"
            td.doc["deregisteredAt"] = now()
            await self.commit(
                [
                    self.state.put_taskdef(td),
                    self.event("", "taskdef", td.arn, "task definition deregistered"),
                ]
            )
        return {"taskDefinition": ecs_views.taskdef_view(td)}

    # ------------------------------------------------------------------ tasks

    async def op_RunTask(self, body: dict[str, Any]) -> dict[str, Any]:
        cluster = self.cluster(_str(body, "cluster") or None)
        token = _str(body, "clientToken")
        if token and (cluster.name, token) in self.state.client_tokens:
            arns = self.state.client_tokens[(cluster.name, token)]
            return {
                "tasks": [_run_view(self.state.tasks[a], self.arns) for a in arns],
                "failures": [],
            }
        if _str(body, "launchType", "EC2") != "EC2":
            raise invalid("launchType", "Dockyard runs the EC2 launch type only")
        count = body.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 10:
            raise invalid("count", f"must be an integer from 1 to {MAX_RUN_COUNT}")
        td = self.taskdef(body.get("taskDefinition"))
        if td.status != "ACTIVE":
            raise client_error(f"TaskDefinition {td.key} is inactive")
        instances = self.state.cluster_views(cluster.name)
        if not instances:
            raise ApiError(  # ECS's words
                "InvalidParameterException", "No Container Instances were found in your cluster."
            )
        return await self._place_and_create(cluster, td, body, count, instances, token)

    async def op_StartTask(self, body: dict[str, Any]) -> dict[str, Any]:
        cluster = self.cluster(_str(body, "cluster") or None)
        refs = _str_list(body, "containerInstances", limit=10)
        if not refs:
            raise client_error(NO_INSTANCES)
        td = self.taskdef(body.get("taskDefinition"))
        tasks, failures = [], []
        for ref in refs:
            view = self.state.views[self.instance(cluster, ref, "containerInstances").arn]
            out = await self._place_and_create(
                cluster, td, {**body, "placementStrategy": []}, 1, [view], ""
            )
            tasks += out["tasks"]
            failures += out["failures"]
        return {"tasks": tasks, "failures": failures}

    async def place_tasks(
        self,
        cluster: Cluster,
        td: TaskDefinition,
        body: dict[str, Any],
        count: int,
        instances: list[Any],
        token: str,
        service: str = "",
    ) -> tuple[list[Task], list[dict[str, str]]]:
        overrides = self._overrides(td, body.get("overrides") or {})
        await self.roles.check_task(td, overrides)  # unknown roles/secrets fail clearly
        body = {**body, "tags": await self._task_tags(cluster, td, body, service)}
        group = _str(body, "group") or f"family:{td.family}"
        constraints = self._constraints(body, td)
        strategies = self._strategies(body)
        demand = self._demand(td, overrides, group)

        def claim(results: list[Any]) -> tuple[list[Task], list[dict[str, str]], list[Op]]:
            return self._create_placed(cluster, td, overrides, body, group, results, token, service)

        tasks, failures, ops = await self.placer.submit(
            demand, count, instances, constraints, strategies, claim
        )
        await self.commit(ops)
        self.notify_agents(tasks)
        return tasks, failures

    async def _task_tags(
        self, cluster: Cluster, td: TaskDefinition, body: dict[str, Any], service: str
    ) -> list[dict[str, str]]:
        """A new task's tags as ECS makes them: the request's own, then those propagated
        from the task definition or the service (`serviceTags`, set by the scheduler) for
        keys not given, then ECS's managed tags when `enableECSManagedTags` asks for them."""
        tags = check_tags(body.get("tags"))
        propagate = body.get("propagateTags", "NONE")
        if propagate == "SERVICE" and not service:
            raise invalid("propagateTags", "SERVICE applies to a service's tasks only")
        source = {
            "TASK_DEFINITION": await self.taskdef_tags(td.arn),
            "SERVICE": body.get("serviceTags") or [],
        }.get(propagate, [])
        given = {t["key"] for t in tags}
        tags += [dict(t) for t in source if t["key"] not in given]
        if body.get("enableECSManagedTags"):
            tags.append({"key": "aws:ecs:clusterName", "value": cluster.name})
            if service:
                tags.append({"key": "aws:ecs:serviceName", "value": service})
        return tags

    async def _place_and_create(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """place_tasks, rendered in ECS's RunTask response shape."""
        tasks, failures = await self.place_tasks(*args, **kwargs)
        return {"tasks": [_run_view(t, self.arns) for t in tasks], "failures": failures}

    def _create_placed(
        self,
        cluster: Cluster,
        td: TaskDefinition,
        overrides: dict[str, Any],
        body: dict[str, Any],
        group: str,
        results: list[Any],
        token: str,
        service: str,
    ) -> tuple[list[Task], list[dict[str, str]], list[Op]]:
        """Tasks for a decision's placements (claiming their resources now), its failures,
        and the store ops; runs synchronously inside the placement batch."""
        tasks: list[Task] = []
        failures: list[dict[str, str]] = []
        ops: list[Op] = []
        for result in results:
            if isinstance(result, placement.Failure):
                failures.append({"reason": result.reason, "detail": result.detail})
                continue
            task = self._new_task(cluster, td, overrides, body, group, result, token, service)
            ops.append(self.state.add_task(task))
            ops.append(
                self.event(
                    cluster.name,
                    "task",
                    task.arn,
                    f"task placed on {last_part(task.instance_arn)}",
                    {"group": group},
                )
            )
            tasks.append(task)
        return tasks, failures, ops

    def _overrides(self, td: TaskDefinition, ov: Any) -> dict[str, Any]:
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
                    f"Override for container named {name!r} "
                    "is not a container in the TaskDefinition",
                )
        taskdef.task_resources(td.doc, ov)  # validates cpu / memory overrides
        return ov

    def _constraints(self, body: dict[str, Any], td: TaskDefinition) -> list[Constraint]:
        raw = list(body.get("placementConstraints") or []) + list(
            td.doc.get("placementConstraints") or []
        )
        raw += taskdef.taskdef_host.implied_constraints(td.doc)  # issue 18: agent policies
        out = []
        for i, c in enumerate(raw):
            if not isinstance(c, dict):
                raise invalid(f"placementConstraints[{i}]", "must be an object")
            out.append(
                Constraint(type=str(c.get("type", "")), expression=str(c.get("expression", "")))
            )
        strategies = self._strategies(body)
        placement.validate(out, strategies)
        return out

    def _strategies(self, body: dict[str, Any]) -> list[Strategy]:
        raw = body.get("placementStrategy") or []
        if not isinstance(raw, list):
            raise invalid("placementStrategy", "must be a list")
        out = []
        for i, s in enumerate(raw):
            if not isinstance(s, dict):
                raise invalid(f"placementStrategy[{i}]", "must be an object")
            out.append(Strategy(type=str(s.get("type", "")), field=str(s.get("field", ""))))
        return out or list(placement.DEFAULT_TASK_STRATEGIES)

    @staticmethod
    def _demand(td: TaskDefinition, overrides: dict[str, Any], group: str) -> TaskDemand:
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

    def _new_task(
        self,
        cluster: Cluster,
        td: TaskDefinition,
        overrides: dict[str, Any],
        body: dict[str, Any],
        group: str,
        placed: Any,
        token: str,
        service: str,
    ) -> Task:
        task_id = uuid.uuid4().hex
        cpu, memory = taskdef.task_resources(td.doc, overrides)
        dyn = {"tcp": list(placed.tcp_host_ports), "udp": list(placed.udp_host_ports)}
        by_name = {o["name"]: o for o in overrides.get("containerOverrides", [])}
        containers = []
        for c in td.doc["containerDefinitions"]:
            o = by_name.get(c["name"], {})
            ports = [
                PortAssignment(
                    pm["containerPort"],
                    pm["hostPort"] or dyn[pm["protocol"]].pop(0),
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
        tags = body.get("tags") or []
        return Task(
            arn=self.arns.task(cluster.name, task_id),
            id=task_id,
            cluster=cluster.name,
            family=td.family,
            revision=td.revision,
            task_definition_arn=td.arn,
            instance_arn=placed.instance_arn,
            containers=containers,
            cpu=cpu,
            memory=memory,
            group=group,
            started_by=_str(body, "startedBy"),
            service=service,
            client_token=token,
            overrides=overrides,
            tags=tags,
        )

    async def op_StopTask(self, body: dict[str, Any]) -> dict[str, Any]:
        cluster = self.cluster(_str(body, "cluster") or None)
        task = self.task(cluster, body.get("task"))
        reason = _str(body, "reason") or "Task stopped by user"
        await self.stop_tasks([task], "UserInitiated", reason)
        return {"task": ecs_views.task_view(task, self.arns)}

    async def stop_tasks(self, tasks: list[Task], code: str, reason: str) -> None:
        """Ask for tasks to stop; those whose instance is gone are STOPPED at once."""
        ops: list[Op] = []
        changed = []
        for task in tasks:
            if not lifecycle.request_stop(task, code, reason, now()):
                continue
            inst = self.state.instances.get(task.instance_arn)
            if inst is None or inst.status == "INACTIVE":
                lifecycle.stop_now(task, code, reason, now())
                self.state.task_stopped(task)
                self.state.forget_on_instance(task)
            else:
                changed.append(task)
            ops += [
                self.state.save_task(task),
                self.event(
                    task.cluster, "task", task.arn, f"stop requested: {reason}", {"stopCode": code}
                ),
            ]
        await self.commit(ops)
        self.notify_agents(changed)

    async def op_DescribeTasks(self, body: dict[str, Any]) -> dict[str, Any]:
        cluster = self.cluster(_str(body, "cluster") or None)
        refs = _str_list(body, "tasks")
        if not refs:
            raise ApiError("InvalidParameterException", "Tasks cannot be empty.")  # ECS's words
        tags = _with_tags(body)
        found, failures = _describe(
            refs,
            lambda r: self.find_task(cluster, r),
            lambda t: ecs_views.task_view(t, self.arns, tags),
        )
        return {"tasks": found, "failures": failures}

    async def op_ListTasks(self, body: dict[str, Any]) -> dict[str, Any]:
        cluster = self.cluster(_str(body, "cluster") or None)
        desired = _str(body, "desiredStatus", "RUNNING")
        if desired not in ("RUNNING", "PENDING", "STOPPED"):
            raise invalid("desiredStatus", "must be RUNNING, PENDING or STOPPED")
        tasks = self.state.cluster_tasks(cluster.name)
        inst_ref = _str(body, "containerInstance")
        if inst_ref:
            inst = self.instance(cluster, inst_ref)
            tasks = [t for t in tasks if t.instance_arn == inst.arn]
        filters = {
            "family": lambda t, v: t.family == v,
            "startedBy": lambda t, v: t.started_by == v,
            "serviceName": lambda t, v: t.service == resource_name(v),
        }
        for field, match in filters.items():
            value = _str(body, field)
            if value:
                tasks = [t for t in tasks if match(t, value)]
        if _str(body, "launchType", "EC2") != "EC2":
            tasks = []  # every Dockyard task is EC2
        if desired == "PENDING":
            tasks = [
                t
                for t in tasks
                if t.desired_status == "RUNNING"
                and t.last_status in ("PROVISIONING", "PENDING", "ACTIVATING")
            ]
        else:
            tasks = [t for t in tasks if t.desired_status == desired]
        tasks.sort(key=lambda t: (t.created_at, t.arn))
        page, more = _page(tasks, body, key=lambda t: (t.created_at, t.arn), render=lambda t: t.arn)
        return {"taskArns": page, **more}

    # ------------------------------------------------------------------ container instances

    async def op_ListContainerInstances(self, body: dict[str, Any]) -> dict[str, Any]:
        cluster = self.cluster(_str(body, "cluster") or None)
        status = _str(body, "status")
        insts = self.state.cluster_instances(cluster.name)
        if status:
            if status not in (
                "ACTIVE",
                "DRAINING",
                "REGISTERING",
                "DEREGISTERING",
                "REGISTRATION_FAILED",
            ):
                raise invalid("status", f"unknown status {status!r}")
            insts = [i for i in insts if i.status == status]
        else:
            insts = [i for i in insts if i.status != "INACTIVE"]
        expr = _str(body, "filter")
        if expr:
            try:
                query = placement.parse(expr)
            except placement.QueryError as err:
                raise invalid("filter", str(err)) from None
            insts = [i for i in insts if query.evaluate(self.state.views[i.arn])]
        insts.sort(key=lambda i: (i.registered_at, i.arn))
        page, more = _page(
            insts, body, key=lambda i: (i.registered_at, i.arn), render=lambda i: i.arn
        )
        return {"containerInstanceArns": page, **more}

    async def op_DescribeContainerInstances(self, body: dict[str, Any]) -> dict[str, Any]:
        cluster = self.cluster(_str(body, "cluster") or None)
        refs = _str_list(body, "containerInstances")
        if not refs:
            raise client_error(NO_INSTANCES)
        found, failures = _describe(
            refs,
            lambda r: self.find_instance(cluster, r),
            lambda i: ecs_views.instance_view(i, self.state, _with_tags(body)),
        )
        return {"containerInstances": found, "failures": failures}

    async def op_DeregisterContainerInstance(self, body: dict[str, Any]) -> dict[str, Any]:
        cluster = self.cluster(_str(body, "cluster") or None)
        inst = self.instance(cluster, body.get("containerInstance"))
        running = [t for t in self.state.instance_tasks(inst.arn) if t.active]
        if running and not body.get("force"):
            raise invalid(
                "containerInstance",
                f"{len(running)} tasks are still on this instance: stop them or pass force",
            )
        inst.status = "INACTIVE"
        ops = [
            self.state.put_instance(inst),
            self.event(cluster.name, "instance", inst.arn, "container instance deregistered"),
        ]
        await self.commit(ops)
        await self.stop_tasks(running, "InstanceDeregistered", "Container instance deregistered")
        return {"containerInstance": ecs_views.instance_view(inst, self.state)}

    async def op_UpdateContainerInstancesState(self, body: dict[str, Any]) -> dict[str, Any]:
        cluster = self.cluster(_str(body, "cluster") or None)
        status = _str(body, "status")
        if status not in ("ACTIVE", "DRAINING"):
            raise invalid("status", "must be ACTIVE or DRAINING")
        refs = _str_list(body, "containerInstances", limit=10)
        if not refs:
            raise invalid("containerInstances", "is required: 1 to 10 instances")
        insts = [self.instance(cluster, r, "containerInstances") for r in refs]
        ops: list[Op] = []
        for inst in insts:
            if inst.status != status and inst.status != "INACTIVE":
                inst.status = status
                ops += [
                    self.state.put_instance(inst),
                    self.event(cluster.name, "instance", inst.arn, f"status set to {status}"),
                ]
        await self.commit(ops)
        return {
            "containerInstances": [ecs_views.instance_view(i, self.state) for i in insts],
            "failures": [],
        }

    # ------------------------------------------------------------------ attributes

    def _attribute_targets(self, cluster: Cluster, attrs: Any) -> list[tuple[Instance, dict]]:
        if not isinstance(attrs, list) or not attrs:
            raise invalid("attributes", "is required: a list of {name, value, targetId}")
        if len(attrs) > 10:
            raise invalid("attributes", "at most 10 attributes per call")
        out = []
        for i, a in enumerate(attrs):
            if not isinstance(a, dict) or not isinstance(a.get("name"), str):
                raise invalid(f"attributes[{i}].name", "is required")
            if not re.fullmatch(r"[a-zA-Z0-9_.\-/]{1,128}", a["name"]):
                raise invalid(f"attributes[{i}].name", "1-128 letters, digits, . - _ /")
            if a.get("targetType", "container-instance") != "container-instance":
                raise invalid(f"attributes[{i}].targetType", "must be container-instance")
            out.append((self.instance(cluster, a.get("targetId"), f"attributes[{i}].targetId"), a))
        return out

    async def op_PutAttributes(self, body: dict[str, Any]) -> dict[str, Any]:
        cluster = self.cluster(_str(body, "cluster") or None)
        targets = self._attribute_targets(cluster, body.get("attributes"))
        names: dict[str, set[str]] = {}  # instance ARN -> its custom attributes afterwards
        for n, (inst, a) in enumerate(targets):  # check everything before changing anything
            value = a.get("value", "")
            if not isinstance(value, str) or len(value) > 128:
                raise invalid(
                    f"attributes[{n}].value", "must be a string of 128 characters or less"
                )
            names.setdefault(inst.arn, set(inst.custom_attributes)).add(a["name"])
        for arn, held in names.items():
            if len(held) > MAX_CUSTOM_ATTRIBUTES:
                raise ApiError(
                    "AttributeLimitExceededException",
                    f"{last_part(arn)} would have {len(held)} custom attributes: "
                    f"at most {MAX_CUSTOM_ATTRIBUTES} per container instance",
                )
        ops: list[Op] = []
        for inst, a in targets:
            inst.custom_attributes[a["name"]] = a.get("value", "")
            ops.append(self.state.put_instance(inst))
        await self.commit(ops)
        return {"attributes": body["attributes"]}

    async def op_DeleteAttributes(self, body: dict[str, Any]) -> dict[str, Any]:
        cluster = self.cluster(_str(body, "cluster") or None)
        ops: list[Op] = []
        for inst, a in self._attribute_targets(cluster, body.get("attributes")):
            inst.custom_attributes.pop(a["name"], None)
            ops.append(self.state.put_instance(inst))
        await self.commit(ops)
        return {"attributes": body["attributes"]}

    async def op_ListAttributes(self, body: dict[str, Any]) -> dict[str, Any]:
        cluster = self.cluster(_str(body, "cluster") or None)
        if _str(body, "targetType", "container-instance") != "container-instance":
            raise invalid("targetType", "must be container-instance")
        name, value = _str(body, "attributeName"), _str(body, "attributeValue")
        rows = [
            {"name": k, "value": v, "targetType": "container-instance", "targetId": i.arn}
            for i in sorted(self.state.cluster_instances(cluster.name), key=lambda i: i.arn)
            if i.status != "INACTIVE"
            for k, v in sorted(i.all_attributes.items())
            if (not name or k == name) and (not value or v == value)
        ]
        page, more = _page(rows, body, key=lambda r: (r["targetId"], r["name"]))
        return {"attributes": page, **more}
