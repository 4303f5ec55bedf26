"""`dockyard exec` (issue 20) against a real controller, agent and dockerd.

The CLI runs as a subprocess (stdin, signals and terminals are the point), on a pipe or on
a real pseudo-terminal; the ECS ExecuteCommand path is called with real boto3.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError

from dockyard import auth
from tests.support import CLI_AT_A_TERMINAL, LocalCluster, aws_client, docker, wait_for

SLEEPER = {
    "family": "sleeper",
    "containerDefinitions": [
        {
            "name": "main",
            "image": "dockyard/busybox:latest",
            "memory": 32,
            "stopTimeout": 2,
            "command": ["sleep", "600"],
        }
    ],
}
NOT_ENABLED = "execute command was not enabled when the task was run"


@dataclass
class Done:
    code: int
    out: bytes
    err: str


def cli_argv(cluster: LocalCluster, verb: str, *argv: str) -> list[str]:
    """`dockyard VERB --controller ADDR ARGS` (exec's command takes everything after it)."""
    return [*CLI_AT_A_TERMINAL, verb, "--controller", cluster.address, *argv]


def key_env(creds: auth.Credentials | None) -> dict[str, str]:
    env = dict(os.environ)
    if creds is not None:
        env[auth.ACCESS_KEY_ENV] = creds.access_key_id
        env[auth.SECRET_KEY_ENV] = creds.secret_access_key
    return env


@pytest.fixture
def dyx(cluster: LocalCluster) -> Callable[..., Done]:
    """`dockyard exec ...` as a subprocess: stdin piped from `stdin`."""

    def run(*argv: str, stdin: bytes = b"", creds: auth.Credentials | None = None) -> Done:
        proc = subprocess.run(
            cli_argv(cluster, "exec", *argv),
            input=stdin,
            capture_output=True,
            timeout=60,
            env=key_env(creds),
        )
        err = proc.stderr.decode(errors="replace")
        assert "Traceback" not in err
        return Done(proc.returncode, proc.stdout, err)

    return run


def start_task(cluster: LocalCluster, enable: bool = True) -> tuple[str, str]:
    """A running sleeper task: (its ARN, its container's docker id)."""
    c = cluster.client()
    c.call("RegisterTaskDefinition", SLEEPER)
    body: dict[str, Any] = {"taskDefinition": "sleeper"}
    if enable:
        body["enableExecuteCommand"] = True
    arn = c.call("RunTask", body)["tasks"][0]["taskArn"]
    task = cluster.wait_status([arn], "RUNNING")[0]
    assert task["enableExecuteCommand"] is enable
    return arn, task["containers"][0]["runtimeId"]


@pytest.fixture
def task(cluster: LocalCluster) -> str:
    return start_task(cluster)[0]


def processes(docker_id: str) -> str:
    """What runs in the container (docker top: the host's view, no exec needed)."""
    return docker("top", docker_id, "-o", "pid,args")


def exec_events(cluster: LocalCluster, arn: str) -> list[dict[str, Any]]:
    return [
        {"message": e.message, **json.loads(e.detail_json or "{}")}
        for e in cluster.client().watch_events(task=arn)
        if json.loads(e.detail_json or "{}").get("exec")
    ]


def wait_session_started(cluster: LocalCluster, arn: str, n: int = 1) -> None:
    wait_for(
        lambda: len([e for e in exec_events(cluster, arn) if "started" in e["message"]]) >= n,
        20,
        what=f"{n} exec session(s) started",
    )


@pytest.fixture
def spawned(cluster: LocalCluster) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def spawn(*argv: str, **kw: Any) -> subprocess.Popen[bytes]:
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        started.append(subprocess.Popen(cli_argv(cluster, "exec", *argv), **kw))
        return started[-1]

    yield spawn
    for p in started:
        if p.poll() is None:
            p.kill()
        p.communicate(timeout=20)


# ---------------------------------------------------------------- commands, streams, exit codes


@pytest.mark.docker
def test_exec_output_and_exit_codes(dyx: Callable[..., Done], task: str) -> None:
    hello = dyx(task, "--", "echo", "hello", "from", "exec")
    assert (hello.code, hello.out) == (0, b"hello from exec\n"), hello
    both = dyx(task, "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (both.code, both.out, both.err) == (7, b"out\n", "err\n")
    # a container without the command (busybox has no bash): Docker's message, 126/127
    missing = dyx(task, "--", "bash", "-c", "true")
    assert missing.code in (126, 127), missing
    assert "bash" in missing.out.decode() + missing.err
    # large output passes the agent's flow-control window whole
    big = dyx(task, "--", "sh", "-c", "head -c 5000000 /dev/zero")
    assert (big.code, len(big.out)) == (0, 5_000_000)


@pytest.mark.docker
def test_exec_passes_stdin_with_i(dyx: Callable[..., Done], task: str) -> None:
    data = b"".join(b"line %d\n" % i for i in range(20000))
    cat = dyx(task, "-i", "--", "cat", stdin=data)
    assert (cat.code, cat.out) == (0, data)
    counted = dyx(task, "-i", "--", "wc", "-l", stdin=data)
    assert counted.out.split() == [b"20000"]
    without = dyx(task, "--", "cat", stdin=b"not passed on")  # no -i: empty stdin
    assert (without.code, without.out) == (0, b"")


@pytest.mark.docker
def test_bad_input_ends_with_a_clear_message(
    dyx: Callable[..., Done], cluster: LocalCluster, task: str
) -> None:
    unknown = dyx("0" * 32, "--", "true")
    assert unknown.code == 255 and "was not found" in unknown.err
    no_cmd = dyx(task)
    assert no_cmd.code == 1 and "CMD" in no_cmd.err
    wrong = dyx(task, "--container", "nope", "--", "true")
    assert wrong.code == 255 and "no container 'nope'" in wrong.err
    cluster.client().call("StopTask", {"task": task})
    cluster.wait_status([task], "STOPPED")
    stopped = dyx(task, "--", "true")
    assert stopped.code == 255 and "STOPPED" in stopped.err, stopped


# ---------------------------------------------------------------- terminals and Ctrl-C


class Pty:
    """A pseudo-terminal whose slave is the controlling terminal of a spawned CLI."""

    def __init__(self, rows: int, cols: int) -> None:
        self.master, self.slave = os.openpty()
        self.resize(rows, cols)
        self.seen = b""

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def spawn(self, argv: list[str]) -> subprocess.Popen[bytes]:
        def take_terminal() -> None:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        proc = subprocess.Popen(
            argv,
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            start_new_session=True,
            preexec_fn=take_terminal,
        )
        os.close(self.slave)
        return proc

    def read_until(self, text: bytes, timeout: float = 20) -> bytes:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"no {text!r} on the terminal; it shows {self.seen!r}"
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    self.seen += os.read(self.master, 4096)
                except OSError:  # the CLI exited: the slave is closed
                    assert text in self.seen, f"no {text!r}; the terminal showed {self.seen!r}"
        return self.seen

    def close(self) -> None:
        os.close(self.master)


@pytest.fixture
def pty() -> Iterator[Callable[[int, int], Pty]]:
    made: list[Pty] = []

    def make(rows: int, cols: int) -> Pty:
        made.append(Pty(rows, cols))
        return made[-1]

    yield make
    for p in made:
        p.close()


@pytest.mark.docker
def test_tty_gets_the_terminal_size_and_its_changes(
    cluster: LocalCluster, task: str, pty: Callable[[int, int], Pty]
) -> None:
    term = pty(33, 101)
    # Docker before 23 (API 1.42) sizes an exec's terminal only once the command runs: the
    # script waits for the exact size. Not `until stty size`: on a 0 x 0 terminal busybox's
    # stty reports a stale errno and, when that is EINVAL, exits 0 printing nothing, so the
    # script went on to `read` before the size came and the test timed out (issue 20)
    script = (
        'until [ "$(stty size)" = "33 101" ]; do sleep 0.05; done; echo size:33x101; '
        'until [ "$(stty size)" = "40 120" ]; do sleep 0.05; done; echo size:40x120; '
        "read line; echo got:$line"
    )
    proc = term.spawn(cli_argv(cluster, "exec", task, "-i", "-t", "--", "sh", "-c", script))
    try:
        term.read_until(b"size:33x101")
        term.resize(40, 120)  # the kernel sends the CLI SIGWINCH, as a terminal window does
        term.read_until(b"size:40x120")
        os.write(term.master, b"hi\r")  # Enter, as a raw terminal sends it
        term.read_until(b"got:hi")
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.docker
def test_ctrl_c_on_a_terminal_ends_the_command(
    cluster: LocalCluster, pty: Callable[[int, int], Pty]
) -> None:
    arn, docker_id = start_task(cluster)
    term = pty(24, 80)
    proc = term.spawn(cli_argv(cluster, "exec", arn, "-i", "-t", "--", "sleep", "311"))
    try:
        wait_for(lambda: "sleep 311" in processes(docker_id), 20, what="sleep 311 running")
        os.write(term.master, b"\x03")  # Ctrl-C, raw: it is the remote terminal's key
        assert proc.wait(timeout=20) == 130
        assert "sleep 311" not in processes(docker_id)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.docker
def test_ctrl_c_without_a_terminal_is_passed_on_and_spares_other_sessions(
    cluster: LocalCluster, spawned: Callable[..., subprocess.Popen[bytes]]
) -> None:
    arn, docker_id = start_task(cluster)
    other = spawned(arn, "--", "sh", "-c", "sleep 4; echo other-done")
    sleeper = spawned(arn, "--", "sleep", "312")
    wait_for(lambda: "sleep 312" in processes(docker_id), 20, what="sleep 312 running")
    sleeper.send_signal(signal.SIGINT)
    assert sleeper.wait(timeout=20) == 130  # the command's exit by SIGINT, as sh reports it
    assert "sleep 312" not in processes(docker_id)
    out, _ = other.communicate(timeout=30)
    assert (other.returncode, out) == (0, b"other-done\n")
    # a CLI killed outright: the controller sees its call end, the agent kills the command
    gone = spawned(arn, "--", "sleep", "315")
    wait_for(lambda: "sleep 315" in processes(docker_id), 20, what="sleep 315 running")
    gone.kill()
    wait_for(lambda: "sleep 315" not in processes(docker_id), 20, what="sleep 315 killed")


# ---------------------------------------------------------------- restarts mid-session


@pytest.mark.docker
def test_agent_restart_ends_the_session_and_its_process(
    cluster: LocalCluster, spawned: Callable[..., subprocess.Popen[bytes]]
) -> None:
    arn, docker_id = start_task(cluster)
    proc = spawned(arn, "--", "sleep", "313")
    wait_for(lambda: "sleep 313" in processes(docker_id), 20, what="sleep 313 running")
    cluster.agents["a1"].kill(signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 255 and "agent disconnected" in err.decode(), err
    assert "Traceback" not in err.decode()
    cluster.start_agent("a1")
    cluster.wait_connected("a1")
    wait_for(lambda: "sleep 313" not in processes(docker_id), 20, what="sleep 313 reaped")
    again = subprocess.run(
        cli_argv(cluster, "exec", arn, "--", "echo", "back"), capture_output=True, timeout=60
    )
    assert (again.returncode, again.stdout) == (0, b"back\n")


@pytest.mark.docker
def test_controller_restart_ends_the_session_and_its_process(
    cluster: LocalCluster, spawned: Callable[..., subprocess.Popen[bytes]]
) -> None:
    arn, docker_id = start_task(cluster)
    proc = spawned(arn, "--", "sleep", "314")
    wait_for(lambda: "sleep 314" in processes(docker_id), 20, what="sleep 314 running")
    assert cluster.controller is not None
    cluster.controller.kill(signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 255 and "Traceback" not in err.decode(), err
    wait_for(lambda: "sleep 314" not in processes(docker_id), 20, what="sleep 314 killed")
    cluster.controller.start()
    cluster.wait_connected("a1")


# ---------------------------------------------------------------- who may, and the audit


def new_key(cluster: LocalCluster, role: str) -> auth.Credentials:
    key = cluster.client().call("CreateAccessKey", {"role": role})["accessKey"]
    return auth.Credentials(key["accessKeyId"], key["secretAccessKey"])


@pytest.mark.docker
def test_exec_needs_an_operator_key_and_an_enabled_task(
    dyx: Callable[..., Done], cluster: LocalCluster, task: str
) -> None:
    readonly = dyx(task, "--", "true", creds=new_key(cluster, "readonly"))
    assert readonly.code == 255 and "AccessDeniedException" in readonly.err
    operator = new_key(cluster, "operator")
    ok = dyx(task, "--", "echo", "operator", creds=operator)
    assert (ok.code, ok.out) == (0, b"operator\n")
    disabled, _ = start_task(cluster, enable=False)
    refused = dyx(disabled, "--", "true", creds=operator)
    assert refused.code == 255 and "InvalidParameterException" in refused.err
    assert NOT_ENABLED in refused.err
    # operator keys read but do not write
    res = subprocess.run(
        cli_argv(cluster, "stop", task), capture_output=True, env=key_env(operator), timeout=60
    )
    assert res.returncode == 1 and b"AccessDeniedException" in res.stderr


@pytest.mark.docker
def test_every_session_is_in_the_event_log(
    dyx: Callable[..., Done], cluster: LocalCluster, task: str
) -> None:
    operator = new_key(cluster, "operator")
    assert dyx(task, "--", "sh", "-c", "exit 3", creds=operator).code == 3
    ended = wait_for(
        lambda: [e for e in exec_events(cluster, task) if "ended" in e["message"]],
        20,
        what="the session's end event",
    )[0]
    assert ended["accessKeyId"] == operator.access_key_id
    assert ended["task"] == task and ended["container"] == "main"
    assert ended["command"] == ["sh", "-c", "exit 3"] and ended["exitCode"] == 3
    assert ended["startedAt"] <= ended["endedAt"]
    shown = subprocess.run(
        cli_argv(cluster, "events", task), capture_output=True, text=True, timeout=60
    )
    assert "exec session" in shown.stdout and "exit code 3" in shown.stdout


# ---------------------------------------------------------------- ECS's ExecuteCommand


def ecs_client(cluster: LocalCluster, creds: auth.Credentials | None = None) -> Any:
    return aws_client("ecs", cluster.http, creds) if creds else cluster.boto3("ecs")


def ecs_error(call: Callable[..., Any], **kw: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as err:
        call(**kw)
    e = err.value.response["Error"]
    return e["Code"], e["Message"]


@pytest.mark.docker
def test_execute_command_over_the_ecs_api(cluster: LocalCluster, task: str) -> None:
    ecs = ecs_client(cluster)
    described = ecs.describe_tasks(cluster="default", tasks=[task])["tasks"][0]
    assert described["enableExecuteCommand"] is True
    code, message = ecs_error(
        ecs.execute_command, cluster="default", task=task, command="sh", interactive=True
    )
    assert code == "TargetNotConnectedException" and "dockyard exec" in message
    disabled, _ = start_task(cluster, enable=False)
    code, message = ecs_error(
        ecs.execute_command, cluster="default", task=disabled, command="sh", interactive=True
    )
    assert code == "InvalidParameterException" and NOT_ENABLED in message
    code, _ = ecs_error(
        ecs.execute_command, cluster="default", task=task, command="sh", interactive=False
    )
    assert code == "InvalidParameterException"
    readonly = ecs_client(cluster, new_key(cluster, "readonly"))
    code, _ = ecs_error(
        readonly.execute_command, cluster="default", task=task, command="sh", interactive=True
    )
    assert code == "AccessDeniedException"


@pytest.mark.docker
def test_services_carry_enable_execute_command(cluster: LocalCluster) -> None:
    ecs = ecs_client(cluster)
    ecs.register_task_definition(**SLEEPER)
    svc = ecs.create_service(
        cluster="default",
        serviceName="execsvc",
        taskDefinition="sleeper",
        desiredCount=1,
        enableExecuteCommand=True,
    )["service"]
    assert svc["enableExecuteCommand"] is True

    def running() -> list[str]:
        return ecs.list_tasks(cluster="default", serviceName="execsvc")["taskArns"]

    arns = wait_for(running, 30, what="the service's task")
    cluster.wait_status(arns, "RUNNING")
    assert ecs.describe_tasks(cluster="default", tasks=arns)["tasks"][0]["enableExecuteCommand"]
    updated = ecs.update_service(cluster="default", service="execsvc", enableExecuteCommand=False)
    assert updated["service"]["enableExecuteCommand"] is False
    ecs.update_service(cluster="default", service="execsvc", desiredCount=0)
    ecs.delete_service(cluster="default", service="execsvc")


# ---------------------------------------------------------------- pure parts


def test_operator_role_sits_between_readonly_and_admin() -> None:
    from controller.security.apiauth import authorize
    from controller.security.keys import AccessKey
    from dockyard.errors import ApiError

    def may(role: str, operation: str) -> bool:
        try:
            authorize(AccessKey("DYAK" + "A" * 16, "s", role), operation)
        except ApiError:
            return False
        return True

    for op in ("Exec", "ExecuteCommand"):
        assert may("operator", op) and may("admin", op) and not may("readonly", op)
    for op in ("DescribeTasks", "ListServices", "Logs", "WatchEvents"):
        assert may("operator", op) and may("readonly", op)
    for op in ("RunTask", "StopTask", "UpdateService", "CreateAccessKey", "ListAccessKeys"):
        assert not may("operator", op) and may("admin", op)


def test_kill_tree_kills_a_command_and_what_it_started() -> None:
    from agent.execs import kill_tree

    proc = subprocess.Popen(["bash", "-c", "sleep 301 & sleep 302 & wait"])
    try:

        def children() -> list[int]:
            return [p for p in _pids() if _parent(p) == proc.pid]

        kids = wait_for(lambda: (lambda c: c if len(c) == 2 else None)(children()), 10)
        assert kill_tree(proc.pid) == 3
        assert proc.wait(timeout=10) == -signal.SIGKILL
        for pid in kids:
            wait_for(lambda pid=pid: not os.path.exists(f"/proc/{pid}/cmdline") or _zombie(pid), 10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _pids() -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
