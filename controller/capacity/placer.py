"""The loop that places tasks waiting for a capacity provider's room (issue 22).

RunTask's tasks that find no room on their provider are stored PROVISIONING with no
instance (`task_writes.provision`): state of record, so they survive a restart, and only
the controller that runs this loop, the leader, places them. Every `period` seconds, oldest
first, each waiting task is placed again through the same batched placement as RunTask
(its stored constraints, the provider's among them, and strategies); a task placed is bound
to its instance, committed and sent to its agent. A task that waited longer than the timeout
(`DOCKYARD_PROVISIONING_TIMEOUT`, `provisioning.DEFAULT_TIMEOUT`) is STOPPED with ECS's
stopCode and reason (`provisioning.stop_reason`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from controller import launch, lifecycle, placement
from controller.capacity import provisioning
from controller.capacity.strategy import PROVIDER_ATTRIBUTE
from dockyard.arns import last_part

if TYPE_CHECKING:
    from controller.model import Task
    from controller.ops.context import OpContext
    from controller.store_api import Op

log = logging.getLogger("dockyard.controller.capacity")


class WaitingPlacer:
    def __init__(self, cs: OpContext, timeout: float, period: float = 1.0) -> None:
        self.cs = cs
        self.timeout = timeout
        self.period = period
        self.last_failure: dict[str, str] = {}  # task -> why its last placement failed

    async def run(self) -> None:
        log.info(
            "tasks waiting for capacity: placed every %.1fs, stopped after %.0fs",
            self.period,
            self.timeout,
        )
        while True:
            await asyncio.sleep(self.period)
            try:
                await self.turn(time.time())
            except Exception:  # never take the controller down: log, next turn
                log.exception("placing tasks waiting for capacity failed")

    async def turn(self, now: float) -> None:
        """One round: the expired stopped, the others placed in one batch, one commit."""
        waiting = [t for t in self.cs.state.waiting_tasks() if t.waiting]
        gone = [t for t in waiting if provisioning.expired(t.created_at, now, self.timeout)]
        ops = [op for t in gone for op in self.expire(t, now)]
        rounds = [self.place(t, now) for t in waiting if t not in gone]
        for placed in await asyncio.gather(*[r for r in rounds if r is not None]):
            ops += placed
        if ops:
            await self.cs.commit(ops)
        self.cs.notify_agents([t for t in waiting if t.instance_arn])
        self.last_failure = {
            a: r for a, r in self.last_failure.items() if a in self.cs.state.waiting
        }

    def place(self, task: Task, now: float) -> asyncio.Future[list[Op]] | None:
        """Ask placement for a waiting task (batched with the round's others); a placement
        binds it to its instance there and then (claim), a failure keeps its reason."""
        td = self.cs.state.taskdefs.get(task.family, {}).get(task.revision)
        if td is None:
            return None
        demand, constraints, strategies = launch.waiting_placement(task, td)
        views = self.cs.state.cluster_views(task.cluster)

        def claim(results: list[Any]) -> list[Op]:
            result = results[0]
            if isinstance(result, placement.Failure):
                self.last_failure[task.arn] = result.reason
                return []
            if not task.waiting:  # stopped meanwhile
                return []
            launch.bind(task, result)
            said = (
                f"task placed on {last_part(task.instance_arn)} after waiting "
                f"{now - task.created_at:.0f}s for capacity provider {task.capacity_provider}"
            )
            return [
                self.cs.state.place_waiting(task),
                self.cs.event(task.cluster, "task", task.arn, said, {"group": task.group}),
            ]

        return self.cs.placer.submit(demand, 1, views, constraints, strategies, claim)

    def expire(self, task: Task, now: float) -> list[Op]:
        """Stop a task that waited past the timeout, with ECS's code and reason."""
        hosts = sum(
            1
            for i in self.cs.state.cluster_instances(task.cluster)
            if i.status != "INACTIVE"
            and i.all_attributes.get(PROVIDER_ATTRIBUTE) == task.capacity_provider
        )
        reason = provisioning.stop_reason(hosts, self.last_failure.get(task.arn, ""))
        lifecycle.stop_now(task, provisioning.STOP_CODE, reason, now)
        said = (
            f"task stopped: no room on capacity provider {task.capacity_provider} within "
            f"{self.timeout:.0f}s ({reason})"
        )
        log.info("%s: %s", task.arn, said)
        return [
            self.cs.state.save_task(task),
            self.cs.event(
                task.cluster, "task", task.arn, said, {"stopCode": provisioning.STOP_CODE}
            ),
        ]


def provisioning_timeout() -> float:
    """Seconds a task may wait for capacity: DOCKYARD_PROVISIONING_TIMEOUT (default 1800)."""
    raw = os.environ.get("DOCKYARD_PROVISIONING_TIMEOUT", str(provisioning.DEFAULT_TIMEOUT))
    try:
        timeout = float(raw)
    except ValueError:
        timeout = 0.0
    if not 1 <= timeout <= 7 * 86400:
        raise SystemExit(f"DOCKYARD_PROVISIONING_TIMEOUT must be 1 to 604800 seconds, not {raw!r}")
    return timeout
