"""The operator CLI against a real controller and agent on the machine's dockerd.

Commands run in-process through dockyard.cli.main.main (output captured with capsys), and
as subprocesses where Ctrl-C matters (`events -f`, `logs -f`).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dockyard.cli import output
from dockyard.cli.main import main
from dockyard.cli.tasks import placement_constraints, placement_strategies
from dockyard.errors import ApiError
from tests.support import CLI_AT_A_TERMINAL, LocalCluster, docker, free_port, wait_for

ECHO = {
    "family": "echo",
    "containerDefinitions": [
        {
            "name": "main",
            "image": "dockyard/busybox:latest",
            "memory": 32,
            "stopTimeout": 2,
            "command": ["sh", "-c", "echo hello-from-task; sleep 30"],
            "portMappings": [{"containerPort": 8080, "hostPort": 0}],
        }
    ],
}


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Cli = Callable[..., Result]


@pytest.fixture
def dy(cluster: LocalCluster, capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run `dockyard ARGS --controller <the test controller>` in-process."""

    def run(*argv: str) -> Result:
        capsys.readouterr()
        code = main([*argv, "--controller", cluster.address])
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def echo_file(tmp_path: Path) -> str:
    path = tmp_path / "echo.json"
    path.write_text(json.dumps(ECHO, indent=2))
    return str(path)


def rows(table: str) -> list[list[str]]:
    """A rendered table's data rows, split into cells (cells hold no double spaces)."""
    return [re.split(r"\s{2,}", line.strip()) for line in table.strip().splitlines()[1:]]


def run_echo(dy: Cli, echo_file: str, *extra: str) -> dict[str, Any]:
    assert dy("task-definitions", "register", echo_file).code == 0
    res = dy("run", "echo", "--wait", "--output", "json", *extra)
    assert res.code == 0, res.err
    task: dict[str, Any] = res.json()["tasks"][0]
    assert task["lastStatus"] == "RUNNING"
    return task


# ---------------------------------------------------------------- pure rendering and parsing


def test_placement_flags_become_ecs_shapes() -> None:
    assert placement_constraints(["distinctInstance", "memberOf(attribute:zone == b)"]) == [
        {"type": "distinctInstance"},
        {"type": "memberOf", "expression": "attribute:zone == b"},
    ]
    assert placement_strategies(["spread:attribute:zone", "binpack:memory", "random"]) == [
        {"type": "spread", "field": "attribute:zone"},
        {"type": "binpack", "field": "memory"},
        {"type": "random"},
    ]
    for bad in ("memberOf()", "zone == b", "distinct"):
        with pytest.raises(ApiError, match="--constraint"):
            placement_constraints([bad])
    for bad in ("binpack", "random:cpu", "pack:memory"):
        with pytest.raises(ApiError, match="--strategy"):
            placement_strategies([bad])


def test_tables_show_ages_short_ids_and_dashes() -> None:
    assert output.age(100.0, now=112.5) == "12s ago"
    assert output.age(0.0) == ""
    assert output.age(1000.0, now=1000.0 + 3 * 3600 + 5) == "3h ago"
    assert output.short_task("arn:aws:ecs:r:1:task/default/0123456789abcdef0123") == "0123456789ab"
    assert output.taskdef_name("arn:aws:ecs:r:1:task-definition/web:3") == "web:3"
    bindings = [
        {"hostPort": 49153, "containerPort": 80, "protocol": "tcp", "bindIP": "0.0.0.0"},
        {"hostPort": 49153, "containerPort": 80, "protocol": "tcp", "bindIP": "::"},
    ]
    assert output.ports(bindings) == "49153->80/tcp"
    assert output.short_list(["1", "2", "3", "4"]) == "4 (1,2,3,…)"
    table = output.table(("id", "note"), [["007", None], ["x", ""]])
    assert rows(table) == [["007", "-"], ["x", "-"]]


# ---------------------------------------------------------------- task definitions and errors


@pytest.mark.docker
def test_register_definition_from_file(dy: Cli, echo_file: str, tmp_path: Path) -> None:
    res = dy("task-definitions", "register", echo_file)
    assert res.code == 0
    assert "echo:1" in res.out and "dockyard/busybox:latest" in res.out

    bad = tmp_path / "bad.json"
    bad.write_text('{"family": "bad",\n "containerDefinitions": [\n  {"name": "a" "image": "b"}]}')
    res = dy("task-definitions", "register", str(bad))
    assert res.code == 1
    assert str(bad) in res.err and "not valid JSON" in res.err
    assert "line 3 column 16" in res.err

    listed = dy("task-definitions", "list", "--output", "json").json()
    assert [output.taskdef_name(a) for a in listed["taskDefinitionArns"]] == ["echo:1"]
    assert [r[0] for r in rows(dy("task-definitions", "list").out)] == ["echo:1"]

    described = dy("task-definitions", "describe", "echo", "--output", "json").json()
    assert described["taskDefinition"]["containerDefinitions"][0]["memory"] == 32
    # what `describe` printed registers again as revision 2
    again = tmp_path / "again.json"
    again.write_text(json.dumps(described))
    assert "echo:2" in dy("task-definitions", "register", str(again)).out
    assert "INACTIVE" in dy("task-definitions", "deregister", "echo:1").out


@pytest.mark.docker
def test_errors_are_one_clear_line(dy: Cli, echo_file: str, tmp_path: Path) -> None:
    res = dy("run", "no-such-family")
    assert res.code == 1 and res.out == ""
    assert res.err.startswith("ClientException:") and "no-such-family" in res.err

    res = dy("task-definitions", "register", str(tmp_path / "missing.json"))
    assert res.code == 1 and "cannot read" in res.err and "missing.json" in res.err

    dy("task-definitions", "register", echo_file)
    res = dy("run", "echo", "--env", "NOEQUALS")
    assert res.code == 1 and "--env" in res.err and "NAME=VALUE" in res.err
    res = dy("run", "echo", "--constraint", "memberOf(attribute:zone = = b)")
    assert res.code == 1 and "placementConstraints[0].expression" in res.err
    res = dy("tasks", "describe", "feedface")
    assert res.code == 1 and "feedface" in res.err


@pytest.mark.docker
def test_unreachable_controller_names_the_address(capsys: pytest.CaptureFixture[str]) -> None:
    address = f"127.0.0.1:{free_port()}"
    assert main(["tasks", "list", "--controller", address]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ConnectionError:") and address in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- tasks


@pytest.mark.docker
def test_run_wait_and_task_tables(dy: Cli, cluster: LocalCluster, echo_file: str) -> None:
    dy("task-definitions", "register", echo_file)
    res = dy("run", "echo", "--wait", "--count", "2", "--env", "GREETING=hi")
    assert res.code == 0, res.err
    ran = rows(res.out)
    assert len(ran) == 2 and all(r[1:4] == ["echo:1", "RUNNING", "RUNNING"] for r in ran)

    listed = dy("tasks", "list").out
    by_id = {r[0]: r for r in rows(listed)}
    assert set(by_id) == {r[0] for r in ran}
    iid = cluster.instance_id("a1")
    for row in by_id.values():
        assert len(row[0]) == 12 and row[4] == iid and re.fullmatch(r"\d+->8080/tcp", row[7])

    tasks = dy("tasks", "list", "--output", "json").json()["tasks"]
    assert {t["taskArn"].rsplit("/", 1)[1][:12] for t in tasks} == set(by_id)
    for t in tasks:
        env = docker("inspect", "-f", "{{json .Config.Env}}", t["containers"][0]["runtimeId"])
        assert "GREETING=hi" in json.loads(env)

    short = ran[0][0]
    res = dy("tasks", "describe", short)
    assert res.code == 0
    assert re.search(r"status:\s+RUNNING \(desired RUNNING\)", res.out)
    assert re.search(r"main\s+dockyard/busybox:latest\s+RUNNING", res.out)
    described = dy("tasks", "describe", short, "--output", "json").json()
    assert described["failures"] == [] and described["tasks"][0]["lastStatus"] == "RUNNING"
    assert dy("tasks", "list", "--family", "other").out.strip().startswith("TASK")
    assert len(rows(dy("tasks", "list", "--instance", "a1").out)) == 2


@pytest.mark.docker
def test_stop_wait_shows_exit_code_and_stop_code(dy: Cli, echo_file: str) -> None:
    task = run_echo(dy, echo_file)
    short = output.short_task(task["taskArn"])
    res = dy("stop", short, "--wait", "--reason", "maintenance window")
    assert res.code == 0, res.err
    assert re.search(r"status:\s+STOPPED \(desired STOPPED\)", res.out)
    assert re.search(r"stop code:\s+UserInitiated", res.out)
    assert re.search(r"stopped reason:\s+maintenance window", res.out)
    assert re.search(r"main\s+dockyard/busybox:latest\s+STOPPED\s+137", res.out)

    stopped = rows(dy("tasks", "list", "--desired-status", "STOPPED").out)
    assert [r[:3] for r in stopped] == [[short, "echo:1", "STOPPED"]]
    assert rows(dy("tasks", "list").out) == []
    full = dy("tasks", "describe", task["taskArn"], "--output", "json").json()["tasks"][0]
    assert full["stopCode"] == "UserInitiated" and full["containers"][0]["exitCode"] == 137


# ---------------------------------------------------------------- instances and attributes


@pytest.mark.docker
def test_instances_list_shows_registered_and_remaining(
    dy: Cli, cluster: LocalCluster, echo_file: str
) -> None:
    ci = dy("instances", "list", "--output", "json").json()["containerInstances"][0]
    reg = {r["name"]: r.get("integerValue") for r in ci["registeredResources"]}
    [row] = rows(dy("instances", "list").out)
    assert row[:6] == [
        cluster.instance_id("a1"), "a1", "ACTIVE", "yes",
        f"{reg['CPU']}/{reg['CPU']}", f"{reg['MEMORY']}/{reg['MEMORY']}",
    ]  # fmt: skip
    assert row[7] == "0" and "zone=a" in row[8]

    task = run_echo(dy, echo_file)
    port = task["containers"][0]["networkBindings"][0]["hostPort"]
    [row] = rows(dy("instances", "list").out)
    assert row[5] == f"{reg['MEMORY'] - 32}/{reg['MEMORY']}"
    assert row[6] == str(port) and row[7] == "1"
    res = dy("instances", "describe", "a1")
    assert res.code == 0 and re.search(rf"MEMORY\s+{reg['MEMORY']}\s+{reg['MEMORY'] - 32}", res.out)
    assert output.short_task(task["taskArn"]) in res.out


@pytest.mark.docker
def test_attributes_put_list_delete(dy: Cli, cluster: LocalCluster) -> None:
    iid = cluster.instance_id("a1")
    res = dy("attributes", "put", iid[:8], "rack=r7", "tier=gold")
    assert res.code == 0 and rows(res.out) == [[iid, "rack", "r7"], [iid, "tier", "gold"]]
    assert rows(dy("attributes", "list", "--name", "rack").out) == [[iid, "rack", "r7"]]
    assert "rack=r7" in rows(dy("instances", "list").out)[0][8]

    res = dy("attributes", "delete", "a1", "rack")
    assert res.code == 0 and rows(res.out) == [[iid, "rack"]]
    assert rows(dy("attributes", "list", "--name", "rack").out) == []
    listed = dy("attributes", "list", "--output", "json").json()["attributes"]
    assert {"tier", "zone", "dockyard.hostname"} <= {a["name"] for a in listed}

    res = dy("attributes", "put", "a1", "novalue")
    assert res.code == 1 and "NAME=VALUE" in res.err


@pytest.mark.docker
def test_drain_and_activate(dy: Cli, cluster: LocalCluster, echo_file: str) -> None:
    dy("task-definitions", "register", echo_file)
    res = dy("instances", "drain", "a1")
    assert res.code == 0 and rows(res.out)[0][2] == "DRAINING"
    assert rows(dy("instances", "list", "--status", "DRAINING").out)[0][1] == "a1"

    res = dy("run", "echo")
    assert res.code == 1 and "not placed: DRAINING" in res.err

    res = dy("instances", "activate", cluster.instance_id("a1"))
    assert res.code == 0 and rows(res.out)[0][2] == "ACTIVE"
    assert dy("run", "echo").code == 0

    res = dy("instances", "deregister", "a1")
    assert res.code == 1 and "force" in res.err
    res = dy("instances", "deregister", "a1", "--force")
    assert res.code == 0 and rows(res.out)[0][2] == "INACTIVE"
    assert rows(dy("instances", "list").out) == []


# ---------------------------------------------------------------- logs and events


@dataclass
class Follower:
    """A `dockyard ... -f` subprocess whose output lines are collected as they come."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, pattern: str, timeout: float = 20) -> str:
        def find() -> str | None:
            return next((ln for ln in self.lines if re.search(pattern, ln)), None)

        line = wait_for(find, timeout, what=f"a line matching {pattern!r}")
        assert line is not None
        return line

    def interrupt(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=20)
        return self.proc.returncode, err


@pytest.fixture
def follow(cluster: LocalCluster) -> Iterator[Callable[..., Follower]]:
    started: list[Follower] = []

    def start(*argv: str) -> Follower:
        proc = subprocess.Popen(
            [*CLI_AT_A_TERMINAL, *argv, "--controller", cluster.address],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(Follower(proc))
        return started[-1]

    yield start
    for f in started:
        if f.proc.poll() is None:
            f.proc.kill()
            f.proc.communicate(timeout=20)


@pytest.mark.docker
def test_logs_of_a_task(dy: Cli, echo_file: str, follow: Callable[..., Follower]) -> None:
    task = run_echo(dy, echo_file)
    short = output.short_task(task["taskArn"])
    res = wait_for(
        lambda: (lambda r: r if "hello-from-task" in r.out else None)(dy("logs", short)),
        20,
        what="the task's output",
    )
    assert res is not None
    assert res.out == "hello-from-task\n" and res.code == 0
    assert dy("logs", short, "--tail", "1", "--container", "main").out == "hello-from-task\n"
    res = dy("logs", short, "--container", "nope")
    assert res.code == 1 and "nope" in res.err

    follower = follow("logs", "-f", short)
    follower.wait_line("^hello-from-task$")
    code, err = follower.interrupt()
    assert code == 130 and err == ""


@pytest.mark.docker
def test_events_show_the_lifecycle(
    dy: Cli, echo_file: str, follow: Callable[..., Follower]
) -> None:
    task = run_echo(dy, echo_file)
    short = output.short_task(task["taskArn"])
    follower = follow("events", "-f")
    follower.wait_line(rf"task {short}  lastStatus PENDING → RUNNING")
    assert dy("stop", short, "--wait").code == 0
    follower.wait_line(rf"task {short}  lastStatus \w+ → STOPPED")
    code, err = follower.interrupt()
    assert code == 130 and err == ""

    lines = dy("events", short).out.strip().splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}"
    assert all(re.match(rf"{stamp}  task {short}  ", ln) for ln in lines)
    messages = [ln.split(f"task {short}  ", 1)[1] for ln in lines]
    order = [
        "task placed on",
        "lastStatus PENDING → RUNNING",
        "stop requested",
        "container main exited with code 137",
        "→ STOPPED",
    ]
    positions = [next(i for i, m in enumerate(messages) if want in m) for want in order]
    assert positions == sorted(positions), messages  # newest last
    as_json = [json.loads(ln) for ln in dy("events", short, "-o", "json").out.splitlines()]
    assert [e["message"] for e in as_json] == messages


# ---------------------------------------------------------------- clusters and services


@pytest.mark.docker
def test_clusters(dy: Cli) -> None:
    assert dy("clusters", "create", "blue").code == 0
    names = [r[0] for r in rows(dy("clusters", "list").out)]
    assert {"default", "blue"} <= set(names)
    assert "blue" in dy("clusters", "describe", "--cluster", "blue").out
    assert rows(dy("instances", "list", "--cluster", "blue").out) == []
    assert dy("clusters", "delete", "blue").code == 0
    assert "blue" not in [r[0] for r in rows(dy("clusters", "list").out)]


def _services_supported(cluster: LocalCluster) -> None:
    try:
        cluster.client().call("ListServices", {})
    except ApiError as err:
        if "not supported" in err.message:
            pytest.skip(
                "the controller does not implement services yet (CreateService, "
                f"ListServices answer: {err.message})"
            )
        raise


@pytest.mark.docker
def test_services_create_scale_and_delete(dy: Cli, cluster: LocalCluster, echo_file: str) -> None:
    _services_supported(cluster)
    dy("task-definitions", "register", echo_file)
    res = dy("services", "create", "web", "--task-definition", "echo", "--desired-count", "2")
    assert res.code == 0, res.err
    assert rows(res.out)[0][:4] == ["web", "ACTIVE", "echo:1", "2"]
    res = dy("services", "wait-steady", "web", "--timeout", "60")
    assert res.code == 0, res.err
    assert rows(res.out)[0][3:5] == ["2", "2"]
    assert len(rows(dy("tasks", "list", "--service", "web").out)) == 2

    [row] = rows(dy("services", "list").out)
    assert row[:5] == ["web", "ACTIVE", "echo:1", "2", "2"]
    described = dy("services", "describe", "web")
    assert re.search(r"PRIMARY\s+echo:1\s+2\s+2", described.out)
    events = dy("services", "events", "web", "-o", "json").json()["events"]
    assert events and "steady state" in events[0]["message"]  # newest first
    stamps = [e["createdAt"] for e in events]
    assert stamps == sorted(stamps, reverse=True)

    assert dy("services", "update", "web", "--desired-count", "0").code == 0
    assert dy("services", "wait-steady", "web", "--timeout", "60").code == 0
    assert rows(dy("tasks", "list", "--service", "web").out) == []
    res = dy("services", "delete", "web")
    assert res.code == 0 and rows(res.out)[0][1] in ("DRAINING", "INACTIVE")
    res = dy("services", "update", "web")
    assert res.code == 1 and "nothing to change" in res.err


@pytest.mark.docker
def test_logs_of_several_containers_are_prefixed(dy: Cli, tmp_path: Path) -> None:
    def container(name: str, script: str, essential: bool) -> dict[str, Any]:
        return {
            "name": name,
            "image": "dockyard/busybox:latest",
            "memory": 32,
            "stopTimeout": 2,
            "essential": essential,
            "command": ["sh", "-c", f"{script}; sleep 30"],
        }

    path = tmp_path / "two.json"
    path.write_text(json.dumps({"family": "two", "containerDefinitions": [
        container("web", "echo one; echo two", True),
        container("side", "echo side-line", False),
    ]}))  # fmt: skip
    assert dy("task-definitions", "register", str(path)).code == 0
    task = dy("run", "two", "--wait", "-o", "json").json()["tasks"][0]
    want = {"web | one", "web | two", "side | side-line"}

    def all_lines() -> Result | None:
        res = dy("logs", task["taskArn"])
        return res if set(res.out.splitlines()) == want else None

    res = wait_for(all_lines, 20, what="both containers' output")
    assert res is not None and res.out.endswith("\n")
    assert dy("logs", task["taskArn"], "--container", "web").out == "one\ntwo\n"
