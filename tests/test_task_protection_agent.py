"""A task protects itself through `${ECS_AGENT_URI}/task-protection/v1/state` (issue 22), on
the machine's dockerd: real controller and agent processes. Requests come from inside the
task's container's network namespace (as tests/test_task_credentials.py does: busybox wget
cannot PUT), so the agent sees the task's own container as the caller. Then the service
scales 2 -> 1 and the protected task is the one kept."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import LocalCluster, docker, wait_for
from tests.test_task_credentials import _cluster, _in_netns

pytestmark = pytest.mark.docker

_CALL = """
import sys, urllib.request, urllib.error
data = sys.argv[3].encode() if len(sys.argv) > 3 else None
req = urllib.request.Request(sys.argv[2], data=data, method=sys.argv[1])
req.add_header("Content-Type", "application/json")
try:
    r = urllib.request.urlopen(req, timeout=15)
    print(r.status, r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
"""


@pytest.fixture
def cl(tmp_path: Path, sample_images: list[str]) -> Iterator[LocalCluster]:
    with _cluster(tmp_path) as (lc, _port):
        yield lc


def containers_by_task(lc: LocalCluster) -> dict[str, tuple[str, dict[str, str]]]:
    """task ARN -> (container id, its environment)."""
    out = {}
    for cid in lc.containers("a1"):
        cfg = json.loads(docker("inspect", cid))[0]["Config"]
        env = dict(e.split("=", 1) for e in cfg["Env"])
        out[cfg["Labels"]["com.amazonaws.ecs.task-arn"]] = (cid, env)
    return out


def call(cid: str, method: str, url: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    argv = [sys.executable, "-c", _CALL, method, url]
    out = _in_netns(cid, argv + ([json.dumps(body)] if body is not None else []))
    status, _, text = out.partition(" ")
    return int(status), json.loads(text)


def test_a_task_protects_itself_and_survives_scale_in(cl: LocalCluster) -> None:
    c = cl.client()
    td = {
        "family": "prot",
        "containerDefinitions": [{"name": "main", "image": "dockyard/sleeper", "memory": 32}],
    }
    c.call("RegisterTaskDefinition", td)
    c.call("CreateService", {"serviceName": "web", "taskDefinition": "prot", "desiredCount": 2})
    arns = wait_for(
        lambda: (lambda a: a if len(a) == 2 else None)(
            c.call("ListTasks", {"serviceName": "web"})["taskArns"]
        ),
        60,
        what="2 tasks",
    )
    tasks = cl.wait_status(arns, "RUNNING", timeout=90)
    keep = max(tasks, key=lambda t: (t["createdAt"], t["taskArn"]))["taskArn"]  # scale-in's pick
    other = next(a for a in arns if a != keep)
    found = wait_for(lambda: (lambda m: m if len(m) == 2 else None)(containers_by_task(cl)), 30)
    cid, env = found[keep]
    state = env["ECS_AGENT_URI"] + "/task-protection/v1/state"
    assert env["ECS_AGENT_URI"].startswith("http://169.254.170.2/api/")

    assert call(cid, "GET", state) == (
        200,
        {"protection": {"ProtectionEnabled": False, "TaskArn": keep}},
    )
    status, doc = call(cid, "PUT", state, {"ProtectionEnabled": True, "ExpiresInMinutes": 10})
    assert status == 200 and doc["protection"]["ProtectionEnabled"] is True
    assert doc["protection"]["ExpirationDate"].endswith("Z")
    got = c.call("GetTaskProtection", {"cluster": "default", "tasks": [keep]})["protectedTasks"][0]
    assert got["protectionEnabled"] is True

    status, doc = call(cid, "PUT", state, {"ExpiresInMinutes": 10})  # ProtectionEnabled missing
    assert status == 400 and "ProtectionEnabled" in doc["error"]["Message"]
    status, doc = call(cid, "PUT", state, {"ProtectionEnabled": True, "ExpiresInMinutes": 4000})
    assert status == 400 and "expiresInMinutes" in doc["error"]["Message"]
    other_env = found[other][1]  # the other task's URI, called from this task: refused
    assert call(cid, "GET", other_env["ECS_AGENT_URI"] + "/task-protection/v1/state")[0] == 403

    c.call("UpdateService", {"service": "web", "desiredCount": 1})
    wait_for(
        lambda: (
            c.call("ListTasks", {"serviceName": "web", "desiredStatus": "RUNNING"})["taskArns"]
            == [keep]
        ),
        60,
        what="scaled in to the protected task",
    )
    c.call("UpdateService", {"service": "web", "desiredCount": 0})
    c.call("DeleteService", {"service": "web", "force": True})
