"""Chaos on the multi-host lab: each test breaks something real, waits with deadlines, and
ends with `dockyard verify` clean (no orphans, nothing missing, no duplicates)."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from dockyard.errors import ApiError
from dockyard.lab import Lab
from dockyard.lab.verify import collect
from tests.support import wait_for

pytestmark = pytest.mark.lab


def verify_clean(lab: Lab) -> None:
    sockets = {h.name: h.docker_host for h in lab.hosts}

    def clean() -> bool:
        report = collect(lab.controller_address, lab.cluster, sockets)
        return not report.violations

    wait_for(clean, 30, interval=0.5, what="dockyard verify clean")


def containers_by_task(lab: Lab) -> Counter[str]:
    """Running containers per task ARN across every host's engine."""
    counts: Counter[str] = Counter()
    for h in lab.hosts:
        out = lab.docker(h.name, "ps", "--format", '{{.Label "dockyard.task-arn"}}')
        counts.update(line for line in out.split() if line)
    return counts


def ensure_controller(lab: Lab) -> None:
    """Leave the session's lab with a controller, whatever the test did."""
    try:
        lab.client(timeout=3).call("ListClusters")
    except ApiError:
        lab.start_controller()


def stop_all(lab: Lab, arns: list[str]) -> None:
    client = lab.client()
    for arn in arns:
        try:
            client.call("StopTask", {"cluster": lab.cluster, "task": arn})
        except ApiError:
            pass

    def stopped() -> bool:
        tasks = describe(lab, arns)
        return all(t["lastStatus"] == "STOPPED" for t in tasks)

    wait_for(stopped, 90, interval=0.5, what="tasks stopped")


def list_family(lab: Lab, family: str) -> list[str]:
    client, arns, token = lab.client(), [], None
    while True:
        body = {"cluster": lab.cluster, "family": family, **({"nextToken": token} if token else {})}
        out = client.call("ListTasks", body)
        arns += out["taskArns"]
        token = out.get("nextToken")
        if not token:
            return arns


def describe(lab: Lab, arns: list[str]) -> list[dict[str, Any]]:
    client = lab.client()
    out: list[dict[str, Any]] = []
    for i in range(0, len(arns), 100):
        out += client.call("DescribeTasks", {"cluster": lab.cluster, "tasks": arns[i : i + 100]})[
            "tasks"
        ]
    return out


def test_controller_killed_during_concurrent_run_tasks(lab: Lab) -> None:
    """Every acknowledged RunTask survives a SIGKILL of the controller exactly once."""
    if not lab.has_control_plane:
        pytest.skip("the lab has no control plane")
    client = lab.client(timeout=10)
    client.call(
        "RegisterTaskDefinition",
        {
            "family": "chaos-burst",
            "containerDefinitions": [{"name": "s", "image": lab.image("sleeper"), "memory": 8}],
        },
    )
    acked: list[str] = []
    lock = threading.Lock()
    killed = threading.Event()

    def one(_: int) -> None:
        try:
            out = client.call("RunTask", {"cluster": lab.cluster, "taskDefinition": "chaos-burst"})
        except ApiError:
            return  # not acknowledged: the controller died first; the caller would retry
        with lock:
            acked.extend(t["taskArn"] for t in out["tasks"])
            if len(acked) >= 60 and not killed.is_set():
                killed.set()
                lab.kill_controller()

    try:
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(one, range(200)))
        assert killed.is_set(), "the controller was never killed"
        lab.start_controller()
        client = lab.client(timeout=10)
        wait_for(
            lambda: (
                len(
                    client.call("ListContainerInstances", {"cluster": lab.cluster})[
                        "containerInstanceArns"
                    ]
                )
                == len(lab.hosts)
            ),
            30,
            what="instances listed",
        )

        def settled() -> list[dict[str, Any]] | None:
            tasks = describe(lab, acked)
            done = all(t["lastStatus"] in ("RUNNING", "STOPPED") for t in tasks)
            return tasks if len(tasks) == len(acked) and done else None

        tasks = wait_for(settled, 120, interval=0.5, what="acknowledged tasks settled")
        assert {t["taskArn"] for t in tasks} == set(acked)
        for t in tasks:
            if t["lastStatus"] == "STOPPED":
                assert t.get("stoppedReason"), t  # a clear failure, never silent
        running = [t["taskArn"] for t in tasks if t["lastStatus"] == "RUNNING"]
        counts = containers_by_task(lab)
        assert all(counts[arn] == 1 for arn in running), "a task started twice or not at all"
        assert not [a for a, n in counts.items() if n > 1], "duplicate containers"
    finally:
        ensure_controller(lab)
        # committed-but-unacknowledged tasks (killed between commit and reply) run too
        stop_all(lab, acked + list_family(lab, "chaos-burst"))
    verify_clean(lab)


# ---- services under chaos ----------------------------------------------------------------

GRACE = "3"  # per-service disconnect grace (the dockyard:disconnect-grace tag), seconds


def host_of(lab: Lab) -> dict[str, str]:
    """Container instance ARN -> lab host name."""
    client = lab.client()
    arns = client.call("ListContainerInstances", {"cluster": lab.cluster})["containerInstanceArns"]
    out = {}
    for inst in client.call(
        "DescribeContainerInstances", {"cluster": lab.cluster, "containerInstances": arns}
    )["containerInstances"]:
        attrs = {a["name"]: a.get("value") for a in inst["attributes"]}
        out[inst["containerInstanceArn"]] = str(attrs.get("dockyard.hostname"))
    return out


def service_tasks(lab: Lab, name: str) -> list[dict[str, Any]]:
    arns = lab.client().call("ListTasks", {"cluster": lab.cluster, "serviceName": name})["taskArns"]
    return describe(lab, arns) if arns else []


def running_in_docker(lab: Lab, name: str) -> Counter[str]:
    """Running containers of a service's tasks per host, as Docker sees them."""
    known = {t["taskArn"] for t in describe(lab, list_service_all(lab, name))}
    per_host: Counter[str] = Counter()
    for h in lab.hosts:
        out = lab.docker(h.name, "ps", "--format", '{{.Label "dockyard.task-arn"}}')
        per_host[h.name] += sum(1 for arn in out.split() if arn in known)
    return per_host


def list_service_all(lab: Lab, name: str) -> list[str]:
    client = lab.client()
    arns: list[str] = []
    for status in ("RUNNING", "STOPPED"):
        arns += client.call(
            "ListTasks", {"cluster": lab.cluster, "serviceName": name, "desiredStatus": status}
        )["taskArns"]
    return arns


def create_service(lab: Lab, name: str, count: int) -> None:
    client = lab.client()
    client.call(
        "RegisterTaskDefinition",
        {
            "family": f"chaos-{name}",
            "containerDefinitions": [{"name": "s", "image": lab.image("sleeper"), "memory": 8}],
        },
    )
    client.call(
        "CreateService",
        {
            "cluster": lab.cluster,
            "serviceName": name,
            "taskDefinition": f"chaos-{name}",
            "desiredCount": count,
            "tags": [{"key": "dockyard:disconnect-grace", "value": GRACE}],
            "placementStrategy": [{"type": "spread", "field": "instanceId"}],
        },
    )
    wait_steady(lab, name, count)


def wait_steady(lab: Lab, name: str, count: int, timeout: float = 90) -> None:
    """desiredCount RUNNING in the controller's view and exactly that many in Docker."""

    def steady() -> bool:
        running = [t for t in service_tasks(lab, name) if t["lastStatus"] == "RUNNING"]
        return len(running) == count and sum(running_in_docker(lab, name).values()) == count

    wait_for(steady, timeout, interval=0.5, what=f"service {name} steady at {count}")


def delete_service(lab: Lab, name: str) -> None:
    ensure_controller(lab)
    client = lab.client()
    try:
        client.call("DeleteService", {"cluster": lab.cluster, "service": name, "force": True})
    except ApiError:
        return
    wait_for(
        lambda: sum(running_in_docker(lab, name).values()) == 0,
        90,
        interval=0.5,
        what=f"service {name} gone from Docker",
    )


def busiest_host(lab: Lab, name: str) -> tuple[str, list[str]]:
    hosts = host_of(lab)
    by_host: dict[str, list[str]] = {}
    for t in service_tasks(lab, name):
        if t["lastStatus"] == "RUNNING":
            by_host.setdefault(hosts[t["containerInstanceArn"]], []).append(t["taskArn"])
    host = max(by_host, key=lambda h: len(by_host[h]))
    return host, by_host[host]


def replaced_elsewhere(lab: Lab, name: str, victim: str, count: int) -> bool:
    hosts = host_of(lab)
    running = [
        t
        for t in service_tasks(lab, name)
        if t["lastStatus"] == "RUNNING" and hosts.get(t["containerInstanceArn"]) != victim
    ]
    return len(running) == count


def assert_originals_stopped(lab: Lab, originals: list[str]) -> None:
    def stopped() -> bool:
        return all(t["lastStatus"] == "STOPPED" for t in describe(lab, originals))

    wait_for(stopped, 60, interval=0.5, what="the replaced originals STOPPED")


@pytest.mark.parametrize("break_host", ["kill-agent", "partition", "stop-docker"])
def test_service_tasks_replaced_and_originals_stopped(lab: Lab, break_host: str) -> None:
    """Break a host running service tasks: replaced elsewhere after the grace; when the host
    comes back its originals are stopped and nothing runs twice."""
    if not lab.has_control_plane:
        pytest.skip("the lab has no control plane")
    name, count = f"svc-{break_host}", 4
    create_service(lab, name, count)
    victim, originals = busiest_host(lab, name)
    breakers = {
        "kill-agent": (lab.kill_agent, lab.start_agent),
        "partition": (lab.partition, lab.heal),
        "stop-docker": (lab.stop_docker, lab.start_docker),
    }
    brk, fix = breakers[break_host]
    try:
        brk(victim)
        wait_for(
            lambda: replaced_elsewhere(lab, name, victim, count),
            60,
            interval=0.5,
            what="replacements on the other hosts",
        )
        fix(victim)
        if break_host == "stop-docker":
            lab.start_agent(victim)  # an agent that lost its engine may have been restarted
        assert_originals_stopped(lab, originals)
        wait_steady(lab, name, count)
        assert running_in_docker(lab, name)[victim] == 0 or break_host == "stop-docker"
        verify_clean(lab)
    finally:
        for h in lab.hosts:  # leave the session's lab whole for the next test
            fix_host(lab, h.name)
        delete_service(lab, name)


def fix_host(lab: Lab, host: str) -> None:
    for step in (lab.heal, lab.start_docker, lab.start_agent):
        try:
            step(host)
        except Exception:  # already healthy: each verb refuses a no-op differently
            pass


def test_soak_random_chaos_settles_clean(lab: Lab) -> None:
    """Seeded rounds of agent kills, partitions and controller restarts against 3 services;
    at the end every service is at its count, nothing runs twice, nothing is orphaned and
    no task record is lost."""
    import random

    if not lab.has_control_plane:
        pytest.skip("the lab has no control plane")
    rng = random.Random(20261123)
    services = {"soak-a": 3, "soak-b": 2, "soak-c": 2}
    for name, count in services.items():
        create_service(lab, name, count)
    seen: set[str] = set()
    try:
        for _ in range(6):
            for name in services:
                seen |= set(list_service_all(lab, name))
            action = rng.choice(["kill-agent", "partition", "controller"])
            chaos_round(lab, action, rng.choice(lab.hosts).name)
        for name, count in services.items():
            wait_steady(lab, name, count, timeout=120)
        verify_clean(lab)
        client = lab.client()
        for i in range(0, len(seen), 100):
            batch = sorted(seen)[i : i + 100]
            out = client.call("DescribeTasks", {"cluster": lab.cluster, "tasks": batch})
            assert not out["failures"], f"lost task records: {out['failures']}"
    finally:
        for h in lab.hosts:
            fix_host(lab, h.name)
        ensure_controller(lab)
        for name in services:
            delete_service(lab, name)


def chaos_round(lab: Lab, action: str, host: str) -> None:
    """Break one thing, wait until soak-a no longer depends on it, then repair it."""
    if action == "controller":
        lab.kill_controller()
        lab.start_controller()
        return
    brk, fix = (
        (lab.kill_agent, lab.start_agent) if action == "kill-agent" else (lab.partition, lab.heal)
    )
    brk(host)
    wait_for(
        lambda: (
            replaced_elsewhere(lab, "soak-a", host, 3) or not busiest_host_has(lab, "soak-a", host)
        ),
        60,
        interval=0.5,
        what="soak-a replaced",
    )
    fix(host)


def busiest_host_has(lab: Lab, name: str, host: str) -> bool:
    hosts = host_of(lab)
    return any(
        hosts.get(t["containerInstanceArn"]) == host and t["desiredStatus"] == "RUNNING"
        for t in service_tasks(lab, name)
    )
