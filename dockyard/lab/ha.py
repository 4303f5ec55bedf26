"""The lab with several controllers (`lab up --controllers 3`): one namespace per controller
node on the lab bridge (c1 at 10.77.INDEX.201, ...), each running an etcd member (client
port 2379, peer port 2380) and a `dockyard controller --store etcd://...` on them all.

The controllers share the admin key (the first leader writes it; the lab copies it into
DIR/controller, where the lab's clients look) and one secrets key file (DIR/controller.key,
written by the first controller before the others start). They run with `--tls never`:
the CA is still a file of one controller's data dir (see README, "Several controllers on
etcd"), so the agents and the lab's clients speak plaintext to them.

A node's chaos verbs act on its processes or its link: `kill-controller` SIGKILLs the
controller (a deposed one exits 75 on its own; `start-controller` brings either back as a
standby), `partition` takes the node's veth down (cut off from etcd's other members, the
agents and the root namespace), `kill-etcd` / `start-etcd` its etcd member.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request

from dockyard.lab import netns, procs
from dockyard.lab.state import ControllerNode, LabError, LabState, ProcRef

ETCD_CLIENT_PORT, ETCD_PEER_PORT = 2379, 2380
PREFIX = "/dockyard"
ETCD_PACKAGE = "etcd-server"


def etcd_binary() -> str:
    found = shutil.which("etcd")
    if not found:
        raise LabError(f"--controllers needs etcd: apt-get install -y {ETCD_PACKAGE}")
    return found


def store_url(state: LabState) -> str:
    members = ",".join(f"{n.address}:{ETCD_CLIENT_PORT}" for n in state.nodes)
    return f"etcd://{members}?prefix={PREFIX}"


def agent_controllers(state: LabState) -> str:
    """What the agents get as --controller: every node; they follow whichever leads."""
    return ",".join(n.grpc for n in state.nodes)


def _initial_cluster(state: LabState) -> str:
    return ",".join(f"{n.name}=http://{n.address}:{ETCD_PEER_PORT}" for n in state.nodes)


def etcd_cmd(state: LabState, node: ControllerNode, existing: bool) -> list[str]:
    client, peer = f"http://{node.address}:{ETCD_CLIENT_PORT}", f"http://{node.address}:2380"
    return [
        *netns.enter(node),
        etcd_binary(),
        f"--name={node.name}",
        f"--data-dir={state.path(node.name, 'etcd')}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster={_initial_cluster(state)}",
        f"--initial-cluster-state={'existing' if existing else 'new'}",
        f"--initial-cluster-token=dockyard-lab-{state.index}",
        # a member back from a partition must not depose etcd's leader (its raised term
        # would, without pre-vote: etcd 3.4's default), or the controllers' leases lapse
        "--pre-vote",
        # etcd elects a new leader within 0.5-1 s of losing one (the defaults take 1-2 s): well
        # inside the 2.5 s a controller's lease counts as valid after its last renewal, so
        # losing etcd's leader does not cost the controllers theirs (README)
        "--heartbeat-interval=100",
        "--election-timeout=500",
        "--max-txn-ops=10000",  # room for the controller's grouped transactions (README)
        "--max-request-bytes=33554432",
        "--auto-compaction-mode=periodic",
        "--auto-compaction-retention=1h",
        "--log-level=warn",
    ]


def start_etcd(state: LabState, node: ControllerNode) -> ProcRef:
    existing = state.path(node.name, "etcd", "member").exists()
    log = state.path("logs", f"{node.name}-etcd.log")
    return procs.spawn(etcd_cmd(state, node, existing), log)


def etcd_healthy(node: ControllerNode) -> bool:
    try:
        url = f"http://{node.address}:{ETCD_CLIENT_PORT}/health"
        with urllib.request.urlopen(url, timeout=1) as resp:
            return b'"true"' in resp.read()
    except OSError:
        return False


def wait_etcd(state: LabState, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(etcd_healthy(n) for n in state.nodes):
            return
        for node in state.nodes:
            if not procs.alive(node.etcd):
                log = state.path("logs", f"{node.name}-etcd.log")
                raise LabError(f"etcd of {node.name} exited; {log}:\n    {procs.log_tail(log)}")
        time.sleep(0.2)
    raise LabError(f"etcd not healthy on every node within {timeout:.0f} s")


def controller_cmd(state: LabState, node: ControllerNode) -> list[str]:
    cmd = [
        *netns.enter(node),
        sys.executable,
        "-m",
        "dockyard.cli.main",
        "controller",
        "--data-dir",
        str(state.path(node.name, "controller")),
        "--store",
        store_url(state),
        "--listen",
        node.grpc,
        "--http",
        node.http.partition("://")[2],
        "--tls",
        "never",  # the CA is not in the store yet: see the module docstring
        "--secrets-key-file",
        str(state.path("controller.key")),  # one key: the controllers share the sealed store
    ]
    if state.heartbeat_period is not None:
        cmd += ["--heartbeat-period", str(state.heartbeat_period)]
    if state.disconnect_grace is not None:
        cmd += ["--disconnect-grace", str(state.disconnect_grace)]
    return cmd


def start_controller(state: LabState, node: ControllerNode) -> ProcRef:
    log = state.path("logs", f"{node.name}-controller.log")
    return procs.spawn(controller_cmd(state, node), log, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def serving(node: ControllerNode) -> bool:
    """The node's controller leads: a standby's /healthz says `"status": "standby"`."""
    try:
        with urllib.request.urlopen(f"{node.http}/healthz", timeout=1) as answer:
            return bool(json.loads(answer.read()).get("status") != "standby")
    except urllib.error.HTTPError:
        return True  # the leader answered (its HTTP port may ask for a signature)
    except (OSError, ValueError):
        return False


def leader(state: LabState) -> ControllerNode | None:
    for node in state.nodes:
        if procs.alive(node.controller) and serving(node):
            return node
    return None


def wait_leader(state: LabState, timeout: float = 30.0) -> ControllerNode:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = leader(state)
        if found:
            return found
        time.sleep(0.05)
    raise LabError(f"no controller leads within {timeout:.0f} s; see {state.path('logs')}")


def bring_up(state: LabState) -> None:
    """etcd on every node; the first controller, until it leads (it writes the admin key and
    the secrets key); then the others, standing by; the admin key where the lab looks."""
    for node in state.nodes:
        node.etcd = start_etcd(state, node)
    wait_etcd(state)
    first = state.nodes[0]
    first.controller = start_controller(state, first)
    wait_leader(state)
    for node in state.nodes[1:]:
        node.controller = start_controller(state, node)
    admin = state.path(first.name, "controller", "admin-credentials")
    shared = state.path("controller")
    shared.mkdir(mode=0o700, parents=True, exist_ok=True)
    shutil.copy2(admin, shared / "admin-credentials")


def status(state: LabState) -> list[dict[str, object]]:
    lead = leader(state)
    return [
        {
            "name": n.name,
            "address": n.address,
            "netns": n.netns,
            "grpc": n.grpc,
            "http": n.http,
            "controller": "running" if procs.alive(n.controller) else "dead",
            "etcd": ("healthy" if etcd_healthy(n) else "running")
            if procs.alive(n.etcd)
            else "dead",
            "leader": lead is not None and lead.name == n.name,
            "partitioned": not netns.link_up(n.veth),
        }
        for n in state.nodes
    ]
