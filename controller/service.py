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

from controller import ecs_views
from controller.ecs_extra import check_tags
from controller.model import Cluster
from controller.ops import bind
from controller.ops import clusters as cluster_config
from controller.ops.common import page, with_tags
from controller.ops.context import OpContext
from controller.ops.core import DEFAULT_CLUSTER
from controller.validation import text, texts
from dockyard.arns import resource_name
from dockyard.errors import ApiError, invalid

log = logging.getLogger(__name__)

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

    # ------------------------------------------------------------------ attributes
