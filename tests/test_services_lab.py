"""Services across the 3-host lab: scaling spread over hosts, a rolling update sampled on
every host's Docker, and draining one host. (Crash loops, health checks and DAEMON joins,
which are about one host at a time, are in test_services.py.)"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from dockyard.lab import Lab
from tests.support import wait_for
from tests.test_chaos import delete_service, host_of, service_tasks, verify_clean

pytestmark = pytest.mark.lab


def family_in_docker(lab: Lab, family: str) -> Counter[str]:
    """Running containers of a task-definition family, by 'host:revision'."""
    counts: Counter[str] = Counter()
    for h in lab.hosts:
        out = lab.docker(
            h.name,
            "ps",
            "--filter",
            f"label=dockyard.task-definition-family={family}",
            "--format",
            '{{.Label "dockyard.task-definition-version"}}',
        )
        for rev in out.split():
            counts[f"{h.name}:{rev}"] += 1
    return counts


def register(lab: Lab, family: str, command: str = "") -> None:
    c: dict[str, Any] = {"name": "s", "image": lab.image("sleeper"), "memory": 8}
    if command:
        c["environment"] = [{"name": "REVISION_NOTE", "value": command}]
    lab.client().call("RegisterTaskDefinition", {"family": family, "containerDefinitions": [c]})


def scale_to(lab: Lab, name: str, family: str, n: int) -> Counter[str]:
    lab.client().call("UpdateService", {"cluster": lab.cluster, "service": name, "desiredCount": n})

    def settled() -> tuple[Counter[str]] | None:  # a tuple: an empty Counter is falsy
        running = [t for t in service_tasks(lab, name) if t["lastStatus"] == "RUNNING"]
        docker = family_in_docker(lab, family)
        return (docker,) if len(running) == n and sum(docker.values()) == n else None

    return wait_for(settled, 90, interval=0.5, what=f"{name} at {n}")[0]


@pytest.fixture
def svc(lab: Lab) -> Any:
    if not lab.has_control_plane:
        pytest.skip("the lab has no control plane")
    made: list[str] = []
    yield made
    for name in made:
        delete_service(lab, name)


def test_scale_0_6_2_0_spreads_over_hosts(lab: Lab, svc: list[str]) -> None:
    register(lab, "lab-scale")
    lab.client().call(
        "CreateService",
        {
            "cluster": lab.cluster,
            "serviceName": "lab-scale",
            "taskDefinition": "lab-scale",
            "desiredCount": 0,
        },
    )
    svc.append("lab-scale")
    six = scale_to(lab, "lab-scale", "lab-scale", 6)
    per_host = Counter(k.split(":")[0] for k in six.elements())
    assert sorted(per_host.values()) == [2, 2, 2], per_host  # spread by zone, then instance
    two = scale_to(lab, "lab-scale", "lab-scale", 2)
    assert len({k.split(":")[0] for k in two.elements()}) == 2  # scale-in keeps the balance
    assert scale_to(lab, "lab-scale", "lab-scale", 0) == Counter()
    verify_clean(lab)


def test_rolling_update_within_min_and_max_on_every_host(lab: Lab, svc: list[str]) -> None:
    register(lab, "lab-roll")
    client = lab.client()
    client.call(
        "CreateService",
        {
            "cluster": lab.cluster,
            "serviceName": "lab-roll",
            "taskDefinition": "lab-roll:1",
            "desiredCount": 6,
        },
    )
    svc.append("lab-roll")
    scale_to(lab, "lab-roll", "lab-roll", 6)
    register(lab, "lab-roll", command="v2")
    samples: list[Counter[str]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(family_in_docker(lab, "lab-roll"))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        client.call(
            "UpdateService",
            {
                "cluster": lab.cluster,
                "service": "lab-roll",
                "taskDefinition": "lab-roll:2",
                "deploymentConfiguration": {"minimumHealthyPercent": 50, "maximumPercent": 150},
            },
        )

        def rolled() -> bool:
            docker = family_in_docker(lab, "lab-roll")
            return (
                sum(n for k, n in docker.items() if k.endswith(":2")) == 6
                and sum(docker.values()) == 6
            )

        wait_for(rolled, 180, interval=0.5, what="rolled to revision 2")
    finally:
        done.set()
        sampler.join()
    totals = [sum(s.values()) for s in samples]
    assert len(samples) > 5
    assert max(totals) <= 9, f"above maximumPercent 150: {max(totals)}"
    # minimumHealthyPercent counts RUNNING tasks; a container may be up a moment before it
    # counts, never the other way round, so Docker may never show fewer than 3
    described = client.call("DescribeServices", {"cluster": lab.cluster, "services": ["lab-roll"]})[
        "services"
    ][0]
    events = (
        [e["message"] for e in described["events"]][::-1]
        + [
            {
                k: d.get(k)
                for k in ("id", "status", "desiredCount", "taskDefinition", "rolloutState")
            }
            for d in described["deployments"]
        ]
        + [described["deploymentConfiguration"]]
    )
    assert min(totals) >= 3, (
        f"below minimumHealthyPercent 50: {[dict(x) for x in samples]} {events}"
    )
    assert any(k.endswith(":2") for s in samples for k in s), "no sample saw revision 2"
    verify_clean(lab)


def test_draining_a_host_moves_service_tasks_off_it(lab: Lab, svc: list[str]) -> None:
    register(lab, "lab-drain")
    client = lab.client()
    client.call(
        "CreateService",
        {
            "cluster": lab.cluster,
            "serviceName": "lab-drain",
            "taskDefinition": "lab-drain",
            "desiredCount": 3,
        },
    )
    svc.append("lab-drain")
    scale_to(lab, "lab-drain", "lab-drain", 3)
    hosts = host_of(lab)
    victim_arn = next(a for a, h in hosts.items() if h == lab.hosts[0].name)
    client.call(
        "UpdateContainerInstancesState",
        {"cluster": lab.cluster, "containerInstances": [victim_arn], "status": "DRAINING"},
    )
    try:

        def drained() -> bool:
            docker = family_in_docker(lab, "lab-drain")
            on_victim = sum(n for k, n in docker.items() if k.startswith(f"{hosts[victim_arn]}:"))
            return on_victim == 0 and sum(docker.values()) == 3

        wait_for(drained, 90, interval=0.5, what="service tasks off the draining host")
        running = [t for t in service_tasks(lab, "lab-drain") if t["lastStatus"] == "RUNNING"]
        assert len(running) == 3 and all(t["containerInstanceArn"] != victim_arn for t in running)
    finally:
        client.call(
            "UpdateContainerInstancesState",
            {"cluster": lab.cluster, "containerInstances": [victim_arn], "status": "ACTIVE"},
        )
    verify_clean(lab)
