"""Resource tags: TagResource, UntagResource, ListTagsForResource.

Tags live on the objects that have a `tags` field (clusters, tasks, container instances,
services); task definitions have none, so theirs are rows of their own
(controller.ops.task_definitions.TaskDefinitionRows).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dockyard.errors import (
    TASKDEF_NOT_FOUND,
    ApiError,
    client_error,
    cluster_not_found,
    invalid,
    service_not_found,
)

if TYPE_CHECKING:
    from controller.ops.context import OpsContext
    from controller.ops.task_definitions import TaskDefinitionRows

MAX_TAGS = 50
RESERVED_PREFIX = "aws:"
Tags = list[dict[str, str]]
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass
class _Target:
    """A taggable resource: its current tags and how to store new ones."""

    tags: Tags
    save: Callable[[Tags], Awaitable[None]]


def check_tags(tags: Any, field_name: str = "tags") -> Tags:
    """Tags as ECS accepts them (shapes are already checked): no reserved `aws:` keys."""
    out = []
    for i, tag in enumerate(tags or []):
        key = str(tag.get("key", ""))
        if not key:
            raise invalid(f"{field_name}[{i}].key", "is required")
        if key.lower().startswith(RESERVED_PREFIX):
            raise invalid(f"{field_name}[{i}].key", "keys starting with aws: are reserved")
        out.append({"key": key, "value": str(tag.get("value", ""))})
    if len(out) > MAX_TAGS:
        raise invalid(field_name, f"at most {MAX_TAGS} tags per resource")
    return out


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


class TagOps:
    """The tag operations over the context and the task definitions' tag rows."""

    def __init__(self, ctx: OpsContext, taskdefs: TaskDefinitionRows) -> None:
        self.ctx = ctx
        self.state = ctx.state
        self.taskdefs = taskdefs

    def handlers(self) -> dict[str, Handler]:
        return {
            "TagResource": self.op_TagResource,
            "UntagResource": self.op_UntagResource,
            "ListTagsForResource": self.op_ListTagsForResource,
        }

    async def op_TagResource(self, body: dict[str, Any]) -> dict[str, Any]:
        tags = check_tags(body.get("tags"))
        target = await self._target(body.get("resourceArn", ""))
        merged = merge_tags(target.tags, tags)
        if len(merged) > MAX_TAGS:
            raise invalid("tags", f"a resource can have at most {MAX_TAGS} tags")
        await target.save(merged)
        return {}

    async def op_UntagResource(self, body: dict[str, Any]) -> dict[str, Any]:
        gone = set(body.get("tagKeys") or [])
        target = await self._target(body.get("resourceArn", ""))
        await target.save([t for t in target.tags if t["key"] not in gone])
        return {}

    async def op_ListTagsForResource(self, body: dict[str, Any]) -> dict[str, Any]:
        arn = body.get("resourceArn", "")
        target = await self._target(arn)
        if not target.tags and split_arn(arn)[0] == "cluster":
            return {}  # ECS: a cluster that never had tags answers without a tags member
        return {"tags": [dict(t) for t in target.tags]}

    async def _target(self, arn: str) -> _Target:
        kind, rest = split_arn(arn)
        finders = {
            "cluster": self._cluster_target,
            "task-definition": self._taskdef_target,
            "task": self._task_target,
            "container-instance": self._instance_target,
            "service": self._service_target,
        }
        finder = finders.get(kind)
        if finder is None:
            raise invalid("resourceArn", f"{kind} resources take no tags in Dockyard")
        return await finder(arn, rest)

    def _missing(self, arn: str) -> ApiError:
        return ApiError("ResourceNotFoundException", f"The specified resource was not found: {arn}")

    def _check_cluster(self, name: str) -> None:
        c = self.state.clusters.get(name)
        if c is None or c.status != "ACTIVE":
            raise cluster_not_found()

    async def _cluster_target(self, arn: str, name: str) -> _Target:
        self._check_cluster(name)
        c = self.state.clusters[name]
        if c.arn != arn:
            raise self._missing(arn)

        async def save(tags: Tags) -> None:
            c.tags = tags
            await self.ctx.commit([self.state.put_cluster(c)])

        return _Target(c.tags, save)

    async def _taskdef_target(self, arn: str, name: str) -> _Target:
        family, _, rev = name.partition(":")
        td = self.state.taskdefs.get(family, {}).get(int(rev)) if rev.isdigit() else None
        if td is None or td.arn != arn:
            raise client_error(TASKDEF_NOT_FOUND)  # ECS's answer, as for DescribeTaskDefinition
        current = await self.taskdefs.taskdef_tags(arn)

        async def save(tags: Tags) -> None:
            await self.ctx.commit(self.taskdefs.taskdef_tag_ops(arn, tags))

        return _Target(current, save)

    async def _task_target(self, arn: str, rest: str) -> _Target:
        self._check_cluster(rest.partition("/")[0])
        task = self.state.tasks.get(arn)
        if task is None:
            raise self._missing(arn)

        async def save(tags: Tags) -> None:
            task.tags = tags
            await self.ctx.commit([self.state.save_task(task)])

        return _Target(task.tags, save)

    async def _instance_target(self, arn: str, rest: str) -> _Target:
        self._check_cluster(rest.partition("/")[0])
        inst = self.state.instances.get(arn)
        if inst is None or inst.status == "INACTIVE":
            raise self._missing(arn)

        async def save(tags: Tags) -> None:
            inst.tags = tags
            await self.ctx.commit([self.state.put_instance(inst)])

        return _Target(inst.tags, save)

    async def _service_target(self, arn: str, rest: str) -> _Target:
        svc = self.ctx.services.services.get(arn)
        if svc is None or svc.status == "INACTIVE":
            raise service_not_found()  # ECS: whether or not its cluster exists

        async def save(tags: Tags) -> None:
            await self.ctx.services.set_tags(arn, tags)

        return _Target(svc.tags, save)
