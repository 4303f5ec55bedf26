"""ECS tasks: RunTask, StartTask, StopTask, DescribeTasks, ListTasks.

RunTask and StartTask check the request into a typed `LaunchSpec`
(controller.launch.from_request) and launch it (controller.ops.task_writes.launch), as the
services' orchestrator does from its services; StopTask stops through the same
`task_writes.stop_tasks` as instance deregistration.
"""

from __future__ import annotations

from typing import Any

from controller import ecs_views, launch
from controller.capacity import strategy as capacity_strategy
from controller.model import Cluster, Task, TaskDefinition
from controller.ops import task_writes
from controller.ops.common import NO_INSTANCES, describe, page, with_tags
from controller.ops.context import OpContext, OpFn
from controller.validation import text, texts
from dockyard.arns import ArnFactory, resource_name
from dockyard.errors import ApiError, client_error, invalid

MAX_RUN_COUNT = 10


def _run_view(task: Task, arns: ArnFactory) -> dict[str, Any]:
    """A task as RunTask and StartTask answer: its tags shown when it has any."""
    return ecs_views.task_view(task, arns, tags=bool(task.tags))


async def run(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    cluster = ctx.cluster(text(body, "cluster") or None)
    token = text(body, "clientToken")
    if token and (cluster.name, token) in ctx.state.client_tokens:
        arns = ctx.state.client_tokens[(cluster.name, token)]
        return {
            "tasks": [_run_view(ctx.state.tasks[a], ctx.arns) for a in arns],
            "failures": [],
        }
    if text(body, "launchType", "EC2") != "EC2":
        raise invalid("launchType", "Dockyard runs the EC2 launch type only")
    if body.get("capacityProviderStrategy") and "launchType" in body:
        raise invalid("capacityProviderStrategy", "give either it or launchType, not both")
    count = body.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 10:
        raise invalid("count", f"must be an integer from 1 to {MAX_RUN_COUNT}")
    td = ctx.taskdef(body.get("taskDefinition"))
    if td.status != "ACTIVE":
        raise client_error(f"TaskDefinition {td.key} is inactive")
    instances = ctx.state.cluster_views(cluster.name)
    raw = body.get("capacityProviderStrategy")
    items = [] if "launchType" in body else ctx.capacity.strategy_for(cluster.name, raw)
    if not instances and not items:  # a provider's group may be empty: its tasks wait
        raise ApiError(  # ECS's words
            "InvalidParameterException", "No Container Instances were found in your cluster."
        )
    return await _launch_request(ctx, cluster, td, body, count, instances, token, items)


async def start(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    cluster = ctx.cluster(text(body, "cluster") or None)
    refs = texts(body, "containerInstances", limit=10)
    if not refs:
        raise client_error(NO_INSTANCES)
    td = ctx.taskdef(body.get("taskDefinition"))
    tasks, failures = [], []
    for ref in refs:
        view = ctx.state.views[ctx.instance(cluster, ref, "containerInstances").arn]
        out = await _launch_request(
            ctx, cluster, td, {**body, "placementStrategy": []}, 1, [view], ""
        )
        tasks += out["tasks"]
        failures += out["failures"]
    return {"tasks": tasks, "failures": failures}


async def _launch_request(
    ctx: OpContext,
    cluster: Cluster,
    td: TaskDefinition,
    body: dict[str, Any],
    count: int,
    instances: list[Any],
    token: str,
    items: list[capacity_strategy.Item] | None = None,
) -> dict[str, Any]:
    """A RunTask / StartTask launch, answered in ECS's RunTask shape; RunTask's tasks
    split among capacity providers by their strategy's `items` (issue 22)."""
    td_tags = await ctx.rows.taskdef_tags(td.arn)
    spec = launch.from_request(cluster, td, body, count, instances, td_tags, token)
    if not items:
        tasks, failures = await task_writes.launch(ctx, spec)
    else:  # base then weight, each share on its provider's instances
        tasks, failures = [], []
        for name, n in capacity_strategy.split(items, count).items():
            if n:
                share = launch.on_provider(spec, name, n)
                got, failed = await task_writes.launch(ctx, share)
                # ECS: what finds no room waits PROVISIONING for the provider's group to grow
                tasks += got + await task_writes.provision(ctx, share, len(failed))
    return {"tasks": [_run_view(t, ctx.arns) for t in tasks], "failures": failures}


async def stop(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    cluster = ctx.cluster(text(body, "cluster") or None)
    task = ctx.task(cluster, body.get("task"))
    reason = text(body, "reason") or "Task stopped by user"
    await task_writes.stop_tasks(ctx, [task], "UserInitiated", reason)
    return {"task": ecs_views.task_view(task, ctx.arns)}


async def describe_tasks(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    cluster = ctx.cluster(text(body, "cluster") or None)
    refs = texts(body, "tasks")
    if not refs:
        raise ApiError("InvalidParameterException", "Tasks cannot be empty.")  # ECS's words
    tags = with_tags(body)
    found, failures = describe(
        refs,
        lambda r: ctx.find_task(cluster, r),
        lambda t: ecs_views.task_view(t, ctx.arns, tags),
    )
    return {"tasks": found, "failures": failures}


async def list_tasks(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    cluster = ctx.cluster(text(body, "cluster") or None)
    desired = text(body, "desiredStatus", "RUNNING")
    if desired not in ("RUNNING", "PENDING", "STOPPED"):
        raise invalid("desiredStatus", "must be RUNNING, PENDING or STOPPED")
    tasks = ctx.state.cluster_tasks(cluster.name)
    inst_ref = text(body, "containerInstance")
    if inst_ref:
        inst = ctx.instance(cluster, inst_ref)
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


HANDLERS: dict[str, OpFn] = {
    "RunTask": run,
    "StartTask": start,
    "StopTask": stop,
    "DescribeTasks": describe_tasks,
    "ListTasks": list_tasks,
}
