"""boto3, the `aws ecs` CLI and raw HTTP against a real controller and a real agent.

One controller process and one agent (on the machine's dockerd) serve the whole module.
Clients sign (SigV4) with the admin key the controller wrote on its first start.
Every response is checked against botocore's output shapes twice: the controller runs with
DOCKYARD_CHECK_RESPONSES=1 (a body off the model becomes a ServerException), and a
botocore hook re-checks the raw body of every boto3 call before boto3 parses it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from controller.ecs_shapes import check_response
from tests.support import LocalCluster, docker, tool, wait_for

pytestmark = pytest.mark.docker

TARGET = "AmazonEC2ContainerServiceV20141113."
FAST = {"Delay": 1, "MaxAttempts": 60}  # waiter polling for a local cluster

# The "webserver" example task definition of the Amazon ECS Developer Guide: EC2 launch
# type (no requiresCompatibilities) in the default bridge network mode. Only the image
# differs (no registry is reachable here).
WEBSERVER: dict[str, Any] = {
    "family": "webserver",
    "containerDefinitions": [
        {
            "name": "web",
            "image": "dockyard/httpd:latest",
            "cpu": 99,
            "memory": 100,
            "portMappings": [{"containerPort": 80, "hostPort": 80}],
        }
    ],
}


def sleeper(family: str, **container: Any) -> dict[str, Any]:
    """A small task definition whose container sleeps until stopped."""
    c = {"name": "main", "image": "dockyard/sleeper:latest", "memory": 32, "cpu": 10}
    return {"family": family, "containerDefinitions": [c | container]}


# ---------------------------------------------------------------- fixtures and helpers

CHECKED: set[str] = set()  # operations whose raw responses the hook has checked


def _check_raw(operation_model: Any, response_dict: dict[str, Any], **_: Any) -> None:
    """before-parse hook: a 200 body must fit the output shape, an error must be ECS's."""
    body = response_dict["body"]
    if response_dict["status_code"] == 200:
        check_response(operation_model.name, body)
        CHECKED.add(operation_model.name)
    else:
        doc = json.loads(body)
        assert set(doc) == {"__type", "message"} and doc["message"], doc


@pytest.fixture(scope="module")
def ecs_cluster(
    tmp_path_factory: pytest.TempPathFactory, sample_images: list[str]
) -> Iterator[LocalCluster]:
    """The `cluster` fixture's set-up (controller + agent "a1" in zone a), once per module,
    with server-side response checking on."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOCKYARD_CHECK_RESPONSES", "1")
        lc = LocalCluster(tmp_path_factory.mktemp("ecs-e2e"))
        try:
            lc.start_controller()
            lc.start_agent("a1", "--attribute", "zone=a")
            lc.wait_connected("a1")
            yield lc
        finally:
            lc.stop()


@pytest.fixture
def ecs(ecs_cluster: LocalCluster) -> Iterator[Any]:
    """A boto3 ECS client on the cluster; tasks the test left running are stopped after."""
    client = make_client(ecs_cluster)
    yield client
    for cluster_arn in client.list_clusters()["clusterArns"]:
        arns = client.list_tasks(cluster=cluster_arn)["taskArns"]
        for arn in arns:
            client.stop_task(cluster=cluster_arn, task=arn, reason="test cleanup")
        if arns:
            client.get_waiter("tasks_stopped").wait(
                cluster=cluster_arn, tasks=arns, WaiterConfig=FAST
            )


def admin_key(lc: LocalCluster) -> tuple[str, str]:
    creds = lc.credentials()
    assert creds is not None, "the controller wrote no admin key"
    return creds.access_key_id, creds.secret_access_key


def make_client(lc: LocalCluster) -> Any:
    client = lc.boto3("ecs")
    client.meta.events.register("before-parse.ecs.*", _check_raw)
    return client


def error_of(call: Callable[..., Any], **kwargs: Any) -> tuple[str, str]:
    """(ECS exception name, message) of a call that must fail."""
    with pytest.raises(ClientError) as err:
        call(**kwargs)
    return err.value.response["Error"]["Code"], err.value.response["Error"]["Message"]


def container_of(task_arn: str) -> dict[str, Any]:
    """`docker inspect` of the task's (single) container."""
    ids = docker("ps", "-q", "--filter", f"label=dockyard.task-arn={task_arn}").split()
    assert len(ids) == 1, ids
    return json.loads(docker("inspect", ids[0]))[0]  # type: ignore[no-any-return]


def run_and_wait(ecs: Any, count: int = 1, **kwargs: Any) -> list[dict[str, Any]]:
    out = ecs.run_task(count=count, **kwargs)
    assert out["failures"] == [], out["failures"]
    arns = [t["taskArn"] for t in out["tasks"]]
    ecs.get_waiter("tasks_running").wait(
        cluster=kwargs.get("cluster", "default"), tasks=arns, WaiterConfig=FAST
    )
    return out["tasks"]  # type: ignore[no-any-return]


def restart_controller(lc: LocalCluster) -> None:
    assert lc.controller is not None
    lc.controller.kill(signal.SIGTERM)
    lc.start_controller()
    lc.wait_connected("a1")


# ---------------------------------------------------------------- the core flow


def test_webserver_from_the_ecs_docs_runs_and_stops(ecs: Any, ecs_cluster: LocalCluster) -> None:
    td = ecs.register_task_definition(**WEBSERVER)["taskDefinition"]
    assert td["family"] == "webserver" and td["status"] == "ACTIVE"
    assert td["networkMode"] == "bridge"
    assert td["taskDefinitionArn"].startswith("arn:aws:ecs:us-east-1:")

    run = ecs.run_task(taskDefinition="webserver", startedBy="e2e", launchType="EC2")
    task_arn = run["tasks"][0]["taskArn"]
    assert task_arn.startswith("arn:aws:ecs:us-east-1:000000000000:task/default/")
    ecs.get_waiter("tasks_running").wait(tasks=[task_arn], WaiterConfig=FAST)

    task = ecs.describe_tasks(tasks=[task_arn])["tasks"][0]
    assert task["lastStatus"] == "RUNNING" and task["desiredStatus"] == "RUNNING"
    assert task["startedBy"] == "e2e" and task["launchType"] == "EC2"
    assert task["containers"][0]["networkBindings"][0]["hostPort"] == 80
    iid = ecs_cluster.instance_id("a1")
    assert task["containerInstanceArn"].endswith("/" + iid)
    info = container_of(task_arn)
    assert info["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"] == "80"
    assert info["HostConfig"]["Memory"] == 100 * 1024 * 1024

    stopped = ecs.stop_task(task=task_arn, reason="done with it")["task"]
    assert stopped["desiredStatus"] == "STOPPED"
    ecs.get_waiter("tasks_stopped").wait(tasks=[task_arn], WaiterConfig=FAST)
    task = ecs.describe_tasks(tasks=[task_arn])["tasks"][0]
    assert task["stopCode"] == "UserInitiated" and task["stoppedReason"] == "done with it"
    assert task_arn in ecs.list_tasks(desiredStatus="STOPPED")["taskArns"]
    assert task_arn not in ecs.list_tasks()["taskArns"]


def test_run_task_overrides_group_tags_and_client_token(ecs: Any) -> None:
    ecs.register_task_definition(**sleeper("ovr", environment=[{"name": "FROM_DEF", "value": "1"}]))
    overrides: dict[str, Any] = {
        "containerOverrides": [
            {
                "name": "main",
                "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"],
                "environment": [{"name": "GREETING", "value": "hello"}],
                "cpu": 64,
                "memory": 48,
            }
        ],
        "cpu": "128",
        "memory": "96",
    }
    args: dict[str, Any] = dict(
        taskDefinition="ovr",
        overrides=overrides,
        group="batch:nightly",
        startedBy="cron",
        tags=[{"key": "team", "value": "data"}],
        clientToken="token-1",
    )
    task = run_and_wait(ecs, **args)[0]
    again = ecs.run_task(**args)["tasks"]  # same clientToken: the same task, not a new one
    assert [t["taskArn"] for t in again] == [task["taskArn"]]

    task = ecs.describe_tasks(tasks=[task["taskArn"]], include=["TAGS"])["tasks"][0]
    assert task["group"] == "batch:nightly" and task["startedBy"] == "cron"
    assert task["cpu"] == "128" and task["memory"] == "96"
    assert task["tags"] == [{"key": "team", "value": "data"}]
    assert task["overrides"]["containerOverrides"][0]["environment"][0]["name"] == "GREETING"
    info = container_of(task["taskArn"])
    assert info["Config"]["Cmd"] == overrides["containerOverrides"][0]["command"]
    assert {"GREETING=hello", "FROM_DEF=1"} <= set(info["Config"]["Env"])
    assert info["HostConfig"]["Memory"] == 48 * 1024 * 1024
    assert info["HostConfig"]["CpuShares"] == 64

    other = run_and_wait(ecs, taskDefinition="ovr", startedBy="someone-else")[0]
    arn, iid = task["taskArn"], task["containerInstanceArn"]
    assert ecs.list_tasks(startedBy="cron")["taskArns"] == [arn]
    assert set(ecs.list_tasks(family="ovr")["taskArns"]) == {arn, other["taskArn"]}
    assert set(ecs.list_tasks(containerInstance=iid)["taskArns"]) >= {arn, other["taskArn"]}
    assert ecs.list_tasks(launchType="FARGATE")["taskArns"] == []
    assert arn in ecs.list_tasks(launchType="EC2")["taskArns"]
    assert ecs.list_tasks(family="no-such-family")["taskArns"] == []
    assert ecs.list_tasks(desiredStatus="STOPPED", startedBy="cron")["taskArns"] == []


def test_paginators_walk_every_page(ecs: Any) -> None:
    for _ in range(5):
        ecs.register_task_definition(**sleeper("pages"))
    tasks = run_and_wait(ecs, count=3, taskDefinition="pages", startedBy="pager")

    def walk(operation: str, key: str, **kwargs: Any) -> list[list[str]]:
        pager = ecs.get_paginator(operation)
        return [p[key] for p in pager.paginate(PaginationConfig={"PageSize": 2}, **kwargs)]

    pages = walk("list_task_definitions", "taskDefinitionArns", familyPrefix="pages")
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [a.rsplit(":", 1)[1] for p in pages for a in p] == ["1", "2", "3", "4", "5"]
    desc = walk("list_task_definitions", "taskDefinitionArns", familyPrefix="pages", sort="DESC")
    assert [a.rsplit(":", 1)[1] for p in desc for a in p] == ["5", "4", "3", "2", "1"]
    pages = walk("list_tasks", "taskArns", startedBy="pager")
    assert [len(p) for p in pages] == [2, 1]
    assert sorted(a for p in pages for a in p) == sorted(t["taskArn"] for t in tasks)
    pager = ecs.get_paginator("list_container_instances")
    pages = [p["containerInstanceArns"] for p in pager.paginate(PaginationConfig={"PageSize": 1})]
    assert len(pages) == 1 and len(pages[0]) == 1
    assert ecs.get_paginator("list_task_definition_families").paginate(
        familyPrefix="pages"
    ).build_full_result()["families"] == ["pages"]


# ---------------------------------------------------------------- services


def test_service_create_stable_update_delete(ecs: Any) -> None:
    ecs.register_task_definition(**sleeper("svc"))
    created = ecs.create_service(
        serviceName="web",
        taskDefinition="svc",
        desiredCount=2,
        tags=[{"key": "tier", "value": "front"}],
    )["service"]
    assert created["status"] == "ACTIVE" and created["desiredCount"] == 2
    ecs.get_waiter("services_stable").wait(services=["web"], WaiterConfig=FAST)
    svc = ecs.describe_services(services=["web"], include=["TAGS"])["services"][0]
    assert svc["runningCount"] == 2 and svc["tags"] == [{"key": "tier", "value": "front"}]
    assert len(ecs.list_tasks(serviceName="web")["taskArns"]) == 2
    assert ecs.list_services()["serviceArns"] == [created["serviceArn"]]
    ecs.tag_resource(resourceArn=created["serviceArn"], tags=[{"key": "tier", "value": "back"}])
    ecs.untag_resource(resourceArn=created["serviceArn"], tagKeys=["nothing"])
    listed = ecs.list_tags_for_resource(resourceArn=created["serviceArn"])["tags"]
    assert listed == [{"key": "tier", "value": "back"}]

    ecs.register_task_definition(**sleeper("svc", memory=40))
    ecs.update_service(service="web", taskDefinition="svc:2", desiredCount=1)
    ecs.get_waiter("services_stable").wait(services=["web"], WaiterConfig=FAST)
    svc = ecs.describe_services(services=["web"])["services"][0]
    assert svc["taskDefinition"].endswith("svc:2") and svc["runningCount"] == 1
    tasks = ecs.describe_tasks(tasks=ecs.list_tasks(serviceName="web")["taskArns"])["tasks"]
    assert [t["taskDefinitionArn"].rsplit(":", 1)[1] for t in tasks] == ["2"]

    name, _ = error_of(ecs.delete_service, service="web")  # still scaled above 0
    assert name == "InvalidParameterException"
    ecs.update_service(service="web", desiredCount=0)
    deleted = ecs.delete_service(service="web")["service"]
    assert deleted["status"] in ("DRAINING", "INACTIVE")
    name, message = error_of(ecs.update_service, service="web", desiredCount=1)
    assert name == "ServiceNotActiveException" and "web" in message
    name, _ = error_of(ecs.update_service, service="no-such-service", desiredCount=1)
    assert name == "ServiceNotFoundException"
    wait_for(
        lambda: ecs.describe_services(services=["web"])["services"][0]["status"] == "INACTIVE",
        30,
        what="service web INACTIVE",
    )


def test_cluster_with_a_service_cannot_be_deleted(ecs: Any) -> None:
    ecs.create_cluster(clusterName="held")
    ecs.register_task_definition(**sleeper("held"))
    ecs.create_service(cluster="held", serviceName="idle", taskDefinition="held", desiredCount=0)
    name, _ = error_of(ecs.delete_cluster, cluster="held")
    assert name == "ClusterContainsServicesException"
    ecs.delete_service(cluster="held", service="idle")
    wait_for(
        lambda: not ecs.describe_clusters(clusters=["held"])["clusters"][0]["activeServicesCount"],
        30,
        what="service idle gone",
    )
    assert ecs.delete_cluster(cluster="held")["cluster"]["status"] == "INACTIVE"


# ---------------------------------------------------------------- instances


def test_drained_instance_takes_no_new_tasks(ecs: Any, ecs_cluster: LocalCluster) -> None:
    ecs.register_task_definition(**sleeper("drain"))
    standalone = run_and_wait(ecs, taskDefinition="drain")[0]
    iid = ecs_cluster.instance_id("a1")
    try:
        out = ecs.update_container_instances_state(containerInstances=[iid], status="DRAINING")
        assert out["containerInstances"][0]["status"] == "DRAINING" and out["failures"] == []
        inst = ecs.describe_container_instances(containerInstances=[iid])["containerInstances"][0]
        assert inst["status"] == "DRAINING"
        assert ecs.list_container_instances(status="DRAINING")["containerInstanceArns"] == [
            inst["containerInstanceArn"]
        ]
        assert ecs.list_container_instances(status="ACTIVE")["containerInstanceArns"] == []
        refused = ecs.run_task(taskDefinition="drain")
        assert refused["tasks"] == [] and refused["failures"]
        task = ecs.describe_tasks(tasks=[standalone["taskArn"]])["tasks"][0]
        assert task["lastStatus"] == "RUNNING"  # standalone tasks are not drained
    finally:
        ecs.update_container_instances_state(containerInstances=[iid], status="ACTIVE")
    assert run_and_wait(ecs, taskDefinition="drain")


def test_instance_filter_and_attributes(ecs: Any, ecs_cluster: LocalCluster) -> None:
    iid = ecs_cluster.instance_id("a1")
    arn = ecs.list_container_instances()["containerInstanceArns"][0]
    assert ecs.list_container_instances(filter="attribute:zone == a")["containerInstanceArns"] == [
        arn
    ]
    assert ecs.list_container_instances(filter="attribute:zone == b")["containerInstanceArns"] == []
    name, message = error_of(ecs.list_container_instances, filter="attribute:zone ==")
    assert name == "InvalidParameterException" and "filter" in message
    attr = {"name": "stage", "value": "blue", "targetId": iid}
    ecs.put_attributes(attributes=[attr])
    try:
        listed = ecs.list_attributes(targetType="container-instance", attributeName="stage")
        assert [(a["name"], a["value"]) for a in listed["attributes"]] == [("stage", "blue")]
        hits = ecs.list_container_instances(filter="attribute:stage == blue")
        assert hits["containerInstanceArns"] == [arn]
    finally:
        ecs.delete_attributes(attributes=[{"name": "stage", "targetId": iid}])
    assert not ecs.list_attributes(targetType="container-instance", attributeName="stage")[
        "attributes"
    ]


# ---------------------------------------------------------------- tags, deletes, restarts


def test_tags_on_every_resource_survive_a_restart(ecs: Any, ecs_cluster: LocalCluster) -> None:
    cluster = ecs.create_cluster(clusterName="tagged", tags=[{"key": "env", "value": "dev"}])
    td = ecs.register_task_definition(**sleeper("tagged"), tags=[{"key": "owner", "value": "ana"}])
    assert td["tags"] == [{"key": "owner", "value": "ana"}]
    task = run_and_wait(ecs, taskDefinition="tagged")[0]
    arns = {
        "cluster": cluster["cluster"]["clusterArn"],
        "taskdef": td["taskDefinition"]["taskDefinitionArn"],
        "task": task["taskArn"],
        "instance": task["containerInstanceArn"],
    }
    for arn in arns.values():
        ecs.tag_resource(resourceArn=arn, tags=[{"key": "k", "value": "1"}])
        ecs.tag_resource(resourceArn=arn, tags=[{"key": "k", "value": "2"}, {"key": "x"}])
        ecs.untag_resource(resourceArn=arn, tagKeys=["x", "never-set"])
    expected = {  # ECS's order: the keys a TagResource gave first, then the others
        "cluster": [{"key": "k", "value": "2"}, {"key": "env", "value": "dev"}],
        "taskdef": [{"key": "k", "value": "2"}, {"key": "owner", "value": "ana"}],
        "task": [{"key": "k", "value": "2"}],
        "instance": [{"key": "k", "value": "2"}],
    }

    def tags_now() -> dict[str, Any]:
        return {k: ecs.list_tags_for_resource(resourceArn=a)["tags"] for k, a in arns.items()}

    assert tags_now() == expected
    described = ecs.describe_task_definition(taskDefinition="tagged", include=["TAGS"])
    assert described["tags"] == expected["taskdef"]
    clusters = ecs.describe_clusters(clusters=["tagged"], include=["TAGS"])["clusters"]
    assert clusters[0]["tags"] == expected["cluster"]

    restart_controller(ecs_cluster)
    assert tags_now() == expected

    name, _ = error_of(ecs.tag_resource, resourceArn=arns["task"][:-4] + "0000", tags=[])
    assert name == "ResourceNotFoundException"
    name, message = error_of(
        ecs.tag_resource, resourceArn=arns["task"], tags=[{"key": "aws:x", "value": "y"}]
    )
    assert name == "InvalidParameterException" and "tags[0].key" in message
    name, message = error_of(ecs.list_tags_for_resource, resourceArn="not-an-arn")
    assert name == "InvalidParameterException" and "resourceArn" in message
    too_many = [{"key": f"t{i}", "value": ""} for i in range(50)]
    name, _ = error_of(ecs.tag_resource, resourceArn=arns["cluster"], tags=too_many)
    assert name == "InvalidParameterException"


def test_delete_task_definitions(ecs: Any, ecs_cluster: LocalCluster) -> None:
    for _ in range(3):
        ecs.register_task_definition(**sleeper("gone"))
    out = ecs.delete_task_definitions(taskDefinitions=["gone:1"])
    assert out["taskDefinitions"] == [] and "ACTIVE" in out["failures"][0]["reason"]

    in_use = run_and_wait(ecs, taskDefinition="gone:2")[0]
    for rev in ("gone:1", "gone:2", "gone:3"):
        ecs.deregister_task_definition(taskDefinition=rev)
    out = ecs.delete_task_definitions(taskDefinitions=["gone:1", "gone:2", "gone:3"])
    assert [t["status"] for t in out["taskDefinitions"]] == ["DELETE_IN_PROGRESS"] * 3
    assert out["failures"] == []

    def listed(status: str) -> list[str]:
        arns = ecs.list_task_definitions(familyPrefix="gone", status=status)
        return [a.rsplit(":", 1)[1] for a in arns["taskDefinitionArns"]]

    # unused revisions go at once; one a running task uses waits for the task to stop
    assert listed("DELETE_IN_PROGRESS") == ["2"] and listed("INACTIVE") == []
    name, _ = error_of(ecs.describe_task_definition, taskDefinition="gone:1")
    assert name == "ClientException"
    ecs.stop_task(task=in_use["taskArn"])
    wait_for(lambda: listed("DELETE_IN_PROGRESS") == [], 30, what="gone:2 deleted")

    # revision numbers are never reused, even across a restart
    assert ecs.register_task_definition(**sleeper("gone"))["taskDefinition"]["revision"] == 4
    ecs.deregister_task_definition(taskDefinition="gone:4")
    ecs.delete_task_definitions(taskDefinitions=["gone:4"])
    restart_controller(ecs_cluster)
    assert ecs.register_task_definition(**sleeper("gone"))["taskDefinition"]["revision"] == 5


# ---------------------------------------------------------------- errors


def test_ecs_exception_names(ecs: Any) -> None:
    ecs.register_task_definition(**sleeper("errs"))
    cases: list[tuple[str, Callable[..., Any], dict[str, Any], str]] = [
        (
            "ClientException",
            ecs.describe_task_definition,
            {"taskDefinition": "nope"},
            "Unable to describe task definition.",
        ),
        ("ClusterNotFoundException", ecs.list_tasks, {"cluster": "nope"}, "Cluster not found."),
        (
            "ClusterNotFoundException",
            ecs.run_task,
            {"cluster": "nope", "taskDefinition": "errs"},
            "Cluster not found.",
        ),
        (
            "InvalidParameterException",
            ecs.run_task,
            {"taskDefinition": "errs", "overrides": {"containerOverrides": [{"name": "x"}]}},
            "containerOverrides[0].name",
        ),
        (
            "InvalidParameterException",
            ecs.run_task,
            {"taskDefinition": "errs", "count": 11},
            "count",
        ),
        (
            "ClientException",
            ecs.register_task_definition,
            {"family": "bad", "containerDefinitions": [{"name": "c", "image": "i", "memory": -1}]},
            "memory",
        ),
        ("InvalidParameterException", ecs.stop_task, {"task": "no-such-task"}, "task"),
    ]
    for expected, call, kwargs, named in cases:
        name, message = error_of(call, **kwargs)
        assert (name, named in message) == (expected, True), (expected, kwargs, message)

    task = run_and_wait(ecs, taskDefinition="errs")[0]
    name, _ = error_of(ecs.delete_cluster, cluster="default")
    assert name == "ClusterContainsTasksException"
    ecs.stop_task(task=task["taskArn"])
    ecs.get_waiter("tasks_stopped").wait(tasks=[task["taskArn"]], WaiterConfig=FAST)
    name, _ = error_of(ecs.delete_cluster, cluster="default")
    assert name == "ClusterContainsContainerInstancesException"


# ---------------------------------------------------------------- raw HTTP


def post(
    lc: LocalCluster, target: str | None, data: bytes, sign: bool = True
) -> tuple[int, dict[str, Any]]:
    """POST raw bytes to the endpoint, SigV4-signed with the admin key unless `sign` is off."""
    headers = {"Content-Type": "application/x-amz-json-1.1"}
    if target is not None:
        headers["X-Amz-Target"] = target
    if sign:
        aws = AWSRequest(method="POST", url=lc.http + "/", data=data, headers=headers)
        SigV4Auth(Credentials(*admin_key(lc)), "ecs", "us-east-1").add_auth(aws)
        headers = dict(aws.headers.items())
    req = urllib.request.Request(lc.http + "/", data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


BAD_REQUESTS = [
    ("ListClusters", b'{"maxResults": ', "SerializationException", "not valid JSON"),
    ("ListClusters", b"[1, 2]", "SerializationException", "JSON object"),
    ("NoSuchThing", b"{}", "UnknownOperationException", "NoSuchThing"),
    ("RunTask", b'{"taskDefinition": "x", "count": "two"}', "InvalidParameterException", "count"),
    ("RunTask", b'{"taskDefinition": 7}', "InvalidParameterException", "taskDefinition"),
    ("RunTask", b"{}", "InvalidParameterException", "taskDefinition"),
    ("DescribeTasks", b'{"cluster": "default"}', "InvalidParameterException", "tasks"),
    (
        "RegisterTaskDefinition",
        b'{"containerDefinitions": [{"name": "c", "image": "i", "memory": 32}]}',
        "InvalidParameterException",
        "family",
    ),
    (
        "RegisterTaskDefinition",
        b'{"family": "f", "containerDefinitions": [{"name": "c", "image": true}]}',
        "InvalidParameterException",
        "containerDefinitions[0].image",
    ),
    ("TagResource", b'{"resourceArn": "x"}', "InvalidParameterException", "tags"),
    ("ListTasks", b'{"desiredStatus": "SLEEPING"}', "InvalidParameterException", "desiredStatus"),
    ("CreateCluster", b'{"clusterName": "bad name!"}', "InvalidParameterException", "clusterName"),
]


def test_bad_input_over_raw_http_changes_nothing(ecs: Any, ecs_cluster: LocalCluster) -> None:
    ecs.register_task_definition(**sleeper("raw"))

    def snapshot() -> list[Any]:
        answers = [
            ecs.list_task_definitions(),
            ecs.list_clusters(),
            ecs.list_tasks(),
            ecs.list_task_definition_families(status="ALL"),
        ]
        return [{k: v for k, v in a.items() if k != "ResponseMetadata"} for a in answers]

    before = snapshot()
    for op, data, expected, named in BAD_REQUESTS:
        status, body = post(ecs_cluster, TARGET + op, data)
        assert (status, body.get("__type")) == (400, expected), (op, data, body)
        assert named in body["message"], (op, body["message"])
    status, body = post(ecs_cluster, None, b"{}")
    assert (status, body["__type"]) == (400, "UnknownOperationException")
    status, body = post(ecs_cluster, TARGET + "DeleteCluster", b'{"cluster": "x"}', sign=False)
    assert (status, body["__type"]) == (403, "AccessDeniedException")
    assert ecs_cluster.controller is not None and ecs_cluster.controller.running
    assert snapshot() == before
    status, body = post(ecs_cluster, TARGET + "ListClusters", b"")  # an empty body is {}
    assert status == 200 and check_response("ListClusters", json.dumps(body))


# ---------------------------------------------------------------- the aws CLI


def test_aws_cli_core_flow(ecs_cluster: LocalCluster, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": admin_key(ecs_cluster)[0],
        "AWS_SECRET_ACCESS_KEY": admin_key(ecs_cluster)[1],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }

    def aws(*args: str) -> str:
        argv = [tool("aws"), "ecs", *args, "--endpoint-url", ecs_cluster.http, "--output", "json"]
        out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, (args, out.stderr)
        return out.stdout

    spec = tmp_path / "webserver.json"
    spec.write_text(json.dumps({**WEBSERVER, "family": "cli-webserver"}))
    td = json.loads(aws("register-task-definition", "--cli-input-json", f"file://{spec}"))
    assert td["taskDefinition"]["family"] == "cli-webserver"
    run = json.loads(aws("run-task", "--task-definition", "cli-webserver", "--started-by", "cli"))
    arn = run["tasks"][0]["taskArn"]
    aws("wait", "tasks-running", "--tasks", arn)
    status = aws("describe-tasks", "--tasks", arn, "--query", "tasks[0].[lastStatus,startedBy]")
    assert json.loads(status) == ["RUNNING", "cli"]
    aws("stop-task", "--task", arn, "--reason", "from the CLI")
    aws("wait", "tasks-stopped", "--tasks", arn)
    reason = aws("describe-tasks", "--tasks", arn, "--query", "tasks[0].stoppedReason")
    assert json.loads(reason) == "from the CLI"

    argv = [tool("aws"), "ecs", "describe-task-definition", "--task-definition", "nope"]
    out = subprocess.run(
        [*argv, "--endpoint-url", ecs_cluster.http], env=env, capture_output=True, text=True
    )
    assert out.returncode in (254, 255) and "ClientException" in out.stderr  # v2 / v1
