"""The lab's control plane: the controller in the root namespace, an agent per host namespace.

Both run from this same install (`python -m dockyard.cli.main ...`). The controller
listens on the bridge address, reachable from the root namespace and every host; each
agent runs inside its host's namespace, talks to that host's dockerd and advertises the
host's lab address for published ports.
"""

from __future__ import annotations

import importlib.util
import os
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from dockyard import auth
from dockyard.client import Client
from dockyard.errors import ApiError
from dockyard.lab import ha, netns, procs
from dockyard.lab.registry import wait_tcp
from dockyard.lab.state import Host, LabError, LabState, ProcRef


def available() -> bool:
    """True once the controller and agent daemons are importable in this install."""
    try:
        return all(
            importlib.util.find_spec(m) is not None for m in ("controller.server", "agent.main")
        )
    except ModuleNotFoundError:
        return False


def _dockyard() -> list[str]:
    return [sys.executable, "-m", "dockyard.cli.main"]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED="1")


def controller_cmd(state: LabState) -> list[str]:
    cmd = [
        *_dockyard(),
        "controller",
        "--data-dir",
        str(state.path("controller")),
        "--listen",
        state.controller_address,
        "--http",
        state.controller_http.partition("://")[2],
    ]
    if state.heartbeat_period is not None:
        cmd += ["--heartbeat-period", str(state.heartbeat_period)]
    if state.disconnect_grace is not None:
        cmd += ["--disconnect-grace", str(state.disconnect_grace)]
    return cmd


def start_controller(state: LabState, timeout: float = 30.0) -> ProcRef:
    log = state.path("logs", "controller.log")
    ref = procs.spawn(controller_cmd(state), log, env=_env())
    try:
        wait_tcp(state.controller_address, ref, timeout, "controller")
        _wait_healthz(state, ref, timeout)
    except LabError as err:
        procs.kill(ref)
        raise LabError(f"{err}; {log}:\n    {procs.log_tail(log)}") from None
    return ref


def _wait_healthz(state: LabState, ref: ProcRef, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and procs.alive(ref):
        try:
            url = f"{state.controller_http}/healthz"
            with urllib.request.urlopen(url, timeout=1, context=_https_context(state)):
                return
        except urllib.error.HTTPError:
            return  # it answers HTTP: good enough, the gRPC port already listens
        except OSError:
            time.sleep(0.05)
    if not procs.alive(ref):
        raise LabError("controller exited")


def _https_context(state: LabState) -> ssl.SSLContext | None:
    """Trust the lab controller's CA for its HTTPS endpoint (created at its first start)."""
    ca = ca_cert(state)
    return ssl.create_default_context(cadata=ca.decode()) if ca else None


_TOKEN_LOCK = threading.Lock()


def admin_credentials(state: LabState) -> auth.Credentials | None:
    """The admin key the controller wrote on first start (None before, or with --auth off)."""
    path = state.path("controller", "admin-credentials")
    return auth.parse_credentials(path.read_text()) if path.exists() else None


def ca_cert(state: LabState) -> bytes | None:
    """The controller's CA: the lab's controller is off loopback, so it serves TLS."""
    path = state.path("controller", "ca.crt")
    return path.read_bytes() if path.exists() else None


# lab controllers this process has talked to: address -> (admin key, CA), so that code
# given only the address (verify.collect) can reach them too
KNOWN: dict[str, tuple[auth.Credentials | None, bytes | None]] = {}


def address(state: LabState) -> str:
    """The controller's gRPC address: with several controllers, the leader's (or the
    first node's while none leads: calls then fail as they would on a down controller)."""
    if not state.nodes:
        return state.controller_address
    lead = ha.leader(state)
    return (lead or state.nodes[0]).grpc


def client(state: LabState, timeout: float = 30.0) -> Client:
    creds, ca, target = admin_credentials(state), ca_cert(state), address(state)
    KNOWN[target] = (creds, ca)
    return Client(target, timeout=timeout, credentials=creds, ca_cert=ca)


def join_args(state: LabState) -> list[str]:
    """`--join-token T --ca-hash H` for the lab's agents (created once, kept 0600 with the
    controller's data)."""
    path = state.path("controller", "lab-join")
    with _TOKEN_LOCK:  # agents start in parallel threads
        if not path.exists():
            with client(state) as c:
                token = c.call("CreateJoinToken", {"description": "lab agents"})["joinToken"]
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f"{token['token']} {token.get('caHash', '')}")
        token_text, _, ca_hash = path.read_text().strip().partition(" ")
    return ["--join-token", token_text, *(["--ca-hash", ca_hash] if ca_hash else [])]


def agent_cmd(state: LabState, host: Host) -> list[str]:
    return [
        *netns.enter(host),
        *_dockyard(),
        "agent",
        "--controller",
        *(
            [ha.agent_controllers(state), "--tls", "never"]  # every node: it follows the leader
            if state.nodes
            else [state.controller_address]
        ),
        "--state-dir",
        str(state.path(host.name, "agent")),
        "--docker-host",
        host.docker_host,
        "--cluster",
        state.cluster,
        *(
            arg
            for key, value in {"zone": host.zone, **host.attributes}.items()
            for arg in ("--attribute", f"{key}={value}")
        ),
        "--address",
        host.address,
        "--hostname",
        host.name,
        *join_args(state),
    ]


def start_agent(state: LabState, host: Host) -> ProcRef:
    log = state.path("logs", f"{host.name}-agent.log")
    return procs.spawn(agent_cmd(state, host), log, env=_env())


def instances(state: LabState, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The controller's container instances (ECS shapes); raises ApiError."""
    with client(state, timeout=timeout) as api:
        arns: list[str] = []
        token: str | None = None
        while True:
            body: dict[str, Any] = {"cluster": state.cluster}
            if token:
                body["nextToken"] = token
            page = api.call("ListContainerInstances", body)
            arns += page.get("containerInstanceArns", [])
            token = page.get("nextToken")
            if not token:
                break
        found: list[dict[str, Any]] = []
        for i in range(0, len(arns), 100):
            found += api.call(
                "DescribeContainerInstances",
                {
                    "cluster": state.cluster,
                    "containerInstances": arns[i : i + 100],
                },
            ).get("containerInstances", [])
        return found


def instance_host(instance: dict[str, Any], hosts: list[Host]) -> Host | None:
    """Which lab host an instance is, by hostname or address wherever the controller puts it."""
    values = {str(v) for k, v in instance.items() if isinstance(v, str | int)}
    values |= {str(a.get("value")) for a in instance.get("attributes", []) or []}
    for host in hosts:
        if host.name in values or host.address in values:
            return host
    return None


def wait_registered(state: LabState, timeout: float = 30.0, hosts: list[Host] | None = None) -> str:
    """Wait until every host's agent (or those of `hosts`) is connected; returns a note if
    that cannot be told."""
    hosts = state.hosts if hosts is None else hosts
    deadline, connected = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        try:
            found = instances(state)
        except ApiError as err:
            if err.name not in ("ConnectionError", "ClusterNotFoundException"):
                return f"could not list instances ({err.name}: {err.message})"
            found = []
        up = {
            h.name for i in found if i.get("agentConnected", True) if (h := instance_host(i, hosts))
        }
        connected = len(up)
        if connected >= len(hosts):
            return ""
        for host in hosts:
            if not procs.alive(host.agent):
                log = state.path("logs", f"{host.name}-agent.log")
                raise LabError(f"agent of {host.name} exited; {log}:\n    {procs.log_tail(log)}")
        time.sleep(0.2)
    raise LabError(
        f"only {connected} of {len(hosts)} agents registered within "
        f"{timeout:.0f} s; see {state.path('logs')}"
    )
