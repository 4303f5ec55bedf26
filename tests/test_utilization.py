"""Pure tests of the usage math (issue 20): ECS's service utilisation formula, the
controller's bounded history, and the agent's readings -> Docker stats shape."""

from __future__ import annotations

import pytest

from agent.usage_shape import (
    Reading,
    cpu_units,
    docker_stats,
    memory_in_use,
    parse_flat_keyed,
    parse_net_dev,
    parse_proc_stat_ns,
)
from controller.model import ContainerState, Task
from controller.usage import BUCKET_S, HORIZON_S, UsageHistory
from controller.utilization import (
    MIB,
    TaskSample,
    average,
    service_average,
    task_cpu_percent,
    task_memory_percent,
)
from dockyard.v1 import agent_pb2


def _s(at: float, cpu: float, mem_mib: float, cpu_res: int = 512, mem_res: int = 128) -> TaskSample:
    return TaskSample(at, cpu, int(mem_mib * MIB), cpu_res, mem_res)


def test_service_average_is_used_over_reserved_times_tasks() -> None:
    """ECS: sum used x 100 / (reserved per task x tasks)."""
    got = average([_s(0, 512, 64), _s(0, 0, 32)])  # one task busy at its share, one idle
    assert got.cpu == pytest.approx(50.0) and got.memory == pytest.approx(37.5)
    assert got.samples == 2


def test_usage_above_the_reservation_exceeds_100_percent() -> None:
    """CPU shares are a floor on EC2: a task may use a whole core on 256 units reserved."""
    assert task_cpu_percent(_s(0, 1024, 10, cpu_res=256)) == pytest.approx(400.0)


def test_nothing_reserved_gives_none_and_is_left_out() -> None:
    lone = _s(0, 300, 10, cpu_res=0, mem_res=0)
    assert task_cpu_percent(lone) is None and task_memory_percent(lone) is None
    assert average([lone]).cpu is None and average([]).memory is None
    # a task without a reservation does not dilute the others' figure
    assert average([lone, _s(0, 256, 64)]).cpu == pytest.approx(50.0)


def test_mixed_reservations_weigh_by_what_each_reserves() -> None:
    """During a deployment two definitions reserve differently: sum over sum."""
    got = average([_s(0, 1024, 0, cpu_res=1024), _s(0, 0, 0, cpu_res=256)])
    assert got.cpu == pytest.approx(1024 * 100 / 1280)


def test_service_average_takes_the_last_period_only() -> None:
    samples = [_s(0, 512, 0), _s(50, 0, 0), _s(100, 256, 0)]
    assert service_average(samples, now=100, period_s=60).cpu == pytest.approx(25.0)
    assert service_average(samples, now=100, period_s=120).cpu == pytest.approx(
        (0 + 0 + 256) * 100 / (3 * 512) + 512 * 100 / (3 * 512)
    )


def _task(arn: str, instance: str, service: str = "web", cpu: int = 512, mem: int = 128) -> Task:
    return Task(
        arn=arn,
        id=arn[-4:],
        cluster="default",
        family="web",
        revision=1,
        task_definition_arn="td",
        instance_arn=instance,
        containers=[ContainerState(name="main", image="busybox")],
        cpu=cpu,
        memory=mem,
        group=f"service:{service}",
        service=service,
    )


def _report(*tasks: tuple[str, float, int]) -> agent_pb2.UsageReport:
    return agent_pb2.UsageReport(
        window_s=15,
        tasks=[
            agent_pb2.TaskUsage(
                task_arn=arn,
                containers=[agent_pb2.ContainerUsage(name="main", cpu_units=cpu, memory_bytes=m)],
            )
            for arn, cpu, m in tasks
        ],
    )


def test_history_refuses_other_instances_tasks_and_buckets_per_service() -> None:
    tasks = {"t1": _task("t1", "i1"), "t2": _task("t2", "i1"), "t3": _task("t3", "i2")}
    h = UsageHistory()
    foreign = h.ingest(
        "i1", _report(("t1", 512, 64 * MIB), ("t3", 9, 9), ("ghost", 1, 1)), tasks, 1000
    )
    assert foreign == ["t3", "ghost"]
    h.ingest("i1", _report(("t2", 0, 32 * MIB)), tasks, 1005)
    assert {r.task_arn for r in h.tasks("default", now=1010)} == {"t1", "t2"}
    now = h.service_now("default", "web", now=1010)
    assert now.cpu == pytest.approx(50.0) and now.memory == pytest.approx(37.5)
    series = h.service_history("default", "web")
    assert series == [(1000 // BUCKET_S * BUCKET_S, pytest.approx(50.0), pytest.approx(37.5))]
    assert h.tasks("other", now=1010) == [] and h.service_history("default", "nope") == []


def test_history_is_bounded_to_the_horizon() -> None:
    tasks = {"t1": _task("t1", "i1")}
    h = UsageHistory()
    for k in range(400):  # 400 reports 15 s apart: 100 minutes
        h.ingest("i1", _report(("t1", 100, MIB)), tasks, 10_000 + 15 * k)
    end = 10_000 + 15 * 399
    h.prune(end)
    series = h.service_history("default", "web")
    assert series[0][0] >= end - HORIZON_S - BUCKET_S
    assert len(series) <= HORIZON_S / BUCKET_S + 1
    assert len(h.by_task["t1"].samples) <= 8
    h.prune(end + HORIZON_S + BUCKET_S)  # an hour (and a bucket) after the last: all gone
    assert h.by_task == {} and h.buckets == {}


def _reading(at: float, cpu_ns: int, **kw: object) -> Reading:
    return Reading(at=at, cpu_ns=cpu_ns, system_ns=int(at * 2e9), online_cpus=2, **kw)  # type: ignore[arg-type]


def test_cpu_units_between_two_readings() -> None:
    assert cpu_units(_reading(10, 0), _reading(12, 1_000_000_000)) == pytest.approx(512.0)
    assert cpu_units(None, _reading(12, 5)) == 0.0
    assert cpu_units(_reading(10, 9), _reading(12, 5)) == 0.0  # restarted: counters reset


def test_memory_in_use_leaves_out_inactive_file_cache() -> None:
    v1 = _reading(1, 0, memory_usage=100, memory_stats={"total_inactive_file": 30})
    v2 = _reading(1, 0, memory_usage=100, memory_stats={"inactive_file": 40}, cgroup_v2=True)
    assert memory_in_use(v1) == 70 and memory_in_use(v2) == 60


def test_docker_stats_shape_has_precpu_from_the_previous_reading() -> None:
    prev = _reading(10, 100, memory_usage=5, memory_limit=9)
    cur = _reading(
        11, 200, memory_usage=6, memory_limit=9, pids=3, networks={"eth0": {"rx_bytes": 1}}
    )
    doc = docker_stats(prev, cur, "ecs-web-1", "abc")
    assert doc["name"] == "/ecs-web-1" and doc["id"] == "abc"
    assert doc["cpu_stats"]["cpu_usage"]["total_usage"] == 200
    assert doc["precpu_stats"]["cpu_usage"]["total_usage"] == 100
    assert doc["precpu_stats"]["system_cpu_usage"] == prev.system_ns
    assert doc["memory_stats"] == {"usage": 6, "stats": {}, "limit": 9}
    assert doc["pids_stats"] == {"current": 3} and doc["networks"]["eth0"]["rx_bytes"] == 1
    first = docker_stats(None, cur, "x", "abc")
    assert first["preread"] == "0001-01-01T00:00:00Z"
    assert "system_cpu_usage" not in first["precpu_stats"]


def test_parsers() -> None:
    assert parse_flat_keyed("usage_usec 12\nuser_usec 7\nbad x\n") == {
        "usage_usec": 12,
        "user_usec": 7,
    }
    net = (
        "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed "
        "multicast|bytes packets errs drop fifo colls carrier compressed\n"
        "    lo: 5 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0\n"
        "  eth0: 100 2 0 0 0 0 0 0 300 4 0 1 0 0 0 0\n"
    )
    assert parse_net_dev(net) == {
        "eth0": {
            "rx_bytes": 100,
            "rx_packets": 2,
            "rx_errors": 0,
            "rx_dropped": 0,
            "tx_bytes": 300,
            "tx_packets": 4,
            "tx_errors": 0,
            "tx_dropped": 1,
        }
    }
    assert parse_proc_stat_ns("cpu  1 2 3 4 5 6 7 8 9 10\ncpu0 ...", 100) == 36 * 10_000_000
