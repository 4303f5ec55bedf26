"""Services end to end: a real controller and real agents on the machine's dockerd.

Counts are checked in Docker itself (containers labelled with the task definition), not
only in the controller's view.
"""

from __future__ import annotations

import json
import signal
import threading
from typing import Any

import pytest

from controller.ecs_shapes import check_response
from dockyard import labels
from tests.support import LocalCluster, docker, metric, scrape, wait_for

pytestmark = pytest.mark.docker


def register(
    c: LocalCluster, family: str, image: str = "dockyard/sleeper:latest", **container: Any
) -> str:
    body = {
        "family": family,
        "containerDefinitions": [
            {"name": "main", "image": image, "memory": 32, "essential": True, **container}
        ],
    }
    return str(
        c.client().call("RegisterTaskDefinition", body)["taskDefinition"]["taskDefinitionArn"]
    )


def service(c: LocalCluster, name: str) -> dict[str, Any]:
    out = c.client().call("DescribeServices", {"services": [name]})
    check_response("DescribeServices", out)
    return dict(out["services"][0])


def steady(
    c: LocalCluster, name: str, count: int, revision: int | None = None, timeout: float = 60
) -> dict[str, Any]:
    """Wait for ECS's services_stable: one deployment, runningCount == desiredCount."""

    def check() -> dict[str, Any] | None:
        s = service(c, name)
        dep = s["deployments"]
        ok = (
            len(dep) == 1
            and s["runningCount"] == s["desiredCount"] == count
            and dep[0]["rolloutState"] == "COMPLETED"
        )
        if ok and revision is not None:
            ok = s["taskDefinition"].endswith(f":{revision}")
        return s if ok else None

    try:
        return wait_for(check, timeout, 0.2, what=f"service {name} steady at {count}")
    except AssertionError:
        s = service(c, name)
        s["events"] = s["events"][:15]
        print(json.dumps(s, indent=1, default=str))
        raise


def running(family: str, revision: int | None = None, instance: str = "") -> list[str]:
    """Running containers of a family (and revision / instance) in Docker."""
    args = ["ps", "-q", "--filter", f"label={labels.FAMILY}={family}"]
    if revision is not None:
        args += ["--filter", f"label={labels.REVISION}={revision}"]
    if instance:
        args += ["--filter", f"label={labels.INSTANCE}={instance}"]
    return docker(*args).split()


def service_tasks(c: LocalCluster, name: str, desired: str = "RUNNING") -> list[dict[str, Any]]:
    arns = c.client().call("ListTasks", {"serviceName": name, "desiredStatus": desired})
    return c.describe(arns["taskArns"]) if arns["taskArns"] else []


def create(
    c: LocalCluster, name: str, family: str, count: int | None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"serviceName": name, "taskDefinition": family, **extra}
    if count is not None:
        body["desiredCount"] = count
    out = c.client().call("CreateService", body)
    check_response("CreateService", out)
    return dict(out["service"])


def update(c: LocalCluster, name: str, **body: Any) -> dict[str, Any]:
    out = c.client().call("UpdateService", {"service": name, **body})
    check_response("UpdateService", out)
    return dict(out["service"])


def on_disconnected(c: LocalCluster) -> float | None:
    return metric(scrape(c.http_port), "dockyard_tasks_on_disconnected_instances")


def two_agents(c: LocalCluster) -> tuple[str, str]:
    c.shared_engine = True  # two hosts simulated on the machine's one engine
    c.start_controller()
    c.start_agent("a1", "--attribute", "zone=a")
    c.start_agent("a2", "--attribute", "zone=b")
    c.wait_connected("a1")
    c.wait_connected("a2")
    return c.instance_id("a1"), c.instance_id("a2")


def test_scale_0_6_2_0(cluster: LocalCluster) -> None:
    register(cluster, "svc-scale")
    create(cluster, "scale", "svc-scale", 0)
    steady(cluster, "scale", 0)
    for count in (6, 2, 0):
        update(cluster, "scale", desiredCount=count)
        steady(cluster, "scale", count)
        wait_for(lambda n=count: len(running("svc-scale")) == n, 30, what=f"{count} in Docker")
    events = [e["message"] for e in service(cluster, "scale")["events"]]
    assert any("has started 6 tasks" in m for m in events)
    assert any("has stopped 4 running tasks" in m for m in events)
    assert "has reached a steady state." in events[0]
    out = cluster.client().call("DeleteService", {"service": "scale"})
    check_response("DeleteService", out)
    wait_for(lambda: service(cluster, "scale")["status"] == "INACTIVE", 20, what="INACTIVE")


class DockerSampler:
    """Counts running containers of a family per revision, as often as Docker answers."""

    def __init__(self, family: str) -> None:
        self.family = family
        self.samples: list[tuple[int, int]] = []  # (rev 1 running, rev 2 running)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        fmt = f'{{{{.Label "{labels.REVISION}"}}}}'
        while not self._stop.is_set():
            revs = docker(
                "ps", "--filter", f"label={labels.FAMILY}={self.family}", "--format", fmt
            ).split()
            self.samples.append((revs.count("1"), revs.count("2")))

    def __enter__(self) -> DockerSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_rolling_update_stays_within_min_and_max(cluster: LocalCluster) -> None:
    register(cluster, "svc-roll")
    register(cluster, "svc-roll", environment=[{"name": "REV", "value": "2"}])
    create(cluster, "roll", "svc-roll:1", 6)
    steady(cluster, "roll", 6)
    with DockerSampler("svc-roll") as sampler:
        update(cluster, "roll", taskDefinition="svc-roll:2")
        steady(cluster, "roll", 6, revision=2, timeout=90)
        wait_for(lambda: len(running("svc-roll", 1)) == 0, 30, what="rev 1 gone")
    totals = [a + b for a, b in sampler.samples]
    assert len(sampler.samples) > 10
    assert min(totals) >= 6, "fell below minimumHealthyPercent 100"
    assert max(totals) <= 12, "exceeded maximumPercent 200"
    assert sampler.samples[-1] == (0, 6)
    assert any(b > 0 for _, b in sampler.samples[:-1])


def test_crash_looping_revision_trips_breaker_and_rolls_back(cluster: LocalCluster) -> None:
    register(cluster, "svc-cb")
    register(cluster, "svc-cb", image="dockyard/crasher:latest")
    breaker = {"deploymentCircuitBreaker": {"enable": True, "rollback": True}}
    create(cluster, "cb", "svc-cb:1", 2, deploymentConfiguration=breaker)
    steady(cluster, "cb", 2)
    bad = update(cluster, "cb", taskDefinition="svc-cb:2")["deployments"][0]["id"]
    s = steady(cluster, "cb", 2, revision=1, timeout=120)
    assert s["deployments"][0]["id"] != bad
    text = " ".join(e["message"] for e in s["events"])
    assert f"(deployment {bad}) deployment failed" in text
    assert "rolling back to svc-cb:1" in text
    assert len(running("svc-cb", 1)) == 2 and not running("svc-cb", 2)
    listed = cluster.client().call("ListServiceDeployments", {"service": "cb"})
    briefs = listed["serviceDeployments"]  # the rollback is part of the failed deployment
    assert [d["status"] for d in briefs] == ["ROLLBACK_SUCCESSFUL", "SUCCESSFUL"]
    assert briefs[0]["serviceDeploymentArn"].endswith(bad.rsplit("/", 1)[1])


def test_draining_moves_service_tasks_and_keeps_standalone(bare_cluster: LocalCluster) -> None:
    c = bare_cluster
    i1, i2 = two_agents(c)
    register(c, "svc-drain")
    create(c, "drain", "svc-drain", 4)
    steady(c, "drain", 4)
    assert running("svc-drain", instance=i1), "spread should use both instances"
    solo = c.client().call(
        "RunTask",
        {
            "taskDefinition": "svc-drain",
            "placementConstraints": [{"type": "memberOf", "expression": f"ec2InstanceId == {i1}"}],
        },
    )
    solo_arn = solo["tasks"][0]["taskArn"]
    c.wait_status([solo_arn], "RUNNING")
    c.client().call(
        "UpdateContainerInstancesState", {"containerInstances": [i1], "status": "DRAINING"}
    )
    wait_for(
        lambda: len(running("svc-drain", instance=i1)) == 1,
        60,
        what="only the standalone task left on the drained instance",
    )
    steady(c, "drain", 4)
    assert len(running("svc-drain", instance=i2)) == 4
    assert c.describe([solo_arn])[0]["lastStatus"] == "RUNNING"
    c.client().call(
        "UpdateContainerInstancesState", {"containerInstances": [i1], "status": "ACTIVE"}
    )
    update(c, "drain", desiredCount=6)
    steady(c, "drain", 6)
    assert len(running("svc-drain", instance=i1)) >= 2  # placements there again


def test_daemon_service_follows_joining_instance(bare_cluster: LocalCluster) -> None:
    c = bare_cluster
    c.shared_engine = True  # a2 joins on the machine's same engine
    c.start_controller()
    c.start_agent("a1")
    c.wait_connected("a1")
    register(c, "svc-daemon")
    s = create(c, "daemon", "svc-daemon", None, schedulingStrategy="DAEMON")
    assert s["deploymentConfiguration"]["maximumPercent"] == 100
    steady(c, "daemon", 1)
    c.start_agent("a2")
    c.wait_connected("a2")
    steady(c, "daemon", 2)
    for name in ("a1", "a2"):
        assert len(running("svc-daemon", instance=c.instance_id(name))) == 1


def test_unhealthy_task_is_replaced(cluster: LocalCluster) -> None:
    check = {
        "command": ["CMD-SHELL", "exit 1"],
        "interval": 5,
        "timeout": 2,
        "retries": 1,
        "startPeriod": 0,
    }
    register(cluster, "svc-sick", healthCheck=check)
    create(cluster, "sick", "svc-sick", 1)

    def replaced() -> list[dict[str, Any]]:
        return [
            t
            for t in service_tasks(cluster, "sick", "STOPPED")
            if t["stoppedReason"] == "Task failed container health checks"
        ]

    first = wait_for(replaced, 60, 0.5, what="an unhealthy task stopped")[0]
    assert first["stopCode"] == "ServiceSchedulerInitiated"
    assert first["containers"][0]["healthStatus"] == "UNHEALTHY"
    wait_for(
        lambda: [t for t in service_tasks(cluster, "sick") if t["taskArn"] != first["taskArn"]],
        30,
        what="a replacement",
    )
    text = " ".join(e["message"] for e in service(cluster, "sick")["events"])
    assert "Reason: Task failed container health checks" in text


def test_killed_agent_tasks_replaced_then_originals_stopped(bare_cluster: LocalCluster) -> None:
    c = bare_cluster
    i1, i2 = two_agents(c)
    register(c, "svc-chaos")
    create(c, "chaos", "svc-chaos", 4)
    steady(c, "chaos", 4)
    originals = {
        t["taskArn"] for t in service_tasks(c, "chaos") if t["containerInstanceArn"].endswith(i1)
    }
    assert originals
    c.agents["a1"].kill(signal.SIGKILL)
    c.wait_connected("a1", connected=False, timeout=10)
    # what the grace watches, as a dashboard sees it
    wait_for(lambda: on_disconnected(c) == len(originals), 5, what="the metric, in the grace")
    # after the grace (5 s in LocalCluster) the service is whole again on a2
    wait_for(lambda: len(running("svc-chaos", instance=i2)) == 4, 60, what="replacements on a2")
    steady(c, "chaos", 4)
    assert on_disconnected(c) == 0  # the originals are no longer wanted
    lost = c.describe(sorted(originals))
    assert all(t["desiredStatus"] == "STOPPED" for t in lost)
    assert all(
        f"container instance {i1} disconnected for more than 5 s" in t["stoppedReason"]
        for t in lost
    )
    assert len(running("svc-chaos", instance=i1)) == len(originals)  # the host kept them
    c.start_agent("a1")
    c.wait_connected("a1")
    c.wait_status(sorted(originals), "STOPPED", timeout=60)
    wait_for(lambda: not running("svc-chaos", instance=i1), 30, what="originals gone")
    s = steady(c, "chaos", 4)
    assert len(running("svc-chaos")) == 4 and s["runningCount"] == 4
