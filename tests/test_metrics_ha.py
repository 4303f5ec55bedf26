"""The state gauges (controller/metrics.py) after an HA takeover, on a real etcd.

A standby's state is built from etcd's watch into its store's hot copy; when it is elected,
its controller loads the state from that copy (`StateOfRecord.load()`) and its gauges start
from it. They must read what the old leader's read, and go on following commits, including
ones its store's watch hands over as documents (another writer's), not objects.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.feed import ChangeFeed
from controller.metrics import StateMetrics
from controller.model import Instance, Task, to_doc
from controller.records import Put
from controller.state_of_record import StateOfRecord
from controller.store_etcd import EtcdStore
from tests.etcd_fixture import EtcdCluster, etcd_server
from tests.test_metrics import gauges, task
from tests.test_store_etcd import wait_until


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdCluster]:
    with etcd_server() as cluster:
        yield cluster


async def test_a_standby_that_takes_over_reports_the_leaders_counts(
    etcd: EtcdCluster, tmp_path: Path
) -> None:
    spec = f"{etcd.url}?prefix=/t-{uuid.uuid4().hex[:8]}"
    leader = StateOfRecord(EtcdStore(spec, tmp_path / "a"), ChangeFeed())
    standby = StateOfRecord(EtcdStore(spec, tmp_path / "b"), ChangeFeed())  # built at start
    try:
        await leader.store.open()
        await standby.store.open()
        await leader.load()
        ours = StateMetrics(leader.cluster, leader.feed, lambda: 0)
        state = leader.cluster
        inst = Instance("i0", "i0", "c", connected=True, cpu_total=100, memory_total=100)
        tasks = [task(n, "i0") for n in range(4)]
        await leader.commit([state.put_instance(inst), *(state.add_task(t) for t in tasks)])
        tasks[0].last_status = tasks[1].last_status = "RUNNING"
        tasks[3].desired_status = "STOPPED"
        await leader.commit([state.save_task(t) for t in tasks])
        expect = ({"PROVISIONING": 2, "RUNNING": 2}, 0.0)
        assert gauges(ours) == expect

        await standby.store.catch_up(leader.store.revision)  # what ha.serve does first
        await standby.load()
        theirs = StateMetrics(standby.cluster, standby.feed, lambda: 0)
        assert gauges(theirs) == ({"PROVISIONING": 2, "RUNNING": 2}, 3.0)  # no agent yet

        # a commit its watch hands over as documents (another writer's) is counted too
        moved: Task = tasks[2]
        moved.last_status = "RUNNING"
        inst.connected = False
        await leader.commit(
            [
                Put("task", moved.arn, "c", to_doc(moved)),
                Put("instance", inst.arn, "c", to_doc(inst)),
            ]
        )
        want = ({"PROVISIONING": 1, "RUNNING": 3}, 3.0)
        await wait_until(lambda: gauges(theirs) == want)
    finally:
        await standby.store.close()
        await leader.store.close()
