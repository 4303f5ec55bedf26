"""The agent resolver's answers (issue 21), on real wire packets: pure, no sockets."""

from __future__ import annotations

from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from agent import dns_answers, host_config
from agent.dns_server import Resolver, parse_listen, upstreams
from dockyard.v1 import agent_pb2


def snapshot(
    version: int = 1, ips: tuple[str, ...] = ("10.0.0.2", "10.0.0.3")
) -> agent_pb2.DnsSnapshot:
    return agent_pb2.DnsSnapshot(
        version=version,
        zones=["internal.local"],
        records=[
            agent_pb2.DnsRecordSet(
                name="web.internal.local",
                ttl=30,
                a=True,
                srv=True,
                targets=[
                    agent_pb2.DnsTarget(ipv4=ip, port=32768 + i, instance_id=f"task{i}")
                    for i, ip in enumerate(ips)
                ],
            )
        ],
    )


def ask(zones: dns_answers.Zones, name: str, rdtype: str) -> dns.message.Message | None:
    """A query through the wire and back, as a client would see it."""
    query = dns.message.from_wire(dns.message.make_query(name, rdtype).to_wire())
    reply = dns_answers.answer(zones, query)
    return None if reply is None else dns.message.from_wire(reply.to_wire())


def test_a_records_are_the_targets_addresses_with_the_ttl() -> None:
    reply = ask(dns_answers.index(snapshot()), "WEB.internal.local.", "A")
    assert reply is not None and reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    (rrset,) = reply.answer
    assert sorted(r.address for r in rrset) == ["10.0.0.2", "10.0.0.3"]
    assert rrset.ttl == 30


def test_srv_gives_port_and_target_with_its_address_in_additional() -> None:
    reply = ask(dns_answers.index(snapshot()), "web.internal.local", "SRV")
    assert reply is not None
    (rrset,) = reply.answer
    got = sorted((r.priority, r.weight, r.port, r.target.to_text()) for r in rrset)
    assert got == [
        (0, 0, 32768, "task0.web.internal.local."),
        (0, 0, 32769, "task1.web.internal.local."),
    ]
    extra = {rr.name.to_text(): [r.address for r in rr] for rr in reply.additional}
    assert extra == {
        "task0.web.internal.local.": ["10.0.0.2"],
        "task1.web.internal.local.": ["10.0.0.3"],
    }
    # and the SRV target itself resolves
    inst = ask(dns_answers.index(snapshot()), "task1.web.internal.local", "A")
    assert inst is not None and [r.address for r in inst.answer[0]] == ["10.0.0.3"]


def test_unknown_name_in_zone_is_authoritative_nxdomain() -> None:
    reply = ask(dns_answers.index(snapshot()), "gone.internal.local", "A")
    assert reply is not None and reply.rcode() == dns.rcode.NXDOMAIN
    assert reply.flags & dns.flags.AA and not reply.answer
    assert reply.authority[0].rdtype == dns.rdatatype.SOA


def test_a_name_removed_by_a_newer_snapshot_is_nxdomain_not_stale() -> None:
    newer = agent_pb2.DnsSnapshot(version=2, zones=["internal.local"])
    reply = ask(dns_answers.index(newer), "web.internal.local", "A")
    assert reply is not None and reply.rcode() == dns.rcode.NXDOMAIN


def test_other_type_of_a_known_name_is_nodata() -> None:
    reply = ask(dns_answers.index(snapshot()), "web.internal.local", "AAAA")
    assert reply is not None and reply.rcode() == dns.rcode.NOERROR and not reply.answer


def test_names_outside_the_zones_are_forwarded() -> None:
    assert ask(dns_answers.index(snapshot()), "example.com", "A") is None
    assert ask(dns_answers.Zones(), "web.internal.local", "A") is None  # no snapshot yet


def test_tasks_get_the_resolver_unless_they_name_their_own() -> None:
    task = agent_pb2.DesiredTask(network_mode="bridge")
    plain = agent_pb2.ContainerSpec(name="app")
    assert list(host_config.with_resolver(task, plain, "172.17.0.1").dns.servers) == ["172.17.0.1"]
    assert not plain.dns.servers  # the desired spec itself is untouched
    own = agent_pb2.ContainerSpec(name="app", dns=agent_pb2.Dns(servers=["9.9.9.9"]))
    assert list(host_config.with_resolver(task, own, "172.17.0.1").dns.servers) == ["9.9.9.9"]
    assert not host_config.with_resolver(task, plain, "").dns.servers  # no namespaces
    none = agent_pb2.DesiredTask(network_mode="none")
    assert not host_config.with_resolver(none, plain, "172.17.0.1").dns.servers


def test_listen_flag_is_validated() -> None:
    assert parse_listen("172.17.0.1") == ("172.17.0.1", 53)
    assert parse_listen("127.0.0.1:5353") == ("127.0.0.1", 5353)
    with pytest.raises(ValueError):
        parse_listen("localhost:53")
    assert Resolver().has_zones is False


def test_upstreams_skip_the_resolver_itself(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("search x\nnameserver 172.17.0.1\nnameserver 10.0.0.53\nnameserver bad\n")
    assert upstreams(conf, {"172.17.0.1"}) == [("10.0.0.53", 53)]


def test_an_answer_too_big_for_udp_is_truncated_for_a_tcp_retry() -> None:
    ips = tuple(f"10.2.{i // 250}.{i % 250 + 1}" for i in range(300))
    zones = dns_answers.index(snapshot(ips=ips))
    query = dns.message.make_query("web.internal.local", "A")
    reply = dns_answers.answer(zones, query)
    assert reply is not None
    udp = dns.message.from_wire(dns_answers.to_wire(reply, 512))
    assert udp.flags & dns.flags.TC and not udp.answer
    reply = dns_answers.answer(zones, query)
    assert reply is not None
    tcp = dns.message.from_wire(dns_answers.to_wire(reply, 65535))
    assert len(tcp.answer[0]) == 300 and not tcp.flags & dns.flags.TC
