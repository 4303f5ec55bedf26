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
from collections.abc import Awaitable, Callable
from typing import Any

from controller import ecs_views, launch, lifecycle, placement, taskdef
from controller.capacity import strategy as capacity_strategy
from controller.ecs_extra import EcsExtraOps, check_tags
from controller.ecs_paging import paginate
from controller.events import EventLog
from controller.feed import TASK_DESIRED, TASK_STOPPED, ChangeFeed, task_changes
from controller.launch import LaunchSpec
from controller.model import (
    Cluster,
    Instance,
    Task,
    TaskDefinition,
    now,
)
from controller.ops import clusters as cluster_config
from controller.ops.account_settings import AccountSettings
from controller.ops.capacity_providers import CapacityProviders
from controller.ops.exec_command import ExecCommandOps
from controller.ops.task_protection import TaskProtectionOps
from controller.placement_batch import PlacementBatcher
from controller.roles import RoleService
from controller.state import ClusterState
from controller.state_of_record import StateOfRecord
from controller.store_api import Op, Store
from controller.validation import text, texts
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


class ClusterService(EcsExtraOps):  # tags, DeleteTaskDefinitions: controller.ecs_extra
    def __init__(
        self,
        record: StateOfRecord,
        events: EventLog,
        arns: ArnFactory | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.record = record  # every stored kind, loaded once; commits go through it
        self.store: Store = record.store
        self.state: ClusterState = record.cluster
        self.events = events
        self.arns = arns or ArnFactory()
        self.rng = rng or random.Random()
        self.placer = PlacementBatcher(self.rng)
        # committed changes, published once: the dispatcher and the orchestrator subscribe
        self.feed: ChangeFeed = record.feed
        self.scheduler: Any = None  # the services' scheduler, set by orchestrator.install
        self.roles = RoleService(self)  # roles, secrets, task credentials (issue 7)
        self.account_settings = AccountSettings(record, self.arns)  # controller.ops (issue 16)
        self.capacity = CapacityProviders(record, self.arns)  # controller.ops (issue 22)
        self.task_protection = TaskProtectionOps(self)  # issue 22 (also the agent's endpoint)

    def handlers(self) -> dict[str, Handler]:
        """This layer's operations, by name, for the one table (controller/ops/table.py):
        clusters, task definitions, tasks, container instances and attributes, tags, and
        those of its parts (roles and secrets, account settings, cluster configuration)."""
        return {
            "CreateCluster": self.op_CreateCluster,
            "DescribeClusters": self.op_DescribeClusters,
            "ListClusters": self.op_ListClusters,
            "DeleteCluster": self.op_DeleteCluster,
            "RegisterTaskDefinition": self.op_RegisterTaskDefinition,
            "DescribeTaskDefinition": self.op_DescribeTaskDefinition,
            "ListTaskDefinitions": self.op_ListTaskDefinitions,
            "ListTaskDefinitionFamilies": self.op_ListTaskDefinitionFamilies,
            "DeregisterTaskDefinition": self.op_DeregisterTaskDefinition,
            "DeleteTaskDefinitions": self.op_DeleteTaskDefinitions,
            "RunTask": self.op_RunTask,
            "StartTask": self.op_StartTask,
            "StopTask": self.op_StopTask,
            "DescribeTasks": self.op_DescribeTasks,
            "ListTasks": self.op_ListTasks,
            "ListContainerInstances": self.op_ListContainerInstances,
            "DescribeContainerInstances": self.op_DescribeContainerInstances,
            "DeregisterContainerInstance": self.op_DeregisterContainerInstance,
            "UpdateContainerInstancesState": self.op_UpdateContainerInstancesState,
            "PutAttributes": self.op_PutAttributes,
            "DeleteAttributes": self.op_DeleteAttributes,
            "ListAttributes": self.op_ListAttributes,
            "TagResource": self.op_TagResource,
            "UntagResource": self.op_UntagResource,
            "ListTagsForResource": self.op_ListTagsForResource,
            **self.roles.handlers(),
            **self.account_settings.handlers(),
            **cluster_config.ClusterOps(self).handlers(),
            **ExecCommandOps(self).handlers(),  # issue 20
            **self.capacity.handlers(),  # issue 22
            "PutClusterCapacityProviders": self.op_PutClusterCapacityProviders,
            **self.task_protection.handlers(),  # issue 22
        }

    async def commit(self, ops: list[Op]) -> None:
        await self.record.commit(ops)

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
        name = text(body, "clusterName", DEFAULT_CLUSTER)
        if not re.fullmatch(r"[a-zA-Z0-9_-]{1,255}", name):
            raise invalid("clusterName", "1-255 letters, digits, hyphens and underscores")
        wanted = self.capacity.association_of(name, body)  # issue 22: checked first
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
            if wanted["capacityProviders"]:
                await self.capacity.save_association(wanted)
        view = ecs_views.cluster_view(c, self.state, self.arns, tags=True)
        return {"cluster": self.capacity.overlay(view)}

    async def op_DescribeClusters(self, body: dict[str, Any]) -> dict[str, Any]:
        refs = texts(body, "clusters") or [DEFAULT_CLUSTER]
        tags = _with_tags(body)
        clusters, failures = [], []
        for ref in refs:
            c = self.state.clusters.get(resource_name(ref))
            if c is None:
                failures.append({"arn": self.arns.cluster(resource_name(ref)), "reason": "MISSING"})
            else:
                services = self.active_services(c.name)
                view = ecs_views.cluster_view(c, self.state, self.arns, services, tags)
                view = self.capacity.overlay(view)
                clusters.append(cluster_config.as_described(view, body.get("include") or []))
        return {"clusters": clusters, "failures": failures}

    def active_services(self, cluster: str) -> int:
        return self.record.active_services(cluster)

    async def op_PutClusterCapacityProviders(self, body: dict[str, Any]) -> dict[str, Any]:
        """Issue 22: the cluster's providers and default strategy (controller/ops)."""
        c = self.cluster(body["cluster"])
        view = ecs_views.cluster_view(c, self.state, self.arns, self.active_services(c.name))
        return await self.capacity.put_cluster(body, view)

    def notify_agents(self, tasks: list[Task]) -> None:
        """Publish that these tasks' desired state changed (after they are committed): the
        dispatcher, subscribed, sends each instance's agent its delta."""
        if tasks:
            self.feed.publish(task_changes(TASK_DESIRED, tasks))

    def tasks_stopped(self, tasks: list[Task]) -> None:
        """Publish that these tasks reached STOPPED (after they are committed)."""
        if tasks:
            self.feed.publish(task_changes(TASK_STOPPED, tasks))

    async def op_ListClusters(self, body: dict[str, Any]) -> dict[str, Any]:
        arns = sorted(c.arn for c in self.state.clusters.values() if c.status == "ACTIVE")
        page, more = _page(arns, body)
        return {"clusterArns": page, **more}

    async def op_DeleteCluster(self, body: dict[str, Any]) -> dict[str, Any]:
        c = self.cluster(text(body, "cluster") or None)
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
        prefix = text(body, "familyPrefix")
        status = text(body, "status", "ACTIVE")
        if status not in ("ACTIVE", "INACTIVE", "DELETE_IN_PROGRESS"):
            raise invalid("status", "must be ACTIVE, INACTIVE or DELETE_IN_PROGRESS")
        sort = text(body, "sort", "ASC")
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
        prefix = text(body, "familyPrefix")
        status = text(body, "status", "ACTIVE")
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
        ref = text(body, "taskDefinition")
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
        cluster = self.cluster(text(body, "cluster") or None)
        token = text(body, "clientToken")
        if token and (cluster.name, token) in self.state.client_tokens:
            arns = self.state.client_tokens[(cluster.name, token)]
            return {
                "tasks": [_run_view(self.state.tasks[a], self.arns) for a in arns],
                "failures": [],
            }
        if text(body, "launchType", "EC2") != "EC2":
            raise invalid("launchType", "Dockyard runs the EC2 launch type only")
        if body.get("capacityProviderStrategy") and "launchType" in body:
            raise invalid("capacityProviderStrategy", "give either it or launchType, not both")
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
        raw = body.get("capacityProviderStrategy")
        items = [] if "launchType" in body else self.capacity.strategy_for(cluster.name, raw)
        return await self._launch_request(cluster, td, body, count, instances, token, items)

    async def op_StartTask(self, body: dict[str, Any]) -> dict[str, Any]:
        cluster = self.cluster(text(body, "cluster") or None)
        refs = texts(body, "containerInstances", limit=10)
        if not refs:
            raise client_error(NO_INSTANCES)
        td = self.taskdef(body.get("taskDefinition"))
        tasks, failures = [], []
        for ref in refs:
            view = self.state.views[self.instance(cluster, ref, "containerInstances").arn]
            out = await self._launch_request(
                cluster, td, {**body, "placementStrategy": []}, 1, [view], ""
            )
            tasks += out["tasks"]
            failures += out["failures"]
        return {"tasks": tasks, "failures": failures}

    async def launch(self, spec: LaunchSpec) -> tuple[list[Task], list[dict[str, str]]]:
        """Place a launch's tasks (batched with concurrent launches), create and commit
        them, then tell their agents: RunTask, StartTask and the services' orchestrator."""
        await self.roles.check_task(spec.td, spec.overrides)  # unknown roles/secrets fail clearly

        def claim(results: list[Any]) -> tuple[list[Task], list[dict[str, str]], list[Op]]:
            return self._create_placed(spec, results)

        tasks, failures, ops = await self.placer.submit(
            spec.demand, spec.count, spec.instances, spec.constraints, spec.strategies, claim
        )
        await self.commit(ops)
        self.notify_agents(tasks)
        return tasks, failures

    async def _launch_request(
        self,
        cluster: Cluster,
        td: TaskDefinition,
        body: dict[str, Any],
        count: int,
        instances: list[Any],
        token: str,
        items: list[capacity_strategy.Item] | None = None,
    ) -> dict[str, Any]:
        """A RunTask / StartTask launch, answered in ECS's RunTask shape; RunTask's tasks
        split among capacity providers by their strategy's `items`."""
        td_tags = await self.taskdef_tags(td.arn)
        spec = launch.from_request(cluster, td, body, count, instances, td_tags, token)
        if not items:
            tasks, failures = await self.launch(spec)
        else:  # issue 22: base then weight, each share on its provider's instances
            tasks, failures = [], []
            for name, n in capacity_strategy.split(items, count).items():
                if n:
                    got, failed = await self.launch(launch.on_provider(spec, name, n))
                    tasks, failures = tasks + got, failures + failed
        return {"tasks": [_run_view(t, self.arns) for t in tasks], "failures": failures}

    def _create_placed(
        self, spec: LaunchSpec, results: list[Any]
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
            task = launch.new_task(spec, result, self.arns)
            ops.append(self.state.add_task(task))
            ops.append(
                self.event(
                    spec.cluster.name,
                    "task",
                    task.arn,
                    f"task placed on {last_part(task.instance_arn)}",
                    {"group": spec.group},
                )
            )
            tasks.append(task)
        return tasks, failures, ops

    async def op_StopTask(self, body: dict[str, Any]) -> dict[str, Any]:
        cluster = self.cluster(text(body, "cluster") or None)
        task = self.task(cluster, body.get("task"))
        reason = text(body, "reason") or "Task stopped by user"
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
        cluster = self.cluster(text(body, "cluster") or None)
        refs = texts(body, "tasks")
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
        cluster = self.cluster(text(body, "cluster") or None)
        desired = text(body, "desiredStatus", "RUNNING")
        if desired not in ("RUNNING", "PENDING", "STOPPED"):
            raise invalid("desiredStatus", "must be RUNNING, PENDING or STOPPED")
        tasks = self.state.cluster_tasks(cluster.name)
        inst_ref = text(body, "containerInstance")
        if inst_ref:
            inst = self.instance(cluster, inst_ref)
            tasks = [t for t in tasks if t.instance_arn == inst.arn]
        filters = {
            "family": lambda t, v: t.family == v,
            "startedBy": lambda t, v: t.started_by == v,
            "serviceName": lambda t, v: t.service == resource_name(v),
        }
        for field, match in filters.items():
            value = text(body, field)
            if value:
                tasks = [t for t in tasks if match(t, value)]
        if text(body, "launchType", "EC2") != "EC2":
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
        cluster = self.cluster(text(body, "cluster") or None)
        status = text(body, "status")
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
        expr = text(body, "filter")
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
        cluster = self.cluster(text(body, "cluster") or None)
        refs = texts(body, "containerInstances")
        if not refs:
            raise client_error(NO_INSTANCES)
        found, failures = _describe(
            refs,
            lambda r: self.find_instance(cluster, r),
            lambda i: ecs_views.instance_view(i, self.state, _with_tags(body)),
        )
        return {"containerInstances": found, "failures": failures}

    async def op_DeregisterContainerInstance(self, body: dict[str, Any]) -> dict[str, Any]:
        cluster = self.cluster(text(body, "cluster") or None)
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
        cluster = self.cluster(text(body, "cluster") or None)
        status = text(body, "status")
        if status not in ("ACTIVE", "DRAINING"):
            raise invalid("status", "must be ACTIVE or DRAINING")
        refs = texts(body, "containerInstances", limit=10)
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
        cluster = self.cluster(text(body, "cluster") or None)
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
        cluster = self.cluster(text(body, "cluster") or None)
        ops: list[Op] = []
        for inst, a in self._attribute_targets(cluster, body.get("attributes")):
            inst.custom_attributes.pop(a["name"], None)
            ops.append(self.state.put_instance(inst))
        await self.commit(ops)
        return {"attributes": body["attributes"]}

    async def op_ListAttributes(self, body: dict[str, Any]) -> dict[str, Any]:
        cluster = self.cluster(text(body, "cluster") or None)
        if text(body, "targetType", "container-instance") != "container-instance":
            raise invalid("targetType", "must be container-instance")
        name, value = text(body, "attributeName"), text(body, "attributeValue")
        rows = [
            {"name": k, "value": v, "targetType": "container-instance", "targetId": i.arn}
            for i in sorted(self.state.cluster_instances(cluster.name), key=lambda i: i.arn)
            if i.status != "INACTIVE"
            for k, v in sorted(i.all_attributes.items())
            if (not name or k == name) and (not value or v == value)
        ]
        page, more = _page(rows, body, key=lambda r: (r["targetId"], r["name"]))
        return {"attributes": page, **more}
