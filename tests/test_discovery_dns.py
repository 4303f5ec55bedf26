"""The DnsSnapshot agents are sent (issue 21): the pure builder, and its push over a raw
agent stream of an in-process controller (a registration change arrives within 1 s; an
agent registering later gets the current snapshot at once)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from controller import discovery_gate
from controller.discovery_dns import DEBOUNCE_S, DnsPusher, build_snapshot
from controller.feed import Change, ChangeFeed
from controller.ops.discovery_state import INSTANCE, NAMESPACE, SERVICE
from controller.server import Controller
from dockyard.v1 import agent_pb2, agent_pb2_grpc
from tests.test_discovery_api import running_controller

NS = [
    {"Id": "ns-1", "Name": "Apps.Local", "Type": "DNS_PRIVATE"},
    {"Id": "ns-2", "Name": "plain", "Type": "HTTP"},
]
A_SRV = {"DnsRecords": [{"Type": "A", "TTL": 30}, {"Type": "SRV", "TTL": 10}]}
SERVICES: list[dict[str, Any]] = [
    {"Id": "srv-w", "Name": "web", "NamespaceId": "ns-1", "DnsConfig": A_SRV},
    {
        "Id": "srv-a",
        "Name": "api",
        "NamespaceId": "ns-1",
        "DnsConfig": {"DnsRecords": [{"Type": "A", "TTL": 5}]},
    },
    {"Id": "srv-h", "Name": "http-only", "NamespaceId": "ns-1"},
    {"Id": "srv-p", "Name": "p", "NamespaceId": "ns-2"},
]


def _inst(sid: str, iid: str, ip: str, port: str = "", health: str = "UNKNOWN") -> dict[str, Any]:
    attrs = {"AWS_INSTANCE_IPV4": ip, **({"AWS_INSTANCE_PORT": port} if port else {})}
    return {"Id": iid, "ServiceId": sid, "Attributes": attrs, "_health": health}


def test_snapshot_has_private_zones_and_a_record_set_per_dns_service() -> None:
    instances = [
        _inst("srv-w", "t2", "10.0.0.2", "32769"),
        _inst("srv-w", "t1", "10.0.0.1", "32768", "HEALTHY"),
        _inst("srv-w", "t3", "10.0.0.3", "32770", "UNHEALTHY"),  # not answered
        _inst("srv-a", "t9", "10.0.0.9"),
    ]
    snap = build_snapshot(NS, SERVICES, instances, version=7)
    assert snap.version == 7
    assert list(snap.zones) == ["apps.local"]  # HTTP namespaces are not zones
    by_name = {r.name: r for r in snap.records}
    assert set(by_name) == {"web.apps.local", "api.apps.local"}
    web = by_name["web.apps.local"]
    assert (web.a, web.srv, web.ttl) == (True, True, 10)
    assert [(t.instance_id, t.ipv4, t.port) for t in web.targets] == [
        ("t1", "10.0.0.1", 32768),
        ("t2", "10.0.0.2", 32769),
    ]
    api = by_name["api.apps.local"]
    assert (api.a, api.srv, api.ttl) == (True, False, 5)
    assert [(t.ipv4, t.port) for t in api.targets] == [("10.0.0.9", 0)]


def test_empty_state_is_an_empty_snapshot() -> None:
    snap = build_snapshot([], [], [], version=1)
    assert not snap.zones and not snap.records


@pytest.fixture
async def ctl(tmp_path: Path) -> AsyncIterator[Controller]:
    async with running_controller(tmp_path) as c:
        yield c


class RawAgent:
    """An agent stream driven by hand: registers, then collects what the controller sends."""

    def __init__(self, ctl: Controller, instance_id: str, **register: Any) -> None:
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{ctl.grpc_port}")
        self.snapshots: list[tuple[float, agent_pb2.DnsSnapshot]] = []
        self.desired: list[agent_pb2.DesiredTask] = []
        self.order: list[agent_pb2.DnsSnapshot | agent_pb2.DesiredTask] = []  # as they came
        self._out: asyncio.Queue[agent_pb2.AgentMessage | None] = asyncio.Queue()
        hello = agent_pb2.AgentMessage(
            register=agent_pb2.Register(
                instance_id=instance_id,
                hostname=instance_id,
                total=agent_pb2.Resources(cpu=1024, memory_mib=1024),
                **register,
            )
        )

        async def outgoing() -> AsyncIterator[agent_pb2.AgentMessage]:
            yield hello
            while (msg := await self._out.get()) is not None:
                yield msg

        self.stream = agent_pb2_grpc.AgentServiceStub(self.channel).Connect(outgoing())
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for msg in self.stream:
                if msg.WhichOneof("body") == "dns":
                    self.snapshots.append((time.monotonic(), msg.dns))
                    self.order.append(msg.dns)
                elif msg.WhichOneof("body") == "desired":
                    self.desired.extend(msg.desired.tasks)
                    self.order.extend(msg.desired.tasks)
        except grpc.RpcError:
            pass

    async def wait_for(self, check: Any) -> agent_pb2.DnsSnapshot:
        """The newest snapshot passing `check`, waited for up to 5 s."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            for _, snap in reversed(self.snapshots):
                if check(snap):
                    return snap
            await asyncio.sleep(0.02)
        raise AssertionError(f"no matching DnsSnapshot in 5 s: {self.snapshots[-1:]}")

    def send(self, msg: agent_pb2.AgentMessage) -> None:
        self._out.put_nowait(msg)

    async def close(self) -> None:
        self._out.put_nowait(None)
        self.stream.cancel()
        self.reader.cancel()
        await self.channel.close()


async def _connected(ctl: Controller, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(ctl.dispatcher.sessions) < count:
        assert time.monotonic() < deadline, "the raw agent did not register"
        await asyncio.sleep(0.02)


def _targets(snap: agent_pb2.DnsSnapshot, name: str) -> set[tuple[str, int]]:
    return {(t.ipv4, t.port) for r in snap.records if r.name == name for t in r.targets}


async def test_agents_get_the_snapshot_within_a_second_of_a_change(ctl: Controller) -> None:
    first = RawAgent(ctl, "i-dns-1")
    later: RawAgent | None = None
    try:
        await _connected(ctl, 1)
        await ctl.api.call(
            "servicediscovery:CreatePrivateDnsNamespace", {"Name": "svc.local", "Vpc": "v"}
        )
        [ns] = (await ctl.api.call("servicediscovery:ListNamespaces", {}))["Namespaces"]
        svc = (
            await ctl.api.call(
                "servicediscovery:CreateService",
                {"Name": "web", "NamespaceId": ns["Id"], "DnsConfig": A_SRV},
            )
        )["Service"]
        changed = time.monotonic()
        await ctl.api.call(
            "servicediscovery:RegisterInstance",
            {
                "ServiceId": svc["Id"],
                "InstanceId": "task-1",
                "Attributes": {"AWS_INSTANCE_IPV4": "10.9.0.1", "AWS_INSTANCE_PORT": "8080"},
            },
        )
        snap = await first.wait_for(lambda s: _targets(s, "web.svc.local"))
        arrived = next(t for t, s in first.snapshots if s is snap)
        assert arrived - changed < 1.0
        assert list(snap.zones) == ["svc.local"]
        assert _targets(snap, "web.svc.local") == {("10.9.0.1", 8080)}
        # an agent registering now gets the current snapshot with its registration
        later = RawAgent(ctl, "i-dns-2")
        await later.wait_for(lambda s: _targets(s, "web.svc.local") == {("10.9.0.1", 8080)})
        await ctl.api.call(
            "servicediscovery:DeregisterInstance", {"ServiceId": svc["Id"], "InstanceId": "task-1"}
        )
        gone = await first.wait_for(
            lambda s: s.version > snap.version and not _targets(s, "web.svc.local")
        )
        assert [r.name for r in gone.records] == ["web.svc.local"]  # the name stays: no targets
    finally:
        await first.close()
        if later is not None:
            await later.close()


async def _until(check: Any, what: str) -> Any:
    """`check()` once it is truthy, waited for up to 10 s."""
    deadline = time.monotonic() + 10
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)
    return found


def _report(arn: str, health: str, port: int) -> agent_pb2.AgentMessage:
    """The agent's word that the task runs, publishing container port 80 on `port`."""
    status = "RUNNING"
    binding = agent_pb2.PortBinding(container_port=80, host_port=port)
    container = agent_pb2.ContainerStatus(
        name="main", docker_id="d", last_status=status, health=health, bindings=[binding]
    )
    task = agent_pb2.TaskStatus(task_arn=arn, last_status=status, containers=[container])
    return agent_pb2.AgentMessage(status=agent_pb2.StatusBatch(tasks=[task]))


async def test_a_service_task_is_registered_while_running_healthy_and_connected(
    ctl: Controller,
) -> None:
    """serviceRegistries through a raw agent: RUNNING and HEALTHY registers the task with
    ECS's attributes (and the agents' snapshot has it); UNHEALTHY, and then the agent's
    stream dropping (its instance lost), each take it out."""
    sd = ctl.discovery.state
    await ctl.api.call("CreateCluster", {})
    check = {"command": ["CMD", "true"], "interval": 5}
    container = {"name": "main", "image": "x", "memory": 32, "healthCheck": check}
    container["portMappings"] = [{"containerPort": 80, "hostPort": 0}]
    await ctl.api.call(
        "RegisterTaskDefinition", {"family": "hc", "containerDefinitions": [container]}
    )
    call = ctl.api.call
    await call("servicediscovery:CreatePrivateDnsNamespace", {"Name": "hc.local", "Vpc": "v"})
    [ns] = (await call("servicediscovery:ListNamespaces", {}))["Namespaces"]
    body = {"Name": "hc", "NamespaceId": ns["Id"], "DnsConfig": A_SRV}
    reg = (await call("servicediscovery:CreateService", body))["Service"]
    agent = RawAgent(ctl, "i-hc", address="10.0.0.7", attributes={"zone": "b"})
    try:
        await _connected(ctl, 1)
        registry = {"registryArn": reg["Arn"], "containerName": "main", "containerPort": 80}
        await call(
            "CreateService",
            {
                "serviceName": "hc",
                "taskDefinition": "hc",
                "desiredCount": 1,
                "serviceRegistries": [registry],
            },
        )
        [task] = await _until(lambda: agent.desired, "the task placed on the raw agent")
        tid = task.task_arn.rsplit("/", 1)[-1]
        port = ctl.state.tasks[task.task_arn].containers[0].ports[0].host_port  # it chose
        agent.send(
            _report(task.task_arn, "UNKNOWN", port)
        )  # running, its health check not yet passed
        await _until(lambda: ctl.state.tasks[task.task_arn].last_status == "RUNNING", "RUNNING")
        assert not sd.service_instances(reg["Id"])  # a health check: only once HEALTHY
        agent.send(_report(task.task_arn, "HEALTHY", port))
        [inst] = await _until(lambda: sd.service_instances(reg["Id"]), "the task registered")
        assert inst["Id"] == tid
        assert inst["Attributes"] == {
            "AWS_INSTANCE_IPV4": "10.0.0.7",
            "AWS_INSTANCE_PORT": str(port),
            "ECS_CLUSTER_NAME": "default",
            "ECS_SERVICE_NAME": "hc",
            "ECS_TASK_DEFINITION_FAMILY": "hc",
            "AVAILABILITY_ZONE": "b",
        }
        await agent.wait_for(lambda s: _targets(s, "hc.hc.local") == {("10.0.0.7", port)})
        agent.send(_report(task.task_arn, "UNHEALTHY", port))
        await _until(lambda: not sd.service_instances(reg["Id"]), "unhealthy task deregistered")
        agent.send(_report(task.task_arn, "HEALTHY", port))
        await _until(lambda: sd.service_instances(reg["Id"]), "healthy again, registered")
    finally:
        await agent.close()
    await _until(lambda: not sd.service_instances(reg["Id"]), "lost instance's task deregistered")


async def test_pusher_sends_a_lone_change_at_once_as_the_feed_says_then_paces() -> None:
    """A lone change is pushed on the next loop turn, built from what the feed said, even
    when the shared documents are not updated yet (Discovery applies a commit to them only
    when the write returns); a burst that follows is pushed once, DEBOUNCE_S later."""
    feed, sent = ChangeFeed(), list[agent_pb2.DnsSnapshot]()
    shared: dict[str, dict[str, dict[str, Any]]] = {NAMESPACE: {}, SERVICE: {}, INSTANCE: {}}
    DnsPusher(shared, feed, sent.append)
    feed.publish([Change(NAMESPACE, "ns-1", NS[0]), Change(SERVICE, "srv-w", SERVICES[0])])
    await asyncio.sleep(0.01)
    assert [list(s.zones) for s in sent] == [["apps.local"]]
    for i, ip in enumerate(["10.0.0.1", "10.0.0.2"]):
        doc = _inst("srv-w", f"i{i}", ip, "80")
        feed.publish([Change(INSTANCE, f"srv-w/i{i}", doc)])
    await asyncio.sleep(0.01)
    assert len(sent) == 1  # within DEBOUNCE_S of the last push: held
    await asyncio.sleep(DEBOUNCE_S)
    assert len(sent) == 2
    assert sorted(t.ipv4 for t in sent[1].records[0].targets) == ["10.0.0.1", "10.0.0.2"]
    feed.publish([Change(INSTANCE, "srv-w/i0", None)])  # deregistered
    await asyncio.sleep(DEBOUNCE_S + 0.01)
    assert [t.ipv4 for t in sent[2].records[0].targets] == ["10.0.0.2"]


async def _registered_task(
    ctl: Controller, agent: RawAgent, name: str, count: int = 1
) -> tuple[list[str], str]:
    """A service `name` of `count` tasks on the raw agent, registered in Cloud Map service
    `name` of namespace `name`.local (A and SRV) and reported RUNNING: its task ARNs (once
    the agent's snapshot names them all) and the record set's name."""
    call = ctl.api.call
    await call("CreateCluster", {})
    container = {"name": "main", "image": "x", "memory": 32}
    container["portMappings"] = [{"containerPort": 80, "hostPort": 0}]
    await call("RegisterTaskDefinition", {"family": name, "containerDefinitions": [container]})
    await call("servicediscovery:CreatePrivateDnsNamespace", {"Name": f"{name}.local", "Vpc": "v"})
    [ns] = (await call("servicediscovery:ListNamespaces", {}))["Namespaces"]
    body = {"Name": name, "NamespaceId": ns["Id"], "DnsConfig": A_SRV}
    reg = (await call("servicediscovery:CreateService", body))["Service"]
    await _connected(ctl, 1)
    registry = {"registryArn": reg["Arn"], "containerName": "main", "containerPort": 80}
    await call(
        "CreateService",
        {
            "serviceName": name,
            "taskDefinition": name,
            "desiredCount": count,
            "serviceRegistries": [registry],
        },
    )
    tasks = await _until(lambda: len(agent.desired) >= count and agent.desired, "tasks placed")
    arns = [t.task_arn for t in tasks]
    for arn in arns:
        agent.send(_report(arn, "UNKNOWN", ctl.state.tasks[arn].containers[0].ports[0].host_port))
    record = f"{name}.{name}.local"
    ids = {arn.rsplit("/", 1)[-1] for arn in arns}
    await agent.wait_for(lambda s: _instance_ids(s, record) == ids)
    return arns, record


def _instance_ids(snap: agent_pb2.DnsSnapshot, name: str) -> set[str]:
    return {t.instance_id for r in snap.records if r.name == name for t in r.targets}


def _stop_after_removal(agent: RawAgent, arn: str, record: str) -> None:
    """On the agent's stream, a snapshot without the task came before the task's stop."""
    tid = arn.rsplit("/", 1)[-1]
    stop = next(
        i
        for i, m in enumerate(agent.order)
        if isinstance(m, agent_pb2.DesiredTask)
        and m.task_arn == arn
        and m.desired_status == "STOPPED"
    )
    before = [m for m in agent.order[:stop] if isinstance(m, agent_pb2.DnsSnapshot)]
    assert before, "no snapshot at all before the stop"
    assert tid not in _instance_ids(before[-1], record), "the stop came before the DNS removal"


async def test_a_registered_task_leaves_dns_before_its_stop_is_sent(ctl: Controller) -> None:
    """StopTask of a registered task: the controller deregisters it and queues the snapshot
    without it on the agent's stream before the stop (ECS: deregister, then stop); then a
    scale-in to 0 does the same for the service's other task."""
    agent = RawAgent(ctl, "i-gate", address="10.0.0.8")
    try:
        arns, record = await _registered_task(ctl, agent, "gate", count=2)
        await ctl.api.call("StopTask", {"task": arns[0], "reason": "test"})

        def stopped(arn: str) -> bool:
            return any(
                isinstance(m, agent_pb2.DesiredTask)
                and m.task_arn == arn
                and m.desired_status == "STOPPED"
                for m in agent.order
            )

        await _until(lambda: stopped(arns[0]), "the stop sent to the agent")
        _stop_after_removal(agent, arns[0], record)
        assert not ctl.dispatcher.gate.held
        await ctl.api.call("UpdateService", {"service": "gate", "desiredCount": 0})
        await _until(lambda: stopped(arns[1]), "the scale-in's stop sent to the agent")
        _stop_after_removal(agent, arns[1], record)
    finally:
        await agent.close()


async def test_a_stop_is_not_held_for_a_deregistration_that_never_comes(
    ctl: Controller, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registration the controller cannot remove (here: it claims the task stays
    registered) holds the stop only MAX_HOLD_S, then the task is stopped anyway."""
    monkeypatch.setattr(discovery_gate, "MAX_HOLD_S", 0.3)
    agent = RawAgent(ctl, "i-stuck", address="10.0.0.9")
    try:
        [arn], _ = await _registered_task(ctl, agent, "stuck")
        ctl.dispatcher.gate.registered = lambda task: True  # its removal never done
        await ctl.api.call("StopTask", {"task": arn, "reason": "test"})
        await _until(lambda: arn in ctl.dispatcher.gate.held, "the stop held")
        await _until(
            lambda: any(
                isinstance(m, agent_pb2.DesiredTask) and m.desired_status == "STOPPED"
                for m in agent.order
            ),
            "the stop sent after MAX_HOLD_S",
        )
        assert not ctl.dispatcher.gate.held
    finally:
        await agent.close()
