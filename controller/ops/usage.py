"""DescribeUsage (Dockyard's own, read-only): the CPU and memory tasks use now, by task,
service and instance, from the agents' usage reports (controller/usage.py).

Utilisation is ECS's: used over what the task reserves (controller/utilization.py), so a
service's figure is what ECSServiceAverageCPUUtilization / ...MemoryUtilization would read.
`dockyard top` renders it.

Request: {"cluster": name or ARN, "service": optional, only that service's tasks}.
Anything else is refused, naming the member.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from controller.ops.core import Core
from controller.usage import TaskRow, UsageHistory
from controller.utilization import task_cpu_percent, task_memory_percent
from controller.validation import text
from dockyard.errors import invalid

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
MEMBERS = ("cluster", "service")


class UsageOps:
    def __init__(self, service: Core, usage: UsageHistory) -> None:
        self.service = service
        self.usage = usage

    def handlers(self) -> dict[str, Handler]:
        return {"DescribeUsage": self.describe_usage}

    async def describe_usage(self, body: dict[str, Any]) -> dict[str, Any]:
        for key in body:
            if key not in MEMBERS:
                raise invalid(key, f"unknown member; DescribeUsage takes {', '.join(MEMBERS)}")
        cluster = self.service.cluster(text(body, "cluster") or None).name
        only = text(body, "service")
        rows = [
            r
            for r in self.usage.tasks(cluster)
            if (not only or r.service == only) and self._running(r.task_arn)
        ]
        services = sorted({r.service for r in rows if r.service})
        return {
            "cluster": cluster,
            "tasks": [self._task(r) for r in rows],
            "services": [self._service(cluster, name, rows) for name in services],
            "instances": self._instances(rows),
        }

    def _running(self, arn: str) -> bool:
        """Still a task of the state, not stopped: a stopped task's last report is history."""
        task = self.service.state.tasks.get(arn)
        return task is not None and task.last_status != "STOPPED"

    @staticmethod
    def _task(r: TaskRow) -> dict[str, Any]:
        s = r.latest
        return {
            "taskArn": r.task_arn,
            "serviceName": r.service,
            "group": r.group,
            "family": r.family,
            "containerInstanceArn": r.instance_arn,
            "at": s.at,
            "cpuUnits": round(s.cpu_units, 1),
            "cpuReserved": s.cpu_reserved,
            "cpuUtilization": _round(task_cpu_percent(s)),
            "memoryBytes": s.memory_bytes,
            "memoryReservedMiB": s.memory_reserved_mib,
            "memoryUtilization": _round(task_memory_percent(s)),
            "containers": [
                {
                    "name": c.name,
                    "cpuUnits": round(c.cpu_units, 1),
                    "memoryBytes": c.memory_bytes,
                    "memoryLimitBytes": c.memory_limit_bytes,
                }
                for c in r.containers
            ],
        }

    def _service(self, cluster: str, name: str, rows: list[TaskRow]) -> dict[str, Any]:
        mine = [r for r in rows if r.service == name]
        now = self.usage.service_now(cluster, name)
        return {
            "serviceName": name,
            "tasks": len(mine),
            "cpuUnits": round(sum(r.latest.cpu_units for r in mine), 1),
            "memoryBytes": sum(r.latest.memory_bytes for r in mine),
            "cpuUtilization": _round(now.cpu),
            "memoryUtilization": _round(now.memory),
        }

    def _instances(self, rows: list[TaskRow]) -> list[dict[str, Any]]:
        by_instance: dict[str, list[TaskRow]] = {}
        for r in rows:
            by_instance.setdefault(r.instance_arn, []).append(r)
        out = []
        for arn, mine in sorted(by_instance.items()):
            inst = self.service.state.instances.get(arn)
            out.append(
                {
                    "containerInstanceArn": arn,
                    "hostname": inst.hostname if inst else "",
                    "tasks": len(mine),
                    "cpuUnits": round(sum(r.latest.cpu_units for r in mine), 1),
                    "memoryBytes": sum(r.latest.memory_bytes for r in mine),
                    "cpuTotal": inst.cpu_total if inst else 0,
                    "memoryTotalMiB": inst.memory_total if inst else 0,
                }
            )
        return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
