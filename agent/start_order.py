"""Container start and stop order within a task: ECS's `dependsOn` (pure, issue 18).

A container starts when each of its dependencies has reached its condition:
START (started), COMPLETE (exited), SUCCESS (exited 0), HEALTHY (its health check passes).
A condition that can no longer be met (SUCCESS on a non-zero exit, HEALTHY on a container
that exited or turned unhealthy, or a dependency that did not get there within its own
`startTimeout` after it started) fails the task with the ECS agent's words. Links and a
task-shared pid/ipc namespace imply START on the linked container / namespace owner.
Stops run in reverse: a container stops only after every container depending on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.observed import ObservedContainer
from dockyard.v1 import agent_pb2

RUNNING_STATES = ("running", "paused", "restarting")
EXITED_STATES = ("exited", "dead")
DEFAULT_START_TIMEOUT_S = 0  # 0: wait as long as the dependency keeps trying (ECS's default)


@dataclass(frozen=True)
class Gate:
    """Whether a container may start now: go, wait, or never (with the reason)."""

    go: bool
    failure: str = ""


GO = Gate(True)
WAIT = Gate(False)


def namespace_owner(task: agent_pb2.DesiredTask) -> str:
    """The container whose pid/ipc namespace a "task" mode shares: the first essential
    container that depends on nothing (it starts first and lives as long as the task;
    registration refuses "task" modes without one). "" when unused."""
    if "task" not in (task.pid_mode, task.ipc_mode):
        return ""
    for spec in task.containers:
        if spec.essential and not spec.depends_on and not spec.links:
            return spec.name
    return ""


def dependencies(task: agent_pb2.DesiredTask) -> dict[str, list[tuple[str, str]]]:
    """Container -> [(dependency, condition)], with the implicit START ones."""
    owner = namespace_owner(task)
    out: dict[str, list[tuple[str, str]]] = {}
    for spec in task.containers:
        deps = [(d.container, d.condition) for d in spec.depends_on]
        implicit = [link.partition(":")[0] for link in spec.links]
        if owner and spec.name != owner:
            implicit.append(owner)
        named = {d for d, _ in deps}
        deps += [(d, "START") for d in dict.fromkeys(implicit) if d not in named]
        out[spec.name] = deps
    return out


def gate(
    name: str,
    task: agent_pb2.DesiredTask,
    seen: dict[str, ObservedContainer],
    now: float,
) -> Gate:
    """May container `name` of `task` start now, given what Docker shows?"""
    specs = {s.name: s for s in task.containers}
    blocked = False
    for dep, condition in dependencies(task).get(name, []):
        met, failure = _condition(seen.get(dep), condition)
        if failure:
            return Gate(False, _words(dep, name, failure))
        if not met:
            timeout = specs[dep].start_timeout_s if dep in specs else 0
            obs = seen.get(dep)
            if timeout and obs is not None and obs.started_at and now - obs.started_at > timeout:
                return Gate(False, _words(dep, name, f"did not reach {condition} in {timeout}s"))
            blocked = True
    return WAIT if blocked else GO


def _condition(obs: ObservedContainer | None, condition: str) -> tuple[bool, str]:
    """(met, why it never will be) for one dependency."""
    if obs is None:
        return False, ""
    exited = obs.state in EXITED_STATES
    if condition == "START":
        return obs.state in RUNNING_STATES or exited, ""
    if condition == "COMPLETE":
        return exited, ""
    if condition == "SUCCESS":
        if exited and obs.exit_code != 0:
            return False, f"exited with code {obs.exit_code}, not 0 (SUCCESS)"
        return exited, ""
    if obs.health == "HEALTHY":
        return True, ""
    if exited:
        return False, "exited before it was HEALTHY"
    if obs.health == "UNHEALTHY":
        return False, "is UNHEALTHY"
    return False, ""


def _words(dep: str, target: str, why: str) -> str:
    """ECS agent's wording for an ordering dependency that cannot resolve."""
    return (
        f"dependency graph: failed to resolve container ordering dependency [{dep}] "
        f"for target [{target}]: {dep} {why}"
    )


def may_stop(name: str, task: agent_pb2.DesiredTask, seen: dict[str, ObservedContainer]) -> bool:
    """Reverse order: `name` stops once no running container depends on it."""
    for other, deps in dependencies(task).items():
        if any(d == name for d, _ in deps):
            obs = seen.get(other)
            if obs is not None and obs.state in RUNNING_STATES:
                return False
    return True
