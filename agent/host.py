"""Facts about the host the agent reports at registration: resources and ports in use."""

from __future__ import annotations

from pathlib import Path

# ECS's default reserved ports: ssh, Docker's TCP ports, the ECS agent's introspection and
# credentials ports (Dockyard's endpoint uses 51679 too).
DEFAULT_RESERVED_TCP = (22, 2375, 2376, 51678, 51679)


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
