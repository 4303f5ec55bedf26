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
        for task in self.cs.state.waiting_tasks():
            if not task.waiting:
                continue
            if provisioning.expired(task.created_at, now, self.timeout):
                await self.expire(task)
            else:
                await self.place(task)
        self.last_failure = {
            a: r for a, r in self.last_failure.items() if a in self.cs.state.waiting
        }

    async def place(self, task: Task) -> None:
        td = self.cs.state.taskdefs.get(task.family, {}).get(task.revision)
        if td is None:
            return
        demand, constraints, strategies = launch.waiting_placement(task, td)
        views = self.cs.state.cluster_views(task.cluster)

        def claim(results: list[Any]) -> list[Op]:
            result = results[0]
            if isinstance(result, placement.Failure) or not task.waiting:
                if isinstance(result, placement.Failure):
                    self.last_failure[task.arn] = result.reason
                return []
            launch.bind(task, result)
            waited = time.time() - task.created_at
            return [
                self.cs.state.place_waiting(task),
                self.cs.event(
                    task.cluster,
                    "task",
                    task.arn,
                    f"task placed on {last_part(task.instance_arn)} after waiting {waited:.0f}s "
                    f"for capacity provider {task.capacity_provider}",
                    {"group": task.group},
                ),
            ]

        ops = await self.cs.placer.submit(demand, 1, views, constraints, strategies, claim)
        if ops:
            await self.cs.commit(ops)
            self.cs.notify_agents([task])

    async def expire(self, task: Task) -> None:
        hosts = sum(
            1
            for i in self.cs.state.cluster_instances(task.cluster)
            if i.status != "INACTIVE"
            and i.all_attributes.get(PROVIDER_ATTRIBUTE) == task.capacity_provider
        )
        reason = provisioning.stop_reason(hosts, self.last_failure.get(task.arn, ""))
        lifecycle.stop_now(task, provisioning.STOP_CODE, reason, time.time())
        message = (
            f"task stopped: no room on capacity provider {task.capacity_provider} within "
            f"{self.timeout:.0f}s ({reason})"
        )
        ops: list[Op] = [
            self.cs.state.save_task(task),
            self.cs.event(
                task.cluster, "task", task.arn, message, {"stopCode": provisioning.STOP_CODE}
            ),
        ]
        await self.cs.commit(ops)
        log.info("%s: %s", task.arn, message)


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
