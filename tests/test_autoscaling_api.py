"""Application Auto Scaling's API through boto3's `application-autoscaling` client against
a real controller process (every response checked against botocore's model: the
controller runs with DOCKYARD_CHECK_RESPONSES=1), plus one real-time scheduled action."""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from dockyard import shellenv
from tests.support import LocalCluster, checked_controller, wait_for

REGION = "us-east-1"
RID = "service/aas/web"
DIM = {"ServiceNamespace": "ecs", "ScalableDimension": "ecs:service:DesiredCount"}
TD = {
    "family": "aas-web",
    "containerDefinitions": [
        {"name": "main", "image": "dockyard/sleeper:latest", "memory": 32, "essential": True}
    ],
}
CPU = {
    "TargetValue": 50.0,
    "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"},
    "ScaleOutCooldown": 30,
    "ScaleInCooldown": 60,
}


@pytest.fixture
def lc(tmp_path: Path) -> Iterator[LocalCluster]:
    with checked_controller(tmp_path, "--autoscaling-period", "1") as cluster:
        yield cluster


def client(lc: LocalCluster, api: str) -> Any:
    return lc.boto3(api, REGION)


def make_service(lc: LocalCluster) -> Any:
    ecs = client(lc, "ecs")
    ecs.create_cluster(clusterName="aas")
    ecs.register_task_definition(**TD)
    ecs.create_service(cluster="aas", serviceName="web", taskDefinition="aas-web", desiredCount=1)
    return ecs


def desired(ecs: Any) -> int:
    return int(
        ecs.describe_services(cluster="aas", services=["web"])["services"][0]["desiredCount"]
    )


def test_every_operation_through_boto3(lc: LocalCluster) -> None:
    ecs = make_service(lc)
    aas = client(lc, "application-autoscaling")
    arn = aas.register_scalable_target(**DIM, ResourceId=RID, MinCapacity=2, MaxCapacity=6)
    assert arn["ScalableTargetARN"].startswith("arn:aws:application-autoscaling:us-east-1:")
    assert desired(ecs) == 2  # brought up to the new minimum, as AWS does
    [target] = aas.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (2, 6)
    assert target["SuspendedState"]["DynamicScalingInSuspended"] is False
    aas.register_scalable_target(
        **DIM, ResourceId=RID, SuspendedState={"DynamicScalingInSuspended": True}
    )
    [target] = aas.describe_scalable_targets(ServiceNamespace="ecs", ResourceIds=[RID])[
        "ScalableTargets"
    ]
    assert target["SuspendedState"]["DynamicScalingInSuspended"] is True
    assert target["MinCapacity"] == 2  # an update keeps what it does not name

    put = aas.put_scaling_policy(
        **DIM,
        ResourceId=RID,
        PolicyName="cpu50",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration=CPU,
    )
    assert ":scalingPolicy:" in put["PolicyARN"] and len(put["Alarms"]) == 2
    mem = {
        **CPU,
        "PredefinedMetricSpecification": {
            "PredefinedMetricType": "ECSServiceAverageMemoryUtilization"
        },
        "DisableScaleIn": True,
    }
    aas.put_scaling_policy(
        **DIM,
        ResourceId=RID,
        PolicyName="mem",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration=mem,
    )
    policies = aas.describe_scaling_policies(ServiceNamespace="ecs", ResourceId=RID)
    assert sorted(p["PolicyName"] for p in policies["ScalingPolicies"]) == ["cpu50", "mem"]
    aas.delete_scaling_policy(**DIM, ResourceId=RID, PolicyName="mem")
    left = aas.describe_scaling_policies(ServiceNamespace="ecs")["ScalingPolicies"]
    assert [p["PolicyName"] for p in left] == ["cpu50"]
    assert left[0]["TargetTrackingScalingPolicyConfiguration"]["ScaleInCooldown"] == 60

    aas.put_scheduled_action(
        **DIM,
        ResourceId=RID,
        ScheduledActionName="night",
        Schedule="cron(0 22 ? * MON-FRI *)",
        Timezone="Europe/Paris",
        ScalableTargetAction={"MinCapacity": 1, "MaxCapacity": 2},
    )
    aas.put_scheduled_action(
        **DIM,
        ResourceId=RID,
        ScheduledActionName="every",
        Schedule="rate(10 minutes)",
        ScalableTargetAction={"MaxCapacity": 8},
    )
    actions = aas.describe_scheduled_actions(ServiceNamespace="ecs", ResourceId=RID)
    by_name = {a["ScheduledActionName"]: a for a in actions["ScheduledActions"]}
    assert by_name["night"]["Timezone"] == "Europe/Paris"
    aas.delete_scheduled_action(**DIM, ResourceId=RID, ScheduledActionName="every")
    names = aas.describe_scheduled_actions(ServiceNamespace="ecs")["ScheduledActions"]
    assert [a["ScheduledActionName"] for a in names] == ["night"]

    acts = aas.describe_scaling_activities(ServiceNamespace="ecs", ResourceId=RID)
    [act] = acts["ScalingActivities"]
    assert act["Cause"] == "minimum capacity was set to 2"
    assert act["Description"] == "Setting desired count to 2."
    assert act["StatusCode"] == "Successful"
    events = ecs.describe_services(cluster="aas", services=["web"])["services"][0]["events"]
    assert any("Application Auto Scaling" in e["message"] for e in events)

    aas.deregister_scalable_target(**DIM, ResourceId=RID)
    assert aas.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"] == []
    assert aas.describe_scaling_policies(ServiceNamespace="ecs")["ScalingPolicies"] == []


@pytest.mark.parametrize(
    "call,kwargs,error,words",
    [
        (
            "register_scalable_target",
            {"ResourceId": "service/aas/nope", "MinCapacity": 1, "MaxCapacity": 2},
            "ValidationException",
            "doesn't exist",
        ),
        (
            "register_scalable_target",
            {"ResourceId": RID, "MinCapacity": 3, "MaxCapacity": 2},
            "ValidationException",
            "cannot be greater",
        ),
        (
            "register_scalable_target",
            {"ResourceId": "web", "MinCapacity": 1, "MaxCapacity": 2},
            "ValidationException",
            "service/<cluster-name>",
        ),
        (
            "put_scaling_policy",
            {"ResourceId": RID, "PolicyName": "s", "PolicyType": "StepScaling"},
            "ObjectNotFoundException",
            "No scalable target",
        ),
        (
            "delete_scheduled_action",
            {"ResourceId": RID, "ScheduledActionName": "x"},
            "ObjectNotFoundException",
            "No scheduled action",
        ),
    ],
)
def test_refusals_name_the_field(
    lc: LocalCluster, call: str, kwargs: dict[str, Any], error: str, words: str
) -> None:
    make_service(lc)
    aas = client(lc, "application-autoscaling")
    with pytest.raises(ClientError) as err:
        getattr(aas, call)(**DIM, **kwargs)
    assert err.value.response["Error"]["Code"] == error
    assert words in err.value.response["Error"]["Message"]


def test_policy_and_schedule_refusals(lc: LocalCluster) -> None:
    make_service(lc)
    aas = client(lc, "application-autoscaling")
    aas.register_scalable_target(**DIM, ResourceId=RID, MinCapacity=1, MaxCapacity=3)
    bad_metric = {
        **CPU,
        "PredefinedMetricSpecification": {
            "PredefinedMetricType": "ALBRequestCountPerTarget",
            "ResourceLabel": "x",
        },
    }
    for policy_type, config, words in [
        ("StepScaling", CPU, "TargetTrackingScaling only"),
        ("TargetTrackingScaling", bad_metric, "PredefinedMetricType"),
    ]:
        with pytest.raises(ClientError, match=words):
            aas.put_scaling_policy(
                **DIM,
                ResourceId=RID,
                PolicyName="p",
                PolicyType=policy_type,
                TargetTrackingScalingPolicyConfiguration=config,
            )
    with pytest.raises(ClientError, match="six fields"):
        aas.put_scheduled_action(
            **DIM, ResourceId=RID, ScheduledActionName="s", Schedule="cron(0 8 * * *)"
        )
    with pytest.raises(ClientError, match="ServiceNamespace"):
        aas.describe_scalable_targets(ServiceNamespace="dynamodb")


def test_a_scheduled_action_fires_at_its_time(lc: LocalCluster) -> None:
    """Real time: an at() two seconds ahead raises the minimum and the service with it."""
    ecs = make_service(lc)
    aas = client(lc, "application-autoscaling")
    aas.register_scalable_target(**DIM, ResourceId=RID, MinCapacity=1, MaxCapacity=5)
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
    aas.put_scheduled_action(
        **DIM,
        ResourceId=RID,
        ScheduledActionName="morning",
        Schedule=f"at({when:%Y-%m-%dT%H:%M:%S})",
        ScalableTargetAction={"MinCapacity": 3, "MaxCapacity": 5},
    )
    wait_for(lambda: desired(ecs) == 3, 20, 0.2, "the scheduled minimum applied")
    acts = aas.describe_scaling_activities(ServiceNamespace="ecs")["ScalingActivities"]
    causes = [a["Cause"] for a in acts]
    assert "scheduled action name morning was triggered" in causes
    assert "minimum capacity was set to 3" in causes
    [target] = aas.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]
    assert target["MinCapacity"] == 3
    assert lc.controller is not None
    lc.controller.kill()  # survives a restart: stored in the state of record
    lc.start_controller("--autoscaling-period", "1")
    aas = client(lc, "application-autoscaling")
    assert len(aas.describe_scaling_activities(ServiceNamespace="ecs")["ScalingActivities"]) == 2
    assert aas.describe_scheduled_actions(ServiceNamespace="ecs")["ScheduledActions"]


def test_the_aws_cli_finds_the_endpoint_through_dockyard_env(
    lc: LocalCluster, tmp_path: Path
) -> None:
    """`aws application-autoscaling` with only what `dockyard env` exports."""
    make_service(lc)
    creds = lc.credentials()
    assert creds is not None
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "AWS_ACCESS_KEY_ID": creds.access_key_id,
        "AWS_SECRET_ACCESS_KEY": creds.secret_access_key,
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    exported = shellenv.exports(shellenv.Target(lc.address, lc.http, REGION, None, None))
    for line in exported.splitlines():
        if line.startswith("export AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING=") or (
            line.startswith("export AWS_ENDPOINT_URL_ECS=")
        ):
            for name, value in (kv.split("=", 1) for kv in shlex.split(line)[1:]):
                env[name] = value
    assert env.get("AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING") == lc.http
    aws = [str(Path(sys.executable).parent / "aws"), "application-autoscaling"]
    dims = ["--service-namespace", "ecs", "--scalable-dimension", "ecs:service:DesiredCount"]
    register = [*aws, "register-scalable-target", *dims, "--resource-id", RID]
    out = subprocess.run(
        [*register, "--min-capacity", "1", "--max-capacity", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    described = subprocess.run(
        [*aws, "describe-scalable-targets", "--service-namespace", "ecs", "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert described.returncode == 0, described.stderr
    assert json.loads(described.stdout)["ScalableTargets"][0]["MaxCapacity"] == 3
