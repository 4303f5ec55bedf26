"""The auto scaling loop in a real in-process controller, with an injected clock and
injected utilisation readings (the figures a real agent reports are exercised by
tests/test_autoscaling_docker.py): decisions reach the service through UpdateService, and
each one is a scaling activity, worded as AWS words it, and a service event."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controller.utilization import Utilization
from tests.security_support import SecureController, running

AAS = {
    "ServiceNamespace": "ecs",
    "ScalableDimension": "ecs:service:DesiredCount",
    "ResourceId": "service/default/web",
}


class Readings:
    """UsageHistory.service_now's answer, set by the test."""

    def __init__(self) -> None:
        self.cpu: float | None = None

    def service_now(self, cluster: str, service: str, now: float | None = None) -> Utilization:
        return Utilization(self.cpu, 10.0, 1 if self.cpu is not None else 0)


def _call(sc: SecureController, operation: str, body: dict[str, Any]) -> dict[str, Any]:
    assert sc.ctl is not None
    ctl = sc.ctl
    return sc.on_loop(lambda: ctl.api.call(operation, body))


def _desired(sc: SecureController) -> int:
    svc = sc.client().call("DescribeServices", {"services": ["web"]})["services"][0]
    return int(svc["desiredCount"])


def test_the_loop_scales_out_and_in_through_update_service(tmp_path: Path) -> None:
    with running(tmp_path / "c") as sc:
        assert sc.ctl is not None
        loop = sc.ctl.autoscaling
        readings, now = Readings(), [1_000_000.0]
        loop.usage = readings  # type: ignore[assignment]
        loop.clock = lambda: now[0]
        c = sc.client()
        c.call(
            "RegisterTaskDefinition",
            {"family": "web", "containerDefinitions": [{"name": "m", "image": "x", "memory": 8}]},
        )
        c.call("CreateService", {"serviceName": "web", "taskDefinition": "web", "desiredCount": 1})
        _call(sc, "RegisterScalableTarget", {**AAS, "MinCapacity": 1, "MaxCapacity": 4})
        tracking = {
            "TargetValue": 50.0,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "ECSServiceAverageCPUUtilization"
            },
            "ScaleOutCooldown": 60,
            "ScaleInCooldown": 120,
        }
        policy = {"PolicyName": "cpu50", "PolicyType": "TargetTrackingScaling"}
        _call(
            sc,
            "PutScalingPolicy",
            {**AAS, **policy, "TargetTrackingScalingPolicyConfiguration": tracking},
        )

        def ticks(n: int, cpu: float | None) -> None:
            readings.cpu = cpu
            for _ in range(n):
                now[0] += 60
                sc.on_loop(loop.tick)

        ticks(2, 150.0)
        assert _desired(sc) == 1  # two periods above target: not yet (AWS: 3)
        ticks(1, 150.0)
        assert _desired(sc) == 3  # ceil(1 x 150 / 50)
        ticks(1, 150.0)
        assert _desired(sc) == 4  # the cooldown (60 s) passed: ceil(3 x 150 / 50) = 9 -> max 4
        ticks(14, 20.0)
        assert _desired(sc) == 4  # 14 low periods: not sustained yet
        ticks(1, 20.0)
        assert _desired(sc) == 2  # ceil(4 x 20 / 50)
        ticks(1, None)  # no data: nothing, and the 15-period window starts again
        ticks(14, 5.0)
        assert _desired(sc) == 2
        acts = _call(sc, "DescribeScalingActivities", {"ServiceNamespace": "ecs"})
        causes = [a["Cause"] for a in acts["ScalingActivities"]]
        assert len(causes) == 3
        assert causes[0].startswith("monitor alarm TargetTracking-service/default/web-AlarmLow-")
        assert causes[0].endswith(" in state ALARM triggered policy cpu50")
        assert "-AlarmHigh-" in causes[2]
        descriptions = [a["Description"] for a in acts["ScalingActivities"]]
        assert descriptions == [
            "Setting desired count to 2.",
            "Setting desired count to 4.",
            "Setting desired count to 3.",
        ]
        svc = c.call("DescribeServices", {"services": ["web"]})["services"][0]
        messages = [e["message"] for e in svc["events"]]
        assert any(
            "desired count changed from 4 to 2 by Application Auto Scaling" in m for m in messages
        )
