"""The agent's DNS resolver for its tasks (issue 21), with real Docker and real packets.

The controller half (snapshots built from Cloud Map registrations) lives elsewhere: here the
snapshot goes through the agent session's own dispatch of ControllerMessage, and a busybox
container on the bridge asks the agent's resolver, which Docker put in its resolv.conf.
Names outside the zones go to a fake upstream resolver on loopback (no internet here).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdtypes.IN.A
import dns.rrset
import pytest

from agent.dns_server import DnsUnavailable
from agent.runtime import Agent, AgentConfig
from dockyard.v1 import agent_pb2

pytestmark = pytest.mark.docker
IMAGE = "dockyard/busybox:latest"
OUTSIDE = ("outside.example.", "192.0.2.7")


def snapshot(version: int, ips: list[str]) -> agent_pb2.ControllerMessage:
    targets = [
        agent_pb2.DnsTarget(ipv4=ip, port=32000 + i, instance_id=f"t{i}")
        for i, ip in enumerate(ips)
    ]
    records = [
        agent_pb2.DnsRecordSet(name="web.internal.local", ttl=10, a=True, srv=True, targets=targets)
    ]
    return agent_pb2.ControllerMessage(
        dns=agent_pb2.DnsSnapshot(version=version, zones=["internal.local"], records=records)
    )


class _Upstream(asyncio.DatagramProtocol):
    """The host's resolver, faked: answers OUTSIDE, NXDOMAIN for anything else."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        if query.question[0].name.to_text() == OUTSIDE[0]:
            rrset = dns.rrset.from_text(OUTSIDE[0], 60, "IN", "A", OUTSIDE[1])
            reply.answer.append(rrset)
        else:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        self.transport.sendto(reply.to_wire(), addr)


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[str, int]]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_Upstream, local_addr=("127.0.0.1", 0))
    try:
        yield transport.get_extra_info("sockname")
    finally:
        transport.close()


@pytest.fixture
async def agent(tmp_path: Path, upstream: tuple[str, int]) -> AsyncIterator[Agent]:
    """A real agent (not connected to any controller) with its resolver started by `auto`."""
    a = Agent(AgentConfig(controller="127.0.0.1:9", state_dir=tmp_path, dns_listen="auto"))
    try:
        await a.start_dns()
        assert a.dns.address is not None, "the resolver did not start (port 53 in use?)"
        a.dns.upstream = [upstream]
        yield a
    finally:
        await a.dns.stop()
        await a.driver.close()


async def in_container(dns_server: str, *cmd: str) -> str:
    """Run a busybox command on the default bridge with `dns_server` as its resolver."""
    docker = aiodocker.Docker()
    container = None
    try:
        container = await docker.containers.create(
            {"Image": IMAGE, "Cmd": list(cmd), "HostConfig": {"Dns": [dns_server]}}
        )
        await container.start()
        await asyncio.wait_for(container.wait(), 30)
        return "".join(await container.log(stdout=True, stderr=True))
    finally:
        if container is not None:
            with contextlib.suppress(aiodocker.DockerError):
                await container.delete(force=True)
        await docker.close()


async def test_a_task_resolves_the_namespace_from_the_agent(agent: Agent) -> None:
    assert agent._resolver_ip() == ""  # no namespaces yet: tasks keep Docker's DNS
    await agent.session._handle(snapshot(1, ["10.1.0.2", "10.1.0.3"]), None)  # type: ignore[arg-type]
    gw = agent._resolver_ip()
    assert gw == agent.dns.address[0]  # type: ignore[index]

    out = await in_container(gw, "nslookup", "web.internal.local")
    assert "10.1.0.2" in out and "10.1.0.3" in out, out
    out = await in_container(gw, "nslookup", "-type=srv", "web.internal.local")
    assert "32000" in out and "t1.web.internal.local" in out, out
    out = await in_container(gw, "nslookup", "nope.internal.local")
    assert "NXDOMAIN" in out, out
    out = await in_container(gw, "nslookup", OUTSIDE[0].rstrip("."))
    assert OUTSIDE[1] in out, out  # forwarded to the host's (fake) resolver

    # a newer snapshot changes the answer at once; an older one is ignored
    await agent.session._handle(snapshot(3, ["10.1.0.9"]), None)  # type: ignore[arg-type]
    await agent.session._handle(snapshot(2, ["10.1.0.2"]), None)  # type: ignore[arg-type]
    out = await in_container(gw, "nslookup", "web.internal.local")
    assert "10.1.0.9" in out and "10.1.0.2" not in out, out


async def test_forwarding_failure_is_servfail_and_large_answers_truncate_to_tcp(
    agent: Agent,
) -> None:
    host, port = agent.dns.address  # type: ignore[misc]
    agent.dns.upstream = [("127.0.0.1", 9)]  # nothing answers there
    reply = await dns.asyncquery.udp(
        dns.message.make_query("x.example", "A"), host, port=port, timeout=10
    )
    assert reply.rcode() == dns.rcode.SERVFAIL

    ips = [f"10.2.{i // 250}.{i % 250 + 1}" for i in range(300)]
    await agent.session._handle(snapshot(1, ips), None)  # type: ignore[arg-type]
    query = dns.message.make_query("web.internal.local", "A")
    udp = await dns.asyncquery.udp(query, host, port=port, timeout=5, raise_on_truncation=False)
    assert udp.flags & dns.flags.TC
    tcp = await dns.asyncquery.tcp(query, host, port=port, timeout=5)
    assert sorted(r.address for r in tcp.answer[0]) == sorted(ips)


async def test_a_second_agent_on_the_engine_is_refused_clearly(
    agent: Agent, tmp_path: Path
) -> None:
    other = Agent(
        AgentConfig(
            controller="127.0.0.1:9",
            state_dir=tmp_path / "b",
            dns_listen=f"{agent.dns.address[0]}:53",  # type: ignore[index]
        )
    )
    try:
        with pytest.raises(DnsUnavailable, match="cannot serve DNS on"):
            await other.start_dns()
        other.config.dns_listen = "auto"
        await other.start_dns()  # auto: logged, no DNS for its tasks, the agent runs on
        assert other.dns.address is None and other._resolver_ip() == ""
    finally:
        await other.dns.stop()
        await other.driver.close()
