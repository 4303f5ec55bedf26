"""One dockerd per lab host, inside the host's network namespace, plus a tiny Engine API client.

Each dockerd gets its own data-root, exec-root (its own managed containerd), socket,
cgroup parent (so `down` finds every container process) and bridge subnet. Only the lab's
plain-HTTP registry (its exact host:port) is an insecure registry: any other registry on the
lab subnet, such as a test's TLS registry, is verified against /etc/docker/certs.d as on a
real host. `--config-file` points at our own file so a daemon.json of the root engine never
leaks into the lab.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any

from dockyard.lab import netns, procs
from dockyard.lab.state import Host, LabError, LabState, ProcRef


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class DockerApi:
    """Just enough of the Engine API for readiness checks and audits (no docker CLI)."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url, self.timeout = url, timeout

    def _conn(self) -> http.client.HTTPConnection:
        if self.url.startswith("unix://"):
            return _UnixConnection(self.url.removeprefix("unix://"), self.timeout)
        parsed = urllib.parse.urlparse(self.url.replace("tcp://", "http://", 1))
        return http.client.HTTPConnection(
            parsed.hostname or "localhost", parsed.port or 2375, timeout=self.timeout
        )

    def get(self, path: str) -> Any:
        conn = self._conn()
        try:
            conn.request("GET", path)
            reply = conn.getresponse()
            body = reply.read()
        finally:
            conn.close()
        if reply.status >= 400:
            raise OSError(f"{self.url}{path}: HTTP {reply.status} {body[:200]!r}")
        return json.loads(body) if body.startswith((b"{", b"[")) else body.decode()

    def ping(self) -> bool:
        try:
            return self.get("/_ping") == "OK"
        except OSError:
            return False

    def containers(self, label: str | None = None, all_: bool = True) -> list[dict[str, Any]]:
        query: dict[str, str] = {"all": "1" if all_ else "0"}
        if label:
            query["filters"] = json.dumps({"label": [label]})
        return list(self.get("/containers/json?" + urllib.parse.urlencode(query)))


def socket_path(host: Host) -> str:
    return host.docker_host.removeprefix("unix://")


def dockerd_cmd(state: LabState, host: Host) -> list[str]:
    base = state.path(host.name)
    flags = {
        "--config-file": base / "daemon.json",
        "--data-root": base / "data",
        "--exec-root": base / "run",
        "--pidfile": base / "docker.pid",
        "-H": host.docker_host,
        "--bip": host.bip,
        "--cgroup-parent": f"/{host.cgroup_parent}",
        "--insecure-registry": state.registry,  # host:port: nothing else skips TLS checks
    }
    args = [str(x) for pair in flags.items() for x in pair]
    return [*netns.enter(host), "dockerd", *args, "--iptables=true", "--ip-forward=true"]


def start(state: LabState, host: Host, timeout: float = 30.0) -> ProcRef:
    """Start the host's dockerd and return once its API answers."""
    base = state.path(host.name)
    base.mkdir(parents=True, exist_ok=True)
    # its own engine key, hence its own engine ID (the default /etc/docker/key.json is shared)
    config = {"deprecated-key-path": str(base / "key.json")}
    (base / "daemon.json").write_text(json.dumps(config) + "\n")
    Path(socket_path(host)).unlink(missing_ok=True)
    log = state.path("logs", f"{host.name}-dockerd.log")
    ref = procs.spawn(dockerd_cmd(state, host), log)
    wait_ready(host, ref, log, timeout)
    return ref


def wait_ready(host: Host, ref: ProcRef, log: Path, timeout: float) -> None:
    api, deadline = DockerApi(host.docker_host, timeout=2.0), time.monotonic() + timeout
    while time.monotonic() < deadline:
        if api.ping():
            return
        if not procs.alive(ref):
            raise LabError(f"dockerd of {host.name} exited; {log}:\n    {procs.log_tail(log)}")
        time.sleep(0.05)
    raise LabError(f"dockerd of {host.name} did not answer within {timeout:.0f} s; see {log}")


def stop(host: Host, timeout: float = 30.0) -> None:
    """Graceful stop, as `systemctl stop docker` would: dockerd stops its containers."""
    procs.stop(host.dockerd, timeout)


def docker(host: Host, *args: str, timeout: float = 60.0) -> str:
    """Run the docker CLI against the host's engine; raises LabError with its stderr."""
    env = dict(os.environ, DOCKER_HOST=host.docker_host)
    out = subprocess.run(
        ["docker", *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    if out.returncode != 0:
        raise LabError(f"docker {' '.join(args)} on {host.name}: {out.stderr.strip()}")
    return out.stdout
