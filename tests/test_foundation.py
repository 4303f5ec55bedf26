"""The walking skeleton on a real Docker engine: controller and agent as real processes."""

from __future__ import annotations

import json
import signal
import urllib.request
from typing import Any

import grpc
import pytest

from dockyard.errors import TASKDEF_NOT_FOUND, ApiError
from dockyard.v1 import agent_pb2, agent_pb2_grpc
from tests.support import LocalCluster, docker, wait_for

pytestmark = pytest.mark.docker


def register(c: LocalCluster, family: str, *containers: dict[str, Any], **extra: Any) -> str:
    body = {"family": family, "containerDefinitions": list(containers), **extra}
    return c.client().call("RegisterTaskDefinition", body)["taskDefinition"]["taskDefinitionArn"]


def run(c: LocalCluster, taskdef: str, count: int = 1, **extra: Any) -> list[str]:
    out = c.client().call("RunTask", {"taskDefinition": taskdef, "count": count, **extra})
    assert not out["failures"], out["failures"]
    return [t["taskArn"] for t in out["tasks"]]


def inspect(docker_id: str) -> dict[str, Any]:
    return json.loads(docker("inspect", docker_id))[0]


WEB = {
    "name": "web",
    "image": "dockyard/httpd:latest",
    "memory": 64,
    "memoryReservation": 32,
    "cpu": 256,
    "portMappings": [{"containerPort": 8080, "hostPort": 0}],
    "environment": [{"name": "GREETING", "value": "hello"}],
    "dockerLabels": {"team": "dock"},
}


def test_run_task_reaches_running_with_its_settings(cluster: LocalCluster) -> None:
    register(cluster, "web", WEB)
    [arn] = run(cluster, "web")
    [task] = cluster.wait_status([arn], "RUNNING")
    container = task["containers"][0]
    info = inspect(container["runtimeId"])
    assert info["State"]["Running"]
    assert "GREETING=hello" in info["Config"]["Env"]
    assert info["HostConfig"]["Memory"] == 64 << 20
    assert info["HostConfig"]["MemoryReservation"] == 32 << 20
    assert info["HostConfig"]["CpuShares"] == 256
    labels = info["Config"]["Labels"]
    assert labels["dockyard.task-arn"] == arn and labels["team"] == "dock"
    assert labels["com.amazonaws.ecs.container-name"] == "web"
    port = next(b["hostPort"] for b in container["networkBindings"])
    assert 49153 <= port <= 65535
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
    assert body.strip() == b"ok"


def test_stop_task_reports_exit_code_and_stop_code(cluster: LocalCluster) -> None:
    register(cluster, "sleeper", {"name": "s", "image": "dockyard/sleeper:latest", "memory": 32})
    [arn] = run(cluster, "sleeper")
    cluster.wait_status([arn], "RUNNING")
    cluster.client().call("StopTask", {"task": arn, "reason": "test over"})
    [task] = cluster.wait_status([arn], "STOPPED")
    assert task["stopCode"] == "UserInitiated"
    assert task["stoppedReason"] == "test over"
    assert task["desiredStatus"] == "STOPPED"
    assert task["containers"][0]["exitCode"] == 0
    assert task["stoppedAt"] >= task["startedAt"]


def test_essential_container_exit_stops_the_task(cluster: LocalCluster) -> None:
    register(
        cluster,
        "pair",
        {
            "name": "main",
            "image": "dockyard/crasher:latest",
            "memory": 32,
            "environment": [{"name": "DELAY", "value": "1"}, {"name": "EXIT_CODE", "value": "4"}],
        },
        {"name": "side", "image": "dockyard/sleeper:latest", "memory": 32, "essential": False},
    )
    [arn] = run(cluster, "pair")
    [task] = cluster.wait_status([arn], "STOPPED")
    assert task["stopCode"] == "EssentialContainerExited"
    exits = {c["name"]: c.get("exitCode") for c in task["containers"]}
    assert exits == {"main": 4, "side": 0}


def test_non_essential_exit_keeps_the_task_running(cluster: LocalCluster) -> None:
    register(
        cluster,
        "sidecar",
        {"name": "main", "image": "dockyard/sleeper:latest", "memory": 32},
        {
            "name": "side",
            "image": "dockyard/crasher:latest",
            "memory": 32,
            "essential": False,
            "environment": [{"name": "DELAY", "value": "0"}],
        },
    )
    [arn] = run(cluster, "sidecar")

    def side_exited() -> dict[str, Any] | None:
        [t] = cluster.describe([arn])
        side = next(c for c in t["containers"] if c["name"] == "side")
        return t if side["lastStatus"] == "STOPPED" else None

    task = wait_for(side_exited, 30, what="sidecar exit")
    assert task["lastStatus"] == "RUNNING" and task["desiredStatus"] == "RUNNING"
    assert next(c for c in task["containers"] if c["name"] == "side")["exitCode"] == 3


def test_agent_restart_keeps_containers_and_view(cluster: LocalCluster) -> None:
    register(cluster, "sleeper", {"name": "s", "image": "dockyard/sleeper:latest", "memory": 32})
    arns = run(cluster, "sleeper", count=2)
    before = cluster.wait_status(arns, "RUNNING")
    containers = sorted(cluster.containers())
    started = {cid: inspect(cid)["State"]["StartedAt"] for cid in containers}
    cluster.agents["a1"].kill(signal.SIGKILL)
    cluster.wait_connected("a1", connected=False, timeout=5)
    assert {t["connectivity"] for t in cluster.describe(arns)} == {"DISCONNECTED"}
    cluster.start_agent("a1")
    cluster.wait_connected("a1")
    after = cluster.wait_status(arns, "RUNNING")
    assert sorted(cluster.containers()) == containers
    assert [c["runtimeId"] for t in after for c in t["containers"]] == [
        c["runtimeId"] for t in before for c in t["containers"]
    ]
    assert {t["connectivity"] for t in after} == {"CONNECTED"}
    assert started == {cid: inspect(cid)["State"]["StartedAt"] for cid in cluster.containers()}


def test_controller_restart_keeps_definitions_and_tasks(cluster: LocalCluster) -> None:
    td = register(
        cluster, "sleeper", {"name": "s", "image": "dockyard/sleeper:latest", "memory": 32}
    )
    arns = run(cluster, "sleeper", count=2)
    cluster.wait_status(arns, "RUNNING")
    containers = sorted(cluster.containers())
    assert cluster.controller is not None
    cluster.controller.kill(signal.SIGKILL)
    cluster.start_controller()
    described = cluster.client().call("DescribeTaskDefinition", {"taskDefinition": "sleeper"})
    assert described["taskDefinition"]["taskDefinitionArn"] == td
    cluster.wait_connected("a1")
    tasks = cluster.wait_status(arns, "RUNNING")
    assert {t["taskArn"] for t in tasks} == set(arns)
    assert sorted(cluster.containers()) == containers
    cluster.client().call("StopTask", {"task": arns[0]})
    cluster.wait_status([arns[0]], "STOPPED")


def test_invalid_definition_is_refused_and_not_stored(cluster: LocalCluster) -> None:
    client = cluster.client()
    with pytest.raises(ApiError) as err:
        client.call(
            "RegisterTaskDefinition",
            {"family": "bad", "containerDefinitions": [{"name": "a", "image": "x", "memory": -1}]},
        )
    assert err.value.name == "ClientException"  # ECS's exception for a refused definition
    assert "containerDefinitions[0].memory" in err.value.message
    assert client.call("ListTaskDefinitionFamilies", {})["families"] == []
    with pytest.raises(ApiError) as err:
        client.call("RunTask", {"taskDefinition": "nope"})
    assert (err.value.name, err.value.message) == ("ClientException", TASKDEF_NOT_FOUND)
    assert client.call("ListTasks", {})["taskArns"] == []


def test_rogue_agent_messages_are_refused(cluster: LocalCluster) -> None:
    """Garbage, out-of-order and foreign-task messages get refusals; the controller lives."""
    register(cluster, "sleeper", {"name": "s", "image": "dockyard/sleeper:latest", "memory": 32})
    [victim] = run(cluster, "sleeper")
    cluster.wait_status([victim], "RUNNING")
    with grpc.insecure_channel(cluster.address) as ch:
        stub = agent_pb2_grpc.AgentServiceStub(ch)
        heartbeat_first = [agent_pb2.AgentMessage(heartbeat=agent_pb2.Heartbeat(seq=1))]
        replies = list(stub.Connect(iter(heartbeat_first), timeout=10))
        assert replies[0].refusal.code == "BAD_MESSAGE" and replies[0].refusal.fatal
        rogue = [
            agent_pb2.AgentMessage(register=agent_pb2.Register(instance_id="i-rogue")),
            agent_pb2.AgentMessage(
                status=agent_pb2.StatusBatch(
                    tasks=[agent_pb2.TaskStatus(task_arn=victim, last_status="STOPPED")]
                )
            ),
        ]
        codes = [
            m.refusal.code
            for m in stub.Connect(iter(rogue), timeout=10)
            if m.WhichOneof("body") == "refusal"
        ]
        assert "NOT_ASSIGNED" in codes
    [task] = cluster.describe([victim])
    assert task["lastStatus"] == "RUNNING" and task["desiredStatus"] == "RUNNING"
    assert cluster.client().call("ListClusters")["clusterArns"]


class RawAgent:
    """A hand-driven agent stream: send messages one by one, read replies as they come."""

    def __init__(self, channel: grpc.Channel) -> None:
        import queue
        import threading

        self._out: queue.Queue[agent_pb2.AgentMessage | None] = queue.Queue()
        self.replies: list[agent_pb2.ControllerMessage] = []
        self.ended = threading.Event()  # the server closed the stream
        stream = agent_pb2_grpc.AgentServiceStub(channel).Connect(iter(self._out.get, None))
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        try:
            for msg in stream:
                self.replies.append(msg)
        except grpc.RpcError:
            pass
        self.ended.set()

    def send(self, msg: agent_pb2.AgentMessage) -> None:
        self._out.put(msg)

    def close(self) -> None:
        self._out.put(None)

    def got(self, kind: str) -> list[agent_pb2.ControllerMessage]:
        return [m for m in self.replies if m.WhichOneof("body") == kind]


def test_a_fenced_session_changes_nothing(cluster: LocalCluster) -> None:
    """When an instance registers again, its older stream is fenced: what it still says
    is ignored, and the newer session's reports count."""
    register(cluster, "sleeper", {"name": "s", "image": "dockyard/sleeper:latest", "memory": 32})
    hello = agent_pb2.AgentMessage(
        register=agent_pb2.Register(
            instance_id="i-fence",
            hostname="fence",
            total=agent_pb2.Resources(cpu=1024, memory_mib=1024),
        )
    )
    with grpc.insecure_channel(cluster.address) as ch:
        old = RawAgent(ch)
        old.send(hello)
        wait_for(lambda: old.got("registered"), 10, what="old session registered")
        [task] = cluster.client().call(
            "StartTask", {"taskDefinition": "sleeper", "containerInstances": ["i-fence"]}
        )["tasks"]
        arn = task["taskArn"]
        wait_for(
            lambda: any(t.task_arn == arn for m in old.got("desired") for t in m.desired.tasks),
            10,
            what="task delivered",
        )
        new = RawAgent(ch)
        new.send(hello)
        wait_for(lambda: new.got("registered"), 10, what="new session registered")
        assert new.got("registered")[0].registered.epoch > old.got("registered")[0].registered.epoch
        wait_for(
            lambda: [r for r in old.got("refusal") if r.refusal.code == "FENCED"],
            10,
            what="old session fenced",
        )
        running = agent_pb2.TaskStatus(
            task_arn=arn,
            last_status="RUNNING",
            containers=[agent_pb2.ContainerStatus(name="s", last_status="RUNNING", docker_id="d")],
        )
        old.send(agent_pb2.AgentMessage(status=agent_pb2.StatusBatch(tasks=[running])))
        assert old.ended.wait(10), "the controller kept the fenced stream open"
        old.close()
        [seen] = cluster.describe([arn])
        assert seen["lastStatus"] == "PROVISIONING"  # the fenced stream changed nothing
        new.send(agent_pb2.AgentMessage(status=agent_pb2.StatusBatch(tasks=[running])))
        cluster.wait_status([arn], "RUNNING", timeout=10)
        new.close()
