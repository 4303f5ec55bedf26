"""Who may call the task endpoint, without Docker: the real endpoint in-process, its callers
listed by a stand-in for the engine, connecting from 127.0.0.1 and 127.0.0.2 (two loopback
addresses play two containers); and the engine claim's lock files.

The same rules against real containers, real agent and controller: test_task_credentials.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent import callers, engine_claim
from agent.credentials import TaskEndpoint
from dockyard import labels
from dockyard.v1 import agent_pb2


def _row(docker_id: str, task: str, ip: str, mode: str = "bridge") -> dict[str, Any]:
    return {
        "Id": docker_id,
        "Labels": {labels.TASK_ARN: task, labels.CONTAINER_NAME: "main"},
        "HostConfig": {"NetworkMode": mode},
        "NetworkSettings": {"Networks": {"bridge": {"IPAddress": ip}}},
    }


def test_index_maps_bridge_addresses_and_leaves_host_network_ones_to_tracing() -> None:
    by_address, by_id = callers.index(
        [_row("a" * 64, "task/a", "172.17.0.2"), _row("h" * 64, "task/h", "", mode="host")]
    )
    assert by_address == {"172.17.0.2": callers.Caller("task/a", "main", "a" * 64)}
    assert set(by_id) == {"a" * 64, "h" * 64}


def test_proc_net_tcp_parsing() -> None:
    assert callers.parse_hex_endpoint("0100007F:1F90") == ("127.0.0.1", 8080)
    mapped = "0000000000000000FFFF00000200FEA9:0050"
    assert callers.parse_hex_endpoint(mapped) == ("169.254.0.2", 80)
    assert callers.parse_hex_endpoint("nonsense") is None
    table = [
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
        "timeout inode",
        "   0: 0100007F:1F90 0200FEA9:0050 01 00000000:00000000 00:00000000 00000000     0  "
        "      0 4242 1 0000000000000000 20 4 30 10 -1",
    ]
    assert callers.socket_inode(table, "127.0.0.1", 8080) == 4242
    assert callers.socket_inode(table, "127.0.0.1", 8081) is None
    cid = "c" * 64
    assert callers.container_in_cgroup(f"0::/system.slice/docker-{cid}.scope\n") == cid
    assert callers.container_in_cgroup("0::/user.slice\n") == ""


async def _endpoint(tmp_path: Path, rows: list[dict[str, Any]]) -> TaskEndpoint:
    async def inspect(_: str) -> dict[str, Any] | None:
        return None

    async def lister() -> list[dict[str, Any]]:
        return rows

    endpoint = TaskEndpoint("127.0.0.1:0", "iptables", tmp_path, "unix:///nowhere", inspect, lister)
    endpoint.redirect.apply = _nothing  # type: ignore[method-assign]  # no iptables here
    await endpoint.start()
    creds = {
        t: agent_pb2.Credentials(
            id=f"id-{t}", access_key_id=f"AKID{t}", expiration=int(time.time()) + 3600
        )
        for t in ("a", "b")
    }
    desired = {
        f"task/{t}": agent_pb2.DesiredTask(
            task_arn=f"task/{t}",
            desired_status="RUNNING",
            credentials=c,
            containers=[agent_pb2.ContainerSpec(name="main")],
        )
        for t, c in creds.items()
    }
    running = agent_pb2.TaskStatus(last_status="RUNNING")
    endpoint.update(desired, {arn: running for arn in desired})
    return endpoint


async def _nothing() -> None:
    return None


async def _get(port: int, path: str, source: str) -> tuple[int, dict[str, Any]]:
    connector = aiohttp.TCPConnector(local_addr=(source, 0), force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.get(f"http://127.0.0.1:{port}{path}") as resp:
            return resp.status, await resp.json()


async def test_each_task_reads_only_its_own_and_strangers_nothing(tmp_path: Path) -> None:
    rows = [_row("a" * 64, "task/a", "127.0.0.1"), _row("b" * 64, "task/b", "127.0.0.2")]
    endpoint = await _endpoint(tmp_path, rows)
    try:
        port = endpoint.port
        assert (await _get(port, "/v2/credentials/id-a", "127.0.0.1"))[1]["AccessKeyId"] == "AKIDa"
        assert (await _get(port, "/v2/credentials/id-b", "127.0.0.2"))[1]["AccessKeyId"] == "AKIDb"
        status, body = await _get(port, "/v2/credentials/id-b", "127.0.0.1")  # a knows b's id
        assert status == 403 and "AKIDb" not in json.dumps(body)
        assert (await _get(port, "/v2/credentials/bogus", "127.0.0.1"))[0] == 400
        meta_b = endpoint.metadata_id("task/b", "main")
        assert (await _get(port, f"/v4/{meta_b}/task", "127.0.0.1"))[0] == 403
        assert (await _get(port, f"/v4/{meta_b}/task", "127.0.0.2"))[1]["TaskARN"] == "task/b"
        # a container this agent did not start: nothing at all, even with a valid id
        assert (await _get(port, "/v2/credentials/id-a", "127.0.0.3"))[0] == 403
    finally:
        await endpoint.stop()


async def test_a_flooding_task_is_throttled_alone(tmp_path: Path) -> None:
    rows = [_row("a" * 64, "task/a", "127.0.0.1"), _row("b" * 64, "task/b", "127.0.0.2")]
    endpoint = await _endpoint(tmp_path, rows)
    try:
        port = endpoint.port
        flood = await asyncio.gather(
            *(_get(port, "/v2/credentials/id-a", "127.0.0.1") for _ in range(150))
        )
        assert sum(s == 429 for s, _ in flood) >= 50  # 60 burst, then 40/s
        own = [await _get(port, "/v2/credentials/id-b", "127.0.0.2") for _ in range(20)]
        assert [s for s, _ in own] == [200] * 20
    finally:
        await endpoint.stop()


# ------------------------------------------------------------------ engine claim

_HOLD = """
import sys, time
from pathlib import Path
from agent import engine_claim
state, shared = Path(sys.argv[1]), sys.argv[2] == "1"
claim = engine_claim.acquire("ENGINE:ONE", "unix:///x", "i-first", state, shared)
print("held", flush=True)
time.sleep(60)
"""


@contextlib.contextmanager
def _first_agent(tmp_path: Path, shared: bool) -> Iterator[None]:
    """Another process holding engine ENGINE:ONE as agent i-first, SIGKILLed after (no
    clean-up of its own, like an agent that crashed)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(tmp_path / "first-state"), "1" if shared else "0"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "DOCKYARD_ENGINE_LOCK_DIR": str(tmp_path / "locks")},
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DOCKYARD_ENGINE_LOCK_DIR", str(tmp_path / "locks"))
    return tmp_path / "locks"


def test_a_second_agent_on_an_engine_is_refused_naming_the_first(
    tmp_path: Path, locks: Path
) -> None:
    with _first_agent(tmp_path, shared=False):
        with pytest.raises(engine_claim.EngineClaimed) as err:
            engine_claim.acquire("ENGINE:ONE", "unix:///x", "i-second", tmp_path / "s2")
        text = str(err.value)
        assert "i-first" in text and str((tmp_path / "first-state").resolve()) in text
        with pytest.raises(engine_claim.EngineClaimed):  # shared does not get in either
            engine_claim.acquire("ENGINE:ONE", "unix:///x", "i-second", tmp_path / "s2", True)
        other = engine_claim.acquire("ENGINE:TWO", "unix:///y", "i-other", tmp_path / "s3")
        other.release()  # another engine is another claim
    # the dead agent's claim does not block, and its holder file goes
    claim = engine_claim.acquire("ENGINE:ONE", "unix:///x", "i-second", tmp_path / "s2")
    try:
        holders = list(locks.glob("*.holder"))
        assert [json.loads(p.read_text())["instance_id"] for p in holders] == ["i-second"]
    finally:
        claim.release()


def test_shared_agents_coexist_but_never_with_an_exclusive_one(tmp_path: Path, locks: Path) -> None:
    with _first_agent(tmp_path, shared=True):
        second = engine_claim.acquire("ENGINE:ONE", "unix:///x", "i-2", tmp_path / "s2", True)
        second.release()
        with pytest.raises(engine_claim.EngineClaimed, match="i-first"):
            engine_claim.acquire("ENGINE:ONE", "unix:///x", "i-3", tmp_path / "s3")
