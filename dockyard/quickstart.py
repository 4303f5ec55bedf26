"""`make up` / `make down`: an embedded single-host cluster for a first look.

Starts a controller (SQLite in .data/) and one local agent in the background, builds the
sample images locally, registers deploy/examples/web.json and makes sure one sample task is
RUNNING. Idempotent: daemons already up are reused, a running sample task is shown again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dockyard import auth, images
from dockyard.client import Client
from dockyard.errors import ApiError

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("DOCKYARD_QUICKSTART_DIR", ROOT / ".data"))
CONTROLLER = "127.0.0.1:7070"
SAMPLE = ROOT / "deploy" / "examples" / "web.json"
STARTED_BY = "make-up"


def _pid_alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


def _spawn(name: str, args: list[str]) -> None:
    pidfile = DATA / f"{name}.pid"
    if _pid_alive(pidfile):
        print(f"{name}: already running (pid {pidfile.read_text().strip()})")
        return
    log = (DATA / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dockyard.cli.main", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    pidfile.write_text(str(proc.pid))
    print(f"{name}: started (pid {proc.pid}, log {DATA / f'{name}.log'})")


def _wait(what: str, check, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except ApiError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}: see the logs in {DATA}")


def _running(client: Client, arns: list[str]) -> list[dict]:
    tasks = client.call("DescribeTasks", {"tasks": arns})["tasks"]
    for t in tasks:
        if t["lastStatus"] == "STOPPED":
            raise SystemExit(
                f"the sample task stopped: {t.get('stoppedReason')} "
                "(run make up again to start a new one)"
            )
    return [t for t in tasks if t["lastStatus"] == "RUNNING"]


def _local_user_credentials() -> auth.Credentials:
    """Copy the controller's admin key to ~/.dockyard/credentials, where the CLI looks."""
    creds = auth.parse_credentials((DATA / "controller" / "admin-credentials").read_text())
    if creds is None:
        raise SystemExit(f"{DATA / 'controller' / 'admin-credentials'} is unreadable")
    target = auth.default_credentials_file()
    if auth.load_credentials(env={}, path=target) != creds:
        auth.write_credentials(target, creds)
        print(f"admin key {creds.access_key_id} written to {target} (0600)")
    return creds


def _join_token(client: Client) -> str:
    """The local agent's join token: created once, kept 0600 next to the data."""
    path = DATA / "join-token"
    if not path.exists():
        token = client.call("CreateJoinToken", {"description": "make up"})["joinToken"]["token"]
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token)
    return path.read_text().strip()


def up() -> int:
    DATA.mkdir(parents=True, exist_ok=True)
    print("building sample images:", ", ".join(images.build_all()))
    _spawn(
        "controller",
        [
            "controller",
            "--data-dir",
            str(DATA / "controller"),
            "--listen",
            CONTROLLER,
            "--http",
            "127.0.0.1:7080",
        ],
    )
    _wait("the controller's admin key", (DATA / "controller" / "admin-credentials").exists)
    client = Client(CONTROLLER, timeout=5, credentials=_local_user_credentials())
    _wait("the controller", lambda: client.call("ListClusters"))
    token = _join_token(client)
    _spawn(
        "agent",
        [
            "agent",
            "--controller",
            CONTROLLER,
            "--state-dir",
            str(DATA / "agent"),
            "--pull-behavior",
            "prefer-cached",
            "--attribute",
            "zone=local",
            "--join-token",
            token,
        ],
    )
    _wait("the agent", lambda: client.call("ListContainerInstances")["containerInstanceArns"])
    family = json.loads(SAMPLE.read_text())["family"]
    running = client.call("ListTasks", {"startedBy": STARTED_BY})["taskArns"]
    if not running:
        client.call("RegisterTaskDefinition", json.loads(SAMPLE.read_text()))
        out = client.call("RunTask", {"taskDefinition": family, "startedBy": STARTED_BY})
        if out["failures"]:
            raise SystemExit(f"the sample task was not placed: {out['failures']}")
        running = [t["taskArn"] for t in out["tasks"]]
    tasks = _wait("the sample task to be RUNNING", lambda: _running(client, running))
    for t in tasks:
        port = t["containers"][0]["networkBindings"][0]["hostPort"]
        print(
            f"task {t['taskArn'].rsplit('/', 1)[-1]} ({family}) is {t['lastStatus']}: "
            f"curl http://127.0.0.1:{port}/"
        )
    print(f"\ncontroller: {CONTROLLER} (gRPC), http://127.0.0.1:7080 (ECS API, /metrics)")
    print('this shell: eval "$(.venv/bin/dockyard env)"   (dockyard, aws ecs, boto3)')
    print("try: .venv/bin/dockyard tasks list; .venv/bin/aws ecs list-clusters  |  make down")
    return 0


def down() -> int:
    client = Client(CONTROLLER, timeout=5)  # ~/.dockyard/credentials, written by `up`
    try:
        arns = client.call("ListTasks", {"startedBy": STARTED_BY})["taskArns"]
        for arn in arns:
            client.call("StopTask", {"task": arn, "reason": "make down"})
        _wait(
            "the sample task to stop",
            lambda: (
                not arns
                or all(
                    t["lastStatus"] == "STOPPED"
                    for t in client.call("DescribeTasks", {"tasks": arns})["tasks"]
                )
            ),
            timeout=40,
        )
    except (ApiError, SystemExit) as err:
        print(f"(controller not answering: {err}; stopping the daemons anyway)")
    for name in ("agent", "controller"):
        pidfile = DATA / f"{name}.pid"
        if _pid_alive(pidfile):
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
            print(f"{name}: stopped")
        pidfile.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit({"up": up, "down": down}[sys.argv[1]]())
