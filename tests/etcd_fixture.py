"""Real etcd for tests: one member, or a three-member cluster on loopback ports.

Debian's `etcd-server` (installed by deploy/ensure-docker.sh) runs in a temporary data dir;
`etcd_server()` / `etcd_cluster()` wait until every member reports healthy (with a timeout)
and always stop the members and remove their data, even when the test fails.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import free_port, tool, wait_for

# etcd's defaults refuse transactions over 128 operations and requests over 1.5 MiB; a
# controller commits a group of batches in one transaction, so its etcd gets more room
# (the README's etcd setup says the same).
MAX_TXN_OPS = 10000
MAX_REQUEST_BYTES = 32 * 1024 * 1024


@dataclass
class EtcdMember:
    """One etcd process: its name, client and peer ports, data dir and log."""

    name: str
    root: Path
    client_port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    max_txn_ops: int = MAX_TXN_OPS

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def log(self) -> Path:
        return self.root / f"{self.name}.log"

    def start(self, initial_cluster: str, state: str = "new") -> None:
        args = [
            tool("etcd"),
            f"--name={self.name}",
            f"--data-dir={self.root / self.name}",
            f"--listen-client-urls={self.client_url}",
            f"--advertise-client-urls={self.client_url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={initial_cluster}",
            f"--initial-cluster-state={state}",
            "--initial-cluster-token=dockyard-test",
            "--pre-vote",  # as the lab and the README: a rejoining member deposes nobody
            f"--max-txn-ops={self.max_txn_ops}",
            f"--max-request-bytes={MAX_REQUEST_BYTES}",
            "--auto-compaction-mode=periodic",  # as the README's etcd line: history is
            "--auto-compaction-retention=5m",  # compacted, or etcd's database only grows
            "--logger=zap",
            "--log-level=warn",
        ]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)

    def healthy(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"etcd {self.name} exited: {self.log_tail()}")
        try:
            with urllib.request.urlopen(self.client_url + "/health", timeout=1) as resp:
                return bool(json.loads(resp.read()).get("health") == "true")
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process (SIGKILL after 10 s); its data dir stays for a restart."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a test may have paused it
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"


@dataclass
class EtcdCluster:
    members: list[EtcdMember]

    @property
    def endpoints(self) -> str:
        """host:port,host:port,... of every member: what `etcd://` URLs list."""
        return ",".join(m.endpoint for m in self.members)

    @property
    def url(self) -> str:
        return f"etcd://{self.endpoints}"

    @property
    def initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        for m in self.members:
            if m.proc is not None:
                wait_for(m.healthy, timeout, interval=0.1, what=f"etcd {m.name} healthy")

    def restart(self, member: EtcdMember, timeout: float = 30.0) -> None:
        member.start(self.initial_cluster, state="existing")
        wait_for(member.healthy, timeout, interval=0.1, what=f"etcd {member.name} healthy")

    def stop(self) -> None:
        for m in self.members:
            m.stop()


@contextlib.contextmanager
def etcd_cluster(
    size: int = 1, timeout: float = 30.0, max_txn_ops: int = MAX_TXN_OPS
) -> Iterator[EtcdCluster]:
    """`size` etcd members on loopback ports in a temporary dir, healthy; stopped after.
    `max_txn_ops`: etcd's --max-txn-ops (128 is etcd's own default)."""
    root = Path(tempfile.mkdtemp(prefix="dyk-etcd-"))
    members = [EtcdMember(f"m{i}", root, max_txn_ops=max_txn_ops) for i in range(size)]
    cluster = EtcdCluster(members)
    try:
        for m in cluster.members:
            m.start(cluster.initial_cluster)
        cluster.wait_healthy(timeout)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def etcd_server(timeout: float = 30.0) -> Iterator[EtcdCluster]:
    """One etcd member (a cluster of one)."""
    with etcd_cluster(1, timeout) as cluster:
        yield cluster
