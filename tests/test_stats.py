"""Per-task CPU and memory (issue 20) with a real controller, agent and dockerd: a task
burning CPU and one holding a known amount of memory, read the way users read them:
task metadata v4 /stats and /task/stats from inside the task (through
$ECS_CONTAINER_METADATA_URI_V4), `dockyard top`, DescribeUsage and /metrics.

One cluster for the module (the agent samples every second and reports every 2 s here):
the burning task holds a core for as short a time as the checks take.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from agent import netconfig
from dockyard import labels
from dockyard.cli.main import main
from tests.console_support import ConsoleClient
from tests.support import LocalCluster, docker, free_port, metric, scrape, wait_for

pytestmark = pytest.mark.docker

MIB = 1024 * 1024
HELD_MIB = 32  # what the "hold" task writes to its /dev/shm (tmpfs: charged to its cgroup)
BURN = ["sh", "-c", "while :; do :; done"]
HOLD = [
    "sh",
    "-c",
    f"head -c {HELD_MIB * MIB} /dev/zero > /dev/shm/blob && trap 'exit 0' TERM; sleep 86400 & wait",
]


def _taskdef(family: str, command: list[str], cpu: int, reservation: int) -> dict[str, Any]:
    return {
        "family": family,
        "containerDefinitions": [
            {
                "name": "main",
                "image": "dockyard/busybox",
                "command": command,
                "cpu": cpu,
                "memoryReservation": reservation,
                "memory": 256,
            }
        ],
    }


@pytest.fixture(scope="module")
def stats_cluster(
    tmp_path_factory: pytest.TempPathFactory, sample_images: list[str]
) -> Iterator[LocalCluster]:
    lc = LocalCluster(tmp_path_factory.mktemp("stats"))
    port = free_port()
    try:
        lc.start_controller()
        lc.start_agent(
            "a1",
            "--credentials-listen",
            f"127.0.0.1:{port}",
            "--stats-interval",
            "1",
            "--usage-report-interval",
            "2",
        )
        lc.wait_connected("a1")
        c = lc.client()
        for family, command, cpu in (("burn", BURN, 512), ("hold", HOLD, 256)):
            c.call("RegisterTaskDefinition", _taskdef(family, command, cpu, 128))
            body = {"serviceName": family, "taskDefinition": family, "desiredCount": 1}
            c.call("CreateService", body)
        wait_for(lambda: len(lc.containers("a1")) == 2, 60, what="both tasks' containers")
        yield lc
    finally:
        lc.stop()  # stops each agent with SIGTERM first: it removes its iptables chains
        asyncio.run(netconfig.drop_chain(netconfig.chain_name(port)))


def _cid(family: str) -> str:
    found = docker("ps", "-q", "--no-trunc", "--filter", f"label={labels.FAMILY}={family}").split()
    assert len(found) == 1, found
    return found[0]


def _inside(cid: str, path: str) -> Any:
    """GET ${ECS_CONTAINER_METADATA_URI_V4}<path> from inside the task's container."""
    out = docker("exec", cid, "sh", "-c", f'wget -q -O - "$ECS_CONTAINER_METADATA_URI_V4{path}"')
    return json.loads(out)


def _cores(doc: dict[str, Any]) -> float | None:
    """Cores busy between precpu_stats and cpu_stats of a Docker stats document."""
    if not doc or not doc["precpu_stats"].get("system_cpu_usage"):
        return None  # a first sample: nothing to compare with yet
    used = (
        doc["cpu_stats"]["cpu_usage"]["total_usage"]
        - doc["precpu_stats"]["cpu_usage"]["total_usage"]
    )
    system = doc["cpu_stats"]["system_cpu_usage"] - doc["precpu_stats"]["system_cpu_usage"]
    return used / system * doc["cpu_stats"]["online_cpus"] if system > 0 else None


def test_task_stats_from_inside_the_task(stats_cluster: LocalCluster) -> None:
    burn, hold = _cid("burn"), _cid("hold")
    # non-trivial: over 15 % of a core between two samples (the machine is shared: a
    # window may find the loop starting, or other work beside it)
    task = wait_for(
        lambda: (lambda d: d if (_cores(next(iter(d.values()), {})) or 0) > 0.15 else None)(
            _inside(burn, "/task/stats")
        ),
        30,
        interval=0.5,
        what="the burning task's CPU over 15 % of a core",
    )
    assert list(task) == [burn]  # keyed by Docker id, as ECS's /task/stats
    doc = task[burn]
    assert doc["id"] == burn and doc["name"].startswith("/")
    assert set(doc) >= {"read", "preread", "cpu_stats", "precpu_stats", "memory_stats"}
    assert doc["memory_stats"]["limit"] == 256 * MIB
    # idle once its start (writing the blob) is out of the window: near zero
    own = wait_for(
        lambda: (lambda d: d if (_cores(d) or 1.0) < 0.05 else None)(_inside(hold, "/stats")),
        30,
        interval=0.5,
        what="the idle task's CPU near zero",
    )
    assert own["id"] == hold and own["memory_stats"]["limit"] == 256 * MIB
    usage = own["memory_stats"]["usage"]
    assert HELD_MIB * MIB <= usage <= (HELD_MIB + 16) * MIB, usage


def _usage(lc: LocalCluster) -> dict[str, Any]:
    return lc.client().call("DescribeUsage")


def _reported(lc: LocalCluster) -> dict[str, Any] | None:
    doc = _usage(lc)
    names = {s["serviceName"] for s in doc["services"]}
    busy = [t for t in doc["tasks"] if t["serviceName"] == "burn" and t["cpuUnits"] > 150]
    idle = [t for t in doc["tasks"] if t["serviceName"] == "hold" and t["cpuUtilization"] < 5]
    return doc if names == {"burn", "hold"} and busy and idle else None


def test_top_and_service_averages(
    stats_cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    lc = stats_cluster
    doc = wait_for(lambda: _reported(lc), 40, interval=0.5, what="usage of both services")
    by_service = {s["serviceName"]: s for s in doc["services"]}
    burn, hold = by_service["burn"], by_service["hold"]
    # ECS's formula: used x 100 / reserved (512 units; 128 MiB memoryReservation)
    # (the last minute's average, start and a shared machine's contention included; the
    # formula itself: tests/test_utilization.py)
    assert burn["cpuUtilization"] > 10.0
    # the last minute's average: the idle task's start (writing its blob) may be in it
    assert hold["cpuUtilization"] < burn["cpuUtilization"] / 2
    task = next(t for t in doc["tasks"] if t["serviceName"] == "hold")
    assert HELD_MIB * MIB <= task["memoryBytes"] <= (HELD_MIB + 16) * MIB
    assert task["memoryReservedMiB"] == 128 and task["cpuReserved"] == 256
    assert 25.0 <= task["memoryUtilization"] <= 100 * (HELD_MIB + 16) / 128
    assert 0 < hold["memoryUtilization"] <= 100 * (HELD_MIB + 16) / 128  # the minute's
    assert doc["instances"][0]["tasks"] == 2
    creds = lc.credentials()
    assert creds is not None
    console = ConsoleClient(lc.http)  # the console's chart draws the same history
    assert console.sign_in(creds.access_key_id, creds.secret_access_key).status == 303
    chart = console.get("/ui/api/usage?cluster=default&service=burn").json()
    assert chart["available"] and chart["cpu"] and chart["cpu"][-1][1] > 10.0
    capsys.readouterr()
    assert main(["top", "--controller", lc.address]) == 0
    shown = capsys.readouterr().out
    with capsys.disabled():  # the session the README shows, with -s
        print(f"\n$ dockyard top\n{shown}")
    lines = shown.splitlines()
    assert lines[0].split()[:2] == ["SERVICE", "TASKS"]
    assert lines[1].split()[0] == "burn"  # sorted by CPU: the burner first
    task_lines = [line for line in lines if line.split()[:1] and line.split()[0] in ("burn",)]
    assert task_lines and "a1" in shown
    capsys.readouterr()
    assert main(["top", "--controller", lc.address, "--sort", "memory", "-o", "json"]) == 0
    assert {s["serviceName"] for s in json.loads(capsys.readouterr().out)["services"]} == {
        "burn",
        "hold",
    }


def test_metrics_per_service_and_per_task_behind_a_flag(stats_cluster: LocalCluster) -> None:
    lc = stats_cluster
    wait_for(lambda: _reported(lc), 40, interval=0.5, what="usage of both services")
    samples = scrape(lc.http_port)
    cpu = metric(samples, "dockyard_service_cpu_units", cluster="default", service="burn")
    assert cpu is not None and cpu > 150
    held = metric(samples, "dockyard_service_memory_bytes", cluster="default", service="hold")
    assert held is not None and held >= HELD_MIB * MIB
    pct = metric(
        samples, "dockyard_service_memory_utilization_percent", cluster="default", service="hold"
    )
    assert pct is not None and 0 < pct <= 100 * (HELD_MIB + 16) / 128  # the last minute's
    iid = lc.instance_id("a1")
    assert metric(samples, "dockyard_instance_task_cpu_units", cluster="default", instance=iid)
    assert not [s for s in samples if s.name.startswith("dockyard_task_")]
    # the same cluster, its controller restarted with --metrics-per-task
    assert lc.controller is not None
    lc.controller.kill()
    lc.start_controller("--metrics-per-task")
    lc.wait_connected("a1")

    def per_task() -> list[Any]:
        return [s for s in scrape(lc.http_port) if s.name == "dockyard_task_cpu_units"]

    found = wait_for(per_task, 30, interval=0.5, what="per-task series")
    assert {s.labels["service"] for s in found} == {"burn", "hold"}
