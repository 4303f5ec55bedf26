"""The two task writes several operations share: launching (RunTask, StartTask and the
services' orchestrator, all through a typed `LaunchSpec`) and stopping (StopTask,
DeregisterContainerInstance, the orchestrator's scale-in and replacements).

Each follows the one write pattern: decide and mutate the state synchronously, commit, then
publish the tasks' desired state on the change feed (the dispatcher tells the agents).
"""

from __future__ import annotations

from typing import Any

from controller import lifecycle, placement
from controller.launch import LaunchSpec, new_task, waiting_task
from controller.model import Task, now
from controller.ops.context import OpContext
from controller.store_api import Op
from dockyard.arns import last_part


async def launch(ctx: OpContext, spec: LaunchSpec) -> tuple[list[Task], list[dict[str, str]]]:
    """Place a launch's tasks (batched with concurrent launches), create and commit
    them, then tell their agents: RunTask, StartTask and the services' orchestrator."""
    await ctx.roles.check_task(spec.td, spec.overrides)  # unknown roles/secrets fail clearly

    def claim(results: list[Any]) -> tuple[list[Task], list[dict[str, str]], list[Op]]:
        return create_placed(ctx, spec, results)

    tasks, failures, ops = await ctx.placer.submit(
        spec.demand, spec.count, spec.instances, spec.constraints, spec.strategies, claim
    )
    await ctx.commit(ops)
    ctx.notify_agents(tasks)
    return tasks, failures


async def provision(ctx: OpContext, spec: LaunchSpec, count: int) -> list[Task]:
    """`count` tasks of a provider's launch that found no room: created PROVISIONING, with
    no instance, to be placed when the provider's group has room (issue 22)."""
    tasks = [waiting_task(spec, ctx.arns) for _ in range(count)]
    said = f"task waits for capacity provider {spec.capacity_provider}: no instance has room"
    await ctx.commit([op for task in tasks for op in _added(ctx, spec, task, said)])
    return tasks


def _added(ctx: OpContext, spec: LaunchSpec, task: Task, said: str) -> list[Op]:
    """A new task indexed (and its resources claimed, if placed), and its event."""
    return [
        ctx.state.add_task(task),
        ctx.event(spec.cluster.name, "task", task.arn, said, {"group": spec.group}),
    ]


def create_placed(
    ctx: OpContext, spec: LaunchSpec, results: list[Any]
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
        task = new_task(spec, result, ctx.arns)
        ops += _added(ctx, spec, task, f"task placed on {last_part(task.instance_arn)}")
        tasks.append(task)
    return tasks, failures, ops


async def stop_tasks(ctx: OpContext, tasks: list[Task], code: str, reason: str) -> None:
    """Ask for tasks to stop; those whose instance is gone are STOPPED at once."""
    ops: list[Op] = []
    changed = []
    for task in tasks:
        if not lifecycle.request_stop(task, code, reason, now()):
            continue
        inst = ctx.state.instances.get(task.instance_arn)
        if inst is None or inst.status == "INACTIVE":
            lifecycle.stop_now(task, code, reason, now())
            ctx.state.task_stopped(task)
            ctx.state.forget_on_instance(task)
        else:
            changed.append(task)
        ops += [
            ctx.state.save_task(task),
            ctx.event(
                task.cluster, "task", task.arn, f"stop requested: {reason}", {"stopCode": code}
            ),
        ]
    await ctx.commit(ops)
    ctx.notify_agents(changed)
