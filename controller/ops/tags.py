"""ECS resource tags: TagResource, UntagResource, ListTagsForResource.

Tags live on the objects that have a `tags` field (clusters, tasks, container instances,
services: the orchestrator stores a service's); task definitions' tags are rows of their
own (controller.ecs_extra.TaskdefRows). ECS's rules for a tag (no reserved `aws:` keys, at
most 50) are `controller.ecs_extra.check_tags`, shared with the operations that take tags.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from controller.ecs_extra import MAX_TAGS, Tags, check_tags
from controller.ops.context import OpContext, OpFn
from controller.store_api import Op
from dockyard.errors import (
    TASKDEF_NOT_FOUND,
    ApiError,
    client_error,
    cluster_not_found,
    invalid,
    service_not_found,
)


@dataclass
class _Target:
    """A taggable resource: its current tags and how to store new ones."""

    tags: Tags
    save: Callable[[Tags], Awaitable[None]]


def merge_tags(old: Tags, new: Tags) -> Tags:
    """ECS's order after a TagResource: the new tags as given (a key given twice keeps its
    last value), then the old tags whose keys were not given again."""
    given = {t["key"]: t["value"] for t in new}
    return [{"key": k, "value": v} for k, v in given.items()] + [
        dict(t) for t in old if t["key"] not in given
    ]


def split_arn(arn: str) -> tuple[str, str]:
    """`arn:aws:ecs:r:a:task/c/id` -> ("task", "c/id"); InvalidParameter for non-ECS ARNs."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "ecs" or "/" not in parts[5]:
        raise invalid("resourceArn", f"{arn!r} is not an ECS resource ARN")
    kind, _, rest = parts[5].partition("/")
    return kind, rest


async def tag_resource(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    tags = check_tags(body.get("tags"))
    target = await _target(ctx, body.get("resourceArn", ""))
    merged = merge_tags(target.tags, tags)
    if len(merged) > MAX_TAGS:
        raise invalid("tags", f"a resource can have at most {MAX_TAGS} tags")
    await target.save(merged)
    return {}


async def untag_resource(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    gone = set(body.get("tagKeys") or [])
    target = await _target(ctx, body.get("resourceArn", ""))
    await target.save([t for t in target.tags if t["key"] not in gone])
    return {}


async def list_tags(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    arn = body.get("resourceArn", "")
    target = await _target(ctx, arn)
    if not target.tags and split_arn(arn)[0] == "cluster":
        return {}  # ECS: a cluster that never had tags answers without a tags member
    return {"tags": [dict(t) for t in target.tags]}


async def _target(ctx: OpContext, arn: str) -> _Target:
    kind, rest = split_arn(arn)
    finder = _FINDERS.get(kind)
    if finder is None:
        raise invalid("resourceArn", f"{kind} resources take no tags in Dockyard")
    return await finder(ctx, arn, rest)


def _missing(arn: str) -> ApiError:
    return ApiError("ResourceNotFoundException", f"The specified resource was not found: {arn}")


def _check_cluster(ctx: OpContext, name: str) -> None:
    c = ctx.state.clusters.get(name)
    if c is None or c.status != "ACTIVE":
        raise cluster_not_found()


def _object_target(ctx: OpContext, arn: str, obj: Any, put: Callable[[Any], Op]) -> _Target:
    """A resource whose tags are a field of its object, stored by `put` (ResourceNotFound
    when there is no such object)."""
    if obj is None:
        raise _missing(arn)

    async def save(tags: Tags) -> None:
        obj.tags = tags
        await ctx.commit([put(obj)])

    return _Target(obj.tags, save)


async def _cluster_target(ctx: OpContext, arn: str, name: str) -> _Target:
    _check_cluster(ctx, name)
    c = ctx.state.clusters[name]
    return _object_target(ctx, arn, c if c.arn == arn else None, ctx.state.put_cluster)


async def _taskdef_target(ctx: OpContext, arn: str, name: str) -> _Target:
    family, _, rev = name.partition(":")
    td = ctx.state.taskdefs.get(family, {}).get(int(rev)) if rev.isdigit() else None
    if td is None or td.arn != arn:
        raise client_error(TASKDEF_NOT_FOUND)  # ECS's answer, as for DescribeTaskDefinition
    current = await ctx.rows.taskdef_tags(arn)

    async def save(tags: Tags) -> None:
        await ctx.commit(ctx.rows.taskdef_tag_ops(arn, tags))

    return _Target(current, save)


async def _task_target(ctx: OpContext, arn: str, rest: str) -> _Target:
    _check_cluster(ctx, rest.partition("/")[0])
    return _object_target(ctx, arn, ctx.state.tasks.get(arn), ctx.state.save_task)


async def _instance_target(ctx: OpContext, arn: str, rest: str) -> _Target:
    _check_cluster(ctx, rest.partition("/")[0])
    inst = ctx.state.instances.get(arn)
    live = inst if inst is not None and inst.status != "INACTIVE" else None
    return _object_target(ctx, arn, live, ctx.state.put_instance)


async def _service_target(ctx: OpContext, arn: str, rest: str) -> _Target:
    svc = ctx.services.services.get(arn)
    if svc is None or svc.status == "INACTIVE":
        raise service_not_found()  # ECS: whether or not its cluster exists

    async def save(tags: Tags) -> None:
        await ctx.services.set_tags(arn, tags)

    return _Target(svc.tags, save)


_FINDERS: dict[str, Callable[[OpContext, str, str], Awaitable[_Target]]] = {
    "cluster": _cluster_target,
    "task-definition": _taskdef_target,
    "task": _task_target,
    "container-instance": _instance_target,
    "service": _service_target,
}

HANDLERS: dict[str, OpFn] = {
    "TagResource": tag_resource,
    "UntagResource": untag_resource,
    "ListTagsForResource": list_tags,
}
