"""A task waiting PROVISIONING for a capacity provider's room is state of record (issue 22):
RunTask on the leader of two controllers on a real etcd leaves it waiting; the leader is
SIGKILLed; the standby that takes over has it, still waiting, and places it when a host of
the provider's group joins (a simulated agent, the real agent protocol, given both
addresses). Only a leader places: the standby runs none of the controller's loops."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.etcd_fixture import EtcdCluster
from tests.support import Proc, wait_for
from tests.test_ha import controllers, etcd, leader_and_standby  # noqa: F401

TASK = {"family": "wait", "containerDefinitions": [{"name": "s", "image": "sim", "memory": 64}]}


@pytest.mark.timeout(180)
def test_a_waiting_task_survives_a_failover_and_the_new_leader_places_it(
    etcd: EtcdCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    with controllers(etcd, tmp_path, "a", "b", tls=False) as ctls:
        a, b = leader_and_standby(ctls)
        client = a.client()
        client.call("CreateCluster", {"clusterName": "default"})
        client.call(
            "CreateCapacityProvider",
            {
                "name": "edge",
                "autoScalingGroupProvider": {"autoScalingGroupArn": "edge-hosts"},
                "tags": [{"key": "dockyard:group-size-command", "value": "true {desired}"}],
            },
        )
        client.call(
            "PutClusterCapacityProviders",
            {
                "cluster": "default",
                "capacityProviders": ["edge"],
                "defaultCapacityProviderStrategy": [{"capacityProvider": "edge", "weight": 1}],
            },
        )
        client.call("RegisterTaskDefinition", TASK)
        [task] = client.call("RunTask", {"taskDefinition": "wait"})["tasks"]
        assert task["lastStatus"] == "PROVISIONING" and "containerInstanceArn" not in task
        a.signal(signal.SIGKILL)
        wait_for(b.serving, 30, what="b leading")
        survivor = b.client()

        def described() -> dict[str, Any]:
            return dict(survivor.call("DescribeTasks", {"tasks": [task["taskArn"]]})["tasks"][0])

        assert described()["lastStatus"] == "PROVISIONING"
        both = f"127.0.0.1:{a.grpc_port},127.0.0.1:{b.grpc_port}"
        argv = [sys.executable, "-m", "dockyard.cli.main", "sim", "--controller", both]
        argv += ["--agents", "1", "--attribute", "dockyard.capacity-provider=edge"]
        sim = Proc("sim", argv, tmp_path / "sim.log")
        sim.start()
        try:
            running = wait_for(
                lambda: (t := described())["lastStatus"] == "RUNNING" and t,
                60,
                what="the waiting task RUNNING on the new leader's new host",
            )
            assert running["containerInstanceArn"] and running["capacityProviderName"] == "edge"
        finally:
            sim.kill()
