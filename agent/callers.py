"""Who is calling the task endpoint: a connection's source -> the container (and so the task)
of this agent that opened it, or nobody.

Bridge-network containers are told apart by their address: Docker's IPAM gives each container
its own address on each network it joins, and the agent lists the running containers it
started with their addresses (one engine call, cached, refreshed on a miss and whenever one of
its containers changes). Host-network containers share the host's addresses, so a connection
from a host address is traced to the process that owns its socket: the local end in
/proc/net/tcp gives the socket's inode, a /proc/<pid>/fd link to that inode gives the
process, and its /proc/<pid>/cgroup names the container. That needs the agent to run as root
in the host's pid and network namespaces (as its iptables mode needs anyway); a connection it
cannot trace to a container it started is nobody, and nobody gets nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard import labels

log = logging.getLogger("dockyard.agent.callers")

REFRESH_MIN_S = 0.2  # misses re-list the engine's containers at most this often
MISS_WAIT_S = 1.5  # how long an unknown caller is looked for before it is refused
PEER_CACHE = 4096  # traced host-network connections remembered
PEER_TTL_S = 30.0
V4_MAPPED = "0000000000000000FFFF0000"
_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")
Lister = Callable[[], Awaitable[list[dict[str, Any]]]]


@dataclass(frozen=True)
class Caller:
    task_arn: str
    container: str
    docker_id: str


def index(rows: list[dict[str, Any]]) -> tuple[dict[str, Caller], dict[str, Caller]]:
    """Pure: Docker's list JSON of our running containers -> (address -> caller for those
    with their own network namespace, docker id -> caller for all of them)."""
    by_address: dict[str, Caller] = {}
    by_id: dict[str, Caller] = {}
    for row in rows:
        lab = row.get("Labels") or {}
        caller = Caller(lab.get(labels.TASK_ARN, ""), lab.get(labels.CONTAINER_NAME, ""), row["Id"])
        by_id[row["Id"]] = caller
        if (row.get("HostConfig") or {}).get("NetworkMode") == "host":
            continue  # its addresses are the host's: traced by socket owner instead
        for net in ((row.get("NetworkSettings") or {}).get("Networks") or {}).values():
            if net.get("IPAddress"):
                by_address[net["IPAddress"]] = caller
    return by_address, by_id


def parse_hex_endpoint(text: str) -> tuple[str, int] | None:
    """Pure: /proc/net/tcp's `0100007F:1F90` -> ("127.0.0.1", 8080), also from tcp6's
    IPv4-mapped form (`0000000000000000FFFF00000100007F:1F90`); None if malformed."""
    addr, _, port = text.strip().partition(":")
    if len(addr) == 32 and addr.upper().startswith(V4_MAPPED):
        addr = addr[24:]
    try:
        packed = struct.pack("<I", int(addr, 16))
        return socket.inet_ntoa(packed), int(port, 16)
    except (ValueError, struct.error):
        return None


def socket_inode(table: list[str], ip: str, port: int) -> int | None:
    """Pure: the inode of the socket in a /proc/net/tcp listing whose LOCAL end is ip:port
    (the client's end of a connection we accepted from ip:port)."""
    for line in table[1:]:
        fields = line.split()
        if len(fields) > 9 and parse_hex_endpoint(fields[1]) == (ip, port):
            return int(fields[9]) or None
    return None


def container_in_cgroup(text: str) -> str:
    """Pure: the container id in a /proc/<pid>/cgroup (docker-<id>.scope, /docker/<id>)."""
    found = _CONTAINER_ID.findall(text)
    return found[-1] if found else ""


def remote_of(table: list[str], inode: int) -> tuple[str, int] | None:
    """Pure: the remote end of the socket with that inode in a /proc/net/tcp listing."""
    for line in table[1:]:
        fields = line.split()
        if len(fields) > 9 and fields[9] == str(inode):
            return parse_hex_endpoint(fields[2])
    return None


def _tcp_tables(pid: int | str) -> list[str]:
    """/proc/<pid>/net/tcp and tcp6 (IPv4-mapped entries there too), as one listing."""
    lines: list[str] = []
    for name in ("tcp", "tcp6"):
        try:
            lines += Path(f"/proc/{pid}/net/{name}").read_text().splitlines()
        except OSError:
            continue
    return lines


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*/children"):
            try:
                kids = [int(k) for k in task.read_text().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def relayed_source(forwarder_pid: int, address: str, port: int) -> tuple[str, int] | None:
    """Bridge mode: the forwarder container relays each connection through a child whose
    stdin is the caller's connection and which opened ours from address:port. The caller is
    the remote end of that child's stdin, in the forwarder's network namespace; nothing the
    caller says is believed."""
    table = _tcp_tables(forwarder_pid)
    inode = socket_inode(table, address, port)
    if inode is None:
        return None
    ours = f"socket:[{inode}]"
    for child in _descendants(forwarder_pid):
        try:
            fds = os.listdir(f"/proc/{child}/fd")
            if not any(os.readlink(f"/proc/{child}/fd/{fd}") == ours for fd in fds):
                continue
            stdin = os.readlink(f"/proc/{child}/fd/0")
        except OSError:
            continue
        if stdin.startswith("socket:["):
            return remote_of(table, int(stdin[len("socket:[") : -1]))
    return None


def _owner_container(ip: str, port: int) -> str:
    """The id of the container whose process owns the host socket bound to ip:port ("" if
    none: not a container, not found, or /proc not readable)."""
    inode = socket_inode(_tcp_tables("self"), ip, port)
    if inode is None:
        return ""
    target = f"socket:[{inode}]"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == target for fd in fds):
                return container_in_cgroup(Path(f"/proc/{pid}/cgroup").read_text())
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return ""


class Callers:
    """Resolves connections to the agent's own containers; refreshed from the engine."""

    def __init__(self, lister: Lister) -> None:
        self.lister = lister
        self.by_address: dict[str, Caller] = {}
        self.by_id: dict[str, Caller] = {}
        self._fresh = False
        self._listed_at = 0.0
        self._listing: asyncio.Task[None] | None = None
        # traced host-network connections (address, port, connection) -> (docker id, when)
        self._peers: dict[tuple[str, int, int], tuple[str, float]] = {}

    def invalidate(self) -> None:
        """One of our containers started, died or went: re-list before the next answer."""
        self._fresh = False

    async def resolve(self, ip: str, port: int, conn: int = 0) -> Caller | None:
        """The caller of a connection from ip:port (`conn` tells apart connections that
        reuse a port, for the trace cache of keep-alive connections). A miss waits for a
        listing begun after the request came: a container's very first action may be this
        request, before its start event reached the agent."""
        arrived = time.monotonic()
        if not self._fresh:
            await self._listed_since(arrived)
        found = await self._find(ip, port, conn)
        # Docker's listing shows a starting container's address only once it has recorded
        # the start, a moment after its process runs: look again for a short while
        while found is None and time.monotonic() - arrived < MISS_WAIT_S:
            await self._listed_since(time.monotonic())
            found = await self._find(ip, port, conn)
        return found

    async def _find(self, ip: str, port: int, conn: int) -> Caller | None:
        found = self.by_address.get(ip)
        if found is not None:
            return found
        return self.by_id.get(await self._traced(ip, port, conn))

    async def _traced(self, ip: str, port: int, conn: int) -> str:
        """The container owning the host socket ip:port; one /proc walk per connection."""
        key, now = (ip, port, conn), time.monotonic()
        hit = self._peers.get(key)
        if hit is not None and now - hit[1] < PEER_TTL_S:
            return hit[0]
        if len(self._peers) >= PEER_CACHE:
            self._peers.clear()
        docker_id = await asyncio.to_thread(_owner_container, ip, port)
        if docker_id:  # a miss is looked at again: the socket may be just being set up
            self._peers[key] = (docker_id, now)
        return docker_id

    async def _listed_since(self, arrived: float) -> None:
        """Wait for a listing begun at or after `arrived`: one at a time, shared by all
        waiting, at most one per REFRESH_MIN_S (unknown callers cannot hammer the engine)."""
        while self._listed_at < arrived:
            if self._listing is None or self._listing.done():
                wait = self._listed_at + REFRESH_MIN_S - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                self._listing = asyncio.create_task(self._list())
            await asyncio.shield(self._listing)

    async def _list(self) -> None:
        self._fresh = True  # an invalidation during the listing makes the next call re-list
        self._listed_at = time.monotonic()
        try:
            rows = await self.lister()
        except Exception as err:  # the engine is down: keep what we knew
            self._fresh = False
            log.warning("cannot list containers to identify a caller: %s", err)
            return
        self.by_address, self.by_id = index(rows)
