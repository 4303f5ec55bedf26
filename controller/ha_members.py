"""Where each controller of an etcd cluster is reached: its member key's value.

Every controller (leader or standby) keeps `{prefix}/members/{identity}` on its lease
(controller.leadership) with its advertised addresses: the gRPC API, the agents' mutual-TLS
port and the ECS HTTP endpoint. The leader hands agents every controller's agent address
(so a certificate from the one CA opens a stream to whichever leads next), followers look up
where to forward a call, and `dockyard tokens create` lists every controller in the join
command. A member that dies leaves the list with its lease.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from controller.etcd_client import EtcdClient
from controller.security import agent_listen_of
from dockyard import endpoints

if TYPE_CHECKING:
    from controller.server import ControllerConfig


@dataclass(frozen=True)
class Member:
    grpc: str  # host:port of the API (and enrollment), as clients dial it
    agent: str  # host:port of the agents' stream (mutual TLS), or the API's without TLS
    http: str  # the ECS endpoint's URL


def dial(bind: str, advertise: tuple[str, ...]) -> str:
    """`bind` as others reach it: an advertised host for a wildcard bind."""
    _, _, port = bind.rpartition(":")
    return f"{endpoints.dial_host(bind, advertise)}:{port}"


def describe(config: ControllerConfig) -> Member:
    """This controller's addresses (fixed ports: a controller of a cluster does not listen on
    port 0, since its peers and agents must know where it is)."""
    grpc_addr = dial(config.listen, config.advertise)
    agent = grpc_addr
    if config.tls:
        agent = dial(agent_listen_of(config.listen, config.agent_listen), config.advertise)
    scheme = "https" if config.http_tls else "http"
    return Member(grpc_addr, agent, f"{scheme}://{dial(config.http, config.advertise)}")


def encode(member: Member) -> bytes:
    return json.dumps(asdict(member), sort_keys=True).encode()


async def members(client: EtcdClient, prefix: str) -> dict[str, Member]:
    """Every running controller's addresses, by identity (members of an older version,
    registered without addresses, are left out)."""
    root = prefix.encode() + b"/members/"
    found = {}
    for kv in (await client.range_prefix(root)).kvs:
        try:
            found[kv.key[len(root) :].decode()] = Member(**json.loads(kv.value))
        except (ValueError, TypeError):
            continue
    return found


def _leader_first(found: dict[str, Member], leader: str) -> list[Member]:
    return [m for _, m in sorted(found.items(), key=lambda item: (item[0] != leader, item[0]))]


def agent_targets(found: dict[str, Member], leader: str) -> str:
    """Every controller's agent address, the leader's first: what agents dial."""
    return ",".join(m.agent for m in _leader_first(found, leader))


def api_targets(found: dict[str, Member], leader: str) -> list[str]:
    """Every controller's API address, the leader's first: the join command's --controller."""
    return [m.grpc for m in _leader_first(found, leader)]
