"""Concurrent RunTask calls through the real service layer and store: one decision per loop
turn, never an overcommitted instance."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.bench_placement import add_instances
from controller.server import Controller, ControllerConfig


async def test_concurrent_run_tasks_are_batched_and_never_overcommit(tmp_path: Path) -> None:
    ctl = Controller(ControllerConfig(data_dir=tmp_path, listen="127.0.0.1:0", http="127.0.0.1:0"))
    await ctl.start()
    try:
        await add_instances(ctl, 4)  # 16384 MiB each: 64 tasks of 256 MiB fit per instance
        await ctl.api.call(
            "RegisterTaskDefinition",
            {"family": "big", "containerDefinitions": [{"name": "a", "image": "x", "memory": 256}]},
        )
        body = {"taskDefinition": "big", "count": 10}
        before = ctl.service.placer.batches
        outs = await asyncio.gather(*(ctl.api.call("RunTask", body) for _ in range(30)))
        placed = sum(len(o["tasks"]) for o in outs)
        failed = sum(len(o["failures"]) for o in outs)
        assert placed == 4 * 64 and failed == 300 - placed
        assert {f["reason"] for o in outs for f in o["failures"]} == {"RESOURCE:MEMORY"}
        assert ctl.service.placer.batches - before < 30  # identical calls shared decisions
        ctl.state.validate()
        assert all(v.memory_free >= 0 for v in ctl.state.views.values())
    finally:
        await ctl.stop()
