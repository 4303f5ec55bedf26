"""The multi-host lab: hosts, registry, reachability, chaos verbs, teardown; and `verify`.

Unit tests (no root) cover bad input and verify's pure comparison; tests marked `lab` bring
up real namespaces, dockerds and a registry.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from dockyard import labels
from dockyard.cli.main import main
from dockyard.lab import Lab, LabError, preflight
from dockyard.lab import state as st
from dockyard.lab.engines import DockerApi
from dockyard.lab.verify import SeenContainer, audit
from tests.lab_fixture import acquire_index

if not hasattr(sys.modules.get("tests.conftest"), "lab"):  # until tests/conftest.py imports it
    from tests.lab_fixture import lab  # noqa: F401

lab_test = [pytest.mark.lab, pytest.mark.docker]


# ---- helpers ------------------------------------------------------------------------------


def wait_for(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def tcp_open(address: str, port: int, timeout: float = 1.0) -> bool:
    try:
        socket.create_connection((address, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def http_get(url: str, timeout: float = 2.0) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return str(reply.read().decode())
    except OSError:
        return None


def tcp_open_from(lab: Lab, host: str, address: str, port: int) -> bool:
    """A TCP connect from inside a lab host's namespace."""
    code = f"import socket; socket.create_connection(({address!r}, {port}), timeout=1)"
    out = subprocess.run(
        [*lab.enter(host), sys.executable, "-c", code], capture_output=True, timeout=10, check=False
    )
    return out.returncode == 0


@pytest.fixture
def containers(lab: Lab) -> Iterator[list[tuple[str, str]]]:
    """(host, container id) pairs started by a test; removed afterwards whatever happens."""
    started: list[tuple[str, str]] = []
    yield started
    for host, cid in started:
        try:
            lab.heal(host)
            lab.start_docker(host)
            lab.docker(host, "rm", "-f", cid)
        except LabError:
            pass


def run_httpd(
    lab: Lab, host: str, port: int, started: list[tuple[str, str]], extra: tuple[str, ...] = ()
) -> str:
    cid = lab.docker(host, "run", "-d", "-p", f"{port}:8080", *extra, lab.image("httpd")).strip()
    started.append((host, cid))
    return cid


# ---- bad input, no root needed ------------------------------------------------------------


def test_preflight_says_what_to_install() -> None:
    problems = preflight(euid=1000, which=lambda _binary: None)
    assert any("root" in p and "sudo" in p for p in problems)
    assert any(
        "apt-get install -y" in p and "docker.io" in p and "docker-registry" in p for p in problems
    )
    assert preflight(euid=0, which=lambda b: f"/usr/bin/{b}") == []


def test_up_without_root_fails_with_advice(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["lab", "up", "--dir", str(tmp_path / "lab")]) == 1
    err = capsys.readouterr().err
    assert "needs root" in err and "Traceback" not in err
    assert not (tmp_path / "lab").exists()


def test_verb_on_unknown_host_names_known_hosts(capsys: pytest.CaptureFixture[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="dyk-t") as lab_dir:
        st.save(st.new_state(lab_dir, index=7, hosts=3))
        for verb in ("kill-agent", "partition", "stop-docker"):
            assert main(["lab", verb, "h9", "--dir", lab_dir]) == 1
            err = capsys.readouterr().err
            assert "unknown host 'h9'" in err and "h1, h2, h3" in err
            assert "Traceback" not in err


def test_bad_lab_parameters_name_the_flag() -> None:
    with pytest.raises(LabError, match="--dir"):
        st.new_state("/tmp/" + "x" * 80, 0, 3)
    with pytest.raises(LabError, match="--hosts"):
        st.new_state("/tmp/lab", 0, 0)
    with pytest.raises(LabError, match="--index"):
        st.new_state("/tmp/lab", 300, 3)


def test_controller_verbs_name_the_controllers(capsys: pytest.CaptureFixture[str]) -> None:
    """With several controllers a controller verb needs a NAME and names the known ones;
    with one, the etcd verbs say there is no controller node; --controllers 2 is refused
    (etcd's quorum)."""
    with pytest.raises(LabError, match="--controllers"):
        st.new_state("/tmp/lab", 0, 3, controllers=2)
    with tempfile.TemporaryDirectory(prefix="dyk-t") as lab_dir:
        st.save(st.new_state(lab_dir, index=7, hosts=3, controllers=3))
        for argv, said in (
            (["kill-controller"], "name one (c1, c2, c3)"),
            (["kill-controller", "c7"], "unknown controller 'c7'"),
            (["kill-etcd", "c9"], "c1, c2, c3"),
        ):
            assert main(["lab", *argv, "--dir", lab_dir]) == 1
            err = capsys.readouterr().err
            assert said in err and "Traceback" not in err, err
    with tempfile.TemporaryDirectory(prefix="dyk-t") as lab_dir:
        st.save(st.new_state(lab_dir, index=7, hosts=3))
        assert main(["lab", "kill-etcd", "c1", "--dir", lab_dir]) == 1
        assert "one controller" in capsys.readouterr().err


def test_status_without_lab_says_how_to_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lab", "status", "--dir", str(tmp_path)]) == 1
    assert "dockyard lab up" in capsys.readouterr().err


# ---- verify: the pure comparison ----------------------------------------------------------

ARN = "arn:aws:ecs:us-east-1:000000000000:"


def task(
    tid: str,
    instance: str = "i1",
    last: str = "RUNNING",
    desired: str = "RUNNING",
    group: str = "family:web",
    runtime: str = "",
) -> dict[str, Any]:
    return {
        "taskArn": f"{ARN}task/default/{tid}",
        "lastStatus": last,
        "desiredStatus": desired,
        "group": group,
        "containerInstanceArn": f"{ARN}container-instance/default/{instance}",
        "containers": [{"name": "web", "lastStatus": last, "runtimeId": runtime}],
    }


def seen(
    tid: str,
    host: str = "h1",
    instance: str = "i1",
    running: bool = True,
    cid: str = "",
    cluster: str = "default",
) -> SeenContainer:
    return SeenContainer(
        host=host,
        id=cid or f"c-{tid}-{host}",
        task_arn=f"{ARN}task/default/{tid}",
        cluster=cluster,
        name="web",
        instance_id=instance,
        running=running,
        state="running" if running else "exited",
    )


def service(name: str, desired: int, maximum: int = 200) -> dict[str, Any]:
    return {
        "serviceName": name,
        "desiredCount": desired,
        "deploymentConfiguration": {"maximumPercent": maximum},
        "deployments": [{"status": "PRIMARY", "desiredCount": desired}],
    }


def kinds(report: Any) -> list[str]:
    return sorted(f.kind for f in report.findings)


def test_audit_clean_cluster() -> None:
    report = audit(
        "default",
        [task("a", runtime="abc123"), task("b", "i2")],
        [seen("a", cid="abc123def"), seen("b", "h2", "i2")],
        [],
        ["h1", "h2"],
    )
    assert report.findings == [] and report.exit_code == 0
    assert "OK" in report.render()


def test_audit_orphans_unknown_stopped_and_misplaced() -> None:
    tasks = [task("gone", last="STOPPED", desired="STOPPED"), task("moved", "i2")]
    report = audit(
        "default",
        tasks,
        [seen("ghost"), seen("gone"), seen("moved", "h1", "i1"), seen("moved", "h2", "i2")],
        [],
        ["h1", "h2"],
    )
    orphans = {
        (f.task_arn.rsplit("/", 1)[1], f.host) for f in report.findings if f.kind == "orphan"
    }
    assert orphans == {("ghost", "h1"), ("gone", "h1"), ("moved", "h1")}
    assert report.exit_code == 1 and "ORPHAN (3)" in report.render()


def test_audit_missing_when_absent_or_exited_but_not_when_stopping() -> None:
    tasks = [task("absent"), task("exited"), task("stopping", desired="STOPPED")]
    report = audit("default", tasks, [seen("exited", running=False)], [], ["h1"])
    missing = sorted(f.task_arn.rsplit("/", 1)[1] for f in report.findings)
    assert kinds(report) == ["missing", "missing"] and missing == ["absent", "exited"]
    assert "exited" in report.render()


def test_audit_unreachable_host_is_unverified_not_missing() -> None:
    report = audit(
        "default",
        [task("a", "i1"), task("b", "i2")],
        [seen("b", "h2", "i2")],
        [],
        ["h1", "h2"],
        unreachable=["h1"],
        instance_hosts={"i1": "h1"},
    )
    assert kinds(report) == ["unverified"] and report.exit_code == 2


def test_audit_duplicates_beyond_maximum_percent() -> None:
    group = "service:web"
    tasks = [task(t, group=group) for t in ("a", "b", "c")]
    running = [seen(t) for t in ("a", "b", "c")]
    over = audit("default", tasks, running, [service("web", 1)], ["h1"])  # allows 2
    assert kinds(over) == ["duplicate"] and "allows 2" in over.findings[0].detail
    within = audit("default", tasks, running, [service("web", 2, 150)], ["h1"])  # allows 3
    assert within.findings == []


def test_audit_counts_copies_on_unreachable_hosts_and_notes_missing_services() -> None:
    group = "service:web"
    tasks = [task("a", "i1", group=group), task("b", "i2", group=group)]
    report = audit(
        "default",
        tasks,
        [seen("a")],
        [service("web", 1, 100)],
        ["h1", "h2"],
        unreachable=["h2"],
        instance_hosts={"i2": "h2"},
    )
    assert "duplicate" in kinds(report)
    no_services = audit("default", tasks, [seen("a"), seen("b", "h2", "i2")], None, ["h1", "h2"])
    assert any("duplicates not checked" in n for n in no_services.notes)


def test_audit_ignores_other_clusters() -> None:
    report = audit("default", [], [seen("x", cluster="other")], [], ["h1"])
    assert report.findings == [] and report.containers_seen == 0


# ---- the lab ------------------------------------------------------------------------------


@pytest.mark.lab
@pytest.mark.docker
def test_every_host_runs_its_own_engine_in_its_namespace(lab: Lab) -> None:
    assert len(lab.hosts) >= 3 and {h.zone for h in lab.hosts} == {"a", "b", "c"}
    ids = set()
    for host in lab.hosts:
        assert DockerApi(host.docker_host).ping(), host.name
        ids.add(json.loads(lab.docker(host.name, "info", "--format", "{{json .ID}}")))
        dockerd = host.dockerd
        assert dockerd is not None
        assert os.stat(f"/proc/{dockerd.pid}/ns/net").st_ino == os.stat(host.netns_path).st_ino
    assert len(ids) == len(lab.hosts)


@pytest.mark.lab
@pytest.mark.docker
def test_sample_images_pull_from_every_host(lab: Lab) -> None:
    for name in ("httpd", "sleeper", "crasher", "stubborn"):
        for host in lab.hosts:
            lab.docker(host.name, "pull", "-q", lab.image(name))


@pytest.mark.lab
@pytest.mark.docker
def test_published_port_answers_at_host_address(lab: Lab, containers: list) -> None:
    for host in lab.hosts:
        run_httpd(lab, host.name, 18080, containers)
    for host in lab.hosts:
        url = f"http://{host.address}:18080/"
        body = wait_for(partial(http_get, url), what=f"httpd on {host.name}")
        assert body.strip() == "ok"
    first, last = lab.hosts[0], lab.hosts[-1]
    assert tcp_open_from(lab, first.name, last.address, 18080), "host-to-host traffic"


def _controller_ready() -> bool:
    from dockyard.lab.control import available

    return available()


@pytest.mark.lab
@pytest.mark.docker
@pytest.mark.skipif(not _controller_ready(), reason="controller/agent not written yet")
def test_a_task_on_each_host_answers_on_its_published_port(lab: Lab) -> None:
    n = len(lab.hosts)
    with lab.client() as client:
        client.call(
            "RegisterTaskDefinition",
            {
                "family": "lab-web",
                "containerDefinitions": [
                    {
                        "name": "web",
                        "image": lab.image("httpd"),
                        "memory": 32,
                        "essential": True,
                        "portMappings": [{"containerPort": 8080, "hostPort": 0}],
                    }
                ],
            },
        )
        run = client.call(
            "RunTask",
            {
                "cluster": lab.cluster,
                "taskDefinition": "lab-web",
                "count": n,
                "placementConstraints": [{"type": "distinctInstance"}],
            },
        )
        arns = [t["taskArn"] for t in run["tasks"]]
        try:

            def running() -> list[dict[str, Any]] | None:
                tasks = client.call("DescribeTasks", {"cluster": lab.cluster, "tasks": arns})[
                    "tasks"
                ]
                return tasks if all(t["lastStatus"] == "RUNNING" for t in tasks) else None

            tasks = wait_for(running, timeout=60, what="tasks RUNNING")
            hosts_used = set()
            for t in tasks:
                host = next(
                    h
                    for h in lab.hosts
                    if lab.docker(
                        h.name, "ps", "-q", "--filter", f"label={labels.TASK_ARN}={t['taskArn']}"
                    ).strip()
                )
                hosts_used.add(host.name)
                port = t["containers"][0]["networkBindings"][0]["hostPort"]
                url = f"http://{host.address}:{port}/"
                body = wait_for(partial(http_get, url), what=f"task on {host.name}")
                assert body.strip() == "ok"
            assert len(hosts_used) == n
        finally:
            for arn in arns:
                client.call("StopTask", {"cluster": lab.cluster, "task": arn})


@pytest.mark.lab
@pytest.mark.docker
def test_partition_cuts_the_host_off_and_heal_restores_it(lab: Lab, containers: list) -> None:
    victim, other = lab.hosts[-1], lab.hosts[0]
    cid = run_httpd(lab, victim.name, 18081, containers)
    wait_for(lambda: tcp_open(victim.address, 18081), what="port before partition")
    try:
        lab.partition(victim.name)
        assert not tcp_open(victim.address, 18081), "root namespace still reaches it"
        assert not tcp_open_from(lab, other.name, victim.address, 18081), "hosts still reach it"
        assert not tcp_open_from(lab, victim.name, lab.registry.split(":")[0], 5000)
        status = {h["name"]: h for h in Lab.open(lab.dir).status()["hosts"]}
        assert status[victim.name]["partitioned"] and not status[other.name]["partitioned"]
        state = json.loads(lab.docker(victim.name, "inspect", "--format", "{{json .State}}", cid))
        assert state["Running"], "the partitioned host keeps running its containers"
    finally:
        lab.heal(victim.name)
    wait_for(lambda: tcp_open(victim.address, 18081), what="port after heal")
    assert tcp_open_from(lab, other.name, victim.address, 18081)


@pytest.mark.lab
@pytest.mark.docker
def test_stop_and_start_docker(lab: Lab) -> None:
    host = lab.hosts[1]
    try:
        assert main(["lab", "stop-docker", host.name, "--dir", lab.dir]) == 0
        assert not DockerApi(host.docker_host).ping()
        status = {h["name"]: h for h in Lab.open(lab.dir).status()["hosts"]}
        assert status[host.name]["docker"] == "stopped"
    finally:
        assert main(["lab", "start-docker", host.name, "--dir", lab.dir]) == 0
    assert DockerApi(host.docker_host).ping()
    lab.state = st.load(lab.dir)  # the verb ran from "another process": pick up the new pid


@pytest.mark.lab
@pytest.mark.docker
@pytest.mark.skipif(not _controller_ready(), reason="controller/agent not written yet")
def test_kill_and_start_agent_and_controller(lab: Lab) -> None:
    host = lab.hosts[0]
    lab.kill_agent(host.name)
    assert Lab.open(lab.dir).status()["hosts"][0]["agent"] == "dead"
    lab.start_agent(host.name)
    wait_for(
        lambda: Lab.open(lab.dir).status()["hosts"][0]["connected"],
        timeout=30,
        what="agent reconnected",
    )
    lab.kill_controller()
    address, port = lab.controller_address.rsplit(":", 1)
    assert not tcp_open(address, int(port))
    lab.start_controller()
    with lab.client() as client:
        client.call("ListClusters", {})


@pytest.mark.lab
@pytest.mark.docker
@pytest.mark.skipif(not _controller_ready(), reason="controller/agent not written yet")
def test_verify_flags_a_container_the_controller_does_not_know(
    lab: Lab, containers: list, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", "--lab-dir", lab.dir]) in (0, 2)
    capsys.readouterr()
    ghost = f"{ARN}task/{lab.cluster}/ghost"
    cid = lab.docker(
        lab.hosts[0].name,
        "run",
        "-d",
        "--label",
        f"{labels.TASK_ARN}={ghost}",
        "--label",
        f"{labels.CLUSTER}={lab.cluster}",
        lab.image("sleeper"),
    ).strip()
    containers.append((lab.hosts[0].name, cid))
    assert main(["verify", "--lab-dir", lab.dir, "--output", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [f["task_arn"] for f in report["findings"] if f["kind"] == "orphan"] == [ghost]


# ---- teardown -----------------------------------------------------------------------------


def leftovers(lab_dir: str, index: int) -> list[str]:
    prefix = st.naming_prefix(index)
    left = [
        f"netns {n}"
        for n in subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True
        ).stdout.split()
        if n.startswith(f"{prefix}-h")
    ]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    left += [
        f"link {line.split(':')[1].strip()}"
        for line in links.splitlines()
        if line.split(":")[1].strip().split("@")[0]
        in {f"dyk{index}", *(f"{prefix}-h{n}" for n in range(1, 9))}
    ]
    left += [
        f"mount {line.split()[1]}"
        for line in Path("/proc/mounts").read_text().splitlines()
        if lab_dir in line
    ]
    for daemon in ("dockerd", "containerd", "docker-registry"):
        out = subprocess.run(
            ["pgrep", "-f", f"{daemon}.*{lab_dir}/"], capture_output=True, text=True
        ).stdout.split()
        left += [f"{daemon} pid {p}" for p in out]
    left += [f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob(f"*/{prefix}-h*")]
    rules = subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True).stdout
    left += [f"iptables {r}" for r in rules.splitlines() if f"dockyard-lab-{index} " in r + " "]
    if Path(lab_dir).exists():
        left.append(f"dir {lab_dir}")
    return left


@pytest.mark.lab
@pytest.mark.docker
@pytest.mark.parametrize("how", ["complete", "half-failed"])
def test_down_leaves_nothing_behind(how: str) -> None:
    if preflight():
        pytest.skip("; ".join(preflight()))
    index, lock = acquire_index()
    lab_dir = f"/tmp/dyk-lab{index}"
    try:
        Lab.down(lab_dir, index)
        if how == "half-failed":  # h2's data-root cannot be created: up stops half-way
            Path(lab_dir, "h2").mkdir(parents=True)
            Path(lab_dir, "h2", "data").write_text("in the way")
            with pytest.raises(LabError, match="h2"):
                Lab.up(hosts=2, lab_dir=lab_dir, index=index, control_plane=False)
            busy = Lab(st.load(lab_dir)).host("h1")
        else:
            busy = Lab.up(hosts=2, lab_dir=lab_dir, index=index, control_plane=False).host("h1")
        # a container with a published port: shims, docker-proxy, overlay and netns mounts
        out = subprocess.run(
            [
                "docker",
                "-H",
                busy.docker_host,
                "run",
                "-d",
                "-p",
                "18082:8080",
                "dockyard/busybox:latest",
                "sleep",
                "300",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert leftovers(lab_dir, index), "the lab should exist before down"
        assert Lab.down(lab_dir, index) == []
        assert leftovers(lab_dir, index) == []
        assert Lab.down(lab_dir, index) == []  # idempotent
    finally:
        Lab.down(lab_dir, index)
        lock.close()
