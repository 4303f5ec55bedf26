"""The services scheduler over the real controller state (in-process, no agents)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bench.bench_placement import add_instances
from controller import liveness
from controller.orchestrator import scheduler
from controller.server import Controller, ControllerConfig


async def test_rollout_right_after_scale_up_keeps_the_minimum_healthy(tmp_path: Path) -> None:
    """Old tasks that just started are serving: a rollout may not stop them all as
    'not yet stable' (only the new deployment's tasks must prove themselves)."""
    ctl = Controller(ControllerConfig(data_dir=tmp_path, listen="127.0.0.1:0", http="127.0.0.1:0"))
    await ctl.start()
    try:
        svc, sched = ctl.api, ctl.services
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


async def test_a_pass_plans_a_steady_service_only_when_something_could_change_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Planning every steady service on every pass cost a busy controller ~15 % of its CPU.
    A steady service is planned again when one of its tasks changes, when its cluster's
    instances change, on every pass while a host of its cluster is down with tasks (the
    grace runs out with time), and at least every FULL_PASS_S."""
    ctl = Controller(ControllerConfig(data_dir=tmp_path, listen="127.0.0.1:0", http="127.0.0.1:0"))
    await ctl.start()
    try:
        svc, sched, state = ctl.api, ctl.services, ctl.state
        await add_instances(ctl, 3)
        td = {
            "family": "steady",
            "containerDefinitions": [{"name": "s", "image": "x", "memory": 8}],
        }
        await svc.call("RegisterTaskDefinition", td)
        out = await svc.call(
            "CreateService", {"serviceName": "s", "taskDefinition": "steady", "desiredCount": 3}
        )
        arn = out["service"]["serviceArn"]
        await sched.pass_once()
        for t in state.tasks.values():  # as the agents would report, long enough ago to count
            t.last_status, t.started_at = "RUNNING", time.time() - 60
            state.save_task(t)
        await sched.pass_once()
        assert sched.services[arn].steady

        async def planned() -> bool:
            before = sched._planned_at[arn]
            await sched.pass_once()
            return sched._planned_at[arn] != before

        assert not await planned()  # nothing changed
        task = next(iter(state.tasks.values()))
        state.save_task(task)
        assert await planned()  # one of its tasks changed
        assert not await planned()
        inst = next(iter(state.instances.values()))
        state.put_instance(inst)
        assert await planned()  # its cluster's instances changed

        host = state.instances[task.instance_arn]
        host.connected = False
        state.put_instance(host)
        assert await planned() and await planned()  # a host with tasks is down: every pass
        host.connected = True
        state.put_instance(host)
        assert await planned() and not await planned()

        monkeypatch.setattr(scheduler, "FULL_PASS_S", 0.05)
        await asyncio.sleep(0.1)
        assert await planned()  # and at least every FULL_PASS_S
        state.validate()
    finally:
        await ctl.stop()


async def test_a_big_start_names_ten_tasks_in_its_service_event(tmp_path: Path) -> None:
    """A scale to 5,000 used to put all 5,000 task ids (190 kB) into one service event,
    which every later save of the service rewrote."""
    ctl = Controller(ControllerConfig(data_dir=tmp_path, listen="127.0.0.1:0", http="127.0.0.1:0"))
    await ctl.start()
    try:
        svc = ctl.api
        await add_instances(ctl, 3)
        td = {"family": "many", "containerDefinitions": [{"name": "s", "image": "x", "memory": 8}]}
        await svc.call("RegisterTaskDefinition", td)
        await svc.call(
            "CreateService", {"serviceName": "m", "taskDefinition": "many", "desiredCount": 25}
        )
        await ctl.services.pass_once()
        out = await svc.call("DescribeServices", {"services": ["m"]})
        (started,) = [
            e["message"] for e in out["services"][0]["events"] if "started" in e["message"]
        ]
        assert started.startswith("(service m) has started 25 tasks: (task ")
        assert started.count("(task ") == 10 and started.endswith(" and 15 more.")
    finally:
        await ctl.stop()


async def test_a_pass_lets_a_burst_of_agent_departures_through_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thousands of agents dropping at once reach the loop about one stream end per loop
    turn; a pass at 10,000 instances holds turns of hundreds of ms, which made detecting
    them take 30 s. A pass waits for a burst to pass, at most HOLD_MAX_S however long the
    departures go on."""
    ctl = Controller(ControllerConfig(data_dir=tmp_path, listen="127.0.0.1:0", http="127.0.0.1:0"))
    await ctl.start()
    try:
        svc, sched = ctl.api, ctl.services
        departures = ctl.dispatcher.departures
        assert sched.departures is departures
        await add_instances(ctl, 3)
        td = {"family": "hold", "containerDefinitions": [{"name": "s", "image": "x", "memory": 8}]}
        await svc.call("RegisterTaskDefinition", td)
        out = await svc.call(
            "CreateService", {"serviceName": "h", "taskDefinition": "hold", "desiredCount": 2}
        )
        arn = out["service"]["serviceArn"]

        t0 = time.monotonic()
        for _ in range(departures.minimum):
            departures.note(t0)
        await sched.pass_once()
        assert time.monotonic() - t0 >= departures.window  # waited for the burst to pass
        assert len(ctl.state.service_tasks("default", "h")) == 2  # then planned

        monkeypatch.setattr(liveness, "HOLD_MAX_S", 0.3)

        async def endless() -> None:
            while True:  # a rack's worth every 10 ms
                for _ in range(departures.minimum):
                    departures.note(time.monotonic())
                await asyncio.sleep(0.01)

        churn = asyncio.create_task(endless())
        try:
            await asyncio.sleep(0.05)
            before = sched._planned_at[arn]
            t0 = time.monotonic()
            await sched.pass_once()
            held = time.monotonic() - t0
        finally:
            churn.cancel()
        assert 0.3 <= held < 2.0 and sched._planned_at[arn] != before
    finally:
        await ctl.stop()
