"""Issue 18 (limits, security, DNS, namespaces, start order, restart policy): validation that
names the field, the definition -> ContainerSpec -> Docker create body chain, and one real
`docker inspect` of a container created from a task definition that uses them all."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest

from agent import host_config
from agent.docker_driver import DockerDriver, container_config, task_docker_names
from controller import taskdef, taskdef_host
from controller.desired import desired_task
from controller.model import ContainerState, Task, TaskDefinition
from controller.placement import Constraint, Failure, Placement, TaskDemand
from dockyard.errors import ApiError
from dockyard.v1 import agent_pb2
from tests import test_docker_driver as drv
from tests.test_placement_engine import inst
from tests.test_placement_engine import run as place_run

MIB = 1024 * 1024
cluster, driver, docker_inspect = drv.cluster, drv.driver, drv.docker_inspect  # shared fixtures
IMAGE = "dockyard/busybox:latest"

APP: dict[str, Any] = {
    "name": "app",
    "image": IMAGE,
    "memory": 64,
    "command": ["sleep", "300"],
    "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 2048}],
    "linuxParameters": {
        "capabilities": {"add": ["NET_ADMIN"], "drop": ["MKNOD"]},
        "devices": [
            {"hostPath": "/dev/null", "containerPath": "/dev/nothing", "permissions": ["read"]}
        ],
        "initProcessEnabled": True,
        "sharedMemorySize": 32,
        "tmpfs": [{"containerPath": "/scratch", "size": 16, "mountOptions": ["noexec"]}],
        "maxSwap": 0,
        "swappiness": 10,
    },
    "readonlyRootFilesystem": True,
    "user": "1000:1000",
    "dockerSecurityOptions": ["no-new-privileges"],
    "systemControls": [{"namespace": "net.core.somaxconn", "value": "512"}],
    "dnsServers": ["10.0.0.2"],
    "dnsSearchDomains": ["corp.example"],
    "extraHosts": [{"hostname": "db.local", "ipAddress": "10.0.0.9"}],
    "hostname": "apphost",
    "interactive": True,
    "pseudoTerminal": True,
    "restartPolicy": {"enabled": True, "ignoredExitCodes": [3], "restartAttemptPeriod": 60},
}
INIT: dict[str, Any] = {
    "name": "init",
    "image": IMAGE,
    "memory": 16,
    "essential": False,
    "command": ["true"],
    "startTimeout": 30,
    "dependsOn": [{"containerName": "app", "condition": "START"}],
}


def body(**task: Any) -> dict[str, Any]:
    return {
        "family": "apps",
        "containerDefinitions": [copy.deepcopy(APP), copy.deepcopy(INIT)],
        "ipcMode": "task",
        "pidMode": "task",
        **task,
    }


def with_app(**fields: Any) -> dict[str, Any]:
    b = body()
    b["containerDefinitions"][0].update(fields)
    return b


def with_init(**fields: Any) -> dict[str, Any]:
    b = body()
    b["containerDefinitions"][1].update(fields)
    return b


def with_linux(**fields: Any) -> dict[str, Any]:
    return with_app(linuxParameters=fields)


BAD: list[tuple[dict[str, Any], str]] = [
    (with_app(ulimits=[{"name": "files", "softLimit": 1, "hardLimit": 1}]), "ulimits[0].name"),
    (
        with_app(ulimits=[{"name": "nofile", "softLimit": 9, "hardLimit": 1}]),
        "ulimits[0].softLimit",
    ),
    (with_app(ulimits=[{"name": "nofile", "softLimit": 1}]), "ulimits[0].hardLimit"),
    (with_linux(capabilities={"add": ["net admin"]}), "linuxParameters.capabilities.add[0]"),
    (with_linux(capabilities={"keep": []}), "linuxParameters.capabilities.keep"),
    (with_linux(devices=[{"containerPath": "/dev/x"}]), "linuxParameters.devices[0].hostPath"),
    (
        with_linux(devices=[{"hostPath": "/dev/x", "permissions": ["all"]}]),
        "devices[0].permissions",
    ),
    (with_linux(initProcessEnabled="yes"), "linuxParameters.initProcessEnabled"),
    (with_linux(sharedMemorySize=0), "linuxParameters.sharedMemorySize"),
    (with_linux(tmpfs=[{"containerPath": "/t"}]), "linuxParameters.tmpfs[0].size"),
    (with_linux(swappiness=101), "linuxParameters.swappiness"),
    (with_linux(maxSwap=-1), "linuxParameters.maxSwap"),
    (with_linux(hugepages=1), "linuxParameters.hugepages"),
    (with_app(privileged="true"), "containerDefinitions[0].privileged"),
    (with_app(user=""), "containerDefinitions[0].user"),
    (with_app(dockerSecurityOptions=["seccomp:x"]), "dockerSecurityOptions[0]"),
    (
        with_app(systemControls=[{"namespace": "vm.swappiness", "value": "1"}]),
        "systemControls[0].namespace",
    ),
    (with_app(dnsServers=["not-an-ip"]), "dnsServers[0]"),
    (with_app(extraHosts=[{"hostname": "x", "ipAddress": "y"}]), "extraHosts[0].ipAddress"),
    (with_app(hostname="bad host"), "containerDefinitions[0].hostname"),
    (with_app(restartPolicy={"enabled": True, "restartAttemptPeriod": 5}), "restartAttemptPeriod"),
    (with_app(restartPolicy={"ignoredExitCodes": [1]}), "restartPolicy.enabled"),
    (with_app(startTimeout=0), "containerDefinitions[0].startTimeout"),
    (body(pidMode="container"), "pidMode"),
    (body(ipcMode="shareable"), "ipcMode"),
]


@pytest.mark.parametrize(("doc", "field"), BAD, ids=[f for _, f in BAD])
def test_bad_values_are_refused_naming_the_field(doc: dict[str, Any], field: str) -> None:
    with pytest.raises(ApiError) as err:
        taskdef.validate(doc)
    assert field in err.value.message


DEPENDS_BAD: list[tuple[list[dict[str, Any]], str]] = [
    ([{"containerName": "nope", "condition": "START"}], "'nope' is not a container"),
    ([{"containerName": "app", "condition": "START"}], "cannot depend on itself"),
    ([{"containerName": "init", "condition": "READY"}], "must be one of START"),
    ([{"containerName": "init", "condition": "HEALTHY"}], "HEALTHY needs a healthCheck"),
]


@pytest.mark.parametrize(("deps", "words"), DEPENDS_BAD, ids=[w for _, w in DEPENDS_BAD])
def test_bad_depends_on_is_a_client_exception_naming_the_field(
    deps: list[dict[str, Any]], words: str
) -> None:
    with pytest.raises(ApiError) as err:
        taskdef.validate(with_app(dependsOn=deps))
    assert err.value.name == "ClientException"
    assert (
        "containerDefinitions[0].dependsOn[0]" in err.value.message and words in err.value.message
    )


def test_depends_on_cycles_and_completion_of_an_essential_container_are_refused() -> None:
    b = body()
    b["containerDefinitions"][0]["dependsOn"] = [{"containerName": "init", "condition": "START"}]
    with pytest.raises(
        ApiError, match=r"dependsOn: .*cycle \((app -> init -> app|init -> app -> init)\)"
    ):
        taskdef.validate(b)
    b = with_init(dependsOn=[{"containerName": "app", "condition": "SUCCESS"}])
    with pytest.raises(ApiError, match=r"dependsOn\[0\].condition: SUCCESS cannot .* essential"):
        taskdef.validate(b)


def test_task_namespaces_need_an_essential_container_that_depends_on_nothing() -> None:
    doc = with_app(dependsOn=[{"containerName": "init", "condition": "START"}])
    doc["containerDefinitions"][1].pop("dependsOn")
    with pytest.raises(ApiError, match="pidMode: task needs an essential container"):
        taskdef.validate(doc)


def test_host_network_mode_refuses_network_sysctls_but_keeps_dns_and_hostname() -> None:
    b = body(networkMode="host")
    with pytest.raises(ApiError, match=r"systemControls\[0\].namespace: .*host network mode"):
        taskdef.validate(b)
    b["containerDefinitions"][0].pop("systemControls")
    app = _config(_desired(b), "app")  # Docker takes DNS, hosts and hostname in host mode
    assert (app["HostConfig"]["Dns"], app["Hostname"]) == (["10.0.0.2"], "apphost")


def _desired(doc: dict[str, Any], cluster_name: str = "apps") -> agent_pb2.DesiredTask:
    td = TaskDefinition("apps", 1, "ACTIVE", taskdef.validate(doc))
    arn = f"arn:aws:ecs:local:000000000000:task/{cluster_name}/{uuid.uuid4().hex}"
    containers = [
        ContainerState(c["name"], c["image"], c["essential"], memory=c.get("memory", 0))
        for c in td.doc["containerDefinitions"]
    ]
    task = Task(
        arn, arn.rsplit("/", 1)[1], cluster_name, "apps", 1, "td", "ci", containers, 0, 0, ""
    )
    return desired_task(task, td)


def _config(task: agent_pb2.DesiredTask, name: str) -> dict[str, Any]:
    spec = next(c for c in task.containers if c.name == name)
    return container_config(task, spec, "i-test", task_docker_names(task))


def test_the_definition_reaches_the_docker_create_body() -> None:
    task = _desired(body())
    names = task_docker_names(task)
    app, init = _config(task, "app"), _config(task, "init")
    host = app["HostConfig"]
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]
    assert (host["CapAdd"], host["CapDrop"]) == (["NET_ADMIN"], ["MKNOD"])
    assert host["Devices"] == [
        {"PathOnHost": "/dev/null", "PathInContainer": "/dev/nothing", "CgroupPermissions": "r"}
    ]
    assert host["Init"] is True and host["ShmSize"] == 32 * MIB
    assert host["Tmpfs"] == {"/scratch": "size=16m,noexec"}
    assert host["MemorySwap"] == 64 * MIB and host["MemorySwappiness"] == 10
    assert host["ReadonlyRootfs"] is True and host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Sysctls"] == {"net.core.somaxconn": "512"}
    assert (host["Dns"], host["DnsSearch"]) == (["10.0.0.2"], ["corp.example"])
    assert host["ExtraHosts"] == ["db.local:10.0.0.9"]
    assert (app["User"], app["Hostname"], app["OpenStdin"], app["Tty"]) == (
        "1000:1000",
        "apphost",
        True,
        True,
    )
    # app is essential and depends on nothing: it holds the task's namespaces, init joins
    assert host["IpcMode"] == "shareable" and "PidMode" not in host
    assert (
        init["HostConfig"]["IpcMode"]
        == init["HostConfig"]["PidMode"]
        == f"container:{names['app']}"
    )
    assert "Privileged" not in host and "NetworkDisabled" not in app


def test_host_and_none_namespaces_privileged_and_disabled_networking() -> None:
    b = body(pidMode="host", ipcMode="none")
    b["containerDefinitions"][0].update(privileged=True, disableNetworking=True)
    app = _config(_desired(b), "app")
    assert (app["HostConfig"]["PidMode"], app["HostConfig"]["IpcMode"]) == ("host", "none")
    assert app["HostConfig"]["Privileged"] is True and app["NetworkDisabled"] is True


def test_a_plain_definition_gets_no_host_settings() -> None:
    task = _desired(
        {"family": "plain", "containerDefinitions": [{"name": "a", "image": IMAGE, "memory": 8}]}
    )
    host = _config(task, "a")["HostConfig"]
    assert set(host) == {"NetworkMode", "Memory"}
    spec = task.containers[0]
    assert not spec.HasField("linux") and not spec.HasField("restart_policy")


# ---------------------------------------------------------------- agent policy


def test_an_agent_policy_keeps_privileged_tasks_and_host_devices_away() -> None:
    strict = inst(1, attributes=host_config.policy_attributes(True, True))
    lenient = inst(2)
    privileged = taskdef.validate(with_app(privileged=True, linuxParameters={}))
    devices = taskdef.validate(body())  # APP maps /dev/null
    plain = taskdef.validate(with_app(linuxParameters={}))
    for doc in (privileged, devices):
        rules = [
            Constraint(c["type"], c["expression"]) for c in taskdef_host.implied_constraints(doc)
        ]
        assert place_run([TaskDemand(1, 1)], [strict, lenient], rules) == [
            Placement("arn:ci/2", [], [])
        ]
        [failure] = place_run([TaskDemand(1, 1)], [strict], rules)
        assert isinstance(failure, Failure) and failure.reason == "ATTRIBUTE"
        assert "dockyard.policy." in failure.detail and "-disabled !exists" in failure.detail
    assert taskdef_host.implied_constraints(plain) == []


def test_the_agent_refuses_what_its_policy_forbids_naming_the_flag() -> None:
    task = _desired(with_app(privileged=True))
    app = task.containers[0]
    policy = host_config.policy_attributes(True, False)
    assert "--disable-privileged" in host_config.refused_by_policy(app, policy)
    assert "--disable-host-devices" in host_config.refused_by_policy(
        app, host_config.policy_attributes(False, True)
    )
    assert host_config.refused_by_policy(app, {}) == ""


# ---------------------------------------------------------------- real Docker


@pytest.mark.docker
async def test_docker_runs_the_container_with_every_setting(
    driver: DockerDriver, cluster: str
) -> None:
    task = _desired(body(), cluster)
    names = task_docker_names(task)
    for name in ("app", "init"):  # start order: init joins app's namespaces
        spec = next(c for c in task.containers if c.name == name)
        await driver.create_and_start(task, spec, "i-test")
    data = docker_inspect(names["app"])
    host, config = data["HostConfig"], data["Config"]
    assert data["State"]["Running"]
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]
    assert host["CapAdd"] in (["CAP_NET_ADMIN"], ["NET_ADMIN"])
    assert host["Devices"][0]["PathInContainer"] == "/dev/nothing"
    assert host["Init"] is True and host["ShmSize"] == 32 * MIB
    assert host["Tmpfs"] == {"/scratch": "size=16m,noexec"}
    assert host["MemorySwap"] == 64 * MIB and host["MemorySwappiness"] == 10
    assert host["ReadonlyRootfs"] and host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Sysctls"] == {"net.core.somaxconn": "512"}
    assert host["Dns"] == ["10.0.0.2"] and host["DnsSearch"] == ["corp.example"]
    assert host["ExtraHosts"] == ["db.local:10.0.0.9"]
    assert host["IpcMode"] == "shareable"
    assert (config["User"], config["Hostname"]) == ("1000:1000", "apphost")
    assert config["OpenStdin"] and config["Tty"]
    init = docker_inspect(names["init"])["HostConfig"]
    assert init["IpcMode"] == init["PidMode"] == f"container:{data['Id']}"  # Docker's id
