"""The agent resolver's answers (issue 21): a DNS query + the last DnsSnapshot -> a reply.

Pure: no sockets, no event loop. The wire format is dnspython's. What Cloud Map's private
DNS namespaces answer, from the controller's snapshot:
- A: one record per target address (deduplicated), with the record set's TTL;
- SRV: `0 0 <port> <instance_id>.<name>` per target with a port, and the A record of each
  SRV target name in the additional section (Cloud Map names SRV targets that way);
- an SRV target name itself (`<instance_id>.<service>.<namespace>`) answers A;
- a name inside a zone with no record set, or of a type the set does not answer: an
  authoritative NXDOMAIN / empty answer (NODATA) with the zone's SOA, never a stale address;
- a name outside every zone: None, the caller forwards it to the host's resolvers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rdtypes.IN.A
import dns.rdtypes.IN.SRV
import dns.rrset

from dockyard.v1 import agent_pb2

SOA_TTL = 15  # negative answers are cached this long (SOA minimum), so new names show fast


@dataclass(frozen=True)
class RecordSet:
    ttl: int
    a: bool
    srv: bool
    targets: tuple[tuple[str, int, str], ...]  # (ipv4, port, instance_id)


@dataclass
class Zones:
    """The names of one snapshot, indexed for lookups (built once per snapshot)."""

    version: int = 0
    zones: tuple[dns.name.Name, ...] = ()
    records: dict[dns.name.Name, RecordSet] = field(default_factory=dict)
    instances: dict[dns.name.Name, tuple[str, int]] = field(default_factory=dict)  # A, ttl


def _name(text: str) -> dns.name.Name:
    return dns.name.from_text(text.lower().rstrip(".") + ".")


def index(snapshot: agent_pb2.DnsSnapshot) -> Zones:
    """A snapshot as lookup tables; instance names `<instance_id>.<set name>` answer A."""
    out = Zones(version=snapshot.version, zones=tuple(_name(z) for z in snapshot.zones))
    for rs in snapshot.records:
        name = _name(rs.name)
        targets = tuple((t.ipv4, t.port, t.instance_id) for t in rs.targets)
        out.records[name] = RecordSet(rs.ttl, rs.a, rs.srv, targets)
        for ip, _, iid in targets:
            out.instances[dns.name.Name((_label(ip, iid), *name.labels))] = (ip, rs.ttl)
    return out


def _label(ip: str, instance_id: str) -> bytes:
    """An SRV target's first label: Cloud Map's instance id (the address when none)."""
    return (instance_id or ip.replace(".", "-")).lower().encode()


def zone_of(zones: Zones, qname: dns.name.Name) -> dns.name.Name | None:
    """The most specific zone containing qname, or None (not ours: forward it)."""
    inside = [z for z in zones.zones if qname.is_subdomain(z)]
    return max(inside, key=len) if inside else None


def answer(zones: Zones, query: dns.message.Message) -> dns.message.Message | None:
    """The authoritative reply to a query for a name in our zones; None: forward it."""
    if not query.question:
        return None
    q = query.question[0]
    zone = zone_of(zones, q.name)
    if zone is None or q.rdclass != dns.rdataclass.IN:
        return None
    reply = dns.message.make_response(query)
    reply.flags |= dns.flags.AA
    reply.flags &= ~dns.flags.RA
    if not _fill(zones, reply, q.name, q.rdtype):
        reply.set_rcode(dns.rcode.NXDOMAIN)
    if not reply.answer:
        reply.authority.append(_soa(zone))
    return reply


def _fill(
    zones: Zones, reply: dns.message.Message, qname: dns.name.Name, qtype: dns.rdatatype.RdataType
) -> bool:
    """Add the answers; False when the name does not exist at all (NXDOMAIN)."""
    if qname in zones.instances:
        ip, ttl = zones.instances[qname]
        if qtype in (dns.rdatatype.A, dns.rdatatype.ANY):
            reply.answer.append(_a(qname, ttl, [ip]))
        return True
    rs = zones.records.get(qname)
    if rs is None:
        return qname in zones.zones or _has_below(zones, qname)  # the apex, empty non-terminals
    if rs.a and qtype in (dns.rdatatype.A, dns.rdatatype.ANY) and rs.targets:
        reply.answer.append(_a(qname, rs.ttl, [t[0] for t in rs.targets]))
    if rs.srv and qtype in (dns.rdatatype.SRV, dns.rdatatype.ANY):
        _srv(reply, qname, rs)
    return True


def _has_below(zones: Zones, qname: dns.name.Name) -> bool:
    return any(n.is_subdomain(qname) for n in zones.records)


def _a(name: dns.name.Name, ttl: int, ips: list[str]) -> dns.rrset.RRset:
    rrset = dns.rrset.RRset(name, dns.rdataclass.IN, dns.rdatatype.A)
    for ip in dict.fromkeys(ips):  # one record per address, in the snapshot's order
        rrset.add(dns.rdtypes.IN.A.A(dns.rdataclass.IN, dns.rdatatype.A, ip), ttl)
    return rrset


def _srv(reply: dns.message.Message, qname: dns.name.Name, rs: RecordSet) -> None:
    srv = dns.rrset.RRset(qname, dns.rdataclass.IN, dns.rdatatype.SRV)
    for ip, port, iid in rs.targets:
        if not port:
            continue
        target = dns.name.Name((_label(ip, iid), *qname.labels))
        srv.add(
            dns.rdtypes.IN.SRV.SRV(dns.rdataclass.IN, dns.rdatatype.SRV, 0, 0, port, target),
            rs.ttl,
        )
        reply.additional.append(_a(target, rs.ttl, [ip]))
    if len(srv):
        reply.answer.append(srv)


def _soa(zone: dns.name.Name) -> dns.rrset.RRset:
    rrset = dns.rrset.RRset(zone, dns.rdataclass.IN, dns.rdatatype.SOA)
    soa = dns.rdtypes.ANY.SOA.SOA(
        dns.rdataclass.IN,
        dns.rdatatype.SOA,
        dns.name.Name(("ns", *zone.labels)),
        dns.name.Name(("hostmaster", *zone.labels)),
        1,
        60,
        30,
        86400,
        SOA_TTL,
    )
    rrset.add(soa, SOA_TTL)
    return rrset


def to_wire(reply: dns.message.Message, limit: int) -> bytes:
    """The reply in at most `limit` bytes; too big: emptied and marked TC (truncated), so
    the client asks again over TCP (dnspython refuses to cut a section itself)."""
    try:
        return reply.to_wire(max_size=limit)
    except dns.exception.TooBig:
        reply.answer, reply.authority, reply.additional = [], [], []
        reply.flags |= dns.flags.TC
        return reply.to_wire(max_size=limit)


def servfail(query: dns.message.Message) -> dns.message.Message:
    """The reply when forwarding failed (no upstream, timeout)."""
    reply = dns.message.make_response(query)
    reply.set_rcode(dns.rcode.SERVFAIL)
    return reply
