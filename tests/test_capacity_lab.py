"""Capacity providers' managed scaling for real (issue 22): the group-size command is
`dockyard lab resize-group GROUP {desired}`, which adds lab hosts (a namespace, its own
dockerd, an agent joined with `dockyard.capacity-provider=GROUP`) and removes drained idle
ones. A service's tasks wait for capacity -> a host is added -> the tasks run on it; the load
gone -> the drained host is removed. Also the verbs' refusals, without a lab."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest

from dockyard.cli.main import main
from dockyard.lab import Lab, control
from dockyard.lab import state as st
from dockyard.lab.netns import netns_exists
from tests.lab_fixture import lab_session
from tests.support import wait_for

GROUP = "lab-group"
ATTR = "dockyard.capacity-provider"


def test_host_verbs_refuse_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="dyk-t") as lab_dir:
        st.save(st.new_state(lab_dir, index=7, hosts=2))
        assert main(["lab", "remove-host", "h9", "--dir", lab_dir]) == 1
        err = capsys.readouterr().err
        assert "unknown host 'h9'" in err and "h1, h2" in err and "Traceback" not in err
        assert main(["lab", "add-host", "--attribute", "novalue", "--dir", lab_dir]) == 1
        assert "--attribute: want KEY=VALUE, got 'novalue'" in capsys.readouterr().err
        assert main(["lab", "resize-group", GROUP, "-1", "--dir", lab_dir]) == 1
        assert "desired: -1 is negative" in capsys.readouterr().err
        assert len(st.load(lab_dir).hosts) == 2  # nothing changed


def test_added_hosts_take_the_lowest_free_number() -> None:
    state = st.new_state("/tmp/dyk-t", index=7, hosts=3)
    state.hosts.pop(1)  # h2 was removed
    host = st.add_host(state, {ATTR: GROUP})
    assert (host.name, host.address, host.netns) == ("h2", "10.77.7.12", "dyk7-h2")
    assert host.attributes == {ATTR: GROUP}
    assert st.add_host(state, {}).name == "h4"


@pytest.fixture(scope="module")
def cap_lab() -> Iterator[Lab]:
    """A lab of one host (outside any group) whose controller runs a scaling turn a second."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOCKYARD_CAPACITY_PERIOD", "1")
        with lab_session(hosts=1) as lab:
            yield lab


def call(lab: Lab, op: str, body: dict[str, Any]) -> Any:
    with lab.client(timeout=10) as client:
        return client.call(op, body)


def group(lab: Lab) -> list[str]:
    """The group's hosts, as the lab's state file has them now."""
    return [h.name for h in Lab.open(lab.dir).group(GROUP)]


def live_hosts(lab: Lab) -> set[str]:
    """The lab hosts the controller has a connected, registered instance of."""
    found = control.instances(lab.state)
    return names(lab, [i for i in found if i["status"] != "INACTIVE" and i["agentConnected"]])


def joined(lab: Lab) -> list[str]:
    """The group's hosts once each has joined the controller."""
    members = group(lab)
    return members if members and set(members) <= live_hosts(lab) else []


def gone(lab: Lab) -> bool:
    """No host left in the group, and the controller has no instance of a removed one."""
    found = [i for i in control.instances(lab.state) if i["status"] != "INACTIVE"]
    return not group(lab) and names(lab, found) == {"h1"}


def running_hosts(lab: Lab) -> set[str] | None:
    """The lab hosts of the service's RUNNING tasks, once both run."""
    arns = call(lab, "ListTasks", {"cluster": lab.cluster, "serviceName": "web"})["taskArns"]
    if len(arns) != 2:
        return None
    tasks = call(lab, "DescribeTasks", {"cluster": lab.cluster, "tasks": arns})["tasks"]
    if any(t["lastStatus"] != "RUNNING" for t in tasks):
        return None
    insts = call(
        lab,
        "DescribeContainerInstances",
        {"cluster": lab.cluster, "containerInstances": [t["containerInstanceArn"] for t in tasks]},
    )["containerInstances"]
    return names(lab, insts)


def names(lab: Lab, insts: list[dict[str, Any]]) -> set[str]:
    """Which lab hosts the instances are (h2 named even once removed from the lab)."""
    hosts = [*Lab.open(lab.dir).hosts, *(st.make_host(lab.dir, lab.state.index, 2),)]
    return {h.name for i in insts if (h := control.instance_host(i, hosts))}


def create_provider(lab: Lab) -> None:
    command = f"{sys.executable} -m dockyard.cli.main lab resize-group {GROUP} {{desired}}"
    call(
        lab,
        "CreateCapacityProvider",
        {
            "name": GROUP,
            "autoScalingGroupProvider": {
                "autoScalingGroupArn": f"{GROUP}-hosts",
                "managedScaling": {
                    "status": "ENABLED",
                    "targetCapacity": 100,
                    "instanceWarmupPeriod": 15,  # a new host's tasks get placed meanwhile
                },
                "managedTerminationProtection": "ENABLED",
            },
            "tags": [{"key": "dockyard:group-size-command", "value": f"{command} --dir {lab.dir}"}],
        },
    )
    call(
        lab,
        "PutClusterCapacityProviders",
        {
            "cluster": lab.cluster,
            "capacityProviders": [GROUP],
            "defaultCapacityProviderStrategy": [{"capacityProvider": GROUP, "weight": 1}],
        },
    )


def cleanup(lab: Lab) -> None:
    """Service, association and provider gone (no more scaling), then the group's hosts."""
    steps: list[tuple[str, dict[str, Any]]] = [
        ("DeleteService", {"cluster": lab.cluster, "service": "web", "force": True}),
        (
            "PutClusterCapacityProviders",
            {
                "cluster": lab.cluster,
                "capacityProviders": [],
                "defaultCapacityProviderStrategy": [],
            },
        ),
        ("DeleteCapacityProvider", {"capacityProvider": GROUP}),
    ]
    for op, body in steps:
        try:
            call(lab, op, body)
        except Exception as err:  # what the test never made: say so, clean the rest
            print(f"cleanup {op}: {err}")
    for name in group(lab):
        Lab.open(lab.dir).remove_host(name)


def refuses_to_remove_busy_host(lab: Lab) -> None:
    """Asked by hand to shrink the group while its host runs the tasks, resize-group keeps
    the host and says why."""
    argv = [sys.executable, "-m", "dockyard.cli.main", "lab", "resize-group", GROUP, "0"]
    out = subprocess.run([*argv, "--dir", lab.dir], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "h2 (2 tasks) still run tasks of the cluster" in out.stderr
    assert group(lab) == ["h2"]


def runtask_without_room(lab: Lab) -> None:
    """RunTask while the group is empty: as on ECS the task waits PROVISIONING (with no
    instance) for the group to grow; stopped here, so the loop below is the service's."""
    body = {
        "cluster": lab.cluster,
        "taskDefinition": "cap-web",
        "capacityProviderStrategy": [{"capacityProvider": GROUP, "weight": 1}],
    }
    reply = call(lab, "RunTask", body)
    assert reply["failures"] == []
    [task] = reply["tasks"]
    assert task["lastStatus"] == "PROVISIONING" and "containerInstanceArn" not in task
    call(lab, "StopTask", {"cluster": lab.cluster, "task": task["taskArn"]})


@pytest.mark.lab
@pytest.mark.docker
def test_group_grows_for_waiting_tasks_and_sheds_the_drained_host(cap_lab: Lab) -> None:
    lab = cap_lab
    try:
        create_provider(lab)
        call(
            lab,
            "RegisterTaskDefinition",
            {
                "family": "cap-web",
                "containerDefinitions": [
                    {"name": "web", "image": lab.image("sleeper"), "memory": 32, "cpu": 64}
                ],
            },
        )
        assert group(lab) == []  # nothing holds the group's tasks yet
        runtask_without_room(lab)
        started = time.monotonic()
        call(
            lab,
            "CreateService",
            {
                "cluster": lab.cluster,
                "serviceName": "web",
                "taskDefinition": "cap-web",
                "desiredCount": 2,
                "capacityProviderStrategy": [{"capacityProvider": GROUP, "weight": 1}],
            },
        )
        added = wait_for(lambda: joined(lab), 90, what="a host added to the group")
        host_added = time.monotonic() - started
        assert added == ["h2"]  # one host holds both tasks; h1 (no provider) gets none
        where = wait_for(lambda: running_hosts(lab), 120, what="both tasks RUNNING")
        tasks_running = time.monotonic() - started
        assert where == {"h2"}
        print(f"scale-out: host added {host_added:.1f}s, 2 tasks RUNNING {tasks_running:.1f}s")
        refuses_to_remove_busy_host(lab)
        arn = next(
            i["containerInstanceArn"]
            for i in control.instances(lab.state)
            if names(lab, [i]) == {"h2"}
        )

        started = time.monotonic()
        call(lab, "UpdateService", {"cluster": lab.cluster, "service": "web", "desiredCount": 0})
        wait_for(lambda: gone(lab), 120, what="the drained host removed and deregistered")
        print(f"scale-in: drained host removed {time.monotonic() - started:.1f}s")
        assert not netns_exists(f"{lab.state.prefix}-h2")
        assert [h.name for h in Lab.open(lab.dir).hosts] == ["h1"]
        with lab.client() as client:
            said = [e.message for e in client.watch_events(lab.cluster) if e.subject == arn]
        assert said.index("status set to DRAINING") < said.index("container instance deregistered")
    finally:
        cleanup(lab)
