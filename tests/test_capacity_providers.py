"""Capacity providers on the operator's own machines (issue 22), through real boto3 against a
real controller process, responses checked against botocore's model: the provider
operations, the clusters' associations, and capacityProviderStrategy splitting RunTask's and
a service's tasks between two providers' simulated agents (`dockyard sim`)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.capacity import driver
from tests import capacity_group
from tests.support import (
    LocalCluster,
    Proc,
    checked_controller,
    wait_for,
)
from tests.test_ecs_ops import TD, ecs, error_of, restart

GROUP = "arn:aws:autoscaling:us-east-1:000000000000:autoScalingGroup:x:autoScalingGroupName/"
ATTR = "dockyard.capacity-provider"


@pytest.fixture
def lc(tmp_path: Path) -> Iterator[LocalCluster]:
    with checked_controller(tmp_path) as cluster:
        yield cluster


def provider(client: Any, name: str, **scaling: Any) -> dict[str, Any]:
    return client.create_capacity_provider(
        name=name,
        autoScalingGroupProvider={
            "autoScalingGroupArn": GROUP + f"{name}-hosts",
            "managedScaling": {"status": "ENABLED", **scaling},
            "managedTerminationProtection": "ENABLED",
        },
        tags=[{"key": "dockyard:group-size-command", "value": f"true {name} {{desired}}"}],
    )["capacityProvider"]


def test_provider_operations(lc: LocalCluster) -> None:
    client = ecs(lc)
    made = provider(client, "small", targetCapacity=80, maximumScalingStepSize=2)
    assert made["status"] == "ACTIVE"
    assert made["capacityProviderArn"].endswith(":capacity-provider/small")
    scaling = made["autoScalingGroupProvider"]["managedScaling"]
    assert scaling == {
        "status": "ENABLED",
        "targetCapacity": 80,
        "minimumScalingStepSize": 1,
        "maximumScalingStepSize": 2,
        "instanceWarmupPeriod": 300,
    }
    code, message = error_of(
        client.create_capacity_provider,
        name="other",
        autoScalingGroupProvider={"autoScalingGroupArn": GROUP + "small-hosts"},
    )
    assert "small-hosts already has a capacity provider" in message
    code, message = error_of(
        client.create_capacity_provider,
        name="bad",
        autoScalingGroupProvider={
            "autoScalingGroupArn": "bad-hosts",
            "managedScaling": {"minimumScalingStepSize": 5, "maximumScalingStepSize": 2},
        },
    )
    assert message.startswith("autoScalingGroupProvider.managedScaling.minimumScalingStepSize")
    updated = client.update_capacity_provider(
        name="small", autoScalingGroupProvider={"managedScaling": {"targetCapacity": 100}}
    )["capacityProvider"]["autoScalingGroupProvider"]["managedScaling"]
    assert updated["targetCapacity"] == 100 and updated["maximumScalingStepSize"] == 2
    found = client.describe_capacity_providers(capacityProviders=["small", "nope"])
    assert [p["name"] for p in found["capacityProviders"]] == ["small"]
    assert found["failures"] == [{"arn": "nope", "reason": "MISSING"}]
    tagged = client.describe_capacity_providers(include=["TAGS"])["capacityProviders"][0]
    assert tagged["tags"][0]["key"] == "dockyard:group-size-command"

    client.create_cluster(clusterName="cp")
    out = client.put_cluster_capacity_providers(
        cluster="cp",
        capacityProviders=["small"],
        defaultCapacityProviderStrategy=[{"capacityProvider": "small", "weight": 1}],
    )["cluster"]
    assert out["capacityProviders"] == ["small"]
    restart(lc)  # stored: providers and the association survive a restart
    client = ecs(lc)
    cluster = client.describe_clusters(clusters=["cp"])["clusters"][0]
    assert cluster["defaultCapacityProviderStrategy"] == [
        {"capacityProvider": "small", "base": 0, "weight": 1}
    ]
    code, message = error_of(client.delete_capacity_provider, capacityProvider="small")
    assert code == "ClientException" and "in use by cluster cp" in message
    client.put_cluster_capacity_providers(
        cluster="cp", capacityProviders=[], defaultCapacityProviderStrategy=[]
    )
    gone = client.delete_capacity_provider(capacityProvider="small")["capacityProvider"]
    assert gone["status"] == "INACTIVE"
    assert client.describe_capacity_providers()["capacityProviders"] == []


def _providers_of(client: Any, cluster: str, task_arns: list[str]) -> Counter[str]:
    tasks = client.describe_tasks(cluster=cluster, tasks=task_arns)["tasks"]
    arns = [t["containerInstanceArn"] for t in tasks]
    insts = client.describe_container_instances(cluster=cluster, containerInstances=arns)
    where = {
        i["containerInstanceArn"]: next(a["value"] for a in i["attributes"] if a["name"] == ATTR)
        for i in insts["containerInstances"]
    }
    return Counter(where[a] for a in arns)


def test_strategy_splits_tasks_between_two_providers(lc: LocalCluster) -> None:
    """Four simulated agents, two in each provider (joined by attribute): RunTask and a
    service spread their tasks by base, then weight."""
    client = ecs(lc)
    argv = [sys.executable, "-m", "dockyard.cli.main", "sim", "--controller", lc.address]
    sim = Proc("sim", [*argv, "--report-every", "0", "--agents", "4"], lc.root / "sim.log")
    sim.start()
    try:
        wait_for(
            lambda: len(client.list_container_instances()["containerInstanceArns"]) == 4,
            60,
            what="4 simulated agents",
        )
        arns = client.list_container_instances()["containerInstanceArns"]
        for i, arn in enumerate(arns):
            client.put_attributes(
                attributes=[
                    {
                        "name": ATTR,
                        "value": "blue" if i < 2 else "green",
                        "targetType": "container-instance",
                        "targetId": arn,
                    }
                ]
            )
        provider(client, "blue")
        provider(client, "green")
        client.register_task_definition(**TD)
        _code, message = error_of(
            client.run_task,
            taskDefinition="ops-web",
            capacityProviderStrategy=[{"capacityProvider": "blue", "weight": 1}],
        )
        assert "not associated with cluster default" in message
        client.put_cluster_capacity_providers(
            cluster="default",
            capacityProviders=["blue", "green"],
            defaultCapacityProviderStrategy=[{"capacityProvider": "green", "weight": 1}],
        )
        strategy = [
            {"capacityProvider": "blue", "base": 2, "weight": 1},
            {"capacityProvider": "green", "weight": 3},
        ]
        run = client.run_task(taskDefinition="ops-web", count=6, capacityProviderStrategy=strategy)
        assert run["failures"] == []
        # base 2 on blue, the other 4 shared 1:3
        assert _providers_of(client, "default", [t["taskArn"] for t in run["tasks"]]) == {
            "blue": 3,
            "green": 3,
        }
        run = client.run_task(taskDefinition="ops-web", count=3)  # the cluster's default
        assert _providers_of(client, "default", [t["taskArn"] for t in run["tasks"]]) == {
            "green": 3
        }
        svc = client.create_service(
            serviceName="split",
            taskDefinition="ops-web",
            desiredCount=6,
            capacityProviderStrategy=[
                {"capacityProvider": "blue", "weight": 1},
                {"capacityProvider": "green", "weight": 2},
            ],
        )["service"]
        assert "launchType" not in svc and len(svc["capacityProviderStrategy"]) == 2

        def started() -> list[str]:
            arns = client.list_tasks(serviceName="split")["taskArns"]
            return arns if len(arns) == 6 else []

        tasks = wait_for(started, 60, what="the service's 6 tasks")
        assert _providers_of(client, "default", tasks) == {"blue": 2, "green": 4}
    finally:
        sim.kill()


def test_managed_scaling_grows_and_shrinks_the_host_group(lc: LocalCluster, tmp_path: Path) -> None:
    """The whole loop with simulated hosts (tests/capacity_group.py as the group-size
    command): a service's tasks wait for capacity, the group grows until they run; with the
    service at 0 the drained idle hosts are removed."""
    lc.stop()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOCKYARD_CAPACITY_PERIOD", "1")
        lc.start_controller()
    client = ecs(lc)
    group = tmp_path / "group"
    script = Path(capacity_group.__file__)
    command = f"{sys.executable} {script} {group} {lc.address} grow {{desired}}"
    try:
        client.create_cluster(clusterName="default")
        client.create_capacity_provider(
            name="grow",
            autoScalingGroupProvider={
                "autoScalingGroupArn": "grow-hosts",
                "managedScaling": {
                    "status": "ENABLED",
                    "targetCapacity": 100,
                    "maximumScalingStepSize": 2,
                    "instanceWarmupPeriod": 1,
                },
                "managedTerminationProtection": "ENABLED",
            },
            tags=[{"key": "dockyard:group-size-command", "value": command}],
        )
        client.put_cluster_capacity_providers(
            cluster="default",
            capacityProviders=["grow"],
            defaultCapacityProviderStrategy=[{"capacityProvider": "grow", "weight": 1}],
        )
        td = {**TD, "family": "grow", "cpu": "128", "memory": "128"}
        client.register_task_definition(**td)
        started = time.monotonic()
        client.create_service(serviceName="web", taskDefinition="grow", desiredCount=3)

        def running() -> int:
            return client.describe_services(services=["web"])["services"][0]["runningCount"]

        wait_for(lambda: running() == 3, 120, what="3 tasks running on hosts the group added")
        grown = time.monotonic() - started
        hosts = client.list_container_instances(status="ACTIVE")["containerInstanceArns"]
        assert len(hosts) == 2  # 2 tasks per simulated host: 2 hosts hold 3 tasks
        print(f"scale-out: 0 -> 2 hosts, 3 tasks RUNNING in {grown:.1f}s")
        started = time.monotonic()
        client.update_service(service="web", desiredCount=0)

        def connected() -> int:
            insts = client.describe_container_instances(
                containerInstances=client.list_container_instances()["containerInstanceArns"]
            )["containerInstances"]
            return sum(i["agentConnected"] for i in insts)

        wait_for(lambda: connected() == 0, 120, what="idle hosts drained and removed")
        print(f"scale-in: 2 -> 0 hosts in {time.monotonic() - started:.1f}s")
        assert not capacity_group.hosts(group)
        insts = client.describe_container_instances(
            containerInstances=client.list_container_instances()["containerInstanceArns"]
        )["containerInstances"]
        assert {i["status"] for i in insts} == {"DRAINING"}  # drained before removal
    finally:
        capacity_group.stop_all(group)


def test_cli_creates_lists_uses_and_deletes_providers(lc: LocalCluster) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "dockyard.cli.main", *args, "--controller", lc.address]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)

    made = cli(
        "capacity-providers", "create", "lab", "--group-size-command", "echo {desired}",
        "--target-capacity", "90", "--termination-protection", "ENABLED",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "lab-hosts" in made.stdout and "echo {desired}" in made.stdout
    bad = cli("capacity-providers", "create", "x", "--group-size-command", "echo")
    assert bad.returncode != 0 and "must contain {desired}" in bad.stderr
    assert cli("clusters", "create", "default").returncode == 0
    used = cli("capacity-providers", "use", "lab:1:2")
    assert used.returncode == 0, used.stderr
    cluster = ecs(lc).describe_clusters()["clusters"][0]
    assert cluster["defaultCapacityProviderStrategy"] == [
        {"capacityProvider": "lab", "base": 2, "weight": 1}
    ]
    listed = json.loads(cli("capacity-providers", "list", "--output", "json").stdout)
    scaling = listed["capacityProviders"][0]["autoScalingGroupProvider"]["managedScaling"]
    assert scaling["targetCapacity"] == 90
    busy = cli("capacity-providers", "delete", "lab")
    assert busy.returncode != 0 and "in use by cluster default" in busy.stderr
    assert cli("capacity-providers", "use").returncode == 0
    assert cli("capacity-providers", "delete", "lab").returncode == 0


def test_group_size_command_outcomes_are_sentences() -> None:
    """The driver's command runner never raises: failures and timeouts become words."""
    env = dict(os.environ)
    assert asyncio.run(driver._run("exit 0", env)) == "succeeded"
    failed = asyncio.run(driver._run("echo no hosts left >&2; exit 3", env))
    assert failed == "failed with exit code 3: no hosts left"
    assert asyncio.run(driver._run("sleep 5", env, limit=0.2)) == "timed out after 0s"


def test_run_task_without_room_waits_provisioning_then_stops_after_the_timeout(
    lc: LocalCluster,
) -> None:
    """RunTask on a provider whose group never grows: the task is PROVISIONING (stored,
    no instance), survives a controller restart, and is STOPPED with ECS's reason once it
    has waited DOCKYARD_PROVISIONING_TIMEOUT. Without a strategy nothing changed: an empty
    cluster is refused as ECS refuses it."""
    client = ecs(lc)
    client.create_cluster(clusterName="default")
    provider(client, "never")  # its group-size command (`true ...`) adds no host
    client.put_cluster_capacity_providers(
        cluster="default", capacityProviders=["never"], defaultCapacityProviderStrategy=[]
    )
    client.register_task_definition(**TD)
    code, message = error_of(client.run_task, taskDefinition="ops-web", launchType="EC2")
    assert code == "InvalidParameterException"
    assert message == "No Container Instances were found in your cluster."
    strategy = [{"capacityProvider": "never", "weight": 1}]
    run = client.run_task(taskDefinition="ops-web", count=2, capacityProviderStrategy=strategy)
    assert run["failures"] == [] and len(run["tasks"]) == 2
    for task in run["tasks"]:
        assert (task["lastStatus"], task["desiredStatus"]) == ("PROVISIONING", "RUNNING")
        assert "containerInstanceArn" not in task and task["capacityProviderName"] == "never"
    arns = [t["taskArn"] for t in run["tasks"]]
    assert sorted(client.list_tasks(desiredStatus="PENDING")["taskArns"]) == sorted(arns)
    client.stop_task(task=arns[1], reason="not needed")  # a waiting task stops at once
    lc.stop()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOCKYARD_PROVISIONING_TIMEOUT", "2")
        lc.start_controller()
    client = ecs(lc)

    def stopped() -> dict[str, Any] | None:
        task = client.describe_tasks(tasks=[arns[0]])["tasks"][0]
        return task if task["lastStatus"] == "STOPPED" else None

    task = wait_for(stopped, 30, what="the waiting task stopped after the timeout")
    assert task["stopCode"] == "TaskFailedToStart"
    assert task["stoppedReason"] == "TaskFailedToStart: EMPTY CAPACITY PROVIDER"
    assert task["desiredStatus"] == "STOPPED" and "containerInstanceArn" not in task
    other = client.describe_tasks(tasks=[arns[1]])["tasks"][0]
    assert (other["lastStatus"], other["stoppedReason"]) == ("STOPPED", "not needed")
