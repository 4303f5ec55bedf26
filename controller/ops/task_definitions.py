"""ECS task definitions: RegisterTaskDefinition, DescribeTaskDefinition, ListTaskDefinitions,
ListTaskDefinitionFamilies, DeregisterTaskDefinition, DeleteTaskDefinitions.

The definition's body is checked by controller.taskdef (ECS JSON, what Dockyard honours);
its tags and the revision marks are the context's `rows` (ECS never reuses a revision).

A deleted revision is DELETE_IN_PROGRESS while a task or a service still uses it and is
removed (state and store) once nothing does (controller.ecs_extra.TaskdefRows purges it, at
once or from its sweeper).
"""

from __future__ import annotations

from typing import Any

from controller import ecs_views, taskdef
from controller.ecs_extra import check_tags
from controller.model import TaskDefinition, now
from controller.ops.common import page, with_tags
from controller.ops.context import OpContext, OpFn
from controller.validation import text
from dockyard.arns import resource_name
from dockyard.errors import ApiError, client_error, invalid

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


async def register(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    try:
        doc = taskdef.validate(body)
    except ApiError as err:  # ECS answers a definition it cannot take with ClientException
        raise client_error(err.message) from None
    family = doc["family"]
    tags = check_tags(body.get("tags"))
    revision = await ctx.rows.next_revision(family)  # no await from here to put_taskdef
    doc.update(
        taskDefinitionArn=ctx.arns.task_definition(family, revision),
        revision=revision,
        status="ACTIVE",
        registeredAt=now(),
        registeredBy="dockyard",
        requiresAttributes=[],
    )
    td = TaskDefinition(family=family, revision=revision, status="ACTIVE", doc=doc)
    await ctx.commit(
        [
            ctx.state.put_taskdef(td),
            *ctx.rows.taskdef_tag_ops(td.arn, tags),
            ctx.event("", "taskdef", td.arn, "task definition registered"),
        ]
    )
    return {"taskDefinition": ecs_views.taskdef_view(td), **({"tags": tags} if tags else {})}


async def describe_one(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    td = ctx.taskdef(body.get("taskDefinition"))
    out: dict[str, Any] = {"taskDefinition": ecs_views.taskdef_view(td)}
    if with_tags(body):  # ECS: tags only when asked for
        out["tags"] = await ctx.rows.taskdef_tags(td.arn)
    return out


async def list_definitions(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    prefix = text(body, "familyPrefix")
    status = text(body, "status", "ACTIVE")
    if status not in ("ACTIVE", "INACTIVE", "DELETE_IN_PROGRESS"):
        raise invalid("status", "must be ACTIVE, INACTIVE or DELETE_IN_PROGRESS")
    sort = text(body, "sort", "ASC")
    if sort not in ("ASC", "DESC"):
        raise invalid("sort", "must be ASC or DESC")
    tds = [
        td
        for fam, revs in ctx.state.taskdefs.items()
        if not prefix or fam == prefix  # ECS: familyPrefix names one family, in full
        for td in revs.values()
        if td.status == status
    ]
    tds.sort(key=lambda td: (td.family, td.revision), reverse=sort == "DESC")
    found, more = page(
        tds,
        body,
        key=lambda td: (td.family, td.revision),
        render=lambda td: td.arn,
        descending=sort == "DESC",
    )
    return {"taskDefinitionArns": found, **more}


async def list_families(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    prefix = text(body, "familyPrefix")
    status = text(body, "status", "ACTIVE")
    if status not in ("ACTIVE", "INACTIVE", "ALL"):
        raise invalid("status", "must be ACTIVE, INACTIVE or ALL")
    families = sorted(
        fam
        for fam, revs in ctx.state.taskdefs.items()
        if fam.startswith(prefix)
        and (
            status == "ALL"
            or (status == "ACTIVE") == any(td.status == "ACTIVE" for td in revs.values())
        )
    )
    found, more = page(families, body)
    return {"families": found, **more}


async def deregister(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    ref = text(body, "taskDefinition")
    rev = resource_name(ref).partition(":")[2]
    if ":" not in resource_name(ref):  # ECS's words for each case
        raise client_error("Revision is missing.")
    if not rev.isdigit():
        raise ApiError("InvalidParameterException", f"Invalid revision number. Number: {rev}")
    td = ctx.taskdef(ref)
    if td.status == "ACTIVE":
        td.status = td.doc["status"] = "INACTIVE"
        td.doc["deregisteredAt"] = now()
        await ctx.commit(
            [
                ctx.state.put_taskdef(td),
                ctx.event("", "taskdef", td.arn, "task definition deregistered"),
            ]
        )
    return {"taskDefinition": ecs_views.taskdef_view(td)}


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
    "RegisterTaskDefinition": register,
    "DescribeTaskDefinition": describe_one,
    "ListTaskDefinitions": list_definitions,
    "ListTaskDefinitionFamilies": list_families,
    "DeregisterTaskDefinition": deregister,
    "DeleteTaskDefinitions": delete,
}
