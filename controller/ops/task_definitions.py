"""ECS task definitions: DeleteTaskDefinitions.

A deleted revision is DELETE_IN_PROGRESS while a task or a service still uses it and is
removed (state and store) once nothing does (controller.ecs_extra.TaskdefRows purges it, at
once or from its sweeper).
"""

from __future__ import annotations

from typing import Any

from controller import ecs_views
from controller.model import TaskDefinition, now
from controller.ops.context import OpContext, OpFn
from dockyard.arns import resource_name
from dockyard.errors import ApiError

# DeleteTaskDefinitions' failure reasons, in ECS's words
INVALID_REVISION = (
    "The specified task definition identifier is invalid. "
    "Specify a valid name or ARN and try again."
)
MISSING_REVISION = (
    "The specified task definition does not exist. "
    "Specify a valid account, family, revision and try again."
)
ACTIVE_REVISION = (
    "The specified task definition is still in ACTIVE status. "
    "Please deregister the target and try again."
)


async def delete(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    refs = body.get("taskDefinitions") or []
    if not refs:  # ECS's words for both bounds
        raise ApiError(
            "InvalidParameterException",
            "size of TaskDefinition references list must be greater than 0",
        )
    if len(refs) > 10:
        raise ApiError(
            "InvalidParameterException",
            "Size of TaskDefinition references list cannot exceed 10",
        )
    await ctx.rows.extra()
    deleted, failures, ops = [], [], []
    for ref in refs:
        td, why = _deletable(ctx, ref)
        if td is None:
            failures.append({"arn": ref, "reason": why})
            continue
        if td.status != "DELETE_IN_PROGRESS":
            td.status = td.doc["status"] = "DELETE_IN_PROGRESS"
            td.doc["deleteRequestedAt"] = now()
            ops += [
                ctx.state.put_taskdef(td),
                ctx.event("", "taskdef", td.arn, "task definition deletion requested"),
            ]
        deleted.append(ecs_views.taskdef_view(td))
    await ctx.commit(ops)
    await ctx.rows.purge_deleted()
    if any(td.status == "DELETE_IN_PROGRESS" for td in ctx.rows.all_taskdefs()):
        ctx.rows.start_sweeper()
    return {"taskDefinitions": deleted, "failures": failures}


def _deletable(ctx: OpContext, ref: str) -> tuple[TaskDefinition | None, str]:
    family, _, rev = resource_name(ref).partition(":")
    if not rev.isdigit():
        return None, INVALID_REVISION
    td = ctx.state.taskdefs.get(family, {}).get(int(rev))
    if td is None:
        return None, MISSING_REVISION
    if td.status == "ACTIVE":
        return None, ACTIVE_REVISION
    return td, ""


HANDLERS: dict[str, OpFn] = {
    "DeleteTaskDefinitions": delete,
}
