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

from controller import ecs_views, placement
from controller.ecs_extra import check_tags
from controller.model import Cluster, Instance
from controller.ops import bind, task_writes
from controller.ops import clusters as cluster_config
from controller.ops.common import NO_INSTANCES, describe, page, with_tags
from controller.ops.context import OpContext
from controller.ops.core import DEFAULT_CLUSTER
from controller.store import Op
from controller.validation import text, texts
from dockyard.arns import last_part, resource_name
from dockyard.errors import ApiError, client_error, invalid

log = logging.getLogger(__name__)

MAX_CUSTOM_ATTRIBUTES = 10  # ECS: "up to 10 custom attributes for each resource"
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


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
        await task_writes.stop_tasks(
            self, running, "InstanceDeregistered", "Container instance deregistered"
        )
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
