"""Issue 16's missing ECS operations and behaviours, through real boto3 and the real aws CLI
against a real controller process (no Docker: no agents, or simulated ones over gRPC):
account settings, cluster settings/configuration, UpdateCluster(Settings), the `default`
cluster made when first needed, service deployments and revisions, and the region rule."""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from controller.ops import service_deployments as sd
from controller.orchestrator.model import Deployment, Service
from tests.support import (
    LocalCluster,
    Proc,
    checked_controller,
    wait_for,
)

AWS = Path(sys.executable).parent / "aws"
REGION, ACCOUNT = "us-east-1", "000000000000"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/deployer"
TD = {
    "family": "ops-web",
    "containerDefinitions": [
        {"name": "main", "image": "dockyard/sleeper:latest", "memory": 32, "essential": True}
    ],
}


@pytest.fixture
def lc(tmp_path: Path) -> Iterator[LocalCluster]:
    """A fresh controller process (API keys on, responses checked against botocore)."""
    with checked_controller(tmp_path) as cluster:
        yield cluster


def ecs(lc: LocalCluster, region: str = REGION) -> Any:
    return lc.boto3("ecs", region)


def aws(lc: LocalCluster, tmp_path: Path, *args: str, region: str = REGION) -> tuple[int, str]:
    """(exit code, stdout or stderr) of `aws ecs ...` against the controller."""
    creds = lc.credentials()
    assert creds is not None
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": creds.access_key_id,
        "AWS_SECRET_ACCESS_KEY": creds.secret_access_key,
        "AWS_DEFAULT_REGION": region,
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }
    argv = [str(AWS), "ecs", *args, "--endpoint-url", lc.http, "--output", "json"]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    return out.returncode, out.stdout if out.returncode == 0 else out.stderr


def error_of(call: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as err:
        call(**kwargs)
    return err.value.response["Error"]["Code"], err.value.response["Error"]["Message"]


def restart(lc: LocalCluster) -> None:
    assert lc.controller is not None
    lc.controller.kill(signal.SIGTERM)
    lc.start_controller()


# ---------------------------------------------------------------- the default cluster


def test_default_cluster_is_made_when_an_agent_joins_it(lc: LocalCluster) -> None:
    client = ecs(lc)
    assert client.list_clusters()["clusterArns"] == []
    code, _ = error_of(client.list_services)  # no cluster given, and no `default` yet
    assert code == "ClusterNotFoundException"
    missing = client.describe_clusters()["failures"]
    assert missing == [
        {"arn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/default", "reason": "MISSING"}
    ]
    argv = [sys.executable, "-m", "dockyard.cli.main", "sim", "--controller", lc.address]
    sim = Proc("sim", [*argv, "--report-every", "0", "--agents", "1"], lc.root / "sim.log")
    sim.start()
    try:
        wait_for(lambda: client.list_clusters()["clusterArns"], 30, what="default created")
        assert client.list_clusters()["clusterArns"] == [
            f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/default"
        ]
        assert client.list_services()["serviceArns"] == []
        assert len(client.list_container_instances()["containerInstanceArns"]) == 1
    finally:
        sim.kill()


def test_create_cluster_without_a_name_makes_default(lc: LocalCluster, tmp_path: Path) -> None:
    code, err = aws(lc, tmp_path, "list-services")
    assert code != 0 and "ClusterNotFoundException" in err
    code, out = aws(lc, tmp_path, "create-cluster")
    assert code == 0, out
    assert json.loads(out)["cluster"]["clusterName"] == "default"
    code, out = aws(lc, tmp_path, "list-services")  # no --cluster: `default`, now it exists
    assert code == 0, out
    assert json.loads(out)["serviceArns"] == []


# ---------------------------------------------------------------- account settings


def test_account_settings_as_ecs_documents_and_kept_across_restart(
    lc: LocalCluster, tmp_path: Path
) -> None:
    client = ecs(lc)
    got = client.put_account_setting_default(name="containerInsights", value="enabled")
    assert got["setting"] == {
        "name": "containerInsights",
        "value": "enabled",
        "principalArn": ROOT,
        "type": "user",
    }
    client.put_account_setting(name="awsvpcTrunking", value="enabled", principalArn=ROLE)
    own = client.list_account_settings(principalArn=ROLE)["settings"]
    assert [(s["name"], s["value"], s["principalArn"]) for s in own] == [
        ("awsvpcTrunking", "enabled", ROLE)
    ]
    effective = client.list_account_settings(principalArn=ROLE, effectiveSettings=True)
    values = {s["name"]: (s["value"], s["principalArn"]) for s in effective["settings"]}
    assert values["awsvpcTrunking"] == ("enabled", ROLE)  # its own
    assert values["containerInsights"] == ("enabled", ROOT)  # inherited from the default
    assert values["taskLongArnFormat"] == ("enabled", ROOT)  # ECS's default
    assert len(effective["settings"]) == 10 and effective["nextToken"]  # ECS pages by 10
    # a new cluster takes the account's containerInsights, as on ECS
    made = client.create_cluster(clusterName="insightful")["cluster"]
    assert made["settings"] == [{"name": "containerInsights", "value": "enabled"}]

    code, message = error_of(client.list_account_settings, value="enabled")
    assert code == "InvalidParameterException" and message.startswith("value:")
    code, message = error_of(client.put_account_setting, name="taskLongArnFormat", value="disabled")
    assert code == "InvalidParameterException" and "long ARN format" in message
    code, message = error_of(client.put_account_setting, name="containerInsights", value="maybe")
    assert code == "InvalidParameterException" and "enhanced, enabled, disabled" in message
    code, message = error_of(client.put_account_setting, name="guardDutyActivate", value="on")
    assert code == "InvalidParameterException" and "managed by AWS" in message
    code, message = error_of(
        client.put_account_setting,
        name="awsvpcTrunking",
        value="enabled",
        principalArn="arn:aws:iam::999999999999:root",
    )
    assert code == "InvalidParameterException" and message.startswith("principalArn:")

    restart(lc)
    code, out = aws(
        lc, tmp_path, "list-account-settings", "--name", "containerInsights", "--effective-settings"
    )
    assert code == 0, out
    assert json.loads(out)["settings"][0]["value"] == "enabled"
    native = lc.client().call("ListAccountSettings", {"name": "containerInsights"})
    assert native["settings"][0]["value"] == "enabled"  # the CLI's gRPC API reaches it too
    client = ecs(lc)
    gone = client.delete_account_setting(name="awsvpcTrunking", principalArn=ROLE)
    assert gone["setting"]["value"] == "enabled"
    assert client.list_account_settings(principalArn=ROLE)["settings"] == []
    again = client.list_account_settings(
        principalArn=ROLE, name="awsvpcTrunking", effectiveSettings=True
    )["settings"]
    assert [(s["value"], s["principalArn"]) for s in again] == [("disabled", ROOT)]
    twice = client.delete_account_setting(name="awsvpcTrunking", principalArn=ROLE)
    assert (twice["setting"]["value"], twice["setting"]["principalArn"]) == ("disabled", ROOT)


# ---------------------------------------------------------------- clusters


def test_create_cluster_keeps_what_it_is_given(lc: LocalCluster, tmp_path: Path) -> None:
    client = ecs(lc)
    config = {
        "executeCommandConfiguration": {
            "logging": "OVERRIDE",
            "logConfiguration": {"cloudWatchLogGroupName": "exec", "s3KeyPrefix": "x"},
        },
        "managedStorageConfiguration": {"kmsKeyId": "key-1"},
    }
    made = client.create_cluster(
        clusterName="kept",
        settings=[{"name": "containerInsights", "value": "enhanced"}],
        configuration=config,
        serviceConnectDefaults={"namespace": "internal"},
    )["cluster"]
    assert made["settings"] == [{"name": "containerInsights", "value": "enhanced"}]
    assert made["configuration"] == config
    assert made["serviceConnectDefaults"] == {"namespace": "internal"}

    updated = client.update_cluster_settings(
        cluster="kept", settings=[{"name": "containerInsights", "value": "disabled"}]
    )["cluster"]
    assert updated["settings"] == [{"name": "containerInsights", "value": "disabled"}]
    updated = client.update_cluster(
        cluster="kept",
        configuration={"executeCommandConfiguration": {"logging": "NONE"}},
        serviceConnectDefaults={"namespace": ""},  # ECS: "" removes the default namespace
    )["cluster"]
    assert updated["configuration"] == {"executeCommandConfiguration": {"logging": "NONE"}}
    assert "serviceConnectDefaults" not in updated

    restart(lc)
    plain = ecs(lc).describe_clusters(clusters=["kept"])["clusters"][0]
    assert "settings" not in plain and "configuration" not in plain  # ECS: only on request
    code, out = aws(
        lc,
        tmp_path,
        "describe-clusters",
        "--clusters",
        "kept",
        "--include",
        "SETTINGS",
        "CONFIGURATIONS",
    )
    assert code == 0, out
    kept = json.loads(out)["clusters"][0]
    assert kept["settings"] == [{"name": "containerInsights", "value": "disabled"}]
    assert kept["configuration"] == {"executeCommandConfiguration": {"logging": "NONE"}}


def test_cluster_requests_dockyard_cannot_honour_are_refused(lc: LocalCluster) -> None:
    client = ecs(lc)
    code, message = error_of(client.create_cluster, clusterName="f", capacityProviders=["FARGATE"])
    assert code == "InvalidParameterException"
    assert message.startswith("capacityProviders[0]:") and "does not exist" in message
    code, message = error_of(
        client.create_cluster,
        clusterName="f",
        defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE_SPOT", "weight": 1}],
    )
    assert message.startswith("defaultCapacityProviderStrategy[0].capacityProvider:")
    code, message = error_of(
        client.create_cluster,
        clusterName="f",
        configuration={"executeCommandConfiguration": {"logging": "OVERRIDE"}},
    )
    assert "executeCommandConfiguration.logConfiguration" in message
    code, message = error_of(
        client.update_cluster_settings,
        cluster="nope",
        settings=[{"name": "containerInsights", "value": "enabled"}],
    )
    assert code == "ClusterNotFoundException"
    assert client.list_clusters()["clusterArns"] == []  # nothing half-made


# ---------------------------------------------------------------- service deployments


def _rolled_out(client: Any, cluster: str, service: str) -> bool:
    svc = client.describe_services(cluster=cluster, services=[service])["services"][0]
    return [d["rolloutState"] for d in svc["deployments"]] == ["COMPLETED"]


def test_service_deployments_and_revisions(lc: LocalCluster, tmp_path: Path) -> None:
    client = ecs(lc)
    client.create_cluster(clusterName="deps")
    first = client.register_task_definition(**TD)["taskDefinition"]["taskDefinitionArn"]
    client.create_service(
        cluster="deps", serviceName="web", taskDefinition="ops-web", desiredCount=0
    )
    wait_for(lambda: _rolled_out(client, "deps", "web"), 20, what="first rollout")
    second = client.register_task_definition(**TD)["taskDefinition"]["taskDefinitionArn"]
    client.update_service(cluster="deps", service="web", taskDefinition="ops-web:2")
    wait_for(lambda: _rolled_out(client, "deps", "web"), 20, what="second rollout")

    listed = client.list_service_deployments(cluster="deps", service="web")["serviceDeployments"]
    arn_re = rf"arn:aws:ecs:{REGION}:{ACCOUNT}:service-%s/deps/web/\d{{19}}"
    assert [d["status"] for d in listed] == ["SUCCESSFUL", "SUCCESSFUL"]  # newest first
    for d in listed:
        assert re.fullmatch(arn_re % "deployment", d["serviceDeploymentArn"])
        assert re.fullmatch(arn_re % "revision", d["targetServiceRevisionArn"])
        assert d["serviceArn"].endswith(":service/deps/web") and "finishedAt" in d
    newest, oldest = listed

    described = client.describe_service_deployments(
        serviceDeploymentArns=[newest["serviceDeploymentArn"], oldest["serviceDeploymentArn"]]
    )["serviceDeployments"]
    assert described[0]["sourceServiceRevisions"][0]["arn"] == oldest["targetServiceRevisionArn"]
    assert described[0]["targetServiceRevision"]["arn"] == newest["targetServiceRevisionArn"]
    assert described[1]["sourceServiceRevisions"] == []
    assert described[0]["deploymentCircuitBreaker"]["status"] == "DISABLED"

    code, out = aws(
        lc,
        tmp_path,
        "describe-service-revisions",
        "--service-revision-arns",
        newest["targetServiceRevisionArn"],
        oldest["targetServiceRevisionArn"],
    )
    assert code == 0, out
    revisions = json.loads(out)["serviceRevisions"]
    assert [r["taskDefinition"] for r in revisions] == [second, first]
    assert revisions[0]["containerImages"] == [
        {"containerName": "main", "image": "dockyard/sleeper:latest"}
    ]
    assert revisions[0]["launchType"] == "EC2"

    missing = newest["serviceDeploymentArn"].rsplit("/", 1)[0] + "/0000000000000000001"
    out = client.describe_service_deployments(serviceDeploymentArns=[missing])
    assert out["failures"] == [{"arn": missing, "reason": "MISSING"}]
    code, message = error_of(client.describe_service_revisions, serviceRevisionArns=["web"])
    assert code == "InvalidParameterException" and message.startswith("serviceRevisionArns[0]:")
    code, _ = error_of(client.list_service_deployments, cluster="deps", service="nope")
    assert code == "ServiceNotFoundException"
    none = client.list_service_deployments(cluster="deps", service="web", status=["IN_PROGRESS"])
    assert none["serviceDeployments"] == []
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    window = client.list_service_deployments(
        cluster="deps", service="web", createdAt={"after": later}
    )
    assert window["serviceDeployments"] == []
    window = client.list_service_deployments(
        cluster="deps", service="web", createdAt={"before": later}
    )
    assert len(window["serviceDeployments"]) == 2
    page = client.list_service_deployments(cluster="deps", service="web", maxResults=1)
    assert page["serviceDeployments"] == [newest] and page["nextToken"]


def test_a_superseded_deployment_is_stopped(lc: LocalCluster) -> None:
    client = ecs(lc)
    client.create_cluster(clusterName="busy")
    client.register_task_definition(**TD)
    client.register_task_definition(**TD)
    client.create_service(
        cluster="busy", serviceName="api", taskDefinition="ops-web:1", desiredCount=1
    )  # no instance: it stays IN_PROGRESS
    listed = client.list_service_deployments(cluster="busy", service="api")["serviceDeployments"]
    assert [d["status"] for d in listed] == ["IN_PROGRESS"]
    client.update_service(cluster="busy", service="api", taskDefinition="ops-web:2")
    listed = client.list_service_deployments(cluster="busy", service="api")["serviceDeployments"]
    assert [d["status"] for d in listed] == ["IN_PROGRESS", "STOPPED"]
    assert "finishedAt" in listed[1] and "superseded" in listed[1]["statusReason"]
    current, stopped = client.describe_service_deployments(
        serviceDeploymentArns=[d["serviceDeploymentArn"] for d in listed]
    )["serviceDeployments"]
    assert stopped["status"] == "STOPPED" and stopped["stoppedAt"] == listed[1]["finishedAt"]
    assert current["targetServiceRevision"]["requestedTaskCount"] == 1
    assert current["sourceServiceRevisions"][0]["arn"] == listed[1]["targetServiceRevisionArn"]


def test_a_rolled_back_deployment_shows_its_rollback() -> None:
    """The circuit breaker's rollback deployment is part of the one that failed (pure)."""
    failed = Deployment(
        "ecs-svc/0000000000000000002",
        "w:2",
        "arn-2",
        2.0,
        5.0,
        "ACTIVE",
        "FAILED",
        "circuit breaker",
        3,
        sources=["ecs-svc/0000000000000000001"],
        superseded_at=5.0,
    )
    back = Deployment(
        "ecs-svc/0000000000000000005",
        "w:1",
        "arn-1",
        5.0,
        9.0,
        "PRIMARY",
        "COMPLETED",
        sources=[failed.id],
        rollback_of=failed.id,
    )
    svc = Service(
        "w", "arn:svc", "c", "w:1", "arn-1", 1, breaker=True, rollback=True, deployments=[back]
    )
    svc.past = [failed]
    assert sd.status(svc, failed) == ("ROLLBACK_SUCCESSFUL", "circuit breaker")
    back.rollout_state = "IN_PROGRESS"
    assert sd.status(svc, failed)[0] == "ROLLBACK_IN_PROGRESS"
    assert [d.id for d in sd.history(svc)] == [back.id, failed.id]


# ---------------------------------------------------------------- regions


def test_a_request_signed_for_another_region_is_refused(lc: LocalCluster, tmp_path: Path) -> None:
    code, message = error_of(ecs(lc, "eu-west-1").list_clusters)
    assert code == "InvalidSignatureException"
    assert "'eu-west-1'" in message and "'us-east-1'" in message
    code, err = aws(lc, tmp_path, "list-clusters", region="ap-south-1")
    assert code != 0 and "InvalidSignatureException" in err and "'us-east-1'" in err
    made = ecs(lc).create_cluster(clusterName="here")["cluster"]
    assert made["clusterArn"] == f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/here"
