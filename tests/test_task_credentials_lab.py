"""Task credentials from inside containers, and private pulls, in the multi-host lab.

Each lab host is a network namespace with its own dockerd and agent, so the agent programs
169.254.170.2's DNAT in that namespace exactly as on a real host. The private registry is
the CNCF registry with htpasswd auth behind TLS, its certificate signed by a throwaway CA.
The lab's engines take only the lab registry's own host:port as insecure, so this one is
verified: a pull fails with x509 until the CA is at /etc/docker/certs.d/<addr>/ca.crt (read
by every engine, scoped to that address), which is removed afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dockyard.lab import Lab
from dockyard.lab.registry import wait_tcp
from tests.support import free_port, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.lab]
HOST = "h1"
ON_H1 = [{"type": "memberOf", "expression": f"attribute:dockyard.hostname == {HOST}"}]


def _run(lab: Lab, family: str, **extra: Any) -> dict[str, Any]:
    containers = extra.pop("containers", None) or [
        {"name": "main", "image": lab.image("sleeper"), "memory": 32}
    ]
    with lab.client() as c:
        c.call(
            "RegisterTaskDefinition",
            {"family": family, "containerDefinitions": containers, **extra},
        )
        out = c.call("RunTask", {"taskDefinition": family, "placementConstraints": ON_H1})
    assert out["tasks"], out
    return dict(out["tasks"][0])


def _wait(lab: Lab, arn: str, *statuses: str, timeout: float = 60) -> dict[str, Any]:
    """The task once its lastStatus is one of `statuses`."""

    def check() -> dict[str, Any] | None:
        with lab.client() as c:
            t = c.call("DescribeTasks", {"tasks": [arn]})["tasks"][0]
        return t if t["lastStatus"] in statuses else None

    return wait_for(check, timeout, what=f"{arn} {' or '.join(statuses)}")


def _container(lab: Lab, arn: str) -> str:
    out = lab.docker(HOST, "ps", "-q", "--filter", f"label=com.amazonaws.ecs.task-arn={arn}")
    return out.split()[0]


def _sh(lab: Lab, cid: str, script: str) -> str:
    return lab.docker(HOST, "exec", cid, "sh", "-c", script)


def _fetch(lab: Lab, cid: str, path: str) -> str:
    """GET http://169.254.170.2<path> from inside the container (busybox wget)."""
    return _sh(lab, cid, f"wget -q -O - http://169.254.170.2{path} 2>&1 || true")


def test_containers_reach_their_credentials_at_169_254_170_2(lab: Lab) -> None:
    if not lab.has_control_plane:
        pytest.skip("lab without controller and agents")
    tag = uuid.uuid4().hex[:6]
    with lab.client() as c:
        c.call(
            "CreateRole",
            {"roleName": f"lab-{tag}", "accessKeyId": f"AKID{tag}", "secretAccessKey": "s"},
        )
    a = _run(lab, f"cr-a-{tag}", taskRoleArn=f"lab-{tag}")
    b = _run(lab, f"cr-b-{tag}", taskRoleArn=f"lab-{tag}")
    h = _run(lab, f"cr-h-{tag}", taskRoleArn=f"lab-{tag}", networkMode="host")
    tasks = [a["taskArn"], b["taskArn"], h["taskArn"]]
    try:
        for arn in tasks:
            _wait(lab, arn, "RUNNING")
        ca, cb, ch = (_container(lab, arn) for arn in tasks)
        got = json.loads(
            _sh(lab, ca, "wget -q -O - http://169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        )
        assert got["AccessKeyId"] == f"AKID{tag}" and got["Token"] == "" and got["Expiration"]
        host_got = json.loads(
            _sh(lab, ch, "wget -q -O - http://169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        )
        assert host_got["AccessKeyId"] == f"AKID{tag}"
        meta = json.loads(_sh(lab, ca, "wget -q -O - $ECS_CONTAINER_METADATA_URI_V4/task"))
        assert meta["TaskARN"] == a["taskArn"]
        b_uri = _sh(lab, cb, "echo $AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").strip()
        a_uri = _sh(lab, ca, "echo $AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").strip()
        assert a_uri != b_uri
        assert "400" in _fetch(lab, ca, "/v2/credentials/not-a-real-id-000000000000")
        assert "403" in _fetch(lab, ca, b_uri) and "403" in _fetch(lab, ch, b_uri)  # not theirs
        with lab.client() as c:
            c.call("StopTask", {"task": b["taskArn"]})
        _wait(lab, b["taskArn"], "STOPPED")
        assert "400" in _fetch(lab, ca, b_uri)  # revoked
        assert "AKID" in _fetch(lab, ca, a_uri)
    finally:
        with lab.client() as c:
            for arn in tasks:
                c.call("StopTask", {"task": arn})


META = (
    "wget -q -O - $ECS_CONTAINER_METADATA_URI_V4; echo; "
    "wget -q -O - $ECS_CONTAINER_METADATA_URI_V4/task; echo; "
    "trap 'exit 0' TERM; sleep 86400 & wait"
)


def test_tasks_without_a_role_reach_their_metadata_at_169_254_170_2(lab: Lab) -> None:
    """No role anywhere: 169.254.170.2 is routed from the agent's start, for bridge- and
    host-network containers, and each fetches its own documents as its first action."""
    if not lab.has_control_plane:
        pytest.skip("lab without controller and agents")
    tag = uuid.uuid4().hex[:6]
    command = ["sh", "-c", META]
    tasks = [
        _run(lab, f"meta-{mode}-{tag}", networkMode=mode, containers=[
            {"name": "main", "image": lab.image("sleeper"), "memory": 32, "command": command}
        ])["taskArn"]
        for mode in ("bridge", "host")
    ]  # fmt: skip
    try:
        for arn in tasks:
            _wait(lab, arn, "RUNNING")
            cid = _container(lab, arn)
            assert "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI" not in _sh(lab, cid, "env")
            lines = wait_for(
                lambda cid=cid: (lambda ls: ls if len(ls) == 2 else None)(
                    lab.docker(HOST, "logs", cid).splitlines()
                ),
                20,
                what=f"{arn}'s own metadata fetches",
            )
            assert lines[0].startswith("{"), (arn, lines)
            mine, task = json.loads(lines[0]), json.loads(lines[1])
            assert mine["Name"] == "main" and mine["DockerId"].startswith(cid)
            assert task["TaskARN"] == arn
    finally:
        with lab.client() as c:
            for arn in tasks:
                c.call("StopTask", {"task": arn})


# ---------------------------------------------------------------- private registry


@dataclass
class PrivateRegistry:
    """A TLS + htpasswd registry on the lab bridge; its CA trusted from trust() to distrust()."""

    addr: str
    ca: Path

    @property
    def certs_d(self) -> Path:
        return Path("/etc/docker/certs.d") / self.addr

    def trust(self) -> None:
        self.certs_d.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.ca, self.certs_d / "ca.crt")

    def distrust(self) -> None:
        shutil.rmtree(self.certs_d, ignore_errors=True)


def _openssl(command: str) -> None:
    subprocess.run(["openssl", *command.split()], check=True, capture_output=True)


def _test_ca(tmp: Path, ip: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for `ip` signed by it: (ca, cert, key)."""
    ca, ca_key, key, csr, cert = (tmp / n for n in ("ca.crt", "ca.key", "key", "csr", "cert"))
    (tmp / "san.ext").write_text(f"subjectAltName=IP:{ip}\n")
    new_key = "-newkey rsa:2048 -nodes -days 1"
    _openssl(f"req -x509 {new_key} -keyout {ca_key} -out {ca} -subj /CN=dockyard-test-ca")
    _openssl(f"req {new_key} -keyout {key} -out {csr} -subj /CN=dockyard-test-registry")
    _openssl(
        f"x509 -req -in {csr} -CA {ca} -CAkey {ca_key} -CAcreateserial -days 1 -out {cert} "
        f"-extfile {tmp / 'san.ext'}"
    )
    return ca, cert, key


@pytest.fixture
def private_registry(lab: Lab, tmp_path: Path) -> Iterator[PrivateRegistry]:
    gw = lab.registry.rsplit(":", 1)[0]
    addr = f"{gw}:{free_port()}"
    ca, cert, key = _test_ca(tmp_path, gw)
    htpasswd = subprocess.run(
        ["htpasswd", "-Bbn", "puller", "right-pass"], check=True, capture_output=True, text=True
    ).stdout
    (tmp_path / "htpasswd").write_text(htpasswd)
    (tmp_path / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {tmp_path / 'data'}\nhttp:\n  addr: {addr}\n  tls:\n"
        f"    certificate: {cert}\n    key: {key}\nauth:\n  htpasswd:\n    realm: test\n"
        f"    path: {tmp_path / 'htpasswd'}\n"
    )
    reg = PrivateRegistry(addr, ca)
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(tmp_path / "config.yml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_tcp(addr, None, 20, "private registry")
        yield reg
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        reg.distrust()


def _host_docker(lab: Lab, config_dir: Path, *args: str, stdin: str | None = None) -> None:
    env = dict(os.environ, DOCKER_HOST=lab.host(HOST).docker_host, DOCKER_CONFIG=str(config_dir))
    out = subprocess.run(
        ["docker", *args], input=stdin, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr


def _push_private(lab: Lab, reg: PrivateRegistry, image: str, config_dir: Path) -> None:
    """Put the sleeper on the private registry as `image`; h1 keeps no copy under that name."""
    _host_docker(lab, config_dir, "pull", lab.image("sleeper"))
    _host_docker(lab, config_dir, "tag", lab.image("sleeper"), image)
    reg.trust()
    try:
        login = ("login", "-u", "puller", "--password-stdin", reg.addr)
        _host_docker(lab, config_dir, *login, stdin="right-pass")
        _host_docker(lab, config_dir, "push", image)
    finally:
        reg.distrust()
    _host_docker(lab, config_dir, "rmi", image)  # the agent must pull it


def _run_private(lab: Lab, name: str, image: str, tag: str, status: str) -> dict[str, Any]:
    containers = [
        {
            "name": "main",
            "image": image,
            "memory": 32,
            "repositoryCredentials": {"credentialsParameter": f"reg-{name}-{tag}"},
        }
    ]
    task = _run(lab, f"pr-{name}-{tag}", containers=containers, executionRoleArn=f"exec-{tag}")
    task = _wait(lab, task["taskArn"], "RUNNING", "STOPPED", timeout=90)
    assert task["lastStatus"] == status, task.get("stoppedReason") or task
    return task


def test_private_image_pulls_with_repository_credentials(
    lab: Lab, private_registry: PrivateRegistry, tmp_path: Path
) -> None:
    if not lab.has_control_plane:
        pytest.skip("lab without controller and agents")
    reg, tag = private_registry, uuid.uuid4().hex[:6]
    image = f"{reg.addr}/private/sleeper:{tag}"
    _push_private(lab, reg, image, tmp_path / "docker-config")
    with lab.client() as c:
        c.call(
            "CreateRole", {"roleName": f"exec-{tag}", "accessKeyId": "a", "secretAccessKey": "b"}
        )
        for name, password in (("bad", "wrong-pass"), ("good", "right-pass")):
            login = json.dumps({"username": "puller", "password": password})
            c.call("PutSecret", {"name": f"reg-{name}-{tag}", "value": login})
    # the lab's engines trust only the lab registry as insecure: without the CA, TLS fails
    untrusted = _run_private(lab, "good", image, tag, "STOPPED")["stoppedReason"]
    assert "CannotPullContainerError" in untrusted
    assert "x509" in untrusted and "unknown authority" in untrusted, untrusted
    reg.trust()
    refused = _run_private(lab, "bad", image, tag, "STOPPED")["stoppedReason"]
    assert "CannotPullContainerError" in refused and "x509" not in refused, refused
    assert "unauthorized" in refused or "no basic auth credentials" in refused, refused
    assert "wrong-pass" not in refused
    good = _run_private(lab, "good", image, tag, "RUNNING")
    with lab.client() as c:
        c.call("StopTask", {"task": good["taskArn"]})
        # the execution role is what grants the read
        c.call(
            "RegisterTaskDefinition",
            {"family": f"pr-noexec-{tag}", "containerDefinitions": [
                {"name": "main", "image": image, "memory": 32,
                 "repositoryCredentials": {"credentialsParameter": f"reg-good-{tag}"}}]},
        )  # fmt: skip
        with pytest.raises(Exception, match="executionRoleArn: is required"):
            c.call("RunTask", {"taskDefinition": f"pr-noexec-{tag}"})
