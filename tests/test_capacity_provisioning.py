"""Tasks waiting PROVISIONING for a capacity provider's room (issue 22), the pure parts:
the timeout and ECS's stop reasons (controller/capacity/provisioning.py), a waiting task made
from a provider's launch and bound to an instance later (controller/launch.py), the state's
index of waiting tasks (controller/state.py) and their share of the reservation."""

from __future__ import annotations

import random

import pytest

from controller import launch, placement, taskdef
from controller.capacity import provisioning
from controller.capacity.placer import provisioning_timeout
from controller.capacity.reservation import Host, Scaling, Waiting, decide
from controller.capacity.strategy import PROVIDER_ATTRIBUTE
from controller.model import Cluster, Instance, TaskDefinition, from_doc, to_doc
from controller.state import ClusterState
from dockyard.arns import ArnFactory

ARNS = ArnFactory("us-east-1", "000000000000")


def _td() -> TaskDefinition:
    doc = taskdef.validate(
        {
            "family": "web",
            "containerDefinitions": [
                {
                    "name": "main",
                    "image": "dockyard/httpd:latest",
                    "memory": 256,
                    "portMappings": [{"containerPort": 80}, {"containerPort": 53, "hostPort": 53}],
                }
            ],
        }
    )
    doc["taskDefinitionArn"] = "arn:aws:ecs:us-east-1:000000000000:task-definition/web:1"
    return TaskDefinition("web", 1, "ACTIVE", doc)


def _state(memory: int) -> ClusterState:
    """A state with one host of the provider `edge`, `memory` MiB free."""
    state = ClusterState()
    state.put_taskdef(_td())
    host = Instance(arn="arn:ci/1", id="i1", cluster="default", cpu_total=1024)
    host.memory_total, host.connected = memory, True
    host.attributes = {PROVIDER_ATTRIBUTE: "edge"}
    state.put_instance(host)
    return state


def _share(state: ClusterState) -> launch.LaunchSpec:
    cluster = Cluster("default", ARNS.cluster("default"))
    spec = launch.from_request(cluster, _td(), {}, 1, state.cluster_views("default"), [])
    return launch.on_provider(spec, "edge", 1)


def test_the_timeout_and_ecs_stop_reasons() -> None:
    assert not provisioning.expired(100.0, 100.0 + 1799, provisioning.DEFAULT_TIMEOUT)
    assert provisioning.expired(100.0, 100.0 + 1800, provisioning.DEFAULT_TIMEOUT)
    assert provisioning.stop_reason(0, "RESOURCE:MEMORY") == (
        "TaskFailedToStart: EMPTY CAPACITY PROVIDER"
    )
    assert provisioning.stop_reason(2, "RESOURCE:MEMORY") == "TaskFailedToStart: RESOURCE:MEMORY"
    assert provisioning.stop_reason(2, "") == "TaskFailedToStart: EMPTY CAPACITY PROVIDER"


def test_a_waiting_task_is_placed_later_with_its_provider_and_ports() -> None:
    state = _state(memory=128)  # the task asks 256 MiB: no room
    share = _share(state)
    [failed] = placement.place(
        [share.demand], share.instances, share.constraints, share.strategies, random.Random(0)
    )
    assert isinstance(failed, placement.Failure) and failed.reason == "RESOURCE:MEMORY"
    task = launch.waiting_task(share, ARNS)
    assert (task.last_status, task.desired_status, task.instance_arn) == (
        "PROVISIONING",
        "RUNNING",
        "",
    )
    assert task.capacity_provider == "edge" and task.waiting
    assert [p.host_port for p in task.containers[0].ports] == [0, 53]
    state.add_task(task)
    assert state.waiting_tasks() == [task]
    assert state.views["arn:ci/1"].memory_free == 128  # a waiting task claims nothing
    # stored and read back (a controller restart): still waiting, same placement
    again = from_doc("task", to_doc(task))
    fresh = _state(memory=128)
    fresh.load("task", again)
    assert fresh.waiting_tasks() == [again] and again.waiting_for == task.waiting_for

    # a bigger host of the provider joins: the stored placement finds it
    big = Instance(arn="arn:ci/2", id="i2", cluster="default", cpu_total=1024)
    big.memory_total, big.connected = 1024, True
    big.attributes = {PROVIDER_ATTRIBUTE: "edge"}
    other = Instance(arn="arn:ci/3", id="i3", cluster="default", cpu_total=4096)
    other.memory_total, other.connected = 4096, True  # not the provider's: never chosen
    state.put_instance(big)
    state.put_instance(other)
    demand, constraints, strategies = launch.waiting_placement(task, _td())
    [placed] = placement.place(
        [demand], state.cluster_views("default"), constraints, strategies, random.Random(0)
    )
    assert isinstance(placed, placement.Placement) and placed.instance_arn == "arn:ci/2"
    launch.bind(task, placed)
    state.place_waiting(task)
    assert task.instance_arn == "arn:ci/2" and not task.waiting and not task.waiting_for
    assert task.containers[0].ports[0].host_port != 0  # the dynamic port was chosen
    assert state.waiting_tasks() == []
    assert state.views["arn:ci/2"].memory_free == 1024 - 256
    state.validate()


def test_waiting_tasks_count_toward_the_reservation() -> None:
    """N = 0, a waiting task: the reservation is 200 and the group is asked for a host."""
    decision = decide([], [Waiting(256, 256)], Scaling())
    assert decision.reservation == 200 and decision.desired == 1
    full = [Host("h1", 1024, 1024, tasks=4)]
    decision = decide(full, [Waiting(256, 2048)], Scaling())
    assert decision.reservation > 100 and decision.desired == 2


def test_the_timeout_is_configured_or_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKYARD_PROVISIONING_TIMEOUT", raising=False)
    assert provisioning_timeout() == provisioning.DEFAULT_TIMEOUT
    monkeypatch.setenv("DOCKYARD_PROVISIONING_TIMEOUT", "90")
    assert provisioning_timeout() == 90
    for bad in ("0", "soon", "1e9"):
        monkeypatch.setenv("DOCKYARD_PROVISIONING_TIMEOUT", bad)
        with pytest.raises(SystemExit, match="DOCKYARD_PROVISIONING_TIMEOUT must be"):
            provisioning_timeout()
