"""Bridge-network fallback mode (`--credentials-mode bridge`) on the machine's dockerd.

The agent makes the `dockyard-task-endpoint` network (169.254.170.0/24), starts the busybox
forwarder on 169.254.170.2 and puts each bridge-network task on that network before it
starts, so a container reading its credentials as its very first action gets them. A clean
stop removes the forwarder and the network. The agent reports the mode it uses as the
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
        lc.stop()  # SIGKILL: whatever a failed test left of ours is removed below
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
    assert json.loads(_sh(ca, f"wget -q -O - http://169.254.170.2{b_uri}"))["RoleArn"]
    c.call("StopTask", {"task": other})
    lc.wait_status([other], "STOPPED")
    revoked = f"wget -q -O - http://169.254.170.2{b_uri} 2>&1 || :"
    wait_for(lambda: "400" in _sh(ca, revoked), 20, what="revoked id refused")
    for arn in (first, on_host):
        c.call("StopTask", {"task": arn})
    lc.wait_status([first, on_host], "STOPPED")
    lc.agents["a1"].kill(signal.SIGTERM)  # clean stop: forwarder and network go
    assert not _exists("container", netconfig.FORWARDER)
    assert not _exists("network", netconfig.NETWORK)
    assert "task endpoint routing removed (bridge mode)" in (lc.root / "agent-a1.log").read_text()
