"""Facts about the host the agent reports at registration: resources and ports in use."""

from __future__ import annotations

import fcntl
import socket
import struct
from pathlib import Path

# ECS's default reserved ports: ssh, Docker's TCP ports, the ECS agent's introspection and
# credentials ports (Dockyard's endpoint uses 51679 too).
DEFAULT_RESERVED_TCP = (22, 2375, 2376, 51678, 51679)

# The host ports the controller hands tasks with hostPort 0 (ECS's dynamic range). Keep in step
# with controller.placement.DEFAULT_EPHEMERAL_RANGE (the agent does not import the controller).
DYNAMIC_HOST_PORTS = (49153, 65535)
SYSCTL = Path("/proc/sys/net/ipv4")


def listening_ports() -> tuple[set[int], set[int]]:
    """TCP ports in LISTEN and bound UDP ports in this network namespace (/proc/net)."""
    tcp = _ports(("/proc/net/tcp", "/proc/net/tcp6"), listen_only=True)
    udp = _ports(("/proc/net/udp", "/proc/net/udp6"), listen_only=False)
    return tcp, udp


def _ports(paths: tuple[str, ...], listen_only: bool) -> set[int]:
    out: set[int] = set()
    for path in paths:
        try:
            lines = Path(path).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 4 or (listen_only and fields[3] != "0A"):
                continue
            out.add(int(fields[1].rsplit(":", 1)[1], 16))
    out.discard(0)
    return out


def reserved_ports(
    docker_tcp: set[int], docker_udp: set[int], ours_tcp: set[int], ours_udp: set[int]
) -> tuple[list[int], list[int]]:
    """Ports placement must avoid: the defaults, host listeners and other containers' ports,
    less the ports of Dockyard's own tasks (the controller already counts those)."""
    listen_tcp, listen_udp = listening_ports()
    tcp = (set(DEFAULT_RESERVED_TCP) | listen_tcp | docker_tcp) - ours_tcp
    udp = (listen_udp | docker_udp) - ours_udp
    return sorted(tcp), sorted(udp)


def ephemeral_overlap(
    kernel_range: tuple[int, int], reserved: set[int], dynamic: tuple[int, int] = DYNAMIC_HOST_PORTS
) -> tuple[int, int] | None:
    """The part of the dynamic host-port range the kernel may also hand out (first, last), or
    None. An outgoing connection or a port-0 listener that the kernel puts on such a port makes
    a task given that port fail to start ("address already in use"): ECS users' known trap."""
    lo, hi = max(kernel_range[0], dynamic[0]), min(kernel_range[1], dynamic[1])
    free = [p for p in range(lo, hi + 1) if p not in reserved]
    return (free[0], free[-1]) if free else None


def parse_port_list(text: str) -> set[int]:
    """`ip_local_reserved_ports` syntax: "8080,49153-65535" -> the set of ports."""
    out: set[int] = set()
    for part in text.replace("\n", "").split(","):
        if not part.strip():
            continue
        first, _, last = part.strip().partition("-")
        out.update(range(int(first), int(last or first) + 1))
    return out


def ephemeral_warning() -> str | None:
    """A warning for the operator when this host's kernel can take the dynamic host ports, with
    the one-line fix; None when they are reserved (or the files cannot be read)."""
    try:
        lo, hi = (int(x) for x in (SYSCTL / "ip_local_port_range").read_text().split())
        reserved = parse_port_list((SYSCTL / "ip_local_reserved_ports").read_text())
    except (OSError, ValueError):
        return None
    overlap = ephemeral_overlap((lo, hi), reserved)
    if overlap is None:
        return None
    first, last = DYNAMIC_HOST_PORTS
    return (
        f"the kernel's ephemeral ports ({lo}-{hi}) overlap the dynamic host ports tasks get "
        f"({first}-{last}) at {overlap[0]}-{overlap[1]}: a task can fail to start with "
        f"'address already in use'. End the kernel's range below them: sysctl -w "
        f"net.ipv4.ip_local_port_range='{min(lo, first - 1)} {first - 1}'"
    )


SIOCGIFADDR = 0x8915  # Linux: an interface's IPv4 address


def interface_ipv4(name: str) -> str:
    """The IPv4 address of network interface `name` on this host; "" if it has none (or
    there is no such interface)."""
    request = struct.pack("256s", name.encode()[:15])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            reply = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, request)
        except OSError:
            return ""
    return socket.inet_ntoa(reply[20:24])
