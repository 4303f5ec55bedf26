"""Test support: wait on conditions (never fixed sleeps) and run real Dockyard daemons.

`LocalCluster` starts a controller and agents as real processes (the same `dockyard`
command users run) against the machine's dockerd, on free ports and in a temp dir, and
removes every container its agents created when it stops, even after a failed test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from dockyard import auth
from dockyard.client import Client

T = TypeVar("T")
DOCKER_HOST = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


def wait_for(
    fn: Callable[[], T | None],
    timeout: float = 20.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll fn until it returns something truthy; fail with `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except Exception as err:  # the thing we wait for may not answer yet
            last = err
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def scrape(http_port: int) -> list[Sample]:
    """Every sample of a controller's /metrics."""
    url = f"http://127.0.0.1:{http_port}/metrics"
    with urllib.request.urlopen(url, timeout=30) as r:
        text = r.read().decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def metric(samples: list[Sample], name: str, **labels: str) -> float | None:
    """The value of one sample (None when the controller does not report it)."""
    found = (s.value for s in samples if s.name == name and s.labels == labels)
    return next(found, None)


def tasks_by_status(samples: list[Sample]) -> dict[str, float]:
    """The dockyard_tasks gauge: tasks per lastStatus (0 for a status that emptied)."""
    return {s.labels["status"]: s.value for s in samples if s.name == "dockyard_tasks"}


# botocore's own default (legacy mode, retries on throttling and connection errors), for
# tests that ride over a failover or a controller still starting
BOTO_DEFAULT_RETRIES = {"mode": "legacy"}


def aws_client(
    api: str,
    endpoint_url: str,
    creds: auth.Credentials,
    *,
    region: str = "us-east-1",
    verify: str | bool | None = None,
    **config: Any,
) -> Any:
    """A real boto3 client for one of the controller's AWS-compatible APIs ("ecs",
    "servicediscovery", "application-autoscaling", "events"), signed with `creds`.
    No retries: a test sees the first answer, as the user's first call would. `config`:
    more botocore `Config` settings; `verify`: the CA file of an HTTPS controller."""
    import boto3
    from botocore.config import Config

    config.setdefault("retries", {"mode": "standard", "max_attempts": 1})
    return boto3.client(
        api,
        region_name=region,
        endpoint_url=endpoint_url,
        aws_access_key_id=creds.access_key_id,
        aws_secret_access_key=creds.secret_access_key,
        config=Config(**config),
        verify=verify,
    )


def cloud_map(
    endpoint_url: str,
    key_id: str,
    secret: str,
    region: str = "us-east-1",
    verify: str | None = None,
) -> Any:
    """boto3's Cloud Map client for a controller's HTTP endpoint, as `dockyard env` sets it
    up (AWS_DISABLE_HOST_PREFIX_INJECTION: DiscoverInstances stays on this host); `verify`:
    the CA file of a controller serving HTTPS (the lab's)."""
    creds = auth.Credentials(key_id, secret)
    return aws_client(
        "servicediscovery",
        endpoint_url,
        creds,
        region=region,
        verify=verify,
        inject_host_prefix=False,
        retries=BOTO_DEFAULT_RETRIES,
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` now ("0.0.0.0": free on every address, for a wildcard bind)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def tool(name: str) -> str:
    """The command `name` as this test run should call it: the one installed beside the
    running interpreter (the venv's bin dir: aws, moto_server), else the one on PATH. Never a
    path of one particular checkout, so the suite runs from a clone anywhere."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise AssertionError(f"{name} is not installed: `make test` installs what tests call")
    return found


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's server (AWS's STS and friends, locally) on a free port: its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [tool("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: urllib.request.urlopen(url + "/moto-api/", timeout=1), 30, what="moto")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def docker(*args: str) -> str:
    out = subprocess.run(
        ["docker", "-H", DOCKER_HOST, *args], capture_output=True, text=True, check=False
    )
    return out.stdout.strip()


def controller_argv(
    root: Path, grpc_port: int, http_port: int, heartbeat: float, grace: float, *extra: str
) -> list[str]:
    """`dockyard controller` on loopback ports with its data under root (tests, benches)."""
    return [
        sys.executable,
        "-m",
        "dockyard.cli.main",
        "controller",
        "--data-dir",
        str(root / "controller"),
        "--listen",
        f"127.0.0.1:{grpc_port}",
        "--http",
        f"127.0.0.1:{http_port}",
        "--heartbeat-period",
        str(heartbeat),
        "--disconnect-grace",
        str(grace),
        "--open-loopback-agents",  # agents and simulators here are on loopback: no join tokens
        *extra,
    ]


STARTED: list[LocalCluster] = []  # made during the current test (tests/conftest.py)
# whether the current test is marked docker or lab (tests/conftest.py sets it): only those run
# under the Docker lock, so only they may start a real agent, which claims the shared engine
ENGINE_TEST = {"allowed": True}


def _refuse_unmarked_agent(argv: list[str]) -> None:
    """A real `dockyard agent` asks Docker for its engine and claims it (one agent per engine)
    before anything else, even before it enrolls. Started from a test not marked docker, it
    runs in "not docker" runs, outside the Docker lock, and refuses, or is refused by, the
    agents of a run going on beside it: fail at once, with what to do, instead."""
    if argv[1:4] == ["-m", "dockyard.cli.main", "agent"] and not ENGINE_TEST["allowed"]:
        raise AssertionError(
            "this test starts a real agent, which claims the Docker engine: mark it "
            "@pytest.mark.docker so it runs with the Docker tests, under the Docker lock"
        )


@dataclass
class Proc:
    name: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        _refuse_unmarked_agent(self.argv)
        with self.log.open("ab") as log:
            self.popen = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 30) -> None:
        if self.popen and self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)
            self.popen.wait(timeout=timeout)

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


@dataclass
class LocalCluster:
    root: Path
    grpc_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    heartbeat: float = 0.5
    grace: float = 5.0
    controller: Proc | None = None
    agents: dict[str, Proc] = field(default_factory=dict)
    saved_env: dict[str, str | None] = field(default_factory=dict)
    # several agents of this cluster on the one engine: they take it shared (tests only);
    # an agent of another cluster, or a user's, then refuses to start beside them and the
    # other way round, so nothing else can take 169.254.170.2 during a test
    shared_engine: bool = False

    def __post_init__(self) -> None:
        STARTED.append(self)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def credentials(self) -> auth.Credentials | None:
        """The admin key the controller wrote on first start (security: API keys)."""
        path = self.root / "controller" / "admin-credentials"
        return auth.parse_credentials(path.read_text()) if path.exists() else None

    def client(self) -> Client:
        return Client(self.address, timeout=10, credentials=self.credentials())

    def boto3(self, api: str = "ecs", region: str = "us-east-1", **config: Any) -> Any:
        """boto3's client for `api` on this controller's HTTP endpoint, with the admin key."""
        creds = self.credentials()
        assert creds is not None, "the controller wrote no admin-credentials"
        return aws_client(api, self.http, creds, region=region, **config)

    def _export_credentials(self) -> None:
        """Let in-process CLI calls and child processes sign with the admin key."""
        creds = self.credentials()
        assert creds is not None, "the controller wrote no admin-credentials"
        for name, value in (
            (auth.ACCESS_KEY_ENV, creds.access_key_id),
            (auth.SECRET_KEY_ENV, creds.secret_access_key),
        ):
            self.saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    def start_controller(self, *extra: str) -> None:
        """Start (or restart, same ports and data) the controller; `extra`: its flags."""
        self.controller = Proc(
            "controller",
            controller_argv(
                self.root, self.grpc_port, self.http_port, self.heartbeat, self.grace, *extra
            ),
            self.root / "controller.log",
        )
        self.controller.start()
        wait_for(lambda: self.client().call("ListClusters"), 20, what="controller up")
        self._export_credentials()

    def start_agent(self, name: str = "a1", *extra: str) -> Proc:
        proc = self.agents.get(name) or Proc(
            name,
            [
                sys.executable,
                "-m",
                "dockyard.cli.main",
                "agent",
                "--controller",
                self.address,
                "--state-dir",
                str(self.root / f"agent-{name}"),
                "--docker-host",
                DOCKER_HOST,
                "--hostname",
                name,
                "--pull-behavior",
                "prefer-cached",
                *(["--allow-shared-engine"] if self.shared_engine else []),
                *extra,
            ],
            self.root / f"agent-{name}.log",
        )
        self.agents[name] = proc
        proc.start()
        return proc

    def instance_id(self, name: str = "a1") -> str:
        path = self.root / f"agent-{name}" / "identity.json"
        wait_for(path.exists, 10, what=f"{name} identity")
        import json

        return str(json.loads(path.read_text())["instance_id"])

    def wait_connected(
        self, name: str = "a1", connected: bool = True, timeout: float = 20
    ) -> dict[str, Any]:
        iid = self.instance_id(name)

        def check() -> dict[str, Any] | None:
            out = self.client().call("DescribeContainerInstances", {"containerInstances": [iid]})[
                "containerInstances"
            ]
            return out[0] if out and out[0]["agentConnected"] == connected else None

        return wait_for(check, timeout, what=f"{name} connected={connected}")

    def describe(self, arns: list[str]) -> list[dict[str, Any]]:
        return self.client().call("DescribeTasks", {"tasks": arns})["tasks"]

    def wait_status(
        self, arns: list[str], status: str, timeout: float = 30
    ) -> list[dict[str, Any]]:
        return wait_for(
            lambda: (lambda ts: ts if ts and all(t["lastStatus"] == status for t in ts) else None)(
                self.describe(arns)
            ),
            timeout,
            what=f"tasks {status}",
        )

    def containers(self, name: str = "a1", all_states: bool = False) -> list[str]:
        iid = self.instance_id(name)
        args = ["ps", "-q", "--no-trunc", "--filter", f"label=dockyard.instance-id={iid}"]
        return docker(*args, *(["-a"] if all_states else [])).split()

    def log_tails(self, lines: int = 40) -> str:
        """The last lines of each daemon's log, for a failed test's report."""
        out = []
        for proc in [p for p in (self.controller, *self.agents.values()) if p]:
            text = proc.log.read_text(errors="replace") if proc.log.exists() else ""
            tail = "\n".join(text.splitlines()[-lines:])
            out.append(f"--- {proc.name} ({proc.log}) ---\n{tail}")
        return "\n".join(out)

    def stop(self) -> None:
        for proc in self.agents.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.kill(signal.SIGTERM, timeout=10)  # clean: removes its 169.254.170.2 routing
            proc.kill(signal.SIGKILL)
        if self.controller:
            self.controller.kill(signal.SIGKILL)
        for name in self.agents:
            ids = self.containers(name, all_states=True)
            if ids:
                docker("rm", "-f", *ids)
        for key, old in self.saved_env.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
        self.saved_env.clear()


def start_sim(lc: LocalCluster, agents: int = 1, *flags: str, name: str = "sim") -> Proc:
    """`agents` simulated agents (`dockyard sim`: no Docker) joined to lc's controller;
    `flags`: more of the simulator's flags. The caller kills it (SIGKILL) when done."""
    argv = [sys.executable, "-m", "dockyard.cli.main", "sim", "--controller", lc.address]
    proc = Proc(
        name,
        [*argv, "--agents", str(agents), "--report-every", "0", *flags],
        lc.root / f"{name}.log",
    )
    proc.start()
    return proc


@contextlib.contextmanager
def checked_controller(root: Path, *flags: str) -> Iterator[LocalCluster]:
    """A controller process checking each response body against botocore's model
    (DOCKYARD_CHECK_RESPONSES=1: a body off the model becomes a ServerException), stopped
    with everything it ran when the block ends; `flags`: the controller's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOCKYARD_CHECK_RESPONSES", "1")
        lc = LocalCluster(root)
        try:
            lc.start_controller(*flags)
            yield lc
        finally:
            lc.stop()


@contextlib.contextmanager
def simulated_cluster(root: Path, agents: int) -> Iterator[LocalCluster]:
    """`checked_controller` with `agents` simulated agents registered in the default
    cluster (starts take the simulator 20 ms)."""
    with checked_controller(root) as lc:
        sim = start_sim(lc, agents, "--start-latency-ms", "20")
        try:
            wait_for(
                lambda: (
                    len(lc.client().call("ListContainerInstances", {})["containerInstanceArns"])
                    == agents
                ),
                30,
                what=f"{agents} simulated instances",
            )
            yield lc
        finally:
            sim.kill(signal.SIGKILL)


# Ctrl-C at a terminal reaches a command whose SIGINT is at its default. A test run started
# in the background of a non-interactive shell (as CI may be) has SIGINT ignored, and an
# ignored SIGINT is inherited: restore the default before the CLI starts, as a terminal's
# foreground job has it.
AT_A_TERMINAL = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv[0] = 'dockyard'; runpy.run_module('dockyard.cli.main', run_name='__main__')"
)
CLI_AT_A_TERMINAL = [sys.executable, "-c", AT_A_TERMINAL]
"""The `dockyard` CLI started as a terminal's foreground job has it: SIGINT at its default."""
