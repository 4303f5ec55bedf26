"""The agent's DNS resolver for its tasks (issue 21), on --dns-listen.

Answers the cluster's private namespaces from the last DnsSnapshot the controller pushed
(agent.dns_answers) and forwards every other name to the host's own resolvers (its
/etc/resolv.conf, minus any address this resolver listens on), with a timeout and SERVFAIL
when none answers. UDP and TCP: a UDP answer too big for the client's buffer is sent
truncated (TC), and the client retries over TCP.

Where: bridge-mode containers reach their host at the Docker bridge's gateway (172.17.0.1 on
docker0) and resolv.conf cannot name a port, so the default (`auto`) listens on that gateway,
port 53; host-network tasks reach the same address (it is a host address). Two agents on one
engine (tests, simulations) cannot both hold it: the second logs why and serves no DNS
(its tasks keep Docker's resolver); an explicit --dns-listen that cannot be bound stops the
agent with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import struct
from pathlib import Path

import dns.exception
import dns.flags
import dns.message

from agent import dns_answers
from dockyard.v1 import agent_pb2

log = logging.getLogger("dockyard.agent.dns")

FORWARD_TIMEOUT_S = 2.0  # per upstream; then the next one, then SERVFAIL
UDP_PAYLOAD = 512  # without EDNS


class DnsUnavailable(Exception):
    """An explicit --dns-listen that cannot be served (address in use, no permission)."""


def upstreams(resolv_conf: Path, own: set[str]) -> list[tuple[str, int]]:
    """The host's resolvers from resolv.conf, skipping our own addresses."""
    out = []
    with contextlib.suppress(OSError):
        for line in resolv_conf.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver" and parts[1] not in own:
                with contextlib.suppress(ValueError):
                    ipaddress.ip_address(parts[1])
                    out.append((parts[1], 53))
    return out


def parse_listen(text: str) -> tuple[str, int]:
    """`ADDR[:PORT]` (port 53 by default) -> (addr, port); ValueError names what is wrong."""
    host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "53")
    ipaddress.ip_address(host)  # ValueError on a name or garbage
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--dns-listen {text!r}: port must be 1-65535")
    return host, int(port)


class Resolver:
    """The snapshot in memory plus the UDP/TCP servers answering from it."""

    def __init__(self, upstream: list[tuple[str, int]] | None = None) -> None:
        self.zones = dns_answers.Zones()
        self.upstream = upstream or []
        self.address: tuple[str, int] | None = None  # where it listens, once started
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    @property
    def has_zones(self) -> bool:
        """The cluster has namespaces: its tasks get this resolver as their DNS server."""
        return bool(self.zones.zones) and self.address is not None

    def update(self, snapshot: agent_pb2.DnsSnapshot) -> bool:
        """Keep the newest snapshot; an older or repeated version is ignored (False)."""
        if snapshot.version <= self.zones.version and self.zones.version:
            return False
        self.zones = dns_answers.index(snapshot)
        log.info("DNS snapshot v%d: %d names", snapshot.version, len(snapshot.records))
        return True

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self), local_addr=(host, port)
        )
        self._udp = transport
        try:
            self._tcp = await asyncio.start_server(self._serve_tcp, host, port)
        except OSError:
            transport.close()
            raise
        self.address = (host, transport.get_extra_info("sockname")[1])
        log.info("DNS resolver on %s:%d (udp, tcp)", *self.address)

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
        self.address = None

    async def resolve(self, wire: bytes, tcp: bool) -> bytes | None:
        """A reply in wire format (None: not a DNS query, dropped)."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        if query.flags & dns.flags.QR:
            return None
        reply = dns_answers.answer(self.zones, query)
        if reply is None:
            return await self._forward(query, wire, tcp)
        limit = 65535 if tcp else max(UDP_PAYLOAD, query.payload)
        return dns_answers.to_wire(reply, limit)

    async def _forward(self, query: dns.message.Message, wire: bytes, tcp: bool) -> bytes:
        for server in self.upstream:
            try:
                return await asyncio.wait_for(_ask(server, wire, tcp), FORWARD_TIMEOUT_S)
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as err:
                log.debug("upstream %s:%d: %s", *server, err)
        return dns_answers.servfail(query).to_wire()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (size,) = struct.unpack("!H", await reader.readexactly(2))
                reply = await self.resolve(await reader.readexactly(size), tcp=True)
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.transport: asyncio.DatagramTransport | None = None
        self._pending: set[asyncio.Task[None]] = set()  # forwarded queries in flight

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self._local(data)
        if reply is not None:
            self._send(reply, addr)  # answered in the callback: no task per query
            return
        task = asyncio.ensure_future(self._later(data, addr))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _local(self, data: bytes) -> bytes | None:
        """The fast path for names in our zones (no await needed)."""
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return b""
        if query.flags & dns.flags.QR:
            return b""
        reply = dns_answers.answer(self.resolver.zones, query)
        if reply is None:
            return None
        return dns_answers.to_wire(reply, max(UDP_PAYLOAD, query.payload))

    async def _later(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = await self.resolver.resolve(data, tcp=False)
        if reply is not None:
            self._send(reply, addr)

    def _send(self, reply: bytes, addr: tuple[str, int]) -> None:
        if reply and self.transport is not None:
            self.transport.sendto(reply, addr)


async def _ask(server: tuple[str, int], wire: bytes, tcp: bool) -> bytes:
    """One exchange with an upstream resolver, over the client's own transport."""
    loop = asyncio.get_running_loop()
    if tcp:
        reader, writer = await asyncio.open_connection(*server)
        try:
            writer.write(struct.pack("!H", len(wire)) + wire)
            (size,) = struct.unpack("!H", await reader.readexactly(2))
            return await reader.readexactly(size)
        finally:
            writer.close()
    got: asyncio.Future[bytes] = loop.create_future()

    class _Once(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            if not got.done() and data[:2] == wire[:2]:  # same query id
                got.set_result(data)

        def error_received(self, exc: Exception) -> None:
            if not got.done():
                got.set_exception(exc)

    transport, _ = await loop.create_datagram_endpoint(_Once, remote_addr=server)
    try:
        transport.sendto(wire)
        return await got
    finally:
        transport.close()
