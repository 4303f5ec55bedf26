"""Placements per second through the controller's real RunTask path, store commits included.

An in-process Controller (service layer, explicit state, SQLite store with group commit;
or three etcd members on this machine with --store etcd) with N simulated container
instances registered straight into its state (connected, no
agents: delivery to agents is not what this measures). Each RunTask places count=10 tasks
with spread(attribute:zone) + binpack(memory) and a memberOf constraint, then commits the
tasks and their events before it returns, exactly as for a user. `--concurrency` RunTask
calls run at once, as many clients would. Compare with bench/bench_placement_pure.py (the
engine alone).

    .venv/bin/python -m bench.bench_placement [--sizes 100,1000,10000] [--tasks 3000] [--store etcd]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import tempfile
import time
from pathlib import Path

from controller.model import Instance
from controller.ops import clusters
from controller.server import Controller, ControllerConfig
from controller.store import Op
from tests.etcd_fixture import etcd_cluster

STRATEGY = [{"type": "spread", "field": "attribute:zone"}, {"type": "binpack", "field": "memory"}]
CONSTRAINT = [{"type": "memberOf", "expression": "attribute:zone != d"}]
TASKDEF = {
    "family": "bench",
    "containerDefinitions": [
        {"name": "app", "image": "dockyard/sleeper:latest", "memory": 64, "cpu": 16}
    ],
}


async def add_instances(ctl: Controller, n: int) -> None:
    await clusters.ensure_default(ctl.service)  # what an agent joining `default` does
    ops: list[Op] = []
    for k in range(n):
        iid = f"i-{k:08d}"
        inst = Instance(
            arn=ctl.arns.container_instance("default", iid),
            id=iid,
            cluster="default",
            connected=True,
            cpu_total=4096,
            memory_total=16384,
            reserved_tcp=[22],
            attributes={"zone": "abcd"[k % 4], "ecs.os-type": "linux"},
        )
        ops.append(ctl.state.put_instance(inst))
    await ctl.store.write(ops)


async def measure(n: int, tasks: int, concurrency: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        ctl = Controller(
            ControllerConfig(
                data_dir=Path(tmp) / "controller",
                listen="127.0.0.1:0",
                http="127.0.0.1:0",
                store=store_for_run(),
            )
        )
        await ctl.start()
        try:
            await add_instances(ctl, n)
            await ctl.api.call("RegisterTaskDefinition", TASKDEF)
            body = {
                "taskDefinition": "bench",
                "count": 10,
                "placementStrategy": STRATEGY,
                "placementConstraints": CONSTRAINT,
            }
            calls = tasks // 10
            placed = 0

            async def worker(k: int) -> None:
                nonlocal placed
                for _ in range(k):
                    out = await ctl.api.call("RunTask", body)
                    placed += len(out["tasks"])

            t0 = time.perf_counter()
            share = [calls // concurrency + (i < calls % concurrency) for i in range(concurrency)]
            await asyncio.gather(*(worker(k) for k in share))
            elapsed = time.perf_counter() - t0
            ctl.state.validate()
            return placed / elapsed, placed
        finally:
            await ctl.stop()


async def measure_service(n: int, tasks: int) -> float:
    """One service created at `tasks` desired: placements/s until every task is placed."""
    with tempfile.TemporaryDirectory() as tmp:
        ctl = Controller(
            ControllerConfig(
                data_dir=Path(tmp) / "controller",
                listen="127.0.0.1:0",
                http="127.0.0.1:0",
                store=store_for_run(),
            )
        )
        await ctl.start()
        try:
            await add_instances(ctl, n)
            await ctl.api.call("RegisterTaskDefinition", TASKDEF)
            t0 = time.perf_counter()
            await ctl.api.call(
                "CreateService",
                {
                    "serviceName": "bench",
                    "taskDefinition": "bench",
                    "desiredCount": tasks,
                    "placementStrategy": STRATEGY,
                    "placementConstraints": CONSTRAINT,
                },
            )
            # the scheduler places on its own ticks: poll the state it writes (5 ms grain)
            while sum(1 for t in ctl.state.tasks.values() if t.service == "bench") < tasks:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            elapsed = time.perf_counter() - t0
            ctl.state.validate()
            return tasks / elapsed
        finally:
            await ctl.stop()


ETCD_URL = ""  # set by --store etcd: three members started on this machine


def store_for_run() -> str:
    """SQLite in the run's dir, or the etcd members under a prefix of the run's own."""
    return f"{ETCD_URL}?prefix=/bench-{secrets.token_hex(4)}" if ETCD_URL else "sqlite"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--tasks", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--service-tasks", type=int, default=5000)
    ap.add_argument(
        "--store",
        choices=["sqlite", "etcd"],
        default="sqlite",
        help="the store: sqlite, or three etcd members started on this machine",
    )
    args = ap.parse_args()
    with contextlib.ExitStack() as stack:
        if args.store == "etcd":
            global ETCD_URL
            ETCD_URL = stack.enter_context(etcd_cluster(3)).url
        report(args)


def report(args: argparse.Namespace) -> None:
    print(
        f"RunTask count=10, spread(zone)+binpack(memory)+memberOf, {args.tasks} tasks, "
        f"{args.concurrency} concurrent callers, {args.store} commits included"
    )
    print(f"{'instances':>10}{'placed':>8}{'RunTask/s':>12}{'service/s':>12}")
    for n in (int(s) for s in args.sizes.split(",")):
        rate, placed = asyncio.run(measure(n, args.tasks, args.concurrency))
        service_rate = asyncio.run(measure_service(n, args.service_tasks))
        print(f"{n:>10}{placed:>8}{rate:>12.0f}{service_rate:>12.0f}")
    print(
        f"service/s: one service created with desiredCount={args.service_tasks}, "
        "until every task is placed and committed"
    )


if __name__ == "__main__":
    main()
