"""ECS `serviceRegistries` end to end (issue 21): a real controller and agent on the
machine's dockerd, Cloud Map through boto3. A service's RUNNING tasks appear in
DiscoverInstances with ECS's attributes, a stopped task disappears, scaling changes the
set; the checks on CreateService refuse what cannot be honoured."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.ecs_shapes import check_response
from dockyard.errors import ApiError
from tests.support import LocalCluster, cloud_map, wait_for

pytestmark = pytest.mark.docker

TD = {
    "family": "disc-web",
    "containerDefinitions": [
        {
            "name": "main",
            "image": "dockyard/sleeper:latest",
            "memory": 32,
            "essential": True,
            "portMappings": [{"containerPort": 8080, "hostPort": 0}],
        }
    ],
}


@pytest.fixture
def disc_cluster(tmp_path: Path, sample_images: list[str]) -> Iterator[LocalCluster]:
    """A controller and one agent publishing on 127.0.0.1, in zone `a`."""
    lc = LocalCluster(tmp_path)
    try:
        lc.start_controller()
        lc.start_agent("a1", "--attribute", "zone=a", "--address", "127.0.0.1")
        lc.wait_connected("a1")
        yield lc
    finally:
        lc.stop()


def sd_client(c: LocalCluster) -> Any:
    creds = c.credentials()
    assert creds is not None
    return cloud_map(c.http, creds.access_key_id, creds.secret_access_key)


def running_tasks(c: LocalCluster) -> dict[str, dict[str, Any]]:
    """The service's RUNNING tasks by task id."""
    arns = c.client().call("ListTasks", {"serviceName": "web"})["taskArns"]
    tasks = c.describe(arns) if arns else []
    return {t["taskArn"].rsplit("/", 1)[-1]: t for t in tasks if t["lastStatus"] == "RUNNING"}


def discovered(sd: Any) -> dict[str, dict[str, str]]:
    out = sd.discover_instances(NamespaceName="disc.local", ServiceName="web")
    return {i["InstanceId"]: i["Attributes"] for i in out["Instances"]}


def in_step(c: LocalCluster, sd: Any, count: int) -> dict[str, dict[str, str]]:
    """Wait until Cloud Map holds exactly the service's `count` RUNNING tasks."""

    def check() -> dict[str, dict[str, str]] | None:
        found, tasks = discovered(sd), running_tasks(c)
        return found if len(tasks) == count and set(found) == set(tasks) else None

    return wait_for(check, 60, what=f"{count} running tasks registered")  # type: ignore[no-any-return]


def test_service_tasks_register_deregister_and_follow_scale(disc_cluster: LocalCluster) -> None:
    c, sd = disc_cluster, sd_client(disc_cluster)
    sd.create_private_dns_namespace(Name="disc.local", Vpc="v")
    ns = sd.list_namespaces()["Namespaces"][0]
    dns = {"DnsRecords": [{"Type": "A", "TTL": 5}, {"Type": "SRV", "TTL": 5}]}
    registry = sd.create_service(Name="web", NamespaceId=ns["Id"], DnsConfig=dns)["Service"]
    c.client().call("RegisterTaskDefinition", TD)
    base = {"serviceName": "web", "taskDefinition": "disc-web", "desiredCount": 2}
    # an SRV registry needs the container and port that serve it
    with pytest.raises(ApiError, match="containerName and containerPort"):
        c.client().call(
            "CreateService", {**base, "serviceRegistries": [{"registryArn": registry["Arn"]}]}
        )
    reg = {"registryArn": registry["Arn"], "containerName": "main", "containerPort": 8080}
    out = c.client().call("CreateService", {**base, "serviceRegistries": [reg]})
    check_response("CreateService", out)
    assert out["service"]["serviceRegistries"] == [reg]

    found = in_step(c, sd, 2)
    tasks = running_tasks(c)
    for tid, attrs in found.items():
        bindings = tasks[tid]["containers"][0]["networkBindings"]  # IPv4 and IPv6: one port
        [port] = {b["hostPort"] for b in bindings if b["containerPort"] == 8080}
        assert attrs == {
            "AWS_INSTANCE_IPV4": "127.0.0.1",
            "AWS_INSTANCE_PORT": str(port),
            "ECS_CLUSTER_NAME": "default",
            "ECS_SERVICE_NAME": "web",
            "ECS_TASK_DEFINITION_FAMILY": "disc-web",
            "AVAILABILITY_ZONE": "a",
        }
    by_ns = c.client().call("ListServicesByNamespace", {"namespace": "disc.local"})
    check_response("ListServicesByNamespace", by_ns)
    assert by_ns["serviceArns"] == [out["service"]["serviceArn"]]

    # a stopped task leaves; its replacement comes in
    stopped = sorted(found)[0]
    c.client().call("StopTask", {"task": tasks[stopped]["taskArn"]})
    wait_for(lambda: stopped not in discovered(sd), 30, what="stopped task deregistered")
    in_step(c, sd, 2)
    # scale in and out
    c.client().call("UpdateService", {"service": "web", "desiredCount": 1})
    in_step(c, sd, 1)
    c.client().call("UpdateService", {"service": "web", "desiredCount": 3})
    in_step(c, sd, 3)
    c.client().call("UpdateService", {"service": "web", "desiredCount": 0})
    wait_for(lambda: not discovered(sd), 60, what="every task deregistered")
