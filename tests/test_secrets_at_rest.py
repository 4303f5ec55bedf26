"""Secrets at rest (issue 15, item 5): the store's files hold no secret in plaintext.

Canary values (a secret, a static role key, an access key's secret, the credentials-id key)
go in through the real API of a real controller; the raw bytes of every file under its data
dir (database, WAL, shm) are searched for them, while it runs and after it stopped; after a
restart the values still work: the access key signs calls, a task placed on a (raw, real
gRPC) agent still gets the role's keys, the same credentials id and the secret's value.
A missing, wrong or loose key file is refused; rotation re-seals every value; a plaintext
database of an earlier version is sealed in place on first start.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import shutil
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from controller.security import sealing
from controller.store import Put
from controller.store import SqliteStore as Store
from dockyard import auth
from dockyard.v1 import agent_pb2
from tests.security_support import RawAgent, SecureController, register_msg
from tests.support import Proc, free_port, wait_for

ROLE_KEY_ID = "AKIACANARYROLEKEY001"
ROLE_SECRET = "canary-role-secret-5b1d0f3e"
SECRET_VALUE = "canary-db-password-8c2e4a71"
ROLE_ARN = "arn:aws:iam::000000000000:role/app"
TASKDEF = {
    "family": "sealed",
    "taskRoleArn": ROLE_ARN,
    "executionRoleArn": ROLE_ARN,
    "containerDefinitions": [
        {
            "name": "main",
            "image": "dockyard/sleeper",
            "memory": 64,
            "essential": True,
            "secrets": [{"name": "DB_PASSWORD", "valueFrom": "db-password"}],
        }
    ],
}


@contextlib.contextmanager
def running(data_dir: Path) -> Iterator[SecureController]:
    sc = SecureController(data_dir, open_loopback=True)
    try:
        sc.start()
        yield sc
    finally:
        sc.stop()


def key_file(data_dir: Path) -> Path:
    return data_dir.with_name(data_dir.name + ".key")


def leaks(data_dir: Path, canaries: list[bytes]) -> list[tuple[str, bytes]]:
    """(file, canary) for each canary found in the raw bytes of any file under data_dir."""
    found = []
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file()):
        raw = path.read_bytes()
        found += [(path.name, c) for c in canaries if c in raw]
    return found


def put_canaries(sc: SecureController) -> tuple[auth.Credentials, bytes]:
    """Write the canaries through the API; returns the new access key and the HMAC key."""
    client = sc.client()
    made = client.call("CreateAccessKey", {"role": "admin", "description": "canary"})
    key = auth.Credentials(made["accessKey"]["accessKeyId"], made["accessKey"]["secretAccessKey"])
    role = {"roleName": "app", "accessKeyId": ROLE_KEY_ID, "secretAccessKey": ROLE_SECRET}
    client.call("CreateRole", role)
    client.call("PutSecret", {"name": "db-password", "value": SECRET_VALUE})
    client.call("RegisterTaskDefinition", TASKDEF)
    assert sc.ctl is not None
    return key, sc.ctl.service.roles._key


def canaries(key: auth.Credentials, binding: bytes) -> list[bytes]:
    texts = [key.secret_access_key, ROLE_KEY_ID, ROLE_SECRET, SECRET_VALUE]
    return [t.encode() for t in texts] + [binding, base64.b64encode(binding)]


def served(
    sc: SecureController, task_arn: str = "", creds: auth.Credentials | None = None
) -> tuple[str, agent_pb2.DesiredTask]:
    """Connect agent i-sealed (running a task first unless task_arn is given) and wait until
    its desired state carries the task with its credentials: (task ARN, that task)."""
    agent = RawAgent(sc.address).connect(register_msg("i-sealed"))
    try:
        assert agent.next("registered")
        if not task_arn:
            run = sc.client(creds).call("RunTask", {"taskDefinition": "sealed"})
            assert not run["failures"], run
            task_arn = run["tasks"][0]["taskArn"]
        while True:
            for task in agent.next("desired").desired.tasks:
                if task.task_arn == task_arn and task.credentials.secret_access_key:
                    return task_arn, task
    finally:
        agent.close()


def controller_argv(data_dir: Path, http_port: int, *extra: str) -> list[str]:
    argv = [sys.executable, "-m", "dockyard.cli.main", "controller", "--data-dir", str(data_dir)]
    ports = ["--listen", f"127.0.0.1:{free_port()}", "--http", f"127.0.0.1:{http_port}"]
    return [*argv, *ports, "--tls", "never", *extra]


def controller_cli(data_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`dockyard controller` on data_dir; for the refusals, which must exit on their own."""
    argv = controller_argv(data_dir, free_port(), *extra)
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def make_sealed_store(data_dir: Path) -> None:
    with running(data_dir) as sc:
        sc.client().call("PutSecret", {"name": "db-password", "value": SECRET_VALUE})


def test_canaries_are_in_no_store_file_running_or_stopped_and_work_after_restart(
    tmp_path: Path,
) -> None:
    data = tmp_path / "controller"
    with running(data) as sc:
        key, binding = put_canaries(sc)
        task_arn, task = served(sc)
        assert task.credentials.secret_access_key == ROLE_SECRET
        assert task.containers[0].secrets["DB_PASSWORD"] == SECRET_VALUE
        assert (data / "dockyard.db-wal").stat().st_size > 0  # the WAL holds the writes
        assert leaks(data, canaries(key, binding)) == []
    assert leaks(data, canaries(key, binding)) == []
    assert oct(key_file(data).stat().st_mode & 0o777) == "0o600"

    with running(data) as sc:
        sc.client(key).call("ListClusters")  # the access key still signs
        _, again = served(sc, task_arn)
        assert again.credentials.id == task.credentials.id  # same credentials-id key
        assert again.credentials.access_key_id == ROLE_KEY_ID
        assert again.credentials.secret_access_key == ROLE_SECRET
        assert again.containers[0].secrets["DB_PASSWORD"] == SECRET_VALUE


def test_missing_key_file_refuses_to_start_and_makes_no_new_key(tmp_path: Path) -> None:
    data = tmp_path / "controller"
    make_sealed_store(data)
    key_file(data).rename(tmp_path / "elsewhere.key")
    out = controller_cli(data)
    assert out.returncode != 0
    assert f"secrets key file {key_file(data)} is missing" in out.stderr
    assert "refusing to start" in out.stderr and "Traceback" not in out.stderr
    assert not key_file(data).exists()
    # told where the key went, the controller opens the store and serves
    port = free_port()
    argv = controller_argv(data, port, "--secrets-key-file", str(tmp_path / "elsewhere.key"))
    proc = Proc("controller", argv, tmp_path / "controller.log")
    try:
        proc.start()
        url = f"http://127.0.0.1:{port}/healthz"
        wait_for(lambda: urllib.request.urlopen(url, timeout=5).status == 200, 30, what=url)
    finally:
        proc.kill()


def test_wrong_malformed_or_loose_key_file_refuses_to_start(tmp_path: Path) -> None:
    data = tmp_path / "controller"
    make_sealed_store(data)
    path = key_file(data)
    good = path.read_text()
    sealing.write_keyring(path, [os.urandom(32)])
    out = controller_cli(data)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert f"secrets key file {path} does not open the database" in out.stderr

    path.write_text("not a key\n")
    out = controller_cli(data)
    assert f"secrets key file {path}, line 1: not a base64 32-byte key" in out.stderr

    path.write_text(good)
    path.chmod(0o644)
    out = controller_cli(data)
    assert f"secrets key file {path} is readable by others (mode 0644)" in out.stderr
    path.chmod(0o600)
    with running(data):
        pass  # the right key, private again: it starts


def test_a_key_file_that_cannot_be_written_is_a_clear_refusal(tmp_path: Path) -> None:
    nowhere = tmp_path / "no-such-dir" / "secrets.key"
    out = controller_cli(tmp_path / "controller", "--secrets-key-file", str(nowhere))
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert f"cannot write secrets key file {nowhere}: No such file or directory" in out.stderr


def test_rotation_reseals_every_value_under_a_new_key(tmp_path: Path) -> None:
    data = tmp_path / "controller"
    with running(data) as sc:
        key, binding = put_canaries(sc)
        task_arn, task = served(sc)
        busy = controller_cli(data, "--rotate-secrets-key")
        assert busy.returncode != 0 and "in use: stop its controller first" in busy.stderr
    old_file = tmp_path / "old.key"
    shutil.copy2(key_file(data), old_file)  # as an operator's copy, 0600
    old_id = sealing.read_keyring(old_file).ids[0]

    out = controller_cli(data, "--rotate-secrets-key")
    assert out.returncode == 0, out.stderr
    new = sealing.read_keyring(key_file(data))
    assert len(new.ids) == 1 and new.ids[0] != old_id and new.ids[0] in out.stdout
    stored = b"".join(p.read_bytes() for p in data.rglob("*") if p.is_file())
    assert f"dy1:{old_id}:".encode() not in stored  # nothing left under the old key
    assert leaks(data, canaries(key, binding)) == []

    refused = controller_cli(data, "--secrets-key-file", str(old_file))
    assert "does not open the database" in refused.stderr
    with running(data) as sc:
        sc.client(key).call("ListClusters")
        _, again = served(sc, task_arn)
        assert again.credentials.id == task.credentials.id
        assert again.credentials.secret_access_key == ROLE_SECRET
        assert again.containers[0].secrets["DB_PASSWORD"] == SECRET_VALUE


async def write_plaintext_store(data: Path) -> tuple[auth.Credentials, bytes]:
    """A store as earlier versions wrote it: the same documents, secret fields in clear."""
    creds = auth.Credentials("DYAKLEGACYCANARY0001", "canary-legacy-access-secret-77d0")
    binding = os.urandom(32)
    role = {"accessKeyId": ROLE_KEY_ID, "secretAccessKey": ROLE_SECRET, "sessionToken": ""}
    store = Store(data)
    await store.open()
    try:
        await store.write(
            [
                Put(
                    "accesskey",
                    creds.access_key_id,
                    "",
                    {
                        "access_key_id": creds.access_key_id,
                        "secret_access_key": creds.secret_access_key,
                        "role": "admin",
                        "description": "legacy",
                        "created_at": 1.0,
                    },
                ),
                Put(
                    "role",
                    ROLE_ARN,
                    "",
                    {
                        "name": "app",
                        "arn": ROLE_ARN,
                        "source": "static",
                        "config": role,
                        "created_at": 1.0,
                    },
                ),
                Put(
                    "secret",
                    "db-password",
                    "",
                    {
                        "name": "db-password",
                        "arn": "arn:aws:secretsmanager:us-east-1:000000000000:secret:db-password",
                        "value": SECRET_VALUE,
                        "created_at": 1.0,
                        "updated_at": 1.0,
                    },
                ),
                Put("rolekey", "binding", "", {"key": base64.b64encode(binding).decode()}),
            ]
        )
    finally:
        await store.close()
    return creds, binding


def test_plaintext_store_of_an_earlier_version_is_sealed_in_place(tmp_path: Path) -> None:
    data = tmp_path / "controller"
    creds, binding = asyncio.run(write_plaintext_store(data))
    assert leaks(data, canaries(creds, binding))  # the old layout: all in clear
    with running(data) as sc:
        assert leaks(data, canaries(creds, binding)) == []
        sc.client(creds).call("ListClusters")
        sc.client(creds).call("RegisterTaskDefinition", TASKDEF)
        task_arn, task = served(sc, creds=creds)
        expected = hmac.new(binding, task_arn.encode(), hashlib.sha256).digest()[:24]
        assert task.credentials.id == base64.urlsafe_b64encode(expected).decode()
        assert task.credentials.secret_access_key == ROLE_SECRET
        assert task.containers[0].secrets["DB_PASSWORD"] == SECRET_VALUE
    assert leaks(data, canaries(creds, binding)) == []


def test_a_sealed_value_moved_to_another_record_does_not_open(tmp_path: Path) -> None:
    data = tmp_path / "controller"
    with running(data) as sc:
        sc.client().call("PutSecret", {"name": "a", "value": "value-of-a"})
        sc.client().call("PutSecret", {"name": "b", "value": "value-of-b"})
    with sqlite3.connect(data / "dockyard.db") as db:
        db.execute(
            "UPDATE objects SET doc = json_set(doc, '$.value', (SELECT doc ->> 'value' FROM "
            "objects WHERE kind = 'secret' AND key = 'a')) WHERE kind = 'secret' AND key = 'b'"
        )
    out = controller_cli(data)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "secret/b/value: the sealed value does not open" in out.stderr
