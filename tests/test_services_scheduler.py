"""The services scheduler over the real controller state (in-process, no agents)."""

from __future__ import annotations

import time
from pathlib import Path

from bench.bench_placement import add_instances
from controller.server import Controller, ControllerConfig


async def test_rollout_right_after_scale_up_keeps_the_minimum_healthy(tmp_path: Path) -> None:
    """Old tasks that just started are serving: a rollout may not stop them all as
    'not yet stable' (only the new deployment's tasks must prove themselves)."""
    ctl = Controller(ControllerConfig(data_dir=tmp_path, listen="127.0.0.1:0", http="127.0.0.1:0"))
    await ctl.start()
    try:
        svc, sched = ctl.service, ctl.service.scheduler
        await add_instances(ctl, 3)
        for _ in range(2):
            await svc.call(
                "RegisterTaskDefinition",
                {
                    "family": "roll",
                    "containerDefinitions": [{"name": "s", "image": "x", "memory": 8}],
                },
            )
        await svc.call(
            "CreateService", {"serviceName": "r", "taskDefinition": "roll:1", "desiredCount": 6}
        )
        await sched.pass_once()
        for t in ctl.state.tasks.values():  # as the agents would report: RUNNING just now
            t.last_status, t.started_at = "RUNNING", time.time()
        await svc.call(
            "UpdateService",
            {
                "service": "r",
                "taskDefinition": "roll:2",
                "deploymentConfiguration": {"minimumHealthyPercent": 50, "maximumPercent": 150},
            },
        )
        await sched.pass_once()
        tasks = list(ctl.state.tasks.values())
        old_kept = sum(t.revision == 1 and t.desired_status == "RUNNING" for t in tasks)
        new = sum(t.revision == 2 for t in tasks)
        assert old_kept == 3, f"{old_kept} old tasks kept (minimum healthy is 3)"
        assert old_kept + new <= 9  # maximumPercent 150
    finally:
        await ctl.stop()
