"""What agents tell the controller, applied to the state: registration, status, disconnects.

The dispatcher moves messages; this module decides what they mean and commits it, through
the same service layer (store, events, notifier) as the APIs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from controller import lifecycle
from controller.model import Instance, Task, now
from controller.ops import clusters
from controller.ops.context import OpContext
from controller.ops.core import DEFAULT_CLUSTER
from controller.store_api import Op
from dockyard.errors import ApiError
from dockyard.v1 import agent_pb2

log = logging.getLogger(__name__)

MAX_REPORTS_PER_BATCH = 1024


@dataclass
class Refused:
    task_arn: str
    code: str
    message: str


class AgentLink:
    def __init__(self, service: OpContext) -> None:
        self.service = service
        self.state = service.state

    async def register(self, reg: agent_pb2.Register) -> Instance:
        """Create or update the instance for a registering agent; bump its epoch."""
        if not reg.instance_id or len(reg.instance_id) > 64:
            raise ApiError("InvalidParameterException", "register.instance_id: 1-64 characters")
        if reg.cluster in ("", DEFAULT_CLUSTER):  # as ECS's agent: `default` on first join
            await clusters.ensure_default(self.service)
        cluster = self.service.cluster(reg.cluster or None)
        inst = self.state.instance_by_id(cluster.name, reg.instance_id)
        if inst is not None and inst.status == "INACTIVE":
            raise ApiError(
                "ClientException",
                f"container instance {inst.arn} was deregistered: remove the "
                "agent's state dir to join as a new instance",
            )
        new = inst is None
        if inst is None:
            inst = Instance(
                arn=self.service.arns.container_instance(cluster.name, reg.instance_id),
                id=reg.instance_id,
                cluster=cluster.name,
            )
        inst.hostname, inst.address = reg.hostname[:255], reg.address[:255]
        inst.agent_version = reg.agent_version[:64]
        inst.docker_version = reg.attributes.get("ecs.docker-version", "")[:64]
        inst.cpu_total = max(0, reg.total.cpu)
        inst.memory_total = max(0, reg.total.memory_mib)
        inst.reserved_tcp = sorted({p for p in reg.total.reserved_tcp_ports if 0 < p < 65536})
        inst.reserved_udp = sorted({p for p in reg.total.reserved_udp_ports if 0 < p < 65536})
        inst.gpu_ids = sorted({g[:128] for g in reg.total.gpu_ids})[:64]
        inst.attributes = {k[:128]: v[:128] for k, v in list(reg.attributes.items())[:100]}
        inst.epoch += 1
        inst.connected, inst.docker_healthy, inst.disconnected_at = True, True, None
        ops: list[Op] = [
            self.state.put_instance(inst),
            self.service.event(
                cluster.name,
                "instance",
                inst.arn,
                f"{'registered' if new else 'reconnected'} ({inst.hostname}, epoch {inst.epoch})",
            ),
        ]
        ops += self._set_connectivity(inst, "CONNECTED")
        await self.service.commit(ops)
        await self.apply_reports(inst, list(reg.tasks))
        return inst

    def _set_connectivity(self, inst: Instance, value: str) -> list[Op]:
        ops: list[Op] = []
        for task in self.state.instance_tasks(inst.arn):
            if task.connectivity != value and task.active:
                task.connectivity, task.connectivity_at = value, now()
                ops.append(self.state.save_task(task))
        return ops

    async def apply_reports(
        self, inst: Instance, reports: list[agent_pb2.TaskStatus]
    ) -> list[Refused]:
        """Fold status reports in; refuse those about tasks not assigned to this instance."""
        refused: list[Refused] = []
        ops: list[Op] = []
        stopped: list[Task] = []
        latest = {r.task_arn: r for r in reports[:MAX_REPORTS_PER_BATCH]}
        for arn, report in latest.items():
            task = self.state.tasks.get(arn)
            if task is None or task.instance_arn != inst.arn:
                refused.append(
                    Refused(arn, "NOT_ASSIGNED", f"task {arn} is not assigned to {inst.arn}")
                )
                continue
            try:
                change = lifecycle.apply_report(task, report, now())
            except lifecycle.BadReport as err:
                refused.append(Refused(arn, "BAD_MESSAGE", str(err)))
                continue
            if change is None:
                continue
            ops.append(self.state.save_task(task))
            ops += [self.service.event(task.cluster, "task", arn, m) for m in change.messages]
            if change.stopped:
                self.state.task_stopped(task)
                self.state.forget_on_instance(task)
                stopped.append(task)
        await self.service.commit(ops)
        self.service.tasks_stopped(stopped)  # the dispatcher and the orchestrator listen
        for r in refused:
            log.warning("refused report from %s: %s", inst.arn, r.message)
        return refused

    async def disconnected(self, inst: Instance, epoch: int, why: str) -> None:
        """The session of `epoch` ended; a newer session makes this a no-op (fencing)."""
        await self.service.commit(self.mark_disconnected(inst, epoch, why))

    def mark_disconnected(self, inst: Instance, epoch: int, why: str) -> list[Op]:
        """Mark the instance and its tasks DISCONNECTED in memory now (placement and the
        services see it at once); the ops are for the caller to commit. No-op when a
        newer session has registered (fencing)."""
        if inst.epoch != epoch or not inst.connected:
            return []
        inst.connected, inst.disconnected_at = False, now()
        ops = [
            self.state.put_instance(inst),
            self.service.event(inst.cluster, "instance", inst.arn, f"disconnected: {why}"),
        ]
        return ops + self._set_connectivity(inst, "DISCONNECTED")

    async def docker_health(self, inst: Instance, healthy: bool) -> None:
        if inst.docker_healthy == healthy:
            return
        inst.docker_healthy = healthy
        msg = "Docker engine is back" if healthy else "Docker engine unreachable: no placements"
        await self.service.commit(
            [
                self.state.put_instance(inst),
                self.service.event(inst.cluster, "instance", inst.arn, msg),
            ]
        )
