"""ECS's answers where clients look closely (issue 16): error codes and messages, tags
(propagation, managed tags, `include: ["TAGS"]`, order) and response shapes.

Real boto3 and the real aws CLI against a real controller process with simulated agents
(`dockyard sim`: registration, desired state, task status - no Docker), the controller
checking every response body against botocore's model (DOCKYARD_CHECK_RESPONSES=1).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support import (
    LocalCluster,
    simulated_cluster,
    wait_for,
)
from tests.test_ecs_e2e import FAST, error_of, make_client

AWS = Path(sys.executable).parent / "aws"  # the CLI installed with this interpreter
CONTAINER = {"name": "main", "image": "dockyard/sleeper:latest", "memory": 32, "cpu": 10}


def taskdef(family: str, **extra: Any) -> dict[str, Any]:
    return {"family": family, "containerDefinitions": [dict(CONTAINER)], **extra}


@pytest.fixture(scope="module")
def lc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A controller and two simulated agents in the default cluster, once per module."""
    with simulated_cluster(tmp_path_factory.mktemp("ecs-compat"), agents=2) as cluster:
        yield cluster


@pytest.fixture
def ecs(lc: LocalCluster) -> Any:
    return make_client(lc)


def aws(lc: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    """The aws CLI on the cluster, signing with the admin key."""
    creds = lc.credentials()
    assert creds is not None
    env = os.environ | {  # explicit keys and flags win over whatever the user has set
        "AWS_ACCESS_KEY_ID": creds.access_key_id,
        "AWS_SECRET_ACCESS_KEY": creds.secret_access_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_PAGER": "",
    }
    cmd = [str(AWS), "ecs", *args, "--endpoint-url", lc.http, "--output", "json"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


# ---------------------------------------------------------------- errors


def test_unknown_clusters_get_ecs_exception_and_message(ecs: Any, lc: LocalCluster) -> None:
    ecs.register_task_definition(**taskdef("errs"))
    calls: list[tuple[Any, dict[str, Any]]] = [
        (ecs.list_services, {"cluster": "foo"}),
        (ecs.describe_services, {"cluster": "foo", "services": ["x"]}),
        (ecs.run_task, {"cluster": "foo", "taskDefinition": "errs"}),
        (ecs.list_tasks, {"cluster": "foo"}),
        (ecs.stop_task, {"cluster": "foo", "task": "t"}),
        (ecs.delete_cluster, {"cluster": "foo"}),
        (ecs.create_service, {"cluster": "foo", "serviceName": "s", "taskDefinition": "errs"}),
    ]
    for call, kwargs in calls:
        assert error_of(call, **kwargs) == ("ClusterNotFoundException", "Cluster not found.")
    done = aws(lc, "run-task", "--cluster", "foo", "--task-definition", "errs")
    assert done.returncode == 255, done.stderr
    assert "(ClusterNotFoundException)" in done.stderr and "Cluster not found." in done.stderr


def test_empty_lists_and_unknown_launch_types_in_ecs_words(ecs: Any) -> None:
    ecs.register_task_definition(**taskdef("words"))
    no_instances = ("ClientException", "Container Instances cannot be empty.")
    assert error_of(ecs.describe_container_instances, containerInstances=[]) == no_instances
    assert error_of(ecs.start_task, taskDefinition="words", containerInstances=[]) == no_instances
    got = error_of(ecs.describe_tasks, tasks=[])
    assert got == ("InvalidParameterException", "Tasks cannot be empty.")
    got = error_of(
        ecs.create_service, serviceName="s", taskDefinition="words", launchType="SOMETHING"
    )
    assert got == ("ClientException", "launch type should be one of [EC2,FARGATE]")
    got = error_of(ecs.run_task, cluster="nope", taskDefinition="words", launchType="Fargate")
    assert got == (
        "InvalidParameterException",
        "launch type should be one of [EC2,FARGATE,EXTERNAL]",
    )


def test_register_task_definition_refusals_are_client_exceptions(ecs: Any) -> None:
    cases = [
        ({"image": "x", "memory": 32}, "Container.name should not be null or empty."),
        ({"name": "c", "memory": 32}, "Container.image should not be null or empty."),
        (
            {"name": "c", "image": "x"},
            "Invalid setting for container 'c'. "
            "At least one of 'memory' or 'memoryReservation' must be specified.",
        ),
    ]
    for container, message in cases:
        got = error_of(ecs.register_task_definition, family="bad", containerDefinitions=[container])
        assert got == ("ClientException", message)
    code, message = error_of(
        ecs.register_task_definition, **taskdef("bad", networkMode="awsvpc")
    )  # what Dockyard cannot honour is still refused with a reason
    assert code == "ClientException" and "networkMode" in message


def test_service_errors_are_ecs_exceptions(ecs: Any) -> None:
    ecs.create_cluster(clusterName="svc-errs")
    ecs.register_task_definition(**taskdef("svc-errs"))
    ecs.deregister_task_definition(taskDefinition="svc-errs:1")
    for ref in ("no-such-family", "svc-errs:1"):
        code, _ = error_of(
            ecs.create_service,
            cluster="svc-errs",
            serviceName="s",
            taskDefinition=ref,
            desiredCount=0,
        )
        assert code == "ClientException", ref
    ecs.register_task_definition(**taskdef("svc-errs"))
    up = {"cluster": "svc-errs", "serviceName": "up", "taskDefinition": "svc-errs:2"}
    ecs.create_service(**up, desiredCount=1)
    got = error_of(ecs.create_service, **up, desiredCount=1)
    assert got == ("InvalidParameterException", "Creation of service was not idempotent.")
    got = error_of(ecs.delete_service, cluster="svc-errs", service="up")
    assert got == (
        "InvalidParameterException",
        "The service cannot be stopped while it is scaled above 0.",
    )
    ecs.delete_service(cluster="svc-errs", service="up", force=True)
    got = error_of(ecs.run_task, cluster="svc-errs", taskDefinition="svc-errs:2")
    assert got == (
        "InvalidParameterException",
        "No Container Instances were found in your cluster.",
    )
    missing = ("ServiceNotFoundException", "Service not found.")
    assert error_of(ecs.update_service, cluster="svc-errs", service="s", desiredCount=0) == missing
    assert error_of(ecs.delete_service, cluster="svc-errs", service="s") == missing
    for arn in (  # tags of a service that is not there, in a cluster that is or is not
        "arn:aws:ecs:us-east-1:000000000000:service/svc-errs/s",
        "arn:aws:ecs:us-east-1:000000000000:service/no-cluster/s",
        "arn:aws:ecs:us-east-1:000000000000:service/fake_service:1",
    ):
        assert error_of(ecs.list_tags_for_resource, resourceArn=arn) == missing
        assert error_of(ecs.tag_resource, resourceArn=arn, tags=[{"key": "k"}]) == missing
    arn = "arn:aws:ecs:us-east-1:000000000000:task-definition/fake_task:1"
    got = error_of(ecs.list_tags_for_resource, resourceArn=arn)
    assert got == ("ClientException", "Unable to describe task definition.")


def test_deregister_and_delete_failures_in_ecs_words(ecs: Any) -> None:
    deregister = ecs.deregister_task_definition
    assert error_of(deregister, taskDefinition="fake") == (
        "ClientException",
        "Revision is missing.",
    )
    assert error_of(deregister, taskDefinition="fake:foo") == (
        "InvalidParameterException",
        "Invalid revision number. Number: foo",
    )
    assert error_of(deregister, taskDefinition="fake:1") == (
        "ClientException",
        "Unable to describe task definition.",
    )
    ecs.register_task_definition(**taskdef("del-reasons"))
    out = ecs.delete_task_definitions(taskDefinitions=["del-reasons", "fake:1", "del-reasons:1"])
    assert out["taskDefinitions"] == []
    assert out["failures"] == [
        {
            "arn": "del-reasons",
            "reason": "The specified task definition identifier is invalid. "
            "Specify a valid name or ARN and try again.",
        },
        {
            "arn": "fake:1",
            "reason": "The specified task definition does not exist. "
            "Specify a valid account, family, revision and try again.",
        },
        {
            "arn": "del-reasons:1",
            "reason": "The specified task definition is still in ACTIVE status. "
            "Please deregister the target and try again.",
        },
    ]
    got = error_of(ecs.delete_task_definitions, taskDefinitions=[])
    assert got[0] == "InvalidParameterException"


# ---------------------------------------------------------------- tags


def _tags_of(ecs: Any, arns: list[str]) -> list[list[dict[str, str]]]:
    tasks = ecs.describe_tasks(tasks=arns, include=["TAGS"])["tasks"]
    return [t.get("tags", []) for t in tasks]


def test_run_task_propagates_task_definition_tags_and_adds_managed_tags(ecs: Any) -> None:
    td_tags = [{"key": "team", "value": "data"}, {"key": "cost", "value": "td"}]
    ecs.register_task_definition(**taskdef("propagated"), tags=td_tags)
    out = ecs.run_task(
        taskDefinition="propagated",
        tags=[{"key": "cost", "value": "mine"}],
        propagateTags="TASK_DEFINITION",
        enableECSManagedTags=True,
    )
    assert out["failures"] == []
    expected = [  # the request's own, then the definition's (keys given win), then ECS's
        {"key": "cost", "value": "mine"},
        {"key": "team", "value": "data"},
        {"key": "aws:ecs:clusterName", "value": "default"},
    ]
    arn = out["tasks"][0]["taskArn"]
    assert out["tasks"][0]["tags"] == expected
    assert _tags_of(ecs, [arn]) == [expected]
    plain = ecs.run_task(taskDefinition="propagated")["tasks"][0]  # nothing asked: no tags
    assert "tags" not in plain and _tags_of(ecs, [plain["taskArn"]]) == [[]]
    code, message = error_of(ecs.run_task, taskDefinition="propagated", propagateTags="SERVICE")
    assert code == "InvalidParameterException" and "propagateTags" in message
    for task in (arn, plain["taskArn"]):
        ecs.stop_task(task=task)


def test_service_tasks_get_service_tags_and_managed_tags(ecs: Any) -> None:
    ecs.register_task_definition(**taskdef("svc-tags"), tags=[{"key": "from", "value": "td"}])
    svc_tags = [{"key": "tier", "value": "front"}]
    created = ecs.create_service(
        serviceName="tagged",
        taskDefinition="svc-tags",
        desiredCount=2,
        tags=svc_tags,
        propagateTags="SERVICE",
        enableECSManagedTags=True,
    )["service"]
    try:
        assert created["propagateTags"] == "SERVICE" and created["enableECSManagedTags"] is True
        dep = created["deployments"][0]
        assert dep["rolloutStateReason"] == f"ECS deployment {dep['id']} in progress."
        ecs.get_waiter("services_stable").wait(services=["tagged"], WaiterConfig=FAST)
        dep = wait_for(
            lambda: (lambda d: d if d["rolloutState"] == "COMPLETED" else None)(
                ecs.describe_services(services=["tagged"])["services"][0]["deployments"][0]
            ),
            30,
            what="rollout COMPLETED",
        )
        assert dep["rolloutStateReason"] == f"ECS deployment {dep['id']} completed."
        arns = ecs.list_tasks(serviceName="tagged")["taskArns"]
        managed = [
            {"key": "aws:ecs:clusterName", "value": "default"},
            {"key": "aws:ecs:serviceName", "value": "tagged"},
        ]
        assert _tags_of(ecs, arns) == [svc_tags + managed] * 2
        ecs.update_service(service="tagged", propagateTags="TASK_DEFINITION", desiredCount=3)
        ecs.get_waiter("services_stable").wait(services=["tagged"], WaiterConfig=FAST)
        newest = set(ecs.list_tasks(serviceName="tagged")["taskArns"]) - set(arns)
        assert _tags_of(ecs, list(newest)) == [[{"key": "from", "value": "td"}, *managed]]
    finally:
        ecs.delete_service(service="tagged", force=True)


def test_describe_shows_tags_only_when_asked(ecs: Any, lc: LocalCluster) -> None:
    tags = [{"key": "env", "value": "dev"}]
    created = ecs.create_cluster(clusterName="with-tags", tags=tags)["cluster"]
    assert created["tags"] == tags
    bare = ecs.create_cluster(clusterName="without-tags")["cluster"]
    assert "tags" not in bare
    assert "tags" not in ecs.list_tags_for_resource(resourceArn=bare["clusterArn"])
    described = ecs.describe_clusters(clusters=["with-tags", "without-tags"])["clusters"]
    assert ["tags" in c for c in described] == [False, False]
    described = ecs.describe_clusters(clusters=["with-tags", "without-tags"], include=["TAGS"])
    assert [c.get("tags") for c in described["clusters"]] == [tags, None]

    td = ecs.register_task_definition(**taskdef("td-tags"), tags=tags)
    assert td["tags"] == tags
    assert "tags" not in ecs.register_task_definition(**taskdef("td-untagged"))
    assert "tags" not in ecs.describe_task_definition(taskDefinition="td-tags")
    got = ecs.describe_task_definition(taskDefinition="td-tags", include=["TAGS"])
    assert got["tags"] == tags
    got = ecs.describe_task_definition(taskDefinition="td-untagged", include=["TAGS"])
    assert got["tags"] == []

    task = ecs.run_task(taskDefinition="td-tags", tags=tags)["tasks"][0]
    try:
        assert "tags" not in ecs.describe_tasks(tasks=[task["taskArn"]])["tasks"][0]
        arn = task["containerInstanceArn"]
        ecs.tag_resource(resourceArn=arn, tags=tags)
        insts = ecs.describe_container_instances(containerInstances=[arn])["containerInstances"]
        assert "tags" not in insts[0]
        insts = ecs.describe_container_instances(containerInstances=[arn], include=["TAGS"])
        assert insts["containerInstances"][0]["tags"] == tags
    finally:
        ecs.stop_task(task=task["taskArn"])
    done = aws(lc, "describe-clusters", "--clusters", "with-tags")
    assert done.returncode == 0 and "tags" not in json.loads(done.stdout)["clusters"][0]


def test_tag_order_after_an_overwrite_is_ecs_order(ecs: Any) -> None:
    arn = ecs.create_cluster(
        clusterName="order", tags=[{"key": "foo", "value": "bar"}, {"key": "keep", "value": "1"}]
    )["cluster"]["clusterArn"]
    ecs.tag_resource(
        resourceArn=arn,
        tags=[{"key": "createdBy", "value": "me"}, {"key": "foo", "value": "hello world"}],
    )
    assert ecs.list_tags_for_resource(resourceArn=arn)["tags"] == [
        {"key": "createdBy", "value": "me"},
        {"key": "foo", "value": "hello world"},
        {"key": "keep", "value": "1"},
    ]


# ---------------------------------------------------------------- shapes


def test_create_service_keeps_role_arn_and_missing_services_get_short_arns(ecs: Any) -> None:
    ecs.create_cluster(clusterName="shapes")
    ecs.register_task_definition(**taskdef("shapes"))
    role = "arn:aws:iam::000000000000:role/ecsServiceRole"
    for name, given in (("full", role), ("bare", "ecsServiceRole")):
        svc = ecs.create_service(
            cluster="shapes", serviceName=name, taskDefinition="shapes", desiredCount=0, role=given
        )["service"]
        assert svc["roleArn"] == role
    got = ecs.describe_services(cluster="shapes", services=["full"])["services"][0]
    assert got["roleArn"] == role
    other = "arn:aws:ecs:us-east-1:000000000000:service/unknown-2"
    out = ecs.describe_services(cluster="shapes", services=["full", "unknown", other])
    assert [s["serviceName"] for s in out["services"]] == ["full"]
    assert out["failures"] == [
        {"arn": "arn:aws:ecs:us-east-1:000000000000:service/unknown", "reason": "MISSING"},
        {"arn": other, "reason": "MISSING"},
    ]


def test_family_prefix_names_one_family(ecs: Any, lc: LocalCluster) -> None:
    for family in ("prefix_a", "prefix_a", "prefix_b"):
        ecs.register_task_definition(**taskdef(family))
    assert ecs.list_task_definitions(familyPrefix="prefix")["taskDefinitionArns"] == []
    arns = ecs.list_task_definitions(familyPrefix="prefix_a")["taskDefinitionArns"]
    assert [a.rsplit("/", 1)[1] for a in arns] == ["prefix_a:1", "prefix_a:2"]
    done = aws(lc, "list-task-definitions", "--family-prefix", "prefix_b")
    assert done.returncode == 0, done.stderr
    assert [a.rsplit("/", 1)[1] for a in json.loads(done.stdout)["taskDefinitionArns"]] == [
        "prefix_b:1"
    ]
    families = ecs.list_task_definition_families(familyPrefix="prefix")["families"]
    assert families == ["prefix_a", "prefix_b"]  # families: a prefix, as ECS documents


def test_register_answers_with_ecs_defaults(ecs: Any) -> None:
    volumes = [{"name": "data", "dockerVolumeConfiguration": {"driver": "local"}}]
    td = ecs.register_task_definition(**taskdef("defaults"), volumes=volumes)["taskDefinition"]
    assert td["volumes"][0]["dockerVolumeConfiguration"]["scope"] == "task"  # ECS's default
    efs = [{"name": "efs", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}}]
    with pytest.raises(ClientError) as err:  # EFS is refused, not stored with defaults
        ecs.register_task_definition(**taskdef("defaults"), volumes=efs)
    assert err.value.response["Error"]["Code"] == "ClientException"
    assert "volumes[0].efsVolumeConfiguration" in err.value.response["Error"]["Message"]
    assert "requiresCompatibilities" not in td  # not given, not invented
    assert td["networkMode"] == "bridge" and td["placementConstraints"] == []
    c = td["containerDefinitions"][0]
    assert (c["portMappings"], c["environment"], c["mountPoints"], c["volumesFrom"]) == (
        [],
        [],
        [],
        [],
    )
    assert c["essential"] is True
    given = ecs.register_task_definition(**taskdef("defaults"), requiresCompatibilities=["EC2"])
    assert given["taskDefinition"]["requiresCompatibilities"] == ["EC2"]
