"""`dockyard controller --store etcd://...`: real controller processes on one real etcd.

One leads and serves, the other stands by with the state in memory; SIGKILL the leader and
the standby takes over with everything acknowledged before (five trials, each timed and
printed, run with -s to see them); a SIGSTOPped leader resumed after its successor took
over exits (status 75) instead of deciding anything."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from controller.ha import LOST_LEADERSHIP
from dockyard import auth
from dockyard.client import Client
from dockyard.errors import ApiError
from dockyard.pki import spki_hash
from tests.etcd_fixture import EtcdCluster, etcd_cluster
from tests.support import (
    BOTO_DEFAULT_RETRIES,
    LocalCluster,
    Proc,
    aws_client,
    controller_argv,
    docker,
    free_port,
    wait_for,
)

TRIALS = 5


@dataclass
class Ctl:
    """One `dockyard controller --store etcd://` process."""

    name: str
    root: Path
    spec: str
    grpc_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    tls: bool = True  # --tls always: every controller serves the cluster's one CA
    auth: bool = False  # --auth on: API signatures (the first start's admin-credentials)
    agent_port: int = field(default_factory=free_port)  # the agents' mutual-TLS port
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log(self) -> Path:
        return self.root / f"{self.name}.log"

    def start(self) -> None:
        argv = controller_argv(
            self.root / self.name,
            self.grpc_port,
            self.http_port,
            0.5,
            5.0,
            "--store",
            self.spec,
            "--auth",
            "on" if self.auth else "off",
            "--secrets-key-file",  # one key for every controller: they share the sealed store
            str(self.root / "secrets.key"),
            "--tls",
            "always" if self.tls else "never",
            "--agent-listen",
            f"127.0.0.1:{self.agent_port}",
        )
        self.starts += 1
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def signal(self, sig: int) -> None:
        assert self.proc
        os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGKILL)
        if self.proc:
            self.proc.wait(timeout=20)

    @property
    def data_dir(self) -> Path:
        return self.root / self.name / "controller"

    def ca(self) -> bytes | None:
        """The cluster CA as this controller published it (None before it ever led)."""
        path = self.data_dir / "ca.crt"
        return path.read_bytes() if self.tls and path.exists() else None

    def health(self) -> dict[str, str]:
        """/healthz ({} when it does not answer): a standby answers {"status": "standby"}."""
        scheme, ctx = "http", None
        if self.tls:
            ca = self.ca()
            if ca is None:
                return {}
            scheme, ctx = "https", ssl.create_default_context(cadata=ca.decode())
        try:
            url = f"{scheme}://127.0.0.1:{self.http_port}/healthz"
            with urllib.request.urlopen(url, timeout=1, context=ctx) as resp:
                return dict(json.loads(resp.read()))
        except (OSError, ValueError):
            return {}

    def serving(self) -> bool:
        """Leading: the controller proper answers (a standby relays, it does not serve)."""
        return self.health().get("status") == "ok"

    def standing_by(self) -> bool:
        """This start of the process (its log spans restarts) waits for leadership."""
        return self.log.read_text(errors="replace").count("waiting for leadership") >= self.starts

    def admin(self) -> auth.Credentials:
        """The admin key in this controller's data dir (the cluster's first start's)."""
        creds = auth.load_credentials({}, self.data_dir / "admin-credentials")
        assert creds is not None, f"no admin-credentials in {self.data_dir}"
        return creds

    def client(self, ca: bytes | None = None) -> Client:
        """A client of this controller; over TLS it trusts `ca` (default: the CA this
        controller published); with --auth on it signs with the admin key."""
        return Client(
            f"127.0.0.1:{self.grpc_port}",
            timeout=10,
            credentials=self.admin() if self.auth else None,
            sign=self.auth,
            ca_cert=ca or self.ca(),
        )

    def ecs(self) -> Any:
        """boto3's ECS client on this controller's HTTPS endpoint, verifying the cluster CA
        (botocore's default retries: these tests ride failovers)."""
        return self.ecs_once(retries=BOTO_DEFAULT_RETRIES)

    def ecs_once(self, **config: Any) -> Any:
        """The same without retries (or with botocore `Config` settings)."""
        url = f"https://127.0.0.1:{self.http_port}"
        return aws_client("ecs", url, self.admin(), verify=str(self.data_dir / "ca.crt"), **config)

    def connected_agents(self) -> int:
        client = self.client()
        arns = client.call("ListContainerInstances", {"cluster": "default"})[
            "containerInstanceArns"
        ]
        if not arns:
            return 0
        described = client.call(
            "DescribeContainerInstances", {"cluster": "default", "containerInstances": arns}
        )["containerInstances"]
        return sum(1 for i in described if i["agentConnected"])

    def instances(self) -> int:
        client = self.client()
        return len(
            client.call("ListContainerInstances", {"cluster": "default"})["containerInstanceArns"]
        )

    def clusters(self) -> set[str]:
        arns = self.client().call("ListClusters")["clusterArns"]
        return {arn.rsplit("/", 1)[-1] for arn in arns}


@contextlib.contextmanager
def controllers(
    etcd: EtcdCluster, root: Path, *names: str, tls: bool = True, auth: bool = False
) -> Iterator[dict[str, Ctl]]:
    spec = f"{etcd.url}?prefix=/ha"
    ctls = {name: Ctl(name, root, spec, tls=tls, auth=auth) for name in names}
    try:
        yield ctls
    finally:
        for ctl in ctls.values():
            ctl.stop()


def leader_and_standby(ctls: dict[str, Ctl]) -> tuple[Ctl, Ctl]:
    """Start a, wait until it leads; start b, wait until it stands by."""
    leader, standby = ctls["a"], ctls["b"]
    leader.start()
    wait_for(leader.serving, 30, what="a leading")
    standby.start()
    wait_for(standby.standing_by, 30, what="b standing by")
    return leader, standby


@pytest.fixture
def etcd() -> Iterator[EtcdCluster]:
    with etcd_cluster(1) as cluster:
        yield cluster


@pytest.mark.timeout(120)
def test_a_leader_resumed_after_its_successor_took_over_exits_without_deciding(
    etcd: EtcdCluster, tmp_path: Path
) -> None:
    with controllers(etcd, tmp_path, "a", "b") as ctls:
        a, b = leader_and_standby(ctls)
        a_ca = a.ca()
        a.signal(signal.SIGSTOP)
        wait_for(b.serving, 20, what="b leading")
        assert a_ca is not None and b.ca() == a_ca  # one cluster CA: a's clients trust b
        b.client(ca=a_ca).call("CreateCluster", {"clusterName": "b-made"})
        admin = "admin-credentials"  # the first start's admin key, in every data dir
        assert (b.data_dir / admin).read_text() == (a.data_dir / admin).read_text()
        a.signal(signal.SIGCONT)
        assert a.proc
        assert a.proc.wait(timeout=15) == LOST_LEADERSHIP
        assert "leadership lost" in a.log.read_text()
        assert b.clusters() == {"b-made"}
        assert b.proc and b.proc.poll() is None  # b leads on


@pytest.mark.timeout(180)
def test_etcd_without_quorum_the_leader_refuses_writes_with_the_reason_and_steps_down(
    tmp_path: Path,
) -> None:
    """Three etcd members: one down changes nothing; two down, a write to the leader is
    refused with a 503 naming the reason (not a dropped call), the leader steps down
    (exit 75), and with a member back the standby leads with every acknowledged write."""
    with etcd_cluster(3) as etcd3, controllers(etcd3, tmp_path, "a", "b") as ctls:
        a, b = leader_and_standby(ctls)
        a.client().call("CreateCluster", {"clusterName": "one"})
        etcd3.members[0].stop()
        a.client().call("CreateCluster", {"clusterName": "two"})  # a quorum of two
        etcd3.members[1].stop()
        started = time.monotonic()
        with pytest.raises(ApiError) as refused:
            a.client().call("CreateCluster", {"clusterName": "unacknowledged"})
        assert refused.value.name == "ServiceUnavailable", refused.value
        assert "lost its leadership" in refused.value.message, refused.value
        assert time.monotonic() - started < 8
        assert a.proc and a.proc.wait(timeout=10) == LOST_LEADERSHIP
        etcd3.restart(etcd3.members[1])
        wait_for(b.serving, 30, what="b leading once etcd has a quorum again")
        assert {"one", "two"} <= b.clusters()


@pytest.mark.timeout(180)
def test_any_controller_answers_boto3_and_the_cli_before_and_after_a_failover(
    etcd: EtcdCluster, tmp_path: Path
) -> None:
    """With API signatures on and TLS: boto3 pointed at the standby creates a service that
    the leader then holds (the standby relayed the signed request), the native API on the
    standby answers from the leader too, and a join token made there lists both controllers,
    the leader's first. SIGKILL the leader: the same boto3 client works on the survivor."""
    with controllers(etcd, tmp_path, "a", "b", auth=True) as ctls:
        a, b = leader_and_standby(ctls)
        wait_for(lambda: b.health().get("status") == "standby", 20, what="b answering")
        assert b.admin() == a.admin()  # one admin key for the cluster
        ecs = b.ecs()
        ecs.create_cluster(clusterName="default")
        ecs.register_task_definition(family="web", containerDefinitions=[SLEEPER])
        ecs.create_service(serviceName="web", taskDefinition="web", desiredCount=0)
        held = a.ecs().describe_services(services=["web"])["services"]
        assert [s["serviceName"] for s in held] == ["web"]  # the leader has it
        assert "default" in b.client().call("ListClusters")["clusterArns"][0]  # gRPC relayed
        events = list(b.client().watch_events(cluster="default"))  # a relayed stream
        assert events and events == list(a.client().watch_events(cluster="default"))
        wait_for(lambda: lists_both(b, [a, b]), 15, what="a join token listing a then b")
        join = tokens_create(b)  # the operator's command, on the standby
        assert f"--controller 127.0.0.1:{a.grpc_port},127.0.0.1:{b.grpc_port} " in join, join
        a.signal(signal.SIGKILL)
        wait_for(b.serving, 20, what="b leading")
        ecs.create_service(serviceName="web2", taskDefinition="web", desiredCount=0)
        names = {
            s["serviceName"] for s in ecs.describe_services(services=["web", "web2"])["services"]
        }
        assert names == {"web", "web2"}


AGENTS = 20


@contextlib.contextmanager
def simulated_agents(controllers: list[Ctl], root: Path, agents: int = AGENTS) -> Iterator[Proc]:
    """Simulated agents (the real agent protocol, no Docker) given every address."""
    both = ",".join(f"127.0.0.1:{c.grpc_port}" for c in controllers)
    argv = [sys.executable, "-m", "dockyard.cli.main", "sim", "--controller", both]
    sim = Proc("sim", [*argv, "--agents", str(agents)], root / "sim.log")
    try:
        sim.start()
        yield sim
    finally:
        sim.kill()


@pytest.mark.timeout(300)
def test_a_standby_takes_over_from_a_sigkilled_leader_and_the_agents_follow(
    etcd: EtcdCluster, tmp_path: Path
) -> None:
    """Five SIGKILLs of whichever leads: each time the standby leads with every write
    acknowledged before, accepts writes, and the agents given both addresses
    (`--controller a,b`) are all connected to it again, as the same instances. Each
    takeover is timed (run with -s to see the figures). The simulator speaks plaintext
    only: these controllers run --tls never."""
    with controllers(etcd, tmp_path, "a", "b", tls=False) as ctls:
        leader, standby = leader_and_standby(ctls)
        assert not standby.serving()  # a standby serves nothing
        leader.client().call("CreateCluster", {"clusterName": "default"})
        made = {"default"}
        rows = []
        # the standby first: it answers, and sends each agent on to the leader
        with simulated_agents([standby, leader], tmp_path):
            wait_for(lambda: leader.connected_agents() == AGENTS, 30, what="agents on a")
            for trial in range(TRIALS):
                leader.client().call("CreateCluster", {"clusterName": f"before-{trial}"})
                made.add(f"before-{trial}")  # acknowledged by the leader about to die
                killed = time.monotonic()
                leader.signal(signal.SIGKILL)
                wait_for(standby.serving, 20, interval=0.02, what=f"{standby.name} leading")
                standby.client().call("CreateCluster", {"clusterName": f"after-{trial}"})
                writes = time.monotonic() - killed  # the new leader accepts writes
                made.add(f"after-{trial}")
                wait_for(
                    lambda s=standby: s.connected_agents() == AGENTS,  # type: ignore[misc]
                    30,
                    interval=0.05,
                    what="agents on the new leader",
                )
                rows.append((writes, time.monotonic() - killed))
                assert standby.clusters() == made  # nothing acknowledged is lost
                assert standby.instances() == AGENTS  # the same instances, none new
                assert leader.proc
                leader.proc.wait(timeout=10)
                leader.start()  # the killed one comes back as the standby
                wait_for(leader.standing_by, 30, what=f"{leader.name} standing by")
                leader, standby = standby, leader
        print("\nSIGKILL of the leader -> new leader accepts a write / all agents back (s):")
        print("  ".join(f"{w:.2f}/{a:.2f}" for w, a in rows))
        median_all = statistics.median(a for _, a in rows)
        print(f"median {statistics.median(w for w, _ in rows):.2f}/{median_all:.2f}")
        assert statistics.median(w for w, _ in rows) <= 5.0, rows


@pytest.mark.docker
@pytest.mark.timeout(240)
def test_a_real_agent_follows_the_new_leader_and_keeps_its_containers(
    etcd: EtcdCluster, tmp_path: Path, bare_cluster: LocalCluster
) -> None:
    """A real agent given both controllers runs two tasks for the leader; SIGKILL the
    leader: the agent reconnects to the new one, its containers are the same ones, never
    restarted, the tasks are RUNNING on the new leader, and it places a new task there. All
    over TLS: the agent pins the cluster CA once and its certificate opens a stream on
    either controller."""
    with controllers(etcd, tmp_path, "a", "b") as ctls:
        leader, standby = leader_and_standby(ctls)
        leader.client().call("CreateCluster", {"clusterName": "default"})
        # the standby first: it hands out the CA and relays the enrollment to the leader
        both = f"127.0.0.1:{standby.grpc_port},127.0.0.1:{leader.grpc_port}"
        ca = leader.ca()
        assert ca is not None
        wait_for(lambda: lists_both(leader, [leader, standby]), 15, what="both registered")
        pin = spki_hash(x509.load_pem_x509_certificate(ca))
        bare_cluster.start_agent("a1", "--controller", both, "--tls", "always", "--ca-hash", pin)
        wait_for(lambda: leader.connected_agents() == 1, 60, what="agent on a")
        body = {"family": "ha", "containerDefinitions": [SLEEPER]}
        leader.client().call("RegisterTaskDefinition", body)
        arns = [
            t["taskArn"]
            for t in leader.client().call("RunTask", {"taskDefinition": "ha", "count": 2})["tasks"]
        ]
        wait_for(lambda: running(leader, arns), 90, what="tasks RUNNING")
        before = {cid: started_at(cid) for cid in bare_cluster.containers("a1")}
        assert len(before) == 2
        leader.signal(signal.SIGKILL)
        wait_for(standby.serving, 20, what="b leading")
        wait_for(lambda: standby.connected_agents() == 1, 30, what="agent on b")
        wait_for(lambda: running(standby, arns), 30, what="tasks RUNNING on b")
        assert {cid: started_at(cid) for cid in bare_cluster.containers("a1")} == before
        new = standby.client().call("RunTask", {"taskDefinition": "ha", "count": 1})["tasks"]
        wait_for(lambda: running(standby, [new[0]["taskArn"]]), 90, what="new task RUNNING")
        assert len(bare_cluster.containers("a1")) == 3


def cli(ctl: Ctl, *argv: str) -> subprocess.CompletedProcess[str]:
    """`dockyard ARGV` against `ctl`'s native API (signed with the admin key, over TLS)."""
    creds = ctl.admin()
    env = {
        **os.environ,
        "DOCKYARD_CONTROLLER": f"127.0.0.1:{ctl.grpc_port}",
        auth.CA_CERT_ENV: str(ctl.data_dir / "ca.crt"),
        auth.ACCESS_KEY_ENV: creds.access_key_id,
        auth.SECRET_KEY_ENV: creds.secret_access_key,
    }
    command = [sys.executable, "-m", "dockyard.cli.main", *argv]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def tokens_create(ctl: Ctl) -> str:
    """`dockyard tokens create` against `ctl`."""
    done = cli(ctl, "tokens", "create")
    done.check_returncode()
    return done.stdout


def lists_both(ctl: Ctl, order: list[Ctl]) -> bool:
    """A join token made on `ctl` lists the controllers' API addresses in that order."""
    token = ctl.client().call("CreateJoinToken", {"description": "ha"})["joinToken"]
    return bool(token.get("controllers") == [f"127.0.0.1:{c.grpc_port}" for c in order])


SLEEPER = {"name": "s", "image": "dockyard/sleeper:latest", "memory": 8}


def running(ctl: Ctl, arns: list[str]) -> bool:
    tasks = ctl.client().call("DescribeTasks", {"tasks": arns})["tasks"]
    return len(tasks) == len(arns) and all(t["lastStatus"] == "RUNNING" for t in tasks)


def started_at(container_id: str) -> str:
    return docker("inspect", "--format", "{{.State.StartedAt}}", container_id).strip()
