"""`dockyard exec` into tasks on every host of the multi-host lab (issue 20).

The CLI talks to the controller only (over TLS, with a key); the controller reaches each
host's agent over that agent's own mutual-TLS stream. A task on each host runs a command
whose output names its host, with stdin in and the exit code out: no SSH, no Docker access.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard import auth
from dockyard.lab import Lab, control
from tests.support import CLI_AT_A_TERMINAL, wait_for

pytestmark = [pytest.mark.lab, pytest.mark.docker]


@pytest.fixture
def one_task_per_host(lab: Lab) -> Iterator[list[dict[str, Any]]]:
    sleeper = {"name": "s", "image": lab.image("sleeper"), "memory": 16, "essential": True}
    with lab.client() as client:
        client.call(
            "RegisterTaskDefinition", {"family": "lab-exec", "containerDefinitions": [sleeper]}
        )
        run = client.call(
            "RunTask",
            {
                "cluster": lab.cluster,
                "taskDefinition": "lab-exec",
                "count": len(lab.hosts),
                "placementConstraints": [{"type": "distinctInstance"}],
                "enableExecuteCommand": True,
            },
        )
        arns = [t["taskArn"] for t in run["tasks"]]
        try:

            def running() -> list[dict[str, Any]] | None:
                body = {"cluster": lab.cluster, "tasks": arns}
                tasks = client.call("DescribeTasks", body)["tasks"]
                return tasks if all(t["lastStatus"] == "RUNNING" for t in tasks) else None

            yield wait_for(running, timeout=90, what="a task RUNNING on every host")
        finally:
            for arn in arns:
                client.call("StopTask", {"cluster": lab.cluster, "task": arn})


def exec_env(lab: Lab, tmp: Path) -> dict[str, str]:
    """The admin key and the controller's CA, as a user's shell has them (`dockyard env`)."""
    creds, ca = control.admin_credentials(lab.state), control.ca_cert(lab.state)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp)}
    if creds is not None:
        env |= {
            auth.ACCESS_KEY_ENV: creds.access_key_id,
            auth.SECRET_KEY_ENV: creds.secret_access_key,
        }
    if ca is not None:
        (tmp / "ca.crt").write_bytes(ca)
        env[auth.CA_CERT_ENV] = str(tmp / "ca.crt")
    return env


def test_exec_reaches_a_task_on_every_host(
    lab: Lab, one_task_per_host: list[dict[str, Any]], tmp_path: Path
) -> None:
    env = exec_env(lab, tmp_path)
    seen = set()
    for task in one_task_per_host:
        argv = [
            *CLI_AT_A_TERMINAL,
            "exec",
            "--controller",
            lab.controller_address,
            task["taskArn"],
            "-i",
            "--",
            "sh",
            "-c",
            "read line; echo $line from $(cat /etc/hostname); exit 3",
        ]
        done = subprocess.run(
            argv, input=b"hello\n", capture_output=True, env=env, timeout=60, check=False
        )
        assert done.returncode == 3, done.stderr.decode()
        words = done.stdout.decode().split()
        assert words[:2] == ["hello", "from"], done.stdout
        seen.add(task["containerInstanceArn"])
    assert len(seen) == len(lab.hosts)  # one task on each host, each reached
