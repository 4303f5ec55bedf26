"""`dockyard backup` / `dockyard restore`: the whole state to a file and back, on real SQLite
and real etcd, with real controller processes and simulated agents (the real agent
protocol, no Docker).

Backup a live controller, wipe its data dir, restore, restart: the clusters, task
definitions, service, tasks, instances, keys, secrets and CA are back, and the agents
reconnect as the same instances with their tasks still running. A SQLite backup restores
onto etcd, and etcd's backup back onto SQLite. Restore refuses a non-empty store (unless
--force) and a running controller's store, and a failed restore leaves nothing behind."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller import backup as bk
from controller.records import Put
from controller.state_of_record import StateOfRecord
from controller.store import SqliteStore
from controller.store_api import StoreBusy
from tests.etcd_fixture import EtcdCluster, etcd_cluster
from tests.support import Proc, wait_for
from tests.test_ha import Ctl

AGENTS = 3
SLEEPER = {"name": "s", "image": "dockyard/sleeper:latest", "memory": 8}


def dockyard(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "dockyard.cli.main", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


@contextlib.contextmanager
def ctl(root: Path, name: str, spec: str) -> Iterator[Ctl]:
    """A controller (its data dir root/name/controller), serving; killed after."""
    c = Ctl(name, root, spec, tls=False)  # `dockyard sim` speaks plaintext only
    try:
        c.start()
        wait_for(c.serving, 30, what=f"{name} serving")
        yield c
    finally:
        c.stop()


@contextlib.contextmanager
def agents(c: Ctl, root: Path) -> Iterator[Proc]:
    argv = [sys.executable, "-m", "dockyard.cli.main", "sim", "--controller"]
    sim = Proc("sim", [*argv, f"127.0.0.1:{c.grpc_port}", "--agents", str(AGENTS)], root / "s.log")
    try:
        sim.start()
        yield sim
    finally:
        sim.kill()


def populate(c: Ctl) -> dict[str, Any]:
    """A cluster with a running service, a secret, another cluster; what it looks like."""
    client = c.client()
    client.call("CreateCluster", {"clusterName": "default"})
    client.call("CreateCluster", {"clusterName": "other"})
    wait_for(lambda: c.connected_agents() == AGENTS, 30, what="agents connected")
    client.call("RegisterTaskDefinition", {"family": "web", "containerDefinitions": [SLEEPER]})
    client.call("PutSecret", {"name": "db-password", "value": "s3cret"})
    client.call("CreateService", {"serviceName": "web", "taskDefinition": "web", "desiredCount": 2})
    wait_for(lambda: running_tasks(c) == 2, 30, what="service at its count")
    return picture(c)


def running_tasks(c: Ctl) -> int:
    svc = c.client().call("DescribeServices", {"services": ["web"]})["services"]
    return int(svc[0]["runningCount"]) if svc else -1


def picture(c: Ctl) -> dict[str, Any]:
    """What a user sees: clusters, definitions, the service, its tasks, instances, secrets."""
    client = c.client()
    return {
        "clusters": c.clusters(),
        "taskdefs": client.call("ListTaskDefinitions")["taskDefinitionArns"],
        "services": client.call("ListServices")["serviceArns"],
        "tasks": sorted(client.call("ListTasks")["taskArns"]),
        "instances": sorted(
            client.call("ListContainerInstances", {"cluster": "default"})["containerInstanceArns"]
        ),
        "secrets": [s["name"] for s in client.call("ListSecrets")["secrets"]],
    }


def data_files(c: Ctl) -> dict[str, bytes]:
    return bk.read_data_files(c.root / c.name / "controller")


@pytest.mark.timeout(240)
def test_backup_wipe_restore_brings_everything_back_and_the_agents_reconnect(
    tmp_path: Path,
) -> None:
    backup = tmp_path / "state.dyk"
    with ctl(tmp_path, "a", "sqlite") as a, agents(a, tmp_path):
        before = populate(a)
        files = data_files(a)
        assert {"ca.key", "ca.crt", "admin-credentials"} <= set(files)
        data_dir = a.root / "a" / "controller"
        made = dockyard("backup", str(backup), "--data-dir", str(data_dir))  # online
        assert made.returncode == 0, made.stderr
        assert "in clear" in made.stderr  # the CA key is in it: the operator is told
        assert backup.stat().st_mode & 0o077 == 0
        refused = dockyard("restore", str(backup), "--data-dir", str(data_dir))
        assert refused.returncode == 1 and "in use" in refused.stderr, refused
        a.stop()
        shutil.rmtree(data_dir)  # the disk is lost (the secrets key file is kept apart)
        restored = dockyard("restore", str(backup), "--data-dir", str(data_dir))
        assert restored.returncode == 0, restored.stderr
        a.start()
        wait_for(a.serving, 30, what="restored controller serving")
        wait_for(lambda: a.connected_agents() == AGENTS, 30, what="agents reconnected")
        assert picture(a) == before  # same tasks: none lost, none started again
        wait_for(lambda: running_tasks(a) == 2, 30, what="service at its count")
        assert data_files(a) == files
        a.stop()
        again = dockyard("restore", str(backup), "--data-dir", str(data_dir))
        assert again.returncode == 1 and "not empty" in again.stderr, again
        forced = dockyard("restore", str(backup), "--data-dir", str(data_dir), "--force")
        assert forced.returncode == 0, forced.stderr


@pytest.fixture
def etcd() -> Iterator[EtcdCluster]:
    with etcd_cluster(1) as cluster:
        yield cluster


@pytest.mark.timeout(240)
def test_a_sqlite_backup_restores_onto_etcd_and_etcd_s_backup_back_onto_sqlite(
    etcd: EtcdCluster, tmp_path: Path
) -> None:
    first, second = tmp_path / "from-sqlite.dyk", tmp_path / "from-etcd.dyk"
    spec = f"{etcd.url}?prefix=/ha"
    with ctl(tmp_path, "a", "sqlite") as a, agents(a, tmp_path):
        before = populate(a)
        made = dockyard("backup", str(first), "--data-dir", str(a.root / "a" / "controller"))
        assert made.returncode == 0, made.stderr
    e_dir = tmp_path / "e" / "controller"
    restored = dockyard("restore", str(first), "--store", spec, "--data-dir", str(e_dir))
    assert restored.returncode == 0, restored.stderr
    with ctl(tmp_path, "e", spec) as e, agents(e, tmp_path):
        wait_for(lambda: e.connected_agents() == AGENTS, 30, what="agents on the etcd one")
        assert picture(e) == before
        made = dockyard("backup", str(second), "--store", spec, "--data-dir", str(e_dir))
        assert made.returncode == 0, made.stderr  # from etcd, while its controller runs
    # etcd now holds a state: refused without --force; with it, once the killed controller's
    # lease has expired (until then etcd says a controller runs on the prefix), replaced
    refused = dockyard("restore", str(second), "--store", spec, "--data-dir", str(e_dir))
    assert refused.returncode == 1 and ("not empty" in refused.stderr or "in use" in refused.stderr)
    wait_for(
        lambda: (
            dockyard(
                "restore", str(second), "--store", spec, "--data-dir", str(e_dir), "--force"
            ).returncode
            == 0
        ),
        30,
        what="forced restore onto etcd",
    )
    s_dir = tmp_path / "s" / "controller"
    back = dockyard("restore", str(second), "--data-dir", str(s_dir))
    assert back.returncode == 0, back.stderr
    with ctl(tmp_path, "s", "sqlite") as s:
        assert picture(s) == before


class FailingStore(SqliteStore):
    """A real SQLite store whose third write fails (a disk full, etcd gone)."""

    writes = 0

    def write(self, ops: list[Any]) -> Any:
        self.writes += 1
        if self.writes == 3:
            raise OSError("disk full")
        return super().write(ops)


def sample(n: int) -> bk.Backup:
    objects = [("cluster", f"c{i}", f"c{i}", {"name": f"c{i}"}) for i in range(n)]
    return bk.Backup("a test", objects=objects)  # type: ignore[arg-type]


async def test_a_failed_restore_leaves_an_empty_store_and_a_half_one_is_refused(
    tmp_path: Path,
) -> None:
    store = FailingStore(tmp_path)
    await store.open(exclusive=True)
    try:
        with pytest.raises(bk.BackupError, match=r"disk full.*emptied again"):
            await bk.restore(sample(bk.CHUNK * 3), store)
        assert await bk.held(store) == (0, 0, False)
        await store.write([Put(bk.RESTORE_MARKER, "marker", "", {})])  # a crash mid-restore
        with pytest.raises(StoreBusy, match="restore that did not finish"):
            await StateOfRecord(store).load()
        with pytest.raises(bk.BackupError, match=r"did not finish.*--force"):
            await bk.restore(sample(2), store)
    finally:
        await store.close()


def test_a_file_that_is_not_a_backup_is_refused_with_the_reason(tmp_path: Path) -> None:
    bad = tmp_path / "x.dyk"
    bad.write_text('{"format": "something else"}')
    out = dockyard("restore", str(bad), "--data-dir", str(tmp_path / "d"))
    assert out.returncode == 1 and "not a Dockyard backup" in out.stderr, out
    assert not (tmp_path / "d" / "dockyard.db").exists()
