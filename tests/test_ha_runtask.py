"""Leader SIGKILL while 200 RunTask calls are in flight: nothing acknowledged is lost, nothing
is started twice.

Two controllers on one real etcd, 30 simulated agents (`dockyard sim`, the real agent
protocol) given both addresses. 200 threads send RunTask at once to the leader, each with
its own clientToken and startedBy; the leader is SIGKILLed as soon as 20 are acknowledged.
Then every call that was not acknowledged is sent again, with the same clientToken, to the
survivor (as a client retrying would), and the state is read back from it: every task
acknowledged before the kill is there, as the same task, and every one of the 200 exists
exactly once (a call the dead leader committed without answering is not run again)."""

from __future__ import annotations

import signal
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from dockyard.client import Client
from tests.etcd_fixture import EtcdCluster
from tests.support import wait_for
from tests.test_ha import controllers, etcd, leader_and_standby, simulated_agents  # noqa: F401

CALLS = 200
KILL_AFTER = 20  # acknowledged calls before the SIGKILL
SIM_AGENTS = 30  # 10 task slots each (dockyard sim's default): room for every task
TASK = {
    "family": "burst",
    "containerDefinitions": [{"name": "s", "image": "sim", "cpu": 128, "memory": 128}],
}


def run_task(client: Client, n: int) -> list[str]:
    reply = client.call(
        "RunTask", {"taskDefinition": "burst", "clientToken": f"burst-{n}", "startedBy": f"b{n}"}
    )
    assert not reply.get("failures"), reply
    return [t["taskArn"] for t in reply["tasks"]]


def all_tasks(client: Client) -> list[dict[str, Any]]:
    arns: list[str] = []
    token = ""
    while True:
        page = client.call(
            "ListTasks", {"maxResults": 100, **({"nextToken": token} if token else {})}
        )
        arns += page["taskArns"]
        token = page.get("nextToken", "")
        if not token:
            break
    tasks = []
    for i in range(0, len(arns), 100):
        tasks += client.call("DescribeTasks", {"tasks": arns[i : i + 100]})["tasks"]
    return tasks


@pytest.mark.timeout(300)
def test_leader_sigkill_during_200_concurrent_runtasks_loses_and_duplicates_nothing(
    etcd: EtcdCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    with controllers(etcd, tmp_path, "a", "b", tls=False) as ctls:
        a, b = leader_and_standby(ctls)
        a.client().call("CreateCluster", {"clusterName": "default"})
        with simulated_agents([a, b], tmp_path, SIM_AGENTS):
            wait_for(lambda: a.connected_agents() == SIM_AGENTS, 60, what="agents on a")
            a.client().call("RegisterTaskDefinition", TASK)
            acked: dict[int, list[str]] = {}
            refused: dict[int, str] = {}
            start = threading.Barrier(CALLS)
            client = a.client()

            def call(n: int) -> None:
                start.wait()
                try:
                    acked[n] = run_task(client, n)
                except Exception as err:  # not acknowledged: the client retries below
                    refused[n] = repr(err)

            with ThreadPoolExecutor(CALLS) as pool:
                futures = [pool.submit(call, n) for n in range(CALLS)]
                wait_for(lambda: len(acked) >= KILL_AFTER, 60, interval=0.005, what="acks")
                a.signal(signal.SIGKILL)
                at_kill = len(acked)
                for f in futures:
                    f.result(timeout=60)
            answered = dict(acked)  # acknowledged by the leader before it died
            wait_for(b.serving, 20, what="b leading")
            survivor = b.client()
            for n in sorted(refused):  # a client's retry: same clientToken, on the survivor
                wait_for(lambda n=n: _retried(survivor, n, acked), 30, what=f"retry {n}")
            tasks = all_tasks(survivor)
        by_caller = Counter(t["startedBy"] for t in tasks)
        arns = {t["startedBy"]: t["taskArn"] for t in tasks}
        print(
            f"\n{CALLS} RunTask: {at_kill} acknowledged when the SIGKILL was sent, "
            f"{len(answered)} by the leader in all, {len(refused)} not acknowledged (retried "
            f"on the survivor); {len(tasks)} tasks afterwards"
        )
        assert len(refused) > 0, "the kill came too late: no call was in flight"
        assert by_caller == Counter({f"b{n}": 1 for n in range(CALLS)}), by_caller
        for n, got in answered.items():
            assert [arns[f"b{n}"]] == got, (n, got)  # the acknowledged task, not another


def _retried(client: Client, n: int, acked: dict[int, list[str]]) -> bool:
    try:
        acked[n] = run_task(client, n)
    except Exception:
        return False
    return True
