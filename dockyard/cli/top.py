"""`dockyard top`: the tasks, services and instances of a cluster by CPU and memory.

Figures are the agents' last usage reports (every 15 s): CPU in units (1024 = one core) and
as a percent of what the task reserves, memory in MiB and as a percent of its reservation
(ECS's utilisation; a service's is ECSServiceAverageCPUUtilization's formula over the last
minute). A task that reserves nothing shows "-" for its percent.
"""

from __future__ import annotations

import argparse
from typing import Any

from dockyard.cli import output as out
from dockyard.cli.common import Ctx, SubParsers, command

MIB = 1024 * 1024
TASK_HEADERS = ("task", "service", "instance", "cpu", "cpu %", "memory", "mem %")
SERVICE_HEADERS = ("service", "tasks", "cpu", "cpu %", "memory", "mem %")
INSTANCE_HEADERS = ("instance", "hostname", "tasks", "cpu", "memory")


def register(sub: SubParsers) -> None:
    p = command(
        sub,
        "top",
        top,
        "tasks, services and instances by CPU and memory",
        __doc__ or "",
    )
    p.add_argument("--service", metavar="NAME", help="only this service's tasks")
    p.add_argument(
        "--sort", choices=("cpu", "memory"), default="cpu", help="order (default %(default)s)"
    )
    p.add_argument("--limit", type=int, default=20, metavar="N", help="tasks shown (default 20)")


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}%"


def _mib(n: int) -> str:
    return f"{n / MIB:.1f}MiB"


def _cpu(units: float) -> str:
    return f"{units:.0f}"


def top(ctx: Ctx, args: argparse.Namespace) -> int:
    if args.limit < 1:
        out.error("--limit: must be at least 1")
        return 2
    doc = ctx.call("DescribeUsage", {"service": args.service} if args.service else {})
    if ctx.json:
        out.print_json(doc)
        return 0
    key = "cpuUnits" if args.sort == "cpu" else "memoryBytes"
    tasks = sorted(doc["tasks"], key=lambda t: t[key], reverse=True)[: args.limit]
    hosts = {i["containerInstanceArn"]: i.get("hostname") for i in doc["instances"]}
    if not doc["tasks"]:
        print("no usage reported yet (agents report every 15 s)")
        return 0
    out.print_table(SERVICE_HEADERS, [_service_row(s) for s in _sorted(doc["services"], key)])
    print()
    out.print_table(TASK_HEADERS, [_task_row(t, hosts) for t in tasks])
    print()
    out.print_table(INSTANCE_HEADERS, [_instance_row(i) for i in _sorted(doc["instances"], key)])
    return 0


def _sorted(items: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    return sorted(items, key=lambda x: x[key], reverse=True)


def _service_row(s: dict[str, Any]) -> list[Any]:
    return [
        s["serviceName"],
        s["tasks"],
        _cpu(s["cpuUnits"]),
        _pct(s["cpuUtilization"]),
        _mib(s["memoryBytes"]),
        _pct(s["memoryUtilization"]),
    ]


def _task_row(t: dict[str, Any], hosts: dict[str, str | None]) -> list[Any]:
    return [
        out.short_task(t["taskArn"]),
        t["serviceName"] or t["family"],
        hosts.get(t["containerInstanceArn"]) or out.short(t["containerInstanceArn"]),
        _cpu(t["cpuUnits"]),
        _pct(t["cpuUtilization"]),
        _mib(t["memoryBytes"]),
        _pct(t["memoryUtilization"]),
    ]


def _instance_row(i: dict[str, Any]) -> list[Any]:
    return [
        out.short(i["containerInstanceArn"]),
        i["hostname"],
        i["tasks"],
        f"{_cpu(i['cpuUnits'])}/{i['cpuTotal']}",
        f"{_mib(i['memoryBytes'])}/{i['memoryTotalMiB']}MiB",
    ]
