"""Where a controller's clients reach it: `endpoints.json` in its data dir.

The controller writes it once its ports are bound; `dockyard env --data-dir` and
`dockyard lab env` read it, so a shell learns the gRPC address, the ECS endpoint URL
(https when the controller serves TLS there), the region and whether TLS is on without
the operator repeating the controller's flags.
"""

from __future__ import annotations

import json
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

FILE = "endpoints.json"
CA_FILE = "ca.crt"
CREDENTIALS_FILE = "admin-credentials"
WILDCARDS = ("", "0.0.0.0", "::")


@dataclass(frozen=True)
class Endpoints:
    controller: str  # gRPC host:port for the CLI
    ecs_url: str  # http(s)://host:port of the ECS-compatible API
    region: str
    tls: bool  # the gRPC port serves TLS: clients need the CA


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def controller_list(spec: str) -> list[str]:
    """`--controller a:7070,b:7070`: the address of each controller (one, or several of
    which one leads)."""
    return [a.strip() for a in spec.split(",") if a.strip()]


# Reconnect backoff cap with several controllers: a refused connection there is mostly a
# failover in progress (the standby is about to listen), not a controller down for long.
FAILOVER_BACKOFF_CAP_S = 1.0


def backoff_cap(spec: str, single: float) -> float:
    """The agents' reconnect backoff cap for `--controller spec` (`single`: one address)."""
    return min(single, FAILOVER_BACKOFF_CAP_S) if len(controller_list(spec)) > 1 else single


def channel_options(spec: str, options: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """gRPC channel options for `--controller spec`: with several controllers, the channel
    retries a refused address within half a second (the standby that is about to lead)."""
    if len(controller_list(spec)) <= 1:
        return options
    cap = int(FAILOVER_BACKOFF_CAP_S * 500)
    return [o for o in options if o[0] != "grpc.max_reconnect_backoff_ms"] + [
        ("grpc.max_reconnect_backoff_ms", cap)
    ]


LEADER_HINT = "dockyard-leader"  # trailing metadata of a standby's refusal: where to go


def leader_hint(metadata: object) -> str:
    """The leader's address a standby controller named when it refused a stream ("" if
    none): an agent (or the simulator) dials it next, at once, rather than walking its
    list again and landing on the same standby."""
    for key, value in metadata or ():  # type: ignore[attr-defined]
        if key == LEADER_HINT:
            return value.decode() if isinstance(value, bytes) else str(value)
    return ""


def grpc_target(spec: str) -> str:
    """The gRPC target for `--controller`: one address as given; several as one target
    listing them all (resolved now), which gRPC's pick_first walks in order, so a channel
    connects to whichever controller listens: the leader (a standby listens nowhere)."""
    addrs = controller_list(spec)
    if len(addrs) <= 1:
        return spec
    resolved = []
    for addr in addrs:
        host, _, port = addr.rpartition(":")
        ip = socket.getaddrinfo(host.strip("[]"), None, socket.AF_INET)[0][4][0]
        resolved.append(f"{ip}:{port}")
    return "ipv4:" + ",".join(resolved)


def dial_host(bind: str, advertise: tuple[str, ...] = ()) -> str:
    """The host a client dials for a server bound to `bind` (host:port): the first
    advertised name unless the server listens on loopback only; else the bound host, a
    wildcard meaning loopback. IPv6 addresses get brackets."""
    host = bind.rpartition(":")[0].strip("[]")
    if advertise and host not in LOOPBACK:
        host = advertise[0].strip("[]")
    elif host in WILDCARDS:
        host = "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def write(data_dir: Path, ep: Endpoints) -> None:
    path = Path(data_dir) / FILE
    tmp = path.with_name(FILE + ".tmp")
    tmp.write_text(json.dumps(asdict(ep), indent=1) + "\n")
    tmp.replace(path)


def read(data_dir: Path) -> Endpoints | None:
    """The endpoints a controller with this data dir last announced, or None."""
    try:
        doc = json.loads((Path(data_dir) / FILE).read_text())
        return Endpoints(
            str(doc["controller"]), str(doc["ecs_url"]), str(doc["region"]), bool(doc["tls"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
