"""Target tracking for real (issue 22): a service of one busybox task whose container burns
CPU while a file exists in a host directory bound into it, with a 50 % CPU target and short
cooldowns, scales out when the load starts and back in after it stops. The agent reports
usage every second and the controller evaluates every 2 s (--autoscaling-period), so
the AWS windows (3 periods above target, 15 below) take 6 s and 30 s here."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import netconfig
from tests.support import LocalCluster, free_port, wait_for

pytestmark = pytest.mark.docker

DIM = {"ServiceNamespace": "ecs", "ScalableDimension": "ecs:service:DesiredCount"}
RID = "service/default/burner"
# burns while /ctl/burn exists, sleeps otherwise
LOOP = "while :; do if [ -f /ctl/burn ]; then :; else sleep 0.5; fi; done"


@pytest.fixture
def cluster(tmp_path: Path, sample_images: list[str]) -> Iterator[tuple[LocalCluster, Path]]:
    lc = LocalCluster(tmp_path)
    port = free_port()
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    try:
        lc.start_controller("--autoscaling-period", "2")
        lc.start_agent(
            "a1",
            "--credentials-listen",
            f"127.0.0.1:{port}",
            "--stats-interval",
            "1",
            "--usage-report-interval",
            "1",
        )
        lc.wait_connected("a1")
        yield lc, ctl
    finally:
        lc.stop()  # stops each agent with SIGTERM first: it removes its iptables chains
        asyncio.run(netconfig.drop_chain(netconfig.chain_name(port)))


def _aas(lc: LocalCluster) -> Any:
    return lc.boto3("application-autoscaling")


def _running(lc: LocalCluster) -> int:
    c = lc.client()
    arns = c.call("ListTasks", {"serviceName": "burner", "desiredStatus": "RUNNING"})["taskArns"]
    if not arns:
        return 0
    tasks = c.call("DescribeTasks", {"tasks": arns})["tasks"]
    return sum(t["lastStatus"] == "RUNNING" for t in tasks)


def _desired(lc: LocalCluster) -> int:
    svc = lc.client().call("DescribeServices", {"services": ["burner"]})["services"][0]
    return int(svc["desiredCount"])


def test_scales_out_under_load_and_back_in(cluster: tuple[LocalCluster, Path]) -> None:
    lc, ctl = cluster
    c = lc.client()
    c.call(
        "RegisterTaskDefinition",
        {
            "family": "burner",
            "volumes": [{"name": "ctl", "host": {"sourcePath": str(ctl)}}],
            "containerDefinitions": [
                {
                    "name": "main",
                    "image": "dockyard/busybox",
                    "command": ["sh", "-c", LOOP],
                    "cpu": 256,
                    "memory": 64,
                    "mountPoints": [{"sourceVolume": "ctl", "containerPath": "/ctl"}],
                }
            ],
        },
    )
    c.call(
        "CreateService", {"serviceName": "burner", "taskDefinition": "burner", "desiredCount": 1}
    )
    wait_for(lambda: _running(lc) == 1, 60, 0.5, "the first task RUNNING")
    aas = _aas(lc)
    aas.register_scalable_target(**DIM, ResourceId=RID, MinCapacity=1, MaxCapacity=3)
    aas.put_scaling_policy(
        **DIM,
        ResourceId=RID,
        PolicyName="cpu50",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 50.0,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "ECSServiceAverageCPUUtilization"
            },
            "ScaleOutCooldown": 10,
            "ScaleInCooldown": 10,
        },
    )
    started = time.monotonic()
    (ctl / "burn").touch()
    wait_for(lambda: _running(lc) >= 2, 120, 0.5, "scale-out: a second task RUNNING")
    out_s = time.monotonic() - started
    (ctl / "burn").unlink()
    stopped = time.monotonic()
    wait_for(lambda: _desired(lc) == 1, 240, 1, "scale-in back to one task")
    in_s = time.monotonic() - stopped
    print(
        f"\nscale-out {out_s:.1f} s (load start -> 2nd task RUNNING), "
        f"scale-in {in_s:.1f} s (load stop -> desired count 1)"
    )
    causes = [
        a["Cause"]
        for a in aas.describe_scaling_activities(ServiceNamespace="ecs")["ScalingActivities"]
    ]
    assert any("AlarmHigh" in c and "triggered policy cpu50" in c for c in causes)
    assert any("AlarmLow" in c and "triggered policy cpu50" in c for c in causes)
