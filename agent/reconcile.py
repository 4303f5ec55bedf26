"""The agent's reconciliation plan: a pure function of desired tasks and observed containers.

Level-triggered like kubelet and SwarmKit: every pass looks at what the controller wants and
what Docker runs, and returns the actions that close the gap plus the status of every task.
No I/O here; the runtime executes the actions and sends the statuses.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from agent import restarts, start_order
from agent.observed import ObservedContainer
from dockyard.v1 import agent_pb2

RUNNING_STATES = ("running", "paused", "restarting")
EXITED_STATES = ("exited", "dead")
STARTED_STATUSES = ("ACTIVATING", "RUNNING", "DEACTIVATING", "STOPPING", "DEPROVISIONING")


@dataclass
class LocalTask:
    """What the agent decided about a task on its own (the controller learns it by status)."""

    stop_code: str = ""
    stopped_reason: str = ""
    pull_started_at: float = 0.0
    pull_stopped_at: float = 0.0
    events: list[str] = field(default_factory=list)
    restarts: dict[str, int] = field(default_factory=dict)  # container -> restarts by policy


@dataclass(frozen=True)
class Start:
    task_arn: str
    container: str


@dataclass(frozen=True)
class Stop:
    task_arn: str
    docker_id: str
    timeout_s: int


@dataclass(frozen=True)
class Remove:
    docker_id: str


@dataclass(frozen=True)
class Restart:
    """Start an exited container again, in place (its restartPolicy allows it)."""

    task_arn: str
    container: str
    docker_id: str


Action = Start | Stop | Remove | Restart


@dataclass
class Plan:
    actions: list[Action]
    statuses: dict[str, agent_pb2.TaskStatus]
    local_stops: dict[str, tuple[str, str]]  # task -> (stop code, reason) decided this pass


def by_task(observed: list[ObservedContainer]) -> dict[str, dict[str, ObservedContainer]]:
    out: dict[str, dict[str, ObservedContainer]] = defaultdict(dict)
    for o in observed:
        prev = out[o.task_arn].get(o.container_name)
        if prev is None or o.state in RUNNING_STATES:
            out[o.task_arn][o.container_name] = o
    return out


def plan(
    desired: dict[str, agent_pb2.DesiredTask],
    observed: list[ObservedContainer],
    local: dict[str, LocalTask],
    now: float,
    retention_s: float,
) -> Plan:
    """Actions that converge Docker to `desired`, and each desired task's status."""
    result = Plan(actions=[], statuses={}, local_stops={})
    containers = by_task(observed)
    for arn, task in desired.items():
        _plan_task(task, containers.get(arn, {}), local.get(arn) or LocalTask(), now, result)
    for arn, named in containers.items():
        if arn not in desired:
            _plan_unwanted(arn, named, now, retention_s, result)
    return result


def _plan_task(
    task: agent_pb2.DesiredTask,
    seen: dict[str, ObservedContainer],
    loc: LocalTask,
    now: float,
    result: Plan,
) -> None:
    stop_code, reason = loc.stop_code, loc.stopped_reason
    again = _to_restart(task, seen) if task.desired_status == "RUNNING" and not stop_code else {}
    if task.desired_status == "RUNNING" and not stop_code:
        stop_code, reason = _self_stop(task, seen, again) or _unmet_dependency(task, seen, now)
        if stop_code:
            result.local_stops[task.task_arn] = (stop_code, reason)
    stopping = task.desired_status != "RUNNING" or bool(stop_code)
    for spec in task.containers:
        obs = seen.get(spec.name)
        if stopping:
            if (
                obs is not None
                and obs.state in RUNNING_STATES
                and start_order.may_stop(spec.name, task, seen)
            ):
                timeout = spec.stop_timeout_s or task.stop_timeout_s or 30
                result.actions.append(Stop(task.task_arn, obs.docker_id, timeout))
        elif (obs is None or obs.state == "created") and start_order.gate(
            spec.name, task, seen, now
        ).go:
            result.actions.append(Start(task.task_arn, spec.name))
        elif spec.name in again and obs is not None:
            result.actions.append(Restart(task.task_arn, spec.name, obs.docker_id))
    result.statuses[task.task_arn] = task_status(
        task, seen, stopping, stop_code, reason, loc, set() if stopping else set(again)
    )


def _to_restart(task: agent_pb2.DesiredTask, seen: dict[str, ObservedContainer]) -> dict[str, str]:
    """Exited containers whose restartPolicy restarts them now (name -> docker id)."""
    out = {}
    for spec in task.containers:
        obs = seen.get(spec.name)
        if obs is not None and restarts.why_not(spec, obs) is None:
            out[spec.name] = obs.docker_id
    return out


def _unmet_dependency(
    task: agent_pb2.DesiredTask, seen: dict[str, ObservedContainer], now: float
) -> tuple[str, str]:
    """A container not started yet whose dependsOn can never be met fails the task."""
    for spec in task.containers:
        obs = seen.get(spec.name)
        if obs is None or obs.state == "created":
            failure = start_order.gate(spec.name, task, seen, now).failure
            if failure:
                return "TaskFailedToStart", f"CannotStartContainerError: {failure}"
    return "", ""


def _self_stop(
    task: agent_pb2.DesiredTask, seen: dict[str, ObservedContainer], again: dict[str, str]
) -> tuple[str, str] | None:
    """Reasons the agent stops a task on its own: an essential container exited (and its
    restart policy, if any, does not restart it) or vanished."""
    started = task.known_status in STARTED_STATUSES
    for spec in task.containers:
        obs = seen.get(spec.name)
        if not spec.essential or spec.name in again:
            continue
        if obs is not None and obs.state in EXITED_STATES:
            why = restarts.why_not(spec, obs)
            return (
                "EssentialContainerExited",
                f"Essential container in task exited ({spec.name}: exit code {obs.exit_code})"
                + (f"; {why}" if why else ""),
            )
        if obs is None and started:
            return "EssentialContainerExited", f"Container {spec.name} vanished"
    return None


def _plan_unwanted(
    arn: str, named: dict[str, ObservedContainer], now: float, retention_s: float, result: Plan
) -> None:
    """Containers of tasks the controller no longer lists: stop, then remove when old."""
    for obs in named.values():
        if obs.state in RUNNING_STATES or obs.state == "created":
            result.actions.append(Stop(arn, obs.docker_id, 30))
        elif obs.finished_at is None or now - obs.finished_at >= retention_s:
            result.actions.append(Remove(obs.docker_id))


def container_status(
    spec: agent_pb2.ContainerSpec,
    obs: ObservedContainer | None,
    stopping: bool,
    restarting: bool = False,
    restart_count: int = 0,
) -> agent_pb2.ContainerStatus:
    status = agent_pb2.ContainerStatus(name=spec.name, restart_count=restart_count)
    if obs is not None and restarting:  # exited, started again in place: still RUNNING
        status.docker_id, status.health, status.last_status = obs.docker_id, obs.health, "RUNNING"
        return status
    if obs is None:
        status.last_status = "STOPPED" if stopping else "PENDING"
        return status
    status.docker_id = obs.docker_id
    status.health = obs.health
    status.image_digest = obs.image_digest
    if obs.state in RUNNING_STATES:
        status.last_status = "RUNNING"
    elif obs.state in EXITED_STATES:
        status.last_status = "STOPPED"
        if obs.exit_code is not None:
            status.has_exit_code, status.exit_code = True, obs.exit_code
        if obs.oom_killed:
            status.reason = "OutOfMemoryError: Container killed due to memory usage"
        elif obs.error:
            status.reason = obs.error
    else:
        status.last_status = "STOPPED" if stopping else "PENDING"
    for cport, hport, proto, ip in obs.bindings:
        status.bindings.append(
            agent_pb2.PortBinding(container_port=cport, host_port=hport, protocol=proto, bind_ip=ip)
        )
    status.gpu_ids.extend(obs.gpu_ids)  # issue 18: the GPUs the container was given
    return status


def task_status(
    task: agent_pb2.DesiredTask,
    seen: dict[str, ObservedContainer],
    stopping: bool,
    stop_code: str,
    reason: str,
    loc: LocalTask,
    restarting: set[str] | None = None,
) -> agent_pb2.TaskStatus:
    restarting = restarting or set()
    containers = [
        container_status(
            s, seen.get(s.name), stopping, s.name in restarting, loc.restarts.get(s.name, 0)
        )
        for s in task.containers
    ]
    states = [c.last_status for c in containers]
    essential = [
        c.last_status for c, s in zip(containers, task.containers, strict=True) if s.essential
    ]
    if all(s == "STOPPED" for s in states):
        last = "STOPPED"
    elif stopping:
        last = "STOPPING"
    elif essential and all(s == "RUNNING" for s in essential):
        last = "RUNNING"
    else:
        last = "PENDING"
    started = [o.started_at for o in seen.values() if o.started_at]
    return agent_pb2.TaskStatus(
        task_arn=task.task_arn,
        last_status=last,
        containers=containers,
        stop_code=stop_code if last == "STOPPED" else "",
        stopped_reason=reason if last == "STOPPED" else "",
        pull_started_at=loc.pull_started_at,
        pull_stopped_at=loc.pull_stopped_at,
        started_at=max(started) if last == "RUNNING" and started else 0.0,
    )


def snapshot(observed: list[ObservedContainer]) -> list[agent_pb2.TaskStatus]:
    """What the agent runs, from Docker alone (sent in Register, before any desired state)."""
    out = []
    for arn, named in by_task(observed).items():
        containers = []
        for name, obs in named.items():
            spec = agent_pb2.ContainerSpec(name=name)
            containers.append(container_status(spec, obs, stopping=False))
        states = {c.last_status for c in containers}
        last = (
            "RUNNING"
            if "RUNNING" in states
            else ("STOPPED" if states == {"STOPPED"} else "PENDING")
        )
        out.append(agent_pb2.TaskStatus(task_arn=arn, last_status=last, containers=containers))
    return out
