"""The simulator against a real controller process, and the liveness policy's pure rules."""

from __future__ import annotations

import random
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller import liveness
from dockyard.sim import model
from dockyard.sim.cli import split
from dockyard.v1 import agent_pb2
from tests.support import LocalCluster, Proc, metric, scrape, tasks_by_status, wait_for

AGENTS = 50
TASKDEF = {
    "family": "simapp",
    "containerDefinitions": [
        {"name": "app", "image": "dockyard/sleeper", "cpu": 128, "memory": 128, "essential": True}
    ],
}

# ---------------------------------------------------------------- heartbeat policy (pure)


def test_small_clusters_keep_the_base_period() -> None:
    assert liveness.heartbeat_period(1, 1.0, 1000) == 1.0
    assert liveness.heartbeat_period(1000, 1.0, 1000) == 1.0
    assert liveness.heartbeat_period(0, 0.5, 1000) == 0.5


def test_large_clusters_stay_under_the_budget() -> None:
    for agents in (1001, 5000, 10_000, 123_457):
        period = liveness.heartbeat_period(agents, 1.0, 1000)
        assert agents / period <= 1000
        assert period % liveness.PERIOD_STEP_S == 0  # steps, not a new period per join
    assert liveness.heartbeat_period(10_000, 1.0, 1000) == 10.0


def test_budget_zero_means_no_limit() -> None:
    assert liveness.heartbeat_period(100_000, 1.0, 0) == 1.0


def test_silence_limit_covers_an_agent_asleep_on_the_old_period() -> None:
    assert liveness.silence_limit(10.0, 1.0) == 25.0
    assert liveness.silence_limit(1.0, 5.0) == 12.5


def test_admission_refuses_beyond_the_queue_with_a_hint() -> None:
    adm = liveness.Admission(max_inflight=2, max_waiting=3)
    assert [adm.admit() for _ in range(4)] == [True, True, True, False]
    assert adm.refused == 1 and adm.retry_hint() >= 1.0


def test_departures_see_a_burst_that_lasts_while_they_keep_coming() -> None:
    """A rack going away (many sessions closing together) is a burst, and it goes on while
    its stream ends trickle in (a loaded controller sees them slower than they happened);
    the odd agent leaving now and then is never one, however long it goes on."""
    dep = liveness.Departures(minimum=3, window=0.1, quiet=0.25)
    for t in (0.0, 0.5, 1.0, 1.5):  # one every half second: never a burst
        dep.note(t)
        assert not dep.bursting(t)
    for t in (2.0, 2.01, 2.02):
        dep.note(t)
    assert dep.bursting(2.05) and dep.quiet_in(2.05) > 0
    for t in (2.2, 2.4, 2.6):  # the rest of the rack, slower
        dep.note(t)
    assert dep.bursting(2.8)
    assert not dep.bursting(2.9) and dep.quiet_in(2.9) == 0


# ---------------------------------------------------------------- simulated host (pure)


def _desired(arn: str, status: str = "RUNNING", known: str = "") -> agent_pb2.DesiredTask:
    return agent_pb2.DesiredTask(
        task_arn=arn,
        desired_status=status,
        known_status=known,
        containers=[agent_pb2.ContainerSpec(name="app", essential=True)],
    )


def test_identities_are_stable_and_distinct() -> None:
    assert model.instance_id("s", 7) == model.instance_id("s", 7)
    assert len({model.instance_id("s", i) for i in range(1000)}) == 1000
    assert model.instance_id("s", 1) != model.instance_id("t", 1)
    reg = model.register_message(model.SimConfig(controller="x", containers_per_agent=4), 4)
    assert reg.total.cpu == 4 * model.TASK_CPU and reg.attributes["zone"] == "b"


def test_start_then_run_or_fail_then_stop() -> None:
    rng = random.Random(1)
    ok = model.SimConfig(controller="x")
    tasks: dict[str, model.SimTask] = {}
    step = model.apply_desired(tasks, _desired("t1"), ok, rng)
    assert step.report and step.start_after is not None
    assert model.task_status(tasks["t1"], 0).last_status == "PENDING"
    assert model.finish_start(tasks["t1"], ok, rng, 1.0)
    assert model.task_status(tasks["t1"], 0).last_status == "RUNNING"
    model.apply_desired(tasks, _desired("t1", "STOPPED"), ok, rng)
    st = model.task_status(tasks["t1"], 0)
    assert st.last_status == "STOPPED" and st.containers[0].exit_code == model.SIGTERM_EXIT

    flaky = model.SimConfig(controller="x", failure_rate=1.0, exit_code=3)
    model.apply_desired(tasks, _desired("t2"), flaky, rng)
    model.finish_start(tasks["t2"], flaky, rng, 1.0)
    st = model.task_status(tasks["t2"], 0)
    assert (st.last_status, st.stop_code, st.containers[0].exit_code) == (
        "STOPPED",
        "EssentialContainerExited",
        3,
    )


def test_a_started_task_is_adopted_after_a_simulator_restart() -> None:
    tasks: dict[str, model.SimTask] = {}
    cfg = model.SimConfig(controller="x")
    step = model.apply_desired(tasks, _desired("t", known="RUNNING"), cfg, random.Random(0))
    assert step.start_after is None and tasks["t"].status == "RUNNING"


def test_bad_knobs_name_the_flag() -> None:
    with pytest.raises(ValueError, match="--failure-rate"):
        model.SimConfig(controller="x", failure_rate=2).check()
    with pytest.raises(ValueError, match="--agents"):
        model.SimConfig(controller="x", agents=0).check()


def test_split_over_processes() -> None:
    assert split(10, 3) == [(4, 0), (3, 4), (3, 7)]
    assert split(2, 4) == [(1, 0), (1, 1)]


# ---------------------------------------------------------------- against a real controller


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    lc = LocalCluster(tmp_path, heartbeat=0.5)
    sims: list[Proc] = []
    lc.sims = sims  # type: ignore[attr-defined]
    try:
        lc.start_controller()
        yield lc
    finally:
        for p in sims:
            p.kill(signal.SIGKILL)
        lc.stop()


def _sim(lc: LocalCluster, name: str, *args: str) -> Proc:
    argv = [sys.executable, "-m", "dockyard.cli.main", "sim", "--controller", lc.address]
    proc = Proc(name, [*argv, "--report-every", "0", *args], lc.root / f"{name}.log")
    lc.sims.append(proc)  # type: ignore[attr-defined]
    proc.start()
    return proc


def _instances(lc: LocalCluster, cluster: str = "default") -> list[dict]:
    c = lc.client()
    arns = c.call("ListContainerInstances", {"cluster": cluster})["containerInstanceArns"]
    if not arns:
        return []
    return c.call("DescribeContainerInstances", {"cluster": cluster, "containerInstances": arns})[
        "containerInstances"
    ]


def _connected(lc: LocalCluster, n: int, connected: bool = True) -> list[dict]:
    insts = _instances(lc)
    ok = len(insts) == n and all(i["agentConnected"] == connected for i in insts)
    return insts if ok else []


def test_simulated_fleet_registers_runs_tasks_and_comes_back(cluster: LocalCluster) -> None:
    lc = cluster
    sim = _sim(lc, "sim", "--agents", str(AGENTS), "--start-latency-ms", "50")
    first = wait_for(lambda: _connected(lc, AGENTS), 30, 0.2, f"{AGENTS} agents connected")
    zones = {_attr(i, "zone") for i in first}
    assert zones == {"a", "b", "c"}

    c = lc.client()
    c.call("RegisterTaskDefinition", TASKDEF)
    arns = [
        t["taskArn"]
        for _ in range(3)
        for t in c.call("RunTask", {"taskDefinition": "simapp", "count": 10})["tasks"]
    ]
    assert len(arns) == 30
    lc.wait_status(arns, "RUNNING", timeout=20)
    # the task gauges follow: all 30 RUNNING, the statuses they passed through back at 0
    assert _running_only(lc) == (30, 0)

    sim.kill(signal.SIGKILL)  # every host of the fleet vanishes
    wait_for(lambda: _connected(lc, AGENTS, connected=False), 20, 0.2, "all DISCONNECTED")
    tasks = lc.describe(arns[:10])
    assert {t["connectivity"] for t in tasks} == {"DISCONNECTED"}
    assert _running_only(lc) == (30, 30)  # all 30 are on instances whose agent is gone

    _sim(lc, "sim2", "--agents", str(AGENTS))
    again = wait_for(lambda: _connected(lc, AGENTS), 30, 0.2, "fleet back")
    assert sorted(i["ec2InstanceId"] for i in again) == sorted(i["ec2InstanceId"] for i in first)
    assert {t["lastStatus"] for t in lc.describe(arns)} == {"RUNNING"}  # not restarted
    assert _running_only(lc) == (30, 0)


def _running_only(lc: LocalCluster) -> tuple[float, float | None]:
    """(dockyard_tasks RUNNING, dockyard_tasks_on_disconnected_instances), once the task
    gauges of every other status read 0."""
    samples = scrape(lc.http_port)
    by_status = tasks_by_status(samples)
    assert len(by_status) > 1 and not any(n for st, n in by_status.items() if st != "RUNNING")
    return by_status["RUNNING"], metric(samples, "dockyard_tasks_on_disconnected_instances")


def test_failure_rate_stops_tasks_with_the_exit_code(cluster: LocalCluster) -> None:
    lc = cluster
    c = lc.client()
    _sim(lc, "flaky", "--agents", "3", "--failure-rate", "1", "--exit-code", "7")
    wait_for(lambda: _connected(lc, 3), 30, 0.2, "3 agents connected")
    c.call("RegisterTaskDefinition", TASKDEF)
    out = c.call("RunTask", {"taskDefinition": "simapp", "count": 5})
    arns = [t["taskArn"] for t in out["tasks"]]
    stopped = lc.wait_status(arns, "STOPPED", timeout=20)
    assert {t["stopCode"] for t in stopped} == {"EssentialContainerExited"}
    assert {t["containers"][0]["exitCode"] for t in stopped} == {7}


def _attr(inst: dict, name: str) -> str:
    return next((a.get("value", "") for a in inst["attributes"] if a["name"] == name), "")


def _service(lc: LocalCluster) -> dict:
    return lc.client().call("DescribeServices", {"services": ["fleet"]})["services"][0]


def _service_tasks(lc: LocalCluster, desired: str) -> list[str]:
    body = {"serviceName": "fleet", "desiredStatus": desired}
    return sorted(lc.client().call("ListTasks", body)["taskArns"])


def test_a_fleet_back_after_the_grace_keeps_its_tasks(cluster: LocalCluster) -> None:
    """Every host of a service gone past the disconnect grace: nothing can replace its
    tasks, so none is stopped; when the fleet comes back each agent keeps its own and
    nothing is placed twice (before: every original was stopped on the return and started
    again beside it)."""
    lc = cluster
    c = lc.client()
    sim = _sim(lc, "sim", "--agents", "3", "--start-latency-ms", "50")
    wait_for(lambda: _connected(lc, 3), 30, 0.2, "3 agents connected")
    c.call("RegisterTaskDefinition", TASKDEF)
    c.call("CreateService", {"serviceName": "fleet", "taskDefinition": "simapp", "desiredCount": 6})
    wait_for(lambda: _service(lc)["runningCount"] == 6, 30, 0.2, "6 RUNNING")
    originals = _service_tasks(lc, "RUNNING")

    sim.kill(signal.SIGKILL)
    wait_for(lambda: _connected(lc, 3, connected=False), 20, 0.2, "all DISCONNECTED")
    unplaced = "unable to place a task"  # a pass past the grace found nowhere to go
    wait_for(
        lambda: any(unplaced in e["message"] for e in _service(lc)["events"]),
        lc.grace + 30,
        0.2,
        "a planning pass past the grace",
    )
    assert _service_tasks(lc, "RUNNING") == originals  # lost, but kept: nowhere to replace

    _sim(lc, "sim2", "--agents", "3", "--start-latency-ms", "50")
    wait_for(lambda: _connected(lc, 3), 30, 0.2, "fleet back")
    wait_for(lambda: _service(lc).get("events") and _steady_after_return(lc), 30, 0.2, "steady")
    assert _service_tasks(lc, "RUNNING") == originals
    assert _service_tasks(lc, "STOPPED") == []
    assert {t["lastStatus"] for t in lc.describe(originals)} == {"RUNNING"}


def _steady_after_return(lc: LocalCluster) -> bool:
    svc = _service(lc)
    return svc["runningCount"] == 6 and svc["pendingCount"] == 0 and not _disconnected(lc)


def _disconnected(lc: LocalCluster) -> float:
    return metric(scrape(lc.http_port), "dockyard_tasks_on_disconnected_instances") or 0.0
