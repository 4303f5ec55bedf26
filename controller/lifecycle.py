"""Task lifecycle transitions: pure functions over a Task and what an agent reported.

ECS's states only move forward (PROVISIONING → … → STOPPED); a report that would move a task
backwards is stale (a batch overtaken by a newer one) and changes nothing. STOPPED is final.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.model import CONTAINER_STATUSES, STATUS_RANK, ContainerState, Task
from dockyard.v1 import agent_pb2

HEALTH = ("HEALTHY", "UNHEALTHY", "UNKNOWN")


class BadReport(ValueError):
    """A status report that is malformed: refused, nothing applied."""


@dataclass
class Change:
    """What a report changed, for the event log and the services' orchestrator."""

    old_status: str
    new_status: str
    stopped: bool
    messages: list[str]


def check_report(report: agent_pb2.TaskStatus) -> None:
    if report.last_status not in STATUS_RANK:
        raise BadReport(f"task {report.task_arn}: unknown lastStatus {report.last_status!r}")
    for c in report.containers:
        if c.last_status and c.last_status not in CONTAINER_STATUSES:
            raise BadReport(f"container {c.name}: unknown lastStatus {c.last_status!r}")
        if c.health and c.health not in HEALTH:
            raise BadReport(f"container {c.name}: unknown health {c.health!r}")


def apply_report(task: Task, report: agent_pb2.TaskStatus, now: float) -> Change | None:
    """Fold an agent's report into the task; None when nothing changed."""
    check_report(report)
    if task.last_status == "STOPPED":
        return None
    old = task.last_status
    messages: list[str] = []
    changed = _apply_containers(task, report, messages)
    if report.event:
        messages.append(report.event)
    if report.pull_started_at and not task.pull_started_at:
        task.pull_started_at, changed = report.pull_started_at, True
    if report.pull_stopped_at and not task.pull_stopped_at:
        task.pull_stopped_at, changed = report.pull_stopped_at, True
    if STATUS_RANK[report.last_status] > STATUS_RANK[old]:
        _advance(task, report, now)
        messages.append(f"lastStatus {old} → {task.last_status}")
        changed = True
    if not changed and not messages:
        return None
    task.health = task_health(task)
    stopped = task.last_status == "STOPPED" and old != "STOPPED"
    return Change(old, task.last_status, stopped, messages)


def _advance(task: Task, report: agent_pb2.TaskStatus, now: float) -> None:
    task.last_status = report.last_status
    if report.last_status == "RUNNING" and not task.started_at:
        task.started_at = report.started_at or now
    if STATUS_RANK[report.last_status] >= STATUS_RANK["DEACTIVATING"] and not task.stopping_at:
        task.stopping_at = now
    if report.last_status == "STOPPED":
        task.stopped_at = now
        task.desired_status = "STOPPED"
        task.stop_code = task.stop_code or report.stop_code or "EssentialContainerExited"
        task.stopped_reason = task.stopped_reason or report.stopped_reason or "Task stopped"


def _apply_containers(task: Task, report: agent_pb2.TaskStatus, messages: list[str]) -> bool:
    by_name = {c.name: c for c in task.containers}
    changed = False
    for rc in report.containers:
        c = by_name.get(rc.name)
        if c is None:
            raise BadReport(f"task {task.arn} has no container {rc.name!r}")
        changed = _restarts_and_gpus(c, rc, messages) or changed
        new_status = rc.last_status or c.last_status
        if CONTAINER_STATUSES.index(new_status) < CONTAINER_STATUSES.index(c.last_status):
            continue
        before = (c.last_status, c.exit_code, c.runtime_id, c.health, c.reason, c.image_digest)
        c.last_status = new_status
        c.runtime_id = rc.docker_id or c.runtime_id
        c.health = rc.health or c.health
        c.image_digest = rc.image_digest or c.image_digest
        c.reason = rc.reason or c.reason
        if rc.has_exit_code:
            c.exit_code = rc.exit_code
        if rc.bindings:
            c.bindings = [
                {
                    "bindIP": b.bind_ip or "0.0.0.0",
                    "containerPort": b.container_port,
                    "hostPort": b.host_port,
                    "protocol": b.protocol or "tcp",
                }
                for b in rc.bindings
            ]
        if (c.last_status, c.exit_code, c.runtime_id, c.health, c.reason, c.image_digest) != before:
            changed = True
            if c.last_status == "STOPPED" and before[0] != "STOPPED":
                messages.append(
                    f"container {c.name} exited with code {c.exit_code}"
                    + (f": {c.reason}" if c.reason else "")
                )
    return changed


def _restarts_and_gpus(
    c: ContainerState, rc: agent_pb2.ContainerStatus, messages: list[str]
) -> bool:
    """Issue 18: restarts by the container's restartPolicy (each an event) and the GPUs the
    agent gave it. True when either changed."""
    changed = False
    if rc.restart_count > c.restart_count:
        c.restart_count = rc.restart_count
        messages.append(f"container {c.name} restarted by its restartPolicy")
        changed = True
    if rc.gpu_ids and list(rc.gpu_ids) != c.gpu_ids:
        c.gpu_ids = list(rc.gpu_ids)
        changed = True
    return changed


def task_health(task: Task) -> str:
    """ECS: UNHEALTHY if an essential container is; HEALTHY if all checked ones are."""
    checked = [c.health for c in task.containers if c.essential and c.health != "UNKNOWN"]
    if "UNHEALTHY" in checked:
        return "UNHEALTHY"
    return "HEALTHY" if checked else "UNKNOWN"


def request_stop(task: Task, stop_code: str, reason: str, now: float) -> bool:
    """Set desiredStatus STOPPED; False when the task was already on its way down."""
    if task.desired_status == "STOPPED":
        return False
    task.desired_status = "STOPPED"
    task.stop_code = stop_code
    task.stopped_reason = reason
    task.stopping_at = now
    return True


def stop_now(task: Task, stop_code: str, reason: str, now: float) -> None:
    """Mark a task STOPPED without its agent (never delivered, instance gone)."""
    request_stop(task, stop_code, reason, now)
    task.last_status = "STOPPED"
    task.stopped_at = now
    for c in task.containers:
        if c.last_status != "STOPPED":
            c.last_status = "STOPPED"
