"""Container restart policy (ECS's `restartPolicy`), decided purely from what Docker shows.

An exited container is restarted in place (the same Docker container, started again) when
its policy is enabled, its exit code is not in `ignoredExitCodes`, and it ran at least
`restartAttemptPeriod` seconds since its last start (ECS: a container that cannot run that
long is not restarted). Otherwise it stays exited, and an essential one stops the task.
"""

from __future__ import annotations

from agent.observed import ObservedContainer
from dockyard.v1 import agent_pb2

EXITED_STATES = ("exited", "dead")


def why_not(spec: agent_pb2.ContainerSpec, obs: ObservedContainer) -> str | None:
    """None when the exited container `obs` is to be restarted now, else the reason it is not
    ("" when it has no enabled policy)."""
    rp = spec.restart_policy
    if not spec.HasField("restart_policy") or not rp.enabled or obs.state not in EXITED_STATES:
        return ""
    if obs.exit_code in rp.ignored_exit_codes:
        return f"exit code {obs.exit_code} is in restartPolicy.ignoredExitCodes"
    ran = (obs.finished_at or 0.0) - (obs.started_at or 0.0)
    if ran < rp.attempt_period_s:
        return (
            f"it ran {ran:.0f}s, less than restartPolicy.restartAttemptPeriod "
            f"({rp.attempt_period_s}s), so it is not restarted"
        )
    return None
