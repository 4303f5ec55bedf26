"""Start order and restart policy on a real engine, controller and agent as processes
(issue 18): what a user sees in DescribeTasks and in `docker inspect`."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support import LocalCluster, docker, wait_for
from tests.test_foundation import register, run

pytestmark = pytest.mark.docker


def state(docker_id: str) -> dict[str, Any]:
    return json.loads(docker("inspect", docker_id))[0]["State"]


def at(ts: str) -> float:
    """Docker's RFC 3339 nanosecond time -> epoch seconds (microsecond precision)."""
    head, _, frac = ts.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00").timestamp()


SLEEPER = {"image": "dockyard/sleeper:latest", "memory": 32}
INIT = {
    "name": "init",
    "image": "dockyard/crasher:latest",
    "memory": 16,
    "essential": False,
    "environment": [{"name": "DELAY", "value": "1"}, {"name": "EXIT_CODE", "value": "0"}],
}


def test_depends_on_orders_the_start_and_reverses_the_stop(cluster: LocalCluster) -> None:
    app = {
        "name": "app",
        **SLEEPER,
        "dependsOn": [
            {"containerName": "init", "condition": "SUCCESS"},
            {"containerName": "db", "condition": "START"},
        ],
    }
    register(cluster, "ordered", INIT, {"name": "db", **SLEEPER}, app)
    [arn] = run(cluster, "ordered")
    [task] = cluster.wait_status([arn], "RUNNING", timeout=60)
    ids = {c["name"]: c["runtimeId"] for c in task["containers"]}
    init, db, first = state(ids["init"]), state(ids["db"]), state(ids["app"])
    assert init["ExitCode"] == 0
    assert at(first["StartedAt"]) >= at(init["FinishedAt"])  # SUCCESS: after init exited 0
    assert at(first["StartedAt"]) >= at(db["StartedAt"])
    cluster.client().call("StopTask", {"task": arn, "reason": "done"})
    cluster.wait_status([arn], "STOPPED", timeout=60)
    assert at(state(ids["app"])["FinishedAt"]) <= at(state(ids["db"])["FinishedAt"])


def test_a_dependency_that_cannot_be_met_stops_the_task(cluster: LocalCluster) -> None:
    failing = {**INIT, "environment": [{"name": "DELAY", "value": "0"}]}  # exits 3
    app = {
        "name": "app",
        **SLEEPER,
        "dependsOn": [{"containerName": "init", "condition": "SUCCESS"}],
    }
    register(cluster, "unmet", failing, app)
    [arn] = run(cluster, "unmet")
    [task] = cluster.wait_status([arn], "STOPPED", timeout=60)
    assert task["stopCode"] == "TaskFailedToStart"
    assert "dependency [init] for target [app]" in task["stoppedReason"]
    assert "exited with code 3" in task["stoppedReason"]
    never = next(c for c in task["containers"] if c["name"] == "app")
    assert "runtimeId" not in never  # app was never created


def test_restart_policy_restarts_in_place_and_gives_up_on_early_exits(
    cluster: LocalCluster,
) -> None:
    policy = {"enabled": True, "restartAttemptPeriod": 60}
    crasher = {"image": "dockyard/crasher:latest", "memory": 16, "restartPolicy": policy}
    slow = {"name": "slow", **crasher, "environment": [{"name": "DELAY", "value": "61"}]}
    fast = {"name": "fast", **crasher, "environment": [{"name": "DELAY", "value": "1"}]}
    register(cluster, "slowcrash", slow)
    register(cluster, "fastcrash", fast)
    [slow_arn] = run(cluster, "slowcrash")
    [fast_arn] = run(cluster, "fastcrash")
    [stopped] = cluster.wait_status([fast_arn], "STOPPED", timeout=60)
    assert stopped["stopCode"] == "EssentialContainerExited"
    assert "restartAttemptPeriod (60s)" in stopped["stoppedReason"]
    [first] = cluster.wait_status([slow_arn], "RUNNING", timeout=30)

    def restarted() -> dict[str, Any] | None:
        [t] = cluster.describe([slow_arn])
        return (
            t
            if t["containers"][0].get("reason") == "Restarted 1 time by its restartPolicy"
            else None
        )

    again = wait_for(restarted, 120, interval=0.5, what="one restart by the policy")
    assert again["lastStatus"] == "RUNNING"
    assert again["containers"][0]["runtimeId"] == first["containers"][0]["runtimeId"]
    assert state(first["containers"][0]["runtimeId"])["Running"]


def test_an_agent_with_declared_gpus_gets_gpu_tasks_with_their_device_request(
    bare_cluster: LocalCluster, tmp_path: Path
) -> None:
    listing = tmp_path / "gpus"
    listing.write_text("GPU-fake-0\nGPU-fake-1\n")
    bare_cluster.start_controller()
    bare_cluster.start_agent("a1", "--gpus-from", str(listing))
    instance = bare_cluster.wait_connected("a1")
    [gpu] = [r for r in instance["registeredResources"] if r["name"] == "GPU"]
    assert gpu["stringSetValue"] == ["GPU-fake-0", "GPU-fake-1"]
    need = {"name": "train", **SLEEPER, "resourceRequirements": [{"type": "GPU", "value": "3"}]}
    register(bare_cluster, "toomany", need)
    out = bare_cluster.client().call("RunTask", {"taskDefinition": "toomany"})
    assert [f["reason"] for f in out["failures"]] == ["RESOURCE:GPU"]
    register(
        bare_cluster, "train", {**need, "resourceRequirements": [{"type": "GPU", "value": "1"}]}
    )
    [arn] = run(bare_cluster, "train")
    # placed; Docker then cannot start it here (no NVIDIA runtime): the device request was made
    [task] = bare_cluster.wait_status([arn], "STOPPED", timeout=60)
    assert task["stopCode"] == "TaskFailedToStart"
    [container] = task["containers"]
    assert container["gpuIds"] == ["GPU-fake-0"]
    [request] = json.loads(docker("inspect", container["runtimeId"]))[0]["HostConfig"][
        "DeviceRequests"
    ]
    assert request["DeviceIDs"] == ["GPU-fake-0"] and request["Driver"] == "nvidia"


def test_an_agent_that_disables_privileged_is_skipped_by_placement(
    bare_cluster: LocalCluster,
) -> None:
    bare_cluster.start_controller()
    bare_cluster.start_agent("a1", "--disable-privileged")
    instance = bare_cluster.wait_connected("a1")
    attrs = {a["name"]: a.get("value") for a in instance["attributes"]}
    assert attrs["dockyard.policy.privileged-disabled"] == "true"
    register(bare_cluster, "root", {"name": "root", **SLEEPER, "privileged": True})
    out = bare_cluster.client().call("RunTask", {"taskDefinition": "root"})
    assert not out["tasks"] and [f["reason"] for f in out["failures"]] == ["ATTRIBUTE"]
    assert "dockyard.policy.privileged-disabled" in out["failures"][0]["detail"]
    register(bare_cluster, "plain", {"name": "plain", **SLEEPER})
    [arn] = run(bare_cluster, "plain")
    bare_cluster.wait_status([arn], "RUNNING", timeout=60)
