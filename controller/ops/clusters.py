"""ECS clusters: CreateCluster, DescribeClusters, ListClusters, DeleteCluster, UpdateCluster,
UpdateClusterSettings; `ensure_default` creates `default` when an agent first joins it.

What a cluster is configured with: CreateCluster's `settings`, `configuration`,
`serviceConnectDefaults`, `capacityProviders` and `defaultCapacityProviderStrategy`, and
UpdateCluster / UpdateClusterSettings.

Dockyard keeps and returns the settings, the ECS Exec / managed storage configuration and
the Service Connect namespace; none of them changes what Dockyard does (it has no
Container Insights, no ECS Exec, no managed EBS storage, no Service Connect: README,
"Cluster settings"). Capacity providers are host groups' (controller/ops/capacity_providers.py).
"""

from __future__ import annotations

import re
from typing import Any

from controller import ecs_views
from controller.ecs_extra import check_tags
from controller.model import Cluster
from controller.ops.common import page, with_tags
from controller.ops.context import OpContext, OpFn
from controller.ops.core import DEFAULT_CLUSTER
from controller.validation import text, texts
from dockyard.arns import resource_name
from dockyard.errors import ApiError, invalid

INSIGHTS = ("enhanced", "enabled", "disabled")
LOGGING = ("NONE", "DEFAULT", "OVERRIDE")


def check_settings(raw: list[dict[str, str]]) -> list[dict[str, str]]:
    """ECS's cluster settings: containerInsights = enhanced|enabled|disabled, once."""
    seen: dict[str, str] = {}
    for i, item in enumerate(raw):
        name, value = item.get("name", ""), item.get("value", "")
        if name != "containerInsights":
            raise invalid(f"settings[{i}].name", f"must be containerInsights, not {name!r}")
        if value not in INSIGHTS:
            raise invalid(f"settings[{i}].value", f"must be {', '.join(INSIGHTS)}")
        seen[name] = value
    return [{"name": n, "value": v} for n, v in seen.items()]


def check_configuration(raw: dict[str, Any]) -> dict[str, Any]:
    """ECS Exec's logging choice must agree with its log configuration, as ECS checks."""
    exe = raw.get("executeCommandConfiguration") or {}
    logging = exe.get("logging", "DEFAULT")
    where = "configuration.executeCommandConfiguration"
    if logging not in LOGGING:
        raise invalid(f"{where}.logging", f"must be {', '.join(LOGGING)}")
    if logging == "OVERRIDE" and not exe.get("logConfiguration"):
        raise invalid(f"{where}.logConfiguration", "is required when logging is OVERRIDE")
    if logging != "OVERRIDE" and exe.get("logConfiguration"):
        raise invalid(f"{where}.logConfiguration", "is used only when logging is OVERRIDE")
    return dict(raw)


def configure(c: Cluster, body: dict[str, Any]) -> None:
    """Apply the request's settings, configuration and Service Connect default onto `c`
    (everything checked first, so a refused request changes nothing)."""
    settings = check_settings(body["settings"]) if "settings" in body else None
    config = check_configuration(body["configuration"]) if "configuration" in body else None
    if settings is not None:
        merged = {s["name"]: s["value"] for s in c.settings} | {
            s["name"]: s["value"] for s in settings
        }
        c.settings = [{"name": n, "value": v} for n, v in merged.items()]
    if config is not None:
        c.configuration = config
    if "serviceConnectDefaults" in body:
        c.service_connect_namespace = body["serviceConnectDefaults"].get("namespace", "")


def as_described(view: dict[str, Any], include: list[str]) -> dict[str, Any]:
    """DescribeClusters shows settings and configuration only when `include` asks for
    SETTINGS / CONFIGURATIONS, as ECS documents (Create/Update return them always)."""
    if "SETTINGS" not in include:
        view.pop("settings", None)
    if "CONFIGURATIONS" not in include:
        view.pop("configuration", None)
    return view


async def ensure_default(ctx: OpContext) -> None:
    """ECS creates `default` when it is first needed (an agent joining it), not before."""
    c = ctx.state.clusters.get(DEFAULT_CLUSTER)
    if c is None or c.status != "ACTIVE":
        await create(ctx, {"clusterName": DEFAULT_CLUSTER})


async def create(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    name = text(body, "clusterName", DEFAULT_CLUSTER)
    if not re.fullmatch(r"[a-zA-Z0-9_-]{1,255}", name):
        raise invalid("clusterName", "1-255 letters, digits, hyphens and underscores")
    wanted = ctx.capacity.association_of(name, body)  # issue 22: checked first
    # the account's default, read before the check: no await between check and put, so
    # agents joining `default` at once create it once
    insights = await ctx.account.effective("containerInsights")
    c = ctx.state.clusters.get(name)
    if c is None or c.status != "ACTIVE":  # ECS: creating an existing cluster returns it
        c = Cluster(name=name, arn=ctx.arns.cluster(name), tags=check_tags(body.get("tags")))
        c.settings = [{"name": "containerInsights", "value": insights}]
        configure(c, body)
        await ctx.commit(
            [ctx.state.put_cluster(c), ctx.event(name, "cluster", c.arn, "cluster created")]
        )
        if wanted["capacityProviders"]:
            await ctx.capacity.save_association(wanted)
    view = ecs_views.cluster_view(c, ctx.state, ctx.arns, tags=True)
    return {"cluster": ctx.capacity.overlay(view)}


async def describe_clusters(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    refs = texts(body, "clusters") or [DEFAULT_CLUSTER]
    tags = with_tags(body)
    clusters, failures = [], []
    for ref in refs:
        c = ctx.state.clusters.get(resource_name(ref))
        if c is None:
            failures.append({"arn": ctx.arns.cluster(resource_name(ref)), "reason": "MISSING"})
        else:
            services = ctx.record.active_services(c.name)
            view = ecs_views.cluster_view(c, ctx.state, ctx.arns, services, tags)
            view = ctx.capacity.overlay(view)
            clusters.append(as_described(view, body.get("include") or []))
    return {"clusters": clusters, "failures": failures}


async def list_clusters(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    arns = sorted(c.arn for c in ctx.state.clusters.values() if c.status == "ACTIVE")
    found, more = page(arns, body)
    return {"clusterArns": found, **more}


async def delete(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    c = ctx.cluster(text(body, "cluster") or None)
    # tasks first: deregistering instances stops their tasks, so checking instances
    # first would leave ClusterContainsTasksException unreachable
    if any(t.active for t in ctx.state.cluster_tasks(c.name)):
        raise ApiError(
            "ClusterContainsTasksException",
            f"cluster {c.name} has running tasks: stop them first",
        )
    if ctx.record.active_services(c.name):
        raise ApiError(
            "ClusterContainsServicesException",
            f"cluster {c.name} has active services: delete them first",
        )
    if any(i.status != "INACTIVE" for i in ctx.state.cluster_instances(c.name)):
        raise ApiError(
            "ClusterContainsContainerInstancesException",
            f"cluster {c.name} has registered container instances: deregister them first",
        )
    c.status = "INACTIVE"
    await ctx.commit(
        [ctx.state.put_cluster(c), ctx.event(c.name, "cluster", c.arn, "cluster deleted")]
    )
    return {"cluster": ecs_views.cluster_view(c, ctx.state, ctx.arns)}


async def update(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    """UpdateCluster and UpdateClusterSettings (the chain checked the body's shape)."""
    c = ctx.cluster(body["cluster"])
    configure(c, body)
    await ctx.commit(
        [
            ctx.state.put_cluster(c),
            ctx.event(c.name, "cluster", c.arn, "cluster updated"),
        ]
    )
    services = ctx.record.active_services(c.name)
    return {"cluster": ecs_views.cluster_view(c, ctx.state, ctx.arns, services)}


HANDLERS: dict[str, OpFn] = {
    "CreateCluster": create,
    "DescribeClusters": describe_clusters,
    "ListClusters": list_clusters,
    "DeleteCluster": delete,
    "UpdateCluster": update,
    "UpdateClusterSettings": update,
}
