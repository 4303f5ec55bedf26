"""The state gauges (controller/metrics.py) follow the change feed and survive a restart.

A property test drives the counts with random task and instance changes and compares them,
after each, with the tasks counted afresh (what /metrics computed at scrape time before the
gauges were fed by the feed); a real SQLite store then checks that committed changes move
the gauges, and that a controller's load (a restart, or a standby taking over: both build
the state with `StateOfRecord.load()`) starts them from what was stored.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from controller.feed import ChangeFeed
from controller.metrics import StateMetrics, TaskCounts
from controller.model import Instance, Task
from controller.state import ClusterState
from controller.state_of_record import StateOfRecord
from controller.store import SqliteStore

STATUSES = ("PROVISIONING", "PENDING", "RUNNING", "STOPPED")
INSTANCES = ("i0", "i1", "i2")


def task(n: int, instance: str) -> Task:
    return Task(f"t{n}", f"t{n}", "c", "f", 1, "f:1", instance, [], 1, 1, "g")


def expected(tasks: dict[str, Task], instances: dict[str, Instance]) -> tuple[Counter[str], int]:
    """Tasks per lastStatus, and tasks desired RUNNING on disconnected instances, counted."""
    gone = {arn for arn, inst in instances.items() if not inst.connected}
    on_gone = sum(t.desired_status == "RUNNING" and t.instance_arn in gone for t in tasks.values())
    return Counter(t.last_status for t in tasks.values()), on_gone


STEP = st.one_of(
    st.tuples(st.just("task"), st.integers(0, 5), st.sampled_from((*INSTANCES, ""))),
    st.tuples(st.just("status"), st.integers(0, 5), st.sampled_from(STATUSES)),
    st.tuples(st.just("stop"), st.integers(0, 5), st.just("")),
    st.tuples(st.just("link"), st.integers(0, 2), st.booleans()),
)


@given(st.lists(STEP, max_size=40))
def test_counts_match_the_tasks_after_every_change(steps: list[tuple[str, int, object]]) -> None:
    counts = TaskCounts()
    tasks: dict[str, Task] = {}
    instances = {arn: Instance(arn, arn, "c", connected=True) for arn in INSTANCES}
    for arn, inst in instances.items():
        counts.instance(arn, inst)
    for what, n, arg in steps:
        if what == "link":
            inst = instances[INSTANCES[n]]
            inst.connected = bool(arg)
            counts.instance(inst.arn, inst)
            continue
        if what == "task":
            tasks.setdefault(f"t{n}", task(n, str(arg)))
        t = tasks.get(f"t{n}")
        if t is None:
            continue
        if what == "status":
            t.last_status = str(arg)
        elif what == "stop":
            t.desired_status = "STOPPED"
        counts.task(t.arn, t)
        by_status, on_gone = expected(tasks, instances)
        assert {s: k for s, k in counts.by_status.items() if k} == by_status
        assert counts.on_disconnected == on_gone


def gauges(metrics: StateMetrics) -> tuple[dict[str, float], float]:
    reg = metrics.registry
    by_status = {s: reg.get_sample_value("dockyard_tasks", {"status": s}) or 0 for s in STATUSES}
    on_gone = reg.get_sample_value("dockyard_tasks_on_disconnected_instances")
    return {s: n for s, n in by_status.items() if n}, on_gone or 0.0


async def open_record(data_dir: Path) -> tuple[StateOfRecord, StateMetrics]:
    record = StateOfRecord(SqliteStore(data_dir), ChangeFeed())
    await record.store.open()
    await record.load()
    return record, StateMetrics(record.cluster, record.feed, lambda: 0)


async def test_committed_changes_move_the_gauges_and_a_restart_keeps_them(tmp_path: Path) -> None:
    record, metrics = await open_record(tmp_path)
    try:
        state: ClusterState = record.cluster
        inst = Instance("i0", "i0", "c", connected=True, cpu_total=100, memory_total=100)
        tasks = [task(n, "i0") for n in range(3)]
        await record.commit([state.put_instance(inst), *(state.add_task(t) for t in tasks)])
        assert gauges(metrics) == ({"PROVISIONING": 3}, 0)
        tasks[0].last_status = "RUNNING"
        assert gauges(metrics) == ({"PROVISIONING": 3}, 0)  # not committed yet
        await record.commit([state.save_task(tasks[0])])
        assert gauges(metrics) == ({"PROVISIONING": 2, "RUNNING": 1}, 0)
        tasks[1].desired_status = "STOPPED"
        inst.connected = False
        await record.commit([state.save_task(tasks[1]), state.put_instance(inst)])
        assert gauges(metrics) == ({"PROVISIONING": 2, "RUNNING": 1}, 2)
        assert metrics.registry.get_sample_value("dockyard_agents_connected") == 0
    finally:
        await record.store.close()
    again, metrics = await open_record(tmp_path)  # a restart: the one loader fills the gauges
    try:
        assert gauges(metrics) == ({"PROVISIONING": 2, "RUNNING": 1}, 2)
    finally:
        await again.store.close()
