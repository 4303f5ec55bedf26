"""Placements per second of the pure engine (no store, no gRPC): the ceiling for the controller.

Scenarios, each with spread(attribute:zone) + binpack(memory) and a memberOf constraint:
- `run-task x10`: repeated RunTask-like calls placing count=10 tasks (each call is one decision,
  the cluster state carries over between calls as the controller would commit it);
- `run-task x10 standing`: the same through StandingPlacer over live views (the controller's
  path): commits change views in place and log them, so each call re-checks only those;
- `service N`: one call placing N tasks of one service group.

    .venv/bin/python bench/bench_placement_pure.py [--sizes 100,1000,10000] [--seconds 2]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from controller.placement import (
    Constraint,
    InstanceView,
    Placement,
    Strategy,
    TaskDemand,
    place,
)
from controller.placement.model import ChangeLog, LiveViews
from controller.placement.standing import StandingPlacer

STRATEGIES = [Strategy("spread", "attribute:zone"), Strategy("binpack", "memory")]
CONSTRAINTS = [Constraint("memberOf", "attribute:ecs.os-type == linux && attribute:zone != d")]
ZONES = "abcd"


def cluster(n: int, rng: random.Random) -> list[InstanceView]:
    """n instances across 4 zones with some load already on them."""
    views = []
    for k in range(n):
        used = rng.randrange(0, 8)
        views.append(
            InstanceView(
                arn=f"arn:aws:ecs:us-east-1:000000000000:container-instance/bench/i{k:06d}",
                instance_id=f"i{k:06d}",
                status="ACTIVE",
                connected=True,
                attributes={"zone": ZONES[k % 4], "ecs.os-type": "linux"},
                agent_version="1.0.0",
                registered_at=1.7e9,
                cpu_free=16384 - used * 512,
                memory_free=65536 - used * 1024,
                tcp_ports_used={22, 2375, 2376, 51678, 51679},
                udp_ports_used=set(),
                running_tasks_count=used,
                task_groups={"family:other": used} if used else {},
                cpu_total=16384,
                memory_total=65536,
            )
        )
    return views


def commit(views: list[InstanceView], demand: TaskDemand, results: list) -> None:
    """Apply placements to the snapshot as the controller's store would (new objects)."""
    index = {v.arn: k for k, v in enumerate(views)}
    for r in results:
        if not isinstance(r, Placement):
            continue
        k = index[r.instance_arn]
        v = views[k]
        groups = dict(v.task_groups)
        groups[demand.group] = groups.get(demand.group, 0) + 1
        views[k] = InstanceView(
            v.arn,
            v.instance_id,
            v.status,
            v.connected,
            v.attributes,
            v.agent_version,
            v.registered_at,
            v.cpu_free - demand.cpu,
            v.memory_free - demand.memory,
            v.tcp_ports_used | set(r.tcp_host_ports),
            v.udp_ports_used,
            v.running_tasks_count + 1,
            groups,
            v.cpu_total,
            v.memory_total,
        )


def measure(fn: Callable[[], tuple[int, float]], seconds: float) -> float:
    """Placements per second of time spent inside place() (commits are not counted)."""
    placed, busy, start = 0, 0.0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        n, took = fn()
        placed += n
        busy += took
    return placed / busy


def timed_place(
    demands: list[TaskDemand], views: list[InstanceView], rng: random.Random
) -> tuple[list, float]:
    start = time.perf_counter()
    results = place(demands, views, CONSTRAINTS, STRATEGIES, rng)
    return results, time.perf_counter() - start


def run_task_batches(n: int, seconds: float) -> float:
    rng = random.Random(n)
    views = cluster(n, rng)
    demand = TaskDemand(cpu=128, memory=256, dynamic_tcp=1, group="family:web")

    def once() -> tuple[int, float]:
        results, took = timed_place([demand] * 10, views, rng)
        placed = sum(isinstance(r, Placement) for r in results)
        if placed < len(results):  # the cluster is full: start again from a fresh one
            views[:] = cluster(n, rng)
        else:
            commit(views, demand, results)
        return placed, took

    return measure(once, seconds)


def claim(views: LiveViews, demand: TaskDemand, results: list) -> None:
    """Apply placements in place and log them, as ClusterState._claim does."""
    for r in results:
        if isinstance(r, Placement):
            v = views[views.position[r.instance_arn]]
            views.changes.append(v.arn)
            v.cpu_free -= demand.cpu
            v.memory_free -= demand.memory
            v.tcp_ports_used |= set(r.tcp_host_ports)
            v.running_tasks_count += 1
            v.task_groups[demand.group] = v.task_groups.get(demand.group, 0) + 1


def run_task_standing(n: int, seconds: float) -> float:
    rng = random.Random(n)
    placer = StandingPlacer(rng)
    views = LiveViews(cluster(n, rng), ChangeLog())
    demand = TaskDemand(cpu=128, memory=256, dynamic_tcp=1, group="family:web")

    def once() -> tuple[int, float]:
        nonlocal views
        start = time.perf_counter()
        results = placer.place([demand] * 10, views, CONSTRAINTS, STRATEGIES)
        took = time.perf_counter() - start
        placed = sum(isinstance(r, Placement) for r in results)
        if placed < len(results):  # the cluster is full: start again from a fresh one
            views = LiveViews(cluster(n, rng), ChangeLog())
        else:
            claim(views, demand, results)
        return placed, took

    return measure(once, seconds)


def service(n: int, tasks: int, seconds: float) -> float:
    rng = random.Random(n)
    views = cluster(n, rng)
    demand = TaskDemand(cpu=64, memory=128, dynamic_tcp=1, group="service:api")

    def once() -> tuple[int, float]:
        results, took = timed_place([demand] * tasks, views, rng)
        return sum(isinstance(r, Placement) for r in results), took

    return measure(once, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    print(f"{'instances':>9}  {'scenario':<22} {'placements/s':>12}")
    for n in (int(s) for s in args.sizes.split(",")):
        rows = [
            ("run-task x10", run_task_batches(n, args.seconds)),
            ("run-task x10 standing", run_task_standing(n, args.seconds)),
        ]
        for tasks in (100, 1000):
            rows.append((f"service {tasks}", service(n, tasks, args.seconds)))
        for name, rate in rows:
            print(f"{n:>9}  {name:<22} {rate:>12,.0f}", flush=True)


if __name__ == "__main__":
    main()
