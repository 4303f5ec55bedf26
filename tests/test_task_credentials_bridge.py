"""Bridge-network fallback mode (`--credentials-mode bridge`) on the machine's dockerd.

At its start the agent makes the `dockyard-task-endpoint` network (169.254.170.0/24) and
starts the busybox forwarder on 169.254.170.2; it puts each bridge-network task, with or
without a role, on that network before it starts, so a container reading its credentials or
metadata as its very first action gets them (host-network ones through the host's route to
that network; an iptables-mode agent running meanwhile on this machine would take those). A
clean stop removes the forwarder and the network. The agent reports the mode it uses as the
instance attribute `dockyard.credentials-mode` and in its log.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import netconfig
from tests.support import LocalCluster, docker, free_port, wait_for

pytestmark = pytest.mark.docker
FETCH = "wget -q -O - http://169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"
SLEEP = "trap 'exit 0' TERM; sleep 86400 & wait"  # as dockyard/sleeper: stops on SIGTERM


def _exists(kind: str, name: str) -> bool:
    out = subprocess.run(["docker", kind, "inspect", name], capture_output=True, check=False)
    return out.returncode == 0


@pytest.fixture
def bridge_cluster(tmp_path: Path, sample_images: list[str]) -> Iterator[LocalCluster]:
    if _exists("network", netconfig.NETWORK) or _exists("container", netconfig.FORWARDER):
        pytest.skip("another bridge-mode agent uses this engine's dockyard-task-endpoint")
    lc = LocalCluster(tmp_path)
    port = free_port()
    try:
        lc.start_controller()
        lc.start_agent(
            "a1", "--credentials-mode", "bridge", "--credentials-listen", f"127.0.0.1:{port}"
        )
        lc.wait_connected("a1")
        yield lc
    finally:
        lc.stop()  # whatever a failed test left of ours is removed below
        docker("rm", "-f", netconfig.FORWARDER)
        docker("network", "rm", netconfig.NETWORK)


def _run(lc: LocalCluster, family: str, **extra: Any) -> str:
    command = extra.pop("command", None)
    container: dict[str, Any] = {"name": "main", "image": "dockyard/sleeper", "memory": 32}
    if command:
        container["command"] = ["sh", "-c", command]
    c = lc.client()
    td = {"family": family, "containerDefinitions": [container], **extra}
    c.call("RegisterTaskDefinition", td)
    arn = str(c.call("RunTask", {"taskDefinition": family})["tasks"][0]["taskArn"])
    lc.wait_status([arn], "RUNNING")
    return arn


def _container(arn: str) -> str:
    return docker("ps", "-q", "--filter", f"label=com.amazonaws.ecs.task-arn={arn}").split()[0]


def _sh(cid: str, script: str) -> str:
    return docker("exec", cid, "sh", "-c", script)


def _stop_cleanly(lc: LocalCluster, arns: list[str]) -> None:
    """Stop the tasks, then the agent with SIGTERM: its forwarder and network go."""
    for arn in arns:
        lc.client().call("StopTask", {"task": arn})
    lc.wait_status(arns, "STOPPED")
    lc.agents["a1"].kill(signal.SIGTERM)
    assert not _exists("container", netconfig.FORWARDER)
    assert not _exists("network", netconfig.NETWORK)


def test_bridge_mode_serves_169_254_170_2_through_the_forwarder(
    bridge_cluster: LocalCluster,
) -> None:
    lc = bridge_cluster
    inst = lc.wait_connected("a1")
    attrs = {a["name"]: a.get("value") for a in inst["attributes"]}
    assert attrs["dockyard.credentials-mode"] == "bridge"
    assert "credentials mode bridge (requested bridge)" in (lc.root / "agent-a1.log").read_text()
    c = lc.client()
    c.call("CreateRole", {"roleName": "br", "accessKeyId": "AKIDBRIDGE", "secretAccessKey": "s"})
    # the container's first action is the fetch: it must already be on the endpoint network
    first = _run(lc, "br-a", taskRoleArn="br", command=f"{FETCH}; echo; {SLEEP}")
    other = _run(lc, "br-b", taskRoleArn="br")
    on_host = _run(lc, "br-h", taskRoleArn="br", networkMode="host")
    ca, cb, ch = (_container(arn) for arn in (first, other, on_host))
    logged = wait_for(lambda: docker("logs", ca), 20, what="the task's own fetch")
    assert json.loads(logged)["AccessKeyId"] == "AKIDBRIDGE"
    forwarder = json.loads(docker("inspect", netconfig.FORWARDER))[0]
    net = forwarder["NetworkSettings"]["Networks"][netconfig.NETWORK]
    assert net["IPAddress"] == netconfig.ENDPOINT_IP and forwarder["State"]["Running"]
    assert json.loads(_sh(ch, FETCH))["AccessKeyId"] == "AKIDBRIDGE"  # host network too
    assert "400" in _sh(ca, "wget -q -O - http://169.254.170.2/v2/credentials/bogus 2>&1 || :")
    b_uri = _sh(cb, "echo $AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").strip()
    assert json.loads(_sh(cb, f"wget -q -O - http://169.254.170.2{b_uri}"))["RoleArn"]
    # the forwarder names each caller: a task reads only its own, through it too
    assert "403" in _sh(ca, f"wget -q -O - http://169.254.170.2{b_uri} 2>&1 || :")
    assert "403" in _sh(ch, f"wget -q -O - http://169.254.170.2{b_uri} 2>&1 || :")
    c.call("StopTask", {"task": other})
    lc.wait_status([other], "STOPPED")
    revoked = f"wget -q -O - http://169.254.170.2{b_uri} 2>&1 || :"
    wait_for(lambda: "400" in _sh(ca, revoked), 20, what="revoked id refused")
    _stop_cleanly(lc, [first, on_host])
    assert "task endpoint routing removed (bridge mode)" in (lc.root / "agent-a1.log").read_text()


META = (
    "wget -q -O - $ECS_CONTAINER_METADATA_URI_V4; echo; "
    "wget -q -O - $ECS_CONTAINER_METADATA_URI_V4/task; echo; "
    f"{SLEEP}"
)


def _metadata_logged(cid: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (container, task) documents the container fetched as its first action."""
    lines = wait_for(
        lambda: (lambda ls: ls if len(ls) == 2 else None)(docker("logs", cid).splitlines()),
        20,
        what="the container's own metadata fetches",
    )
    return json.loads(lines[0]), json.loads(lines[1])


def test_tasks_without_a_role_reach_their_metadata(bridge_cluster: LocalCluster) -> None:
    lc = bridge_cluster
    # set up at agent start, as ECS's agent does, not when a task with a role first runs
    wait_for(lambda: _exists("container", netconfig.FORWARDER), 60, what="forwarder at agent start")
    bridged = _run(lc, "meta-b", command=META)
    on_host = _run(lc, "meta-h", command=META, networkMode="host")
    for arn in (bridged, on_host):
        cid = _container(arn)
        env = _sh(cid, "env")
        assert "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI" not in env  # no role
        mine, task = _metadata_logged(cid)
        assert mine["Name"] == "main" and mine["DockerId"].startswith(cid)
        assert task["TaskARN"] == arn and [c["Name"] for c in task["Containers"]] == ["main"]
    _stop_cleanly(lc, [bridged, on_host])
