"""RunTask on a capacity provider whose group is empty, for real (issue 22): the task waits
PROVISIONING, counts toward the provider's CapacityProviderReservation (200: the group is
asked for a host), and runs in Docker once an agent of the group joins. The group-size
command writes the size asked for; the test, as the operator's group, then starts a real
agent with `--capacity-provider`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests import test_capacity_providers as capacity_tests
from tests.support import LocalCluster, wait_for
from tests.test_ecs_ops import ecs

pytestmark = pytest.mark.docker


lc = capacity_tests.lc  # a controller process, responses checked against botocore


@pytest.mark.usefixtures("sample_images")
def test_waiting_task_runs_when_a_host_of_the_group_joins(lc: LocalCluster, tmp_path: Path) -> None:
    lc.stop()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOCKYARD_CAPACITY_PERIOD", "1")  # a scaling turn every second
        lc.start_controller()
    client = ecs(lc)
    asked = tmp_path / "asked"
    client.create_cluster(clusterName="default")
    client.create_capacity_provider(
        name="grow",
        autoScalingGroupProvider={
            "autoScalingGroupArn": "grow-hosts",
            "managedScaling": {"status": "ENABLED", "instanceWarmupPeriod": 1},
        },
        tags=[{"key": "dockyard:group-size-command", "value": f"echo {{desired}} >> {asked}"}],
    )
    client.put_cluster_capacity_providers(
        cluster="default",
        capacityProviders=["grow"],
        defaultCapacityProviderStrategy=[{"capacityProvider": "grow", "weight": 1}],
    )
    client.register_task_definition(
        family="wait",
        containerDefinitions=[
            {"name": "main", "image": "dockyard/sleeper:latest", "memory": 32, "essential": True}
        ],
    )
    run = client.run_task(taskDefinition="wait")  # the cluster's default strategy
    assert run["failures"] == []
    [task] = run["tasks"]
    assert (task["lastStatus"], task["desiredStatus"]) == ("PROVISIONING", "RUNNING")
    assert "containerInstanceArn" not in task and task["capacityProviderName"] == "grow"
    arn = task["taskArn"]

    def scaled() -> str | None:  # the scaler's decision, logged after its command ran
        lines = (lc.root / "controller.log").read_text().splitlines()
        return next((m for m in lines if "capacity provider grow: Capacity" in m), None)

    said = wait_for(scaled, 30, what="the group asked for one host")
    assert "CapacityProviderReservation 200 (M=1, N=0)" in said and "group size 1" in said
    assert asked.read_text().split() == ["1"]
    assert client.describe_tasks(tasks=[arn])["tasks"][0]["lastStatus"] == "PROVISIONING"

    lc.start_agent("h1", "--capacity-provider", "grow")  # the group grows: a host joins

    def running() -> dict[str, Any] | None:
        found = client.describe_tasks(tasks=[arn])["tasks"][0]
        return found if found["lastStatus"] == "RUNNING" else None

    placed = wait_for(running, 90, what="the waiting task RUNNING on the new host")
    inst = client.describe_container_instances(containerInstances=[placed["containerInstanceArn"]])[
        "containerInstances"
    ][0]
    assert inst["ec2InstanceId"] == lc.instance_id("h1")
    assert placed["capacityProviderName"] == "grow" and lc.containers("h1")
    said = [e.message for e in lc.client().watch_events("default", task=arn)]
    assert any(m.startswith("task placed on ") and "capacity provider grow" in m for m in said)
    client.stop_task(task=arn)
