"""ECS container instances and their attributes: ListContainerInstances,
DescribeContainerInstances, DeregisterContainerInstance, UpdateContainerInstancesState,
PutAttributes, DeleteAttributes, ListAttributes.

Instances register through their agent (controller.agent_link), not through an operation.
Deregistering stops the instance's tasks (controller.ops.task_writes.stop_tasks); the agent
gate then cuts its stream (an after-step of the chain, controller.security).
"""

from __future__ import annotations

import re
from typing import Any

from controller import ecs_views, placement
from controller.model import Cluster, Instance
from controller.ops import task_writes
from controller.ops.common import NO_INSTANCES, describe, page, with_tags
from controller.ops.context import OpContext, OpFn
from controller.store_api import Op
from controller.validation import text, texts
from dockyard.arns import last_part
from dockyard.errors import ApiError, client_error, invalid

MAX_CUSTOM_ATTRIBUTES = 10  # ECS: "up to 10 custom attributes for each resource"


async def list_instances(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    cluster = ctx.cluster(text(body, "cluster") or None)
    status = text(body, "status")
    insts = ctx.state.cluster_instances(cluster.name)
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
        insts = [i for i in insts if query.evaluate(ctx.state.views[i.arn])]
    insts.sort(key=lambda i: (i.registered_at, i.arn))
    found, more = page(insts, body, key=lambda i: (i.registered_at, i.arn), render=lambda i: i.arn)
    return {"containerInstanceArns": found, **more}


async def describe_instances(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    cluster = ctx.cluster(text(body, "cluster") or None)
    refs = texts(body, "containerInstances")
    if not refs:
        raise client_error(NO_INSTANCES)
    found, failures = describe(
        refs,
        lambda r: ctx.find_instance(cluster, r),
        lambda i: ecs_views.instance_view(i, ctx.state, with_tags(body)),
    )
    return {"containerInstances": found, "failures": failures}


async def deregister(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    cluster = ctx.cluster(text(body, "cluster") or None)
    inst = ctx.instance(cluster, body.get("containerInstance"))
    running = [t for t in ctx.state.instance_tasks(inst.arn) if t.active]
    if running and not body.get("force"):
        raise invalid(
            "containerInstance",
            f"{len(running)} tasks are still on this instance: stop them or pass force",
        )
    inst.status = "INACTIVE"
    ops = [
        ctx.state.put_instance(inst),
        ctx.event(cluster.name, "instance", inst.arn, "container instance deregistered"),
    ]
    await ctx.commit(ops)
    await task_writes.stop_tasks(
        ctx, running, "InstanceDeregistered", "Container instance deregistered"
    )
    return {"containerInstance": ecs_views.instance_view(inst, ctx.state)}


async def update_state(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    cluster = ctx.cluster(text(body, "cluster") or None)
    status = text(body, "status")
    if status not in ("ACTIVE", "DRAINING"):
        raise invalid("status", "must be ACTIVE or DRAINING")
    refs = texts(body, "containerInstances", limit=10)
    if not refs:
        raise invalid("containerInstances", "is required: 1 to 10 instances")
    insts = [ctx.instance(cluster, r, "containerInstances") for r in refs]
    ops: list[Op] = []
    for inst in insts:
        if inst.status != status and inst.status != "INACTIVE":
            inst.status = status
            ops += [
                ctx.state.put_instance(inst),
                ctx.event(cluster.name, "instance", inst.arn, f"status set to {status}"),
            ]
    await ctx.commit(ops)
    return {
        "containerInstances": [ecs_views.instance_view(i, ctx.state) for i in insts],
        "failures": [],
    }


def _attribute_targets(ctx: OpContext, cluster: Cluster, attrs: Any) -> list[tuple[Instance, dict]]:
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
        out.append((ctx.instance(cluster, a.get("targetId"), f"attributes[{i}].targetId"), a))
    return out


async def put_attributes(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    cluster = ctx.cluster(text(body, "cluster") or None)
    targets = _attribute_targets(ctx, cluster, body.get("attributes"))
    names: dict[str, set[str]] = {}  # instance ARN -> its custom attributes afterwards
    for n, (inst, a) in enumerate(targets):  # check everything before changing anything
        value = a.get("value", "")
        if not isinstance(value, str) or len(value) > 128:
            raise invalid(f"attributes[{n}].value", "must be a string of 128 characters or less")
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
        ops.append(ctx.state.put_instance(inst))
    await ctx.commit(ops)
    return {"attributes": body["attributes"]}


async def delete_attributes(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    cluster = ctx.cluster(text(body, "cluster") or None)
    ops: list[Op] = []
    for inst, a in _attribute_targets(ctx, cluster, body.get("attributes")):
        inst.custom_attributes.pop(a["name"], None)
        ops.append(ctx.state.put_instance(inst))
    await ctx.commit(ops)
    return {"attributes": body["attributes"]}


async def list_attributes(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    cluster = ctx.cluster(text(body, "cluster") or None)
    if text(body, "targetType", "container-instance") != "container-instance":
        raise invalid("targetType", "must be container-instance")
    name, value = text(body, "attributeName"), text(body, "attributeValue")
    rows = [
        {"name": k, "value": v, "targetType": "container-instance", "targetId": i.arn}
        for i in sorted(ctx.state.cluster_instances(cluster.name), key=lambda i: i.arn)
        if i.status != "INACTIVE"
        for k, v in sorted(i.all_attributes.items())
        if (not name or k == name) and (not value or v == value)
    ]
    found, more = page(rows, body, key=lambda r: (r["targetId"], r["name"]))
    return {"attributes": found, **more}


HANDLERS: dict[str, OpFn] = {
    "ListContainerInstances": list_instances,
    "DescribeContainerInstances": describe_instances,
    "DeregisterContainerInstance": deregister,
    "UpdateContainerInstancesState": update_state,
    "PutAttributes": put_attributes,
    "DeleteAttributes": delete_attributes,
    "ListAttributes": list_attributes,
}
