"""Scale benchmark plumbing: a controller process, simulator processes, /proc accounting.

The controller runs alone in its own process (the `dockyard controller` users run), the
simulated agents in others (`dockyard sim`), so the controller's CPU and RSS read from
/proc/<pid> are its own.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from dockyard import auth
from dockyard.client import Client
from tests.support import (
    Proc,
    controller_argv,
    free_port,
    metric,
    scrape,
    tasks_by_status,
    wait_for,
)

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid: int) -> float:
    m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) / 1024 if m else 0.0


@dataclass
class CpuMeter:
    """CPU cores used by a process between start() and read()."""

    pid: int
    t0: float = 0.0
    c0: float = 0.0

    def start(self) -> CpuMeter:
        self.t0, self.c0 = time.monotonic(), cpu_seconds(self.pid)
        return self

    def read(self) -> float:
        return (cpu_seconds(self.pid) - self.c0) / max(1e-9, time.monotonic() - self.t0)


@dataclass
class ScaleRig:
    """A controller and simulator processes under one temp dir; stop() kills them all."""

    heartbeat_period: float = 1.0
    heartbeat_budget: float = 0.0  # 0: the controller's default
    grace: float = 10.0
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="dockyard-scale-")))
    grpc_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    controller: Proc | None = None
    sims: list[Proc] = field(default_factory=list)
    store: str = ""  # the controller's --store; "" = SQLite in root
    standby: Proc | None = None  # a second controller on the same etcd store, standing by

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start_controller(self) -> int:
        argv = controller_argv(
            self.root,
            self.grpc_port,
            self.http_port,
            self.heartbeat_period,
            self.grace,
            "--log-level",
            "WARNING",
        )
        if self.heartbeat_budget:
            argv += ["--heartbeat-budget", str(self.heartbeat_budget)]
        if self.store:
            argv += ["--store", self.store]
        self.controller = Proc("controller", argv, self.root / "controller.log")
        self.controller.start()
        wait_for(self.health, 30, interval=0.1, what="controller up")
        assert self.controller.popen
        return self.controller.popen.pid

    def start_standby(self) -> int:
        """A second controller on the same (etcd) store: it stands by, following the state
        in memory, while the first leads. Its pid."""
        assert self.store, "a standby needs the etcd store"
        root = self.root / "standby"
        argv = controller_argv(
            root, free_port(), free_port(), self.heartbeat_period, self.grace, "--store", self.store
        )
        self.standby = Proc("standby", argv, self.root / "standby.log")
        self.standby.start()
        assert self.standby.popen
        return self.standby.popen.pid

    def start_sim(self, agents: int, first: int = 0, *extra: str) -> Proc:
        argv = [
            sys.executable,
            "-m",
            "dockyard.cli.main",
            "sim",
            "--controller",
            self.address,
            "--agents",
            str(agents),
            "--first-index",
            str(first),
            "--report-every",
            "0",
            *extra,
        ]
        proc = Proc(f"sim-{first}", argv, self.root / f"sim-{first}.log")
        proc.start()
        self.sims.append(proc)
        return proc

    def start_sims(self, agents: int, processes: int, *extra: str) -> list[Proc]:
        base, rest = divmod(agents, processes)
        out, first = [], 0
        for i in range(processes):
            n = base + (1 if i < rest else 0)
            out.append(self.start_sim(n, first, *extra))
            first += n
        return out

    def client(self, timeout: float = 120) -> Client:
        path = self.root / "controller" / "admin-credentials"
        creds = auth.parse_credentials(path.read_text()) if path.exists() else None
        return Client(self.address, timeout=timeout, credentials=creds)

    def health(self) -> dict:
        url = f"http://127.0.0.1:{self.http_port}/healthz"
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())

    def task_counts(self) -> dict[str, int]:
        return {status: int(n) for status, n in tasks_by_status(scrape(self.http_port)).items()}

    def tasks_on_disconnected(self) -> int:
        """Tasks desired RUNNING on instances whose agent is gone (what the grace replaces)."""
        samples = scrape(self.http_port)
        return int(metric(samples, "dockyard_tasks_on_disconnected_instances") or 0)

    def wait_connected(self, n: int, timeout: float) -> float:
        """Seconds until the controller has n agent sessions."""
        t0 = time.monotonic()
        wait_for(lambda: self.health()["connected"] >= n, timeout, 0.1, f"{n} connected")
        return time.monotonic() - t0

    @property
    def pid(self) -> int:
        assert self.controller and self.controller.popen
        return self.controller.popen.pid

    def stop(self) -> None:
        for p in self.sims:
            p.kill(signal.SIGKILL)
        for proc in (self.controller, self.standby):
            if proc:
                proc.kill(signal.SIGKILL)
        subprocess.run(["rm", "-rf", str(self.root)], check=False)
