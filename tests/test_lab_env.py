"""The README's lab flow: `eval "$(sudo dockyard lab env)"` in a user's shell, then plain
`dockyard ...`, `aws ecs ...` and boto3 talk to the lab's TLS controller.

`lab env` runs as root (as under sudo); the shell that evaluates its output may belong to
a user who cannot enter the controller's 0700 data dir, so what it points at (the CA copy)
must be readable by anyone, and the keys are in the exports themselves.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from dockyard.errors import ApiError
from dockyard.lab import Lab
from tests.lab_fixture import lab  # noqa: F401  (the 3-host lab, one per test session)
from tests.test_https_env import BOTO_SCRIPT, clean_env

pytestmark = pytest.mark.lab


def _world_readable(path: Path) -> bool:
    """Any user can read `path`: the file is o+r and every directory above it o+x."""
    dirs_ok = all(d.stat().st_mode & 0o001 for d in path.parents)
    return bool(path.stat().st_mode & 0o004) and dirs_ok


def test_lab_env_sets_up_a_users_shell_for_dockyard_aws_and_boto3(
    lab: Lab,  # noqa: F811
) -> None:
    if not lab.has_control_plane:
        pytest.skip("the lab has no control plane")
    printed = subprocess.run(
        [sys.executable, "-m", "dockyard.cli.main", "lab", "env", "--dir", lab.dir],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"AWS_ENDPOINT_URL_ECS=https://{lab.controller_address.rpartition(':')[0]}:" in printed
    script = f"""
set -e
eval {shlex.quote(printed)}
echo "== tasks"; dockyard tasks list
echo "== instances"; dockyard instances list
echo "== aws"; aws ecs list-container-instances
echo "== boto3"; {sys.executable} -c "{BOTO_SCRIPT}"
echo "== readme"
aws ecs register-task-definition \\
      --family web-env --container-definitions '[{{"name":"web","memory":32,"essential":true,
      "image":"{lab.registry}/dockyard/httpd:latest",
      "portMappings":[{{"containerPort":8080,"hostPort":0}}]}}]' > /dev/null
aws ecs create-service --service-name web-env \\
      --task-definition web-env --desired-count 3 \\
      --placement-strategy type=spread,field=attribute:zone > /dev/null
aws ecs wait services-stable --services web-env
echo stable
"""
    # the CA the shell is pointed at is a copy any user can read (sudo's caller is not root)
    ca = Path(printed.split("AWS_CA_BUNDLE=")[1].split()[0])
    assert ca.parent == Path(lab.dir).resolve() and _world_readable(ca)
    try:
        out = subprocess.run(
            ["bash", "-c", script],
            env=clean_env(Path(lab.dir)),
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        with lab.client() as c, contextlib.suppress(ApiError):
            c.call("DeleteService", {"service": "web-env", "force": True})
    assert out.returncode == 0, out.stdout + out.stderr
    aws = json.loads(out.stdout.split("== aws\n")[1].split("== boto3")[0])
    assert len(aws["containerInstanceArns"]) == len(lab.hosts)
    assert out.stdout.split("== boto3\n")[1].split("== readme")[0].strip() == "1"
    assert out.stdout.split("== readme\n")[1].strip() == "stable"  # the README's commands
    assert len(out.stdout.split("== instances\n")[1].split("== aws")[0].splitlines()) > len(
        lab.hosts
    )
