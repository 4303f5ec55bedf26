"""Tasks waiting for a capacity provider's room, decided purely (issue 22).

ECS creates a task launched on a capacity provider in PROVISIONING (desiredStatus RUNNING)
even when no instance has room: it counts toward the provider's CapacityProviderReservation,
so managed scaling grows the group, and is placed once an instance with room joins. A task
that never finds room is stopped with stopCode `TaskFailedToStart` and the reason ECS
documents for DescribeTasks: `TaskFailedToStart: EMPTY CAPACITY PROVIDER` when the group has
no instance, else `TaskFailedToStart: ` and the placement's reason (`RESOURCE:MEMORY`, ...).
ECS publishes no figure for how long it waits; Dockyard waits DEFAULT_TIMEOUT seconds
(`DOCKYARD_PROVISIONING_TIMEOUT`). No I/O, no clock: `controller.capacity.placer` feeds it.
"""

from __future__ import annotations

STOP_CODE = "TaskFailedToStart"
DEFAULT_TIMEOUT = 1800.0  # seconds a task may wait for capacity
EMPTY = "EMPTY CAPACITY PROVIDER"


def expired(created_at: float, now: float, timeout: float) -> bool:
    """Has a task waited for capacity longer than the timeout?"""
    return now - created_at >= timeout


def stop_reason(group_hosts: int, last_failure: str) -> str:
    """ECS's stoppedReason for a task that never found room on its provider."""
    if group_hosts == 0 or not last_failure:
        return f"{STOP_CODE}: {EMPTY}"
    return f"{STOP_CODE}: {last_failure}"
