"""Exec into tasks (issue 20): who may run a command where, and ECS's ExecuteCommand.

ECS allows ExecuteCommand only in tasks started with `enableExecuteCommand` (RunTask,
StartTask, or their service's CreateService / UpdateService); Dockyard keeps that flag on the
task (DescribeTasks shows it) and checks it, with the task's state and container, before any
session starts (`exec_target`, shared by the native Exec stream and ExecuteCommand).

ECS's ExecuteCommand answers with a Session Manager session (a stream URL and token for
AWS's closed `session-manager-plugin`): Dockyard has no Session Manager, so for a task that
could be exec'ed into it answers ECS's TargetNotConnectedException pointing to `dockyard exec`,
and for the others the InvalidParameterException ECS answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.model import Task
from controller.ops.context import OpContext, OpFn
from controller.ops.core import Core
from dockyard.errors import ApiError, invalid

MAX_COMMAND = 8192  # characters in all, ECS's limit for ExecuteCommand's command
NOT_ENABLED = (  # ECS's words
    "The execute command failed because execute command was not enabled when the task was "
    "run or the execute command agent isn’t running. Wait and try again or run a new task "  # noqa: RUF001
    "with execute command enabled and try again."
)


@dataclass(frozen=True)
class ExecTarget:
    task: Task
    container: str
    command: list[str]


def exec_target(
    cs: Core, cluster_ref: str, task_ref: str, container: str, command: list[str]
) -> ExecTarget:
    """Where a command may run, or InvalidParameterException saying why not."""
    cluster = cs.cluster(cluster_ref or None)
    task = cs.task(cluster, task_ref)
    if not command or not command[0]:
        raise invalid("command", "is required: the command to run and its arguments")
    if sum(len(a) + 1 for a in command) > MAX_COMMAND:
        raise invalid("command", f"at most {MAX_COMMAND} characters")
    if not task.exec_enabled:
        raise ApiError("InvalidParameterException", NOT_ENABLED)
    if task.desired_status != "RUNNING" or task.last_status != "RUNNING":
        raise invalid(
            "task",
            f"task {task.id} is {task.last_status} (desired {task.desired_status}): "
            "commands run only in RUNNING tasks",
        )
    names = [c.name for c in task.containers]
    if not container:
        if len(names) > 1:
            raise invalid(
                "container",
                f"task {task.id} has several containers ({', '.join(names)}): name one",
            )
        container = names[0]
    state = next((c for c in task.containers if c.name == container), None)
    if state is None:
        has = ", ".join(names)
        raise invalid("container", f"task has no container {container!r}; it has {has}")
    if state.last_status != "RUNNING":
        raise invalid("container", f"container {container} is {state.last_status}, not RUNNING")
    return ExecTarget(task, container, list(command))


async def execute_command(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    """ECS's ExecuteCommand: the checks ECS makes, then the way to a session here."""
    if body.get("interactive") is not True:  # ECS's words
        raise ApiError(
            "InvalidParameterException", "Interactive is the only mode supported currently."
        )
    command = body.get("command")
    if not isinstance(command, str):
        raise invalid("command", "must be a string")
    target = exec_target(
        ctx,
        str(body.get("cluster") or ""),
        str(body.get("task") or ""),
        str(body.get("container") or ""),
        command.split(),
    )
    raise ApiError(
        "TargetNotConnectedException",
        "Dockyard has no AWS Session Manager, which `aws ecs execute-command` needs; run "
        f"the command with `dockyard exec {target.task.id} --container {target.container} "
        f"-i -t -- {command}` (the same access key works)",
    )


HANDLERS: dict[str, OpFn] = {"ExecuteCommand": execute_command}
