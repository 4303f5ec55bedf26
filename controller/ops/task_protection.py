"""Task scale-in protection (issue 22): ECS's UpdateTaskProtection and GetTaskProtection.

Protection is a field of the task itself (`Task.protected_until`, the state of record's
"task" kind), so it survives restarts and failovers with the task and goes away with it. The
services' planner (controller/orchestrator/scalein.py, planner.py) skips a protected task in
scale-in and rollouts until the protection expires or is removed. The same change made by
the task itself, through the agent's `$ECS_AGENT_URI/task-protection/v1/state`, arrives here
through `protect` (the agent forwards it over its stream; controller/agent_link.py).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from dockyard.errors import ApiError, invalid

if TYPE_CHECKING:
    from controller.model import Task
    from controller.ops.context import OpContext

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
DEFAULT_MINUTES = 120  # ECS: 2 hours when expiresInMinutes is not given
MAX_MINUTES = 2880  # ECS: at most 48 hours
MAX_TASKS = 10  # ECS: at most 10 tasks per call


def expiry(enabled: bool, minutes: Any, now: float) -> float:
    """When protection set now ends (0: none), or InvalidParameterException naming the field."""
    if minutes is None:
        minutes = DEFAULT_MINUTES
    if isinstance(minutes, bool) or not isinstance(minutes, int):
        raise invalid("expiresInMinutes", "must be a whole number of minutes")
    if not 1 <= minutes <= MAX_MINUTES:
        raise invalid("expiresInMinutes", f"must be between 1 and {MAX_MINUTES} (48 hours)")
    return now + 60.0 * minutes if enabled else 0.0


def protection_doc(task: Task, now: float) -> dict[str, Any]:
    """ECS's ProtectedTask: protectionEnabled, and expirationDate while protected."""
    if task.protected_until > now:
        return {
            "taskArn": task.arn,
            "protectionEnabled": True,
            "expirationDate": task.protected_until,
        }
    return {"taskArn": task.arn, "protectionEnabled": False}


class TaskProtectionOps:
    """ECS's task protection operations, on the tasks of the state of record."""

    def __init__(self, cs: OpContext) -> None:
        self.cs = cs

    def handlers(self) -> dict[str, Handler]:
        return {
            "UpdateTaskProtection": self.update_task_protection,
            "GetTaskProtection": self.get_task_protection,
        }

    def _refs(self, body: dict[str, Any], required: bool) -> list[str] | None:
        refs = body.get("tasks")
        if refs is None and not required:
            return None
        if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
            raise invalid("tasks", "is required: a list of task ARNs or ids")
        if len(refs) > MAX_TASKS:
            raise invalid("tasks", f"at most {MAX_TASKS} tasks per call")
        return refs

    def _resolve(
        self, cluster_ref: Any, refs: list[str]
    ) -> tuple[list[Task], list[dict[str, str]]]:
        """The live tasks named, and ECS's failures for the others."""
        cluster = self.cs.cluster(cluster_ref if isinstance(cluster_ref, str) else None)
        found: list[Task] = []
        failures: list[dict[str, str]] = []
        for ref in refs:
            task = self.cs.find_task(cluster, ref)
            if task is None:
                failures.append({"arn": ref, "reason": "MISSING"})
            elif task.last_status == "STOPPED" or task.desired_status == "STOPPED":
                failures.append(
                    {"arn": task.arn, "reason": "TASK_NOT_VALID", "detail": "The task is stopped"}
                )
            else:
                found.append(task)
        return found, failures

    async def protect(self, task: Task, enabled: bool, minutes: Any) -> dict[str, Any]:
        """Set one task's protection and commit it: the one writer of `protected_until`."""
        now = time.time()
        task.protected_until = expiry(enabled, minutes, now)
        await self.cs.commit([self.cs.state.save_task(task)])
        return protection_doc(task, now)

    async def update_task_protection(self, body: dict[str, Any]) -> dict[str, Any]:
        enabled = body.get("protectionEnabled")
        if not isinstance(enabled, bool):
            raise invalid("protectionEnabled", "is required: true or false")
        refs = self._refs(body, required=True)
        assert refs is not None
        minutes = body.get("expiresInMinutes")
        expiry(enabled, minutes, 0.0)  # refuse a bad value before changing any task
        tasks, failures = self._resolve(body.get("cluster"), refs)
        done = [await self.protect(t, enabled, minutes) for t in tasks]
        return {"protectedTasks": done, "failures": failures}

    async def get_task_protection(self, body: dict[str, Any]) -> dict[str, Any]:
        refs = self._refs(body, required=False)
        now = time.time()
        if refs is None:  # every live task of the cluster
            cluster = self.cs.cluster(body.get("cluster") or None)
            live = [
                t
                for t in self.cs.state.tasks.values()
                if t.cluster == cluster.name and t.last_status != "STOPPED"
            ]
            return {"protectedTasks": [protection_doc(t, now) for t in live], "failures": []}
        tasks, failures = self._resolve(body.get("cluster"), refs)
        return {"protectedTasks": [protection_doc(t, now) for t in tasks], "failures": failures}

    async def for_task(
        self, instance_arn: str, task_arn: str, update: bool, enabled: bool, minutes: Any
    ) -> dict[str, Any]:
        """A task's own GET/PUT through its agent's endpoint: only a live task assigned to
        the instance that asks (an agent cannot act on another host's tasks)."""
        task = self.cs.state.tasks.get(task_arn)
        if task is None or task.instance_arn != instance_arn or task.last_status == "STOPPED":
            raise ApiError("InvalidParameterException", f"task {task_arn} is not running here")
        if update:
            return await self.protect(task, enabled, minutes)
        return protection_doc(task, time.time())
