"""The service layer: ECS's operations over the cluster state, one home for every API.

The native gRPC API, the CLI and the ECS-compatible HTTP endpoint all call
`ClusterService.call(operation, body)`. Each write follows one pattern: decide and mutate
the in-memory state synchronously (so a decision never races another), commit what changed
to the store, and only then acknowledge and tell the agents.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from controller import ecs_views, launch, lifecycle, placement
from controller.ecs_extra import check_tags
from controller.launch import LaunchSpec
from controller.model import Cluster, Instance, Task, TaskDefinition, now
from controller.ops import bind
from controller.ops import clusters as cluster_config
from controller.ops.common import describe, page, with_tags
from controller.ops.context import OpContext
from controller.ops.core import DEFAULT_CLUSTER
from controller.store import Op
from controller.validation import text, texts
from dockyard.arns import ArnFactory, last_part, resource_name
from dockyard.errors import ApiError, client_error, invalid

log = logging.getLogger(__name__)

MAX_RUN_COUNT = 10
NO_INSTANCES = "Container Instances cannot be empty."  # ECS's words
MAX_CUSTOM_ATTRIBUTES = 10  # ECS: "up to 10 custom attributes for each resource"
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def _run_view(task: Task, arns: ArnFactory) -> dict[str, Any]:
    """A task as RunTask and StartTask answer: its tags shown when it has any."""
    return ecs_views.task_view(task, arns, tags=bool(task.tags))


class ClusterService(OpContext):
    """The operations not yet moved to their resource's module (controller/ops/)."""

    def handlers(self) -> dict[str, Handler]:
        """This layer's operations, by name, for the one table (controller/ops/table.py):
        clusters, task definitions, tasks, container instances and attributes, tags, and
        those of its parts (roles and secrets, account settings, cluster configuration)."""
        return {
            "CreateCluster": self.op_CreateCluster,
            "DescribeClusters": self.op_DescribeClusters,
            "ListClusters": self.op_ListClusters,
            "DeleteCluster": self.op_DeleteCluster,
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
            **bind.handlers(self),
            **cluster_config.ClusterOps(self).handlers(),
        }

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
        cluster_config.refuse_capacity_providers(body)
        # the account's default, read before the check: no await between check and put, so
        # agents joining `default` at once create it once
        insights = await self.account.effective("containerInsights")
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
        refs = texts(body, "clusters") or [DEFAULT_CLUSTER]
        tags = with_tags(body)
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
        return self.services.active_count(cluster)

    async def op_ListClusters(self, body: dict[str, Any]) -> dict[str, Any]:
        arns = sorted(c.arn for c in self.state.clusters.values() if c.status == "ACTIVE")
        found, more = page(arns, body)
        return {"clusterArns": found, **more}

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
        return await self._launch_request(cluster, td, body, count, instances, token)

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
    ) -> dict[str, Any]:
        """A RunTask / StartTask launch, answered in ECS's RunTask shape."""
        td_tags = await self.rows.taskdef_tags(td.arn)
        spec = launch.from_request(cluster, td, body, count, instances, td_tags, token)
        tasks, failures = await self.launch(spec)
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
        tags = with_tags(body)
        found, failures = describe(
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
        found, more = page(tasks, body, key=lambda t: (t.created_at, t.arn), render=lambda t: t.arn)
        return {"taskArns": found, **more}

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
        found, more = page(
            insts, body, key=lambda i: (i.registered_at, i.arn), render=lambda i: i.arn
        )
        return {"containerInstanceArns": found, **more}

    async def op_DescribeContainerInstances(self, body: dict[str, Any]) -> dict[str, Any]:
        cluster = self.cluster(text(body, "cluster") or None)
        refs = texts(body, "containerInstances")
        if not refs:
            raise client_error(NO_INSTANCES)
        found, failures = describe(
            refs,
            lambda r: self.find_instance(cluster, r),
            lambda i: ecs_views.instance_view(i, self.state, with_tags(body)),
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
        found, more = page(rows, body, key=lambda r: (r["targetId"], r["name"]))
        return {"attributes": found, **more}
