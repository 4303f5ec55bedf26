"""Every task-definition field botocore knows is honoured or refused by name, never ignored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import botocore.session
import pytest

from controller import taskdef, taskdef_fields
from controller.ecs_shapes import validate_request
from dockyard.errors import ApiError

SHAPES = {
    "ContainerDefinition": (
        taskdef_fields.CONTAINER_HONOURED,
        taskdef_fields.CONTAINER_REFUSED,
    ),
    "RegisterTaskDefinitionRequest": (taskdef_fields.TASK_HONOURED, taskdef_fields.TASK_REFUSED),
    "Volume": (taskdef_fields.VOLUME_HONOURED, taskdef_fields.VOLUME_REFUSED),
    "LinuxParameters": (
        taskdef_fields.LINUX_PARAMETERS_HONOURED,
        taskdef_fields.LINUX_PARAMETERS_REFUSED,
    ),
}


def _members(shape: str) -> set[str]:
    model = botocore.session.get_session().get_service_model("ecs")
    return set(model.shape_for(shape).members)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_botocore_member_is_in_exactly_one_list(shape: str) -> None:
    honoured, refused = SHAPES[shape]
    members = _members(shape)
    unclassified = members - set(honoured) - set(refused)
    assert not unclassified, f"{shape}: classify {sorted(unclassified)} in taskdef_fields"
    assert not set(honoured) & set(refused), f"{shape}: in both lists"
    assert not (set(honoured) | set(refused)) - members, f"{shape}: not in botocore's model"


def test_the_lists_are_one_entry_per_line_and_alphabetical() -> None:
    for _honoured, refused in SHAPES.values():
        assert list(refused) == sorted(refused)
    source = Path(taskdef_fields.__file__).read_text()
    for name in ("CONTAINER_HONOURED", "TASK_HONOURED", "VOLUME_HONOURED"):
        block = source.split(f"{name} = frozenset(\n    {{\n", 1)[1].split("    }", 1)[0]
        entries = [line.strip().strip('",') for line in block.splitlines()]
        assert entries == sorted(entries), name


def td(container: dict[str, Any] | None = None, **task: Any) -> dict[str, Any]:
    c = {"name": "web", "image": "dockyard/httpd", "memory": 64, **(container or {})}
    return {"family": "web", "containerDefinitions": [c], **task}


def _refusal(body: dict[str, Any]) -> str:
    with pytest.raises(ApiError) as err:
        taskdef.validate(body)
    return err.value.message


@pytest.mark.parametrize(
    ("body", "field", "advice"),
    [
        (
            td(volumes=[{"name": "v", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}}]),
            "volumes[0].efsVolumeConfiguration",
            "driverOpts type=nfs",
        ),
        (
            td(volumes=[{"name": "v", "fsxWindowsFileServerVolumeConfiguration": {}}]),
            "volumes[0].fsxWindowsFileServerVolumeConfiguration",
            "dockerVolumeConfiguration",
        ),
        (
            td(volumes=[{"name": "v", "s3filesVolumeConfiguration": {}}]),
            "volumes[0].s3filesVolumeConfiguration",
            "host.sourcePath",
        ),
        (
            td(volumes=[{"name": "v", "configuredAtLaunch": True}]),
            "volumes[0].configuredAtLaunch",
            "dockerVolumeConfiguration",
        ),
        (
            td({"firelensConfiguration": {"type": "fluentbit"}}),
            "containerDefinitions[0].firelensConfiguration",
            "fluentd",
        ),
        (td(proxyConfiguration={"containerName": "web"}), "proxyConfiguration", "awsvpc"),
        (
            td(inferenceAccelerators=[{"deviceName": "a", "deviceType": "b"}]),
            "inferenceAccelerators",
            "only on AWS",
        ),
        (td({"credentialSpecs": ["x"]}), "containerDefinitions[0].credentialSpecs", "Windows"),
        (td(ephemeralStorage={"sizeInGiB": 30}), "ephemeralStorage", "host's"),
        (td(trustedExecutionConfiguration={}), "trustedExecutionConfiguration", "Nitro"),
        (td(enableFaultInjection=True), "enableFaultInjection", "docker kill"),
        (td(networkMode="awsvpc"), "networkMode", "use bridge or host"),
        (
            td({"environmentFiles": [{"value": "arn:aws:s3:::b/x.env", "type": "s3"}]}),
            "containerDefinitions[0].environmentFiles",
            "secrets",
        ),
        (
            td(runtimePlatform={"operatingSystemFamily": "WINDOWS_SERVER_2022_CORE"}),
            "runtimePlatform.operatingSystemFamily",
            "LINUX",
        ),
        (
            td({"versionConsistency": "enabled"}),
            "containerDefinitions[0].versionConsistency",
            "name@sha256",
        ),
        (
            td({"ulimits": [{"name": "nofile", "softLimit": 2, "hardLimit": 1}]}),
            "containerDefinitions[0].ulimits[0].softLimit",
            "exceeds hardLimit",
        ),
        (
            td({"dependsOn": [{"containerName": "nope", "condition": "START"}]}),
            "containerDefinitions[0].dependsOn[0].containerName",
            "is not a container of this task definition",
        ),
        (
            td({"logConfiguration": {"logDriver": "splunk"}}),
            "containerDefinitions[0].logConfiguration.logDriver",
            "json-file",
        ),
        (
            td({"logConfiguration": {"logDriver": "awsfirelens"}}),
            "containerDefinitions[0].logConfiguration.logDriver",
            "fluentd",
        ),
        (td({"bogus": 1}), "containerDefinitions[0].bogus", "not a field"),
    ],
)
def test_refused_fields_are_named_with_what_to_use(
    body: dict[str, Any], field: str, advice: str
) -> None:
    message = _refusal(body)
    assert field in message and advice in message, message


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            td({"mountPoints": [{"sourceVolume": "nope", "containerPath": "/d"}]}),
            "containerDefinitions[0].mountPoints[0].sourceVolume",
        ),
        (
            td(
                {"mountPoints": [{"sourceVolume": "v", "containerPath": "rel"}]},
                volumes=[{"name": "v"}],
            ),
            "containerDefinitions[0].mountPoints[0].containerPath",
        ),
        (
            td({"volumesFrom": [{"sourceContainer": "ghost"}]}),
            "containerDefinitions[0].volumesFrom[0].sourceContainer",
        ),
        (
            td({"volumesFrom": [{"sourceContainer": "web"}]}),
            "containerDefinitions[0].volumesFrom[0].sourceContainer",
        ),
        (td(volumes=[{"name": "v"}, {"name": "v"}]), "volumes[1].name"),
        (
            td(volumes=[{"name": "v", "host": {"sourcePath": "relative"}}]),
            "volumes[0].host.sourcePath",
        ),
        (
            td(volumes=[{"name": "v", "dockerVolumeConfiguration": {"scope": "cluster"}}]),
            "volumes[0].dockerVolumeConfiguration.scope",
        ),
        (
            td(volumes=[{"name": "v", "dockerVolumeConfiguration": {"autoprovision": True}}]),
            "volumes[0].dockerVolumeConfiguration.autoprovision",
        ),
        (
            td(volumes=[{"name": "v", "dockerVolumeConfiguration": {"driverOpts": {"a": 1}}}]),
            "volumes[0].dockerVolumeConfiguration.driverOpts",
        ),
    ],
)
def test_mounts_must_name_declared_volumes_and_containers(body: dict[str, Any], field: str) -> None:
    assert field in _refusal(body)


def test_volumes_from_cycles_are_refused() -> None:
    a = {"name": "a", "image": "x", "memory": 8, "volumesFrom": [{"sourceContainer": "b"}]}
    b = {"name": "b", "image": "x", "memory": 8, "volumesFrom": [{"sourceContainer": "a"}]}
    assert "cycle" in _refusal({"family": "f", "containerDefinitions": [a, b]})


def test_honoured_storage_logs_and_platform_register() -> None:
    doc = taskdef.validate(
        td(
            {
                "mountPoints": [{"sourceVolume": "data", "containerPath": "/data"}],
                "logConfiguration": {"logDriver": "local", "options": {"max-size": "1m"}},
                "versionConsistency": "disabled",
            },
            volumes=[
                {
                    "name": "data",
                    "dockerVolumeConfiguration": {"scope": "shared", "autoprovision": True},
                },
                {"name": "scratch"},
                {"name": "host", "host": {"sourcePath": "/srv"}},
                {"name": "off", "configuredAtLaunch": False},
            ],
            runtimePlatform={"operatingSystemFamily": "LINUX", "cpuArchitecture": "X86_64"},
            enableFaultInjection=False,
        )
    )
    c = doc["containerDefinitions"][0]
    assert c["mountPoints"] == [
        {"sourceVolume": "data", "containerPath": "/data", "readOnly": False}
    ]
    assert doc["volumes"][0]["dockerVolumeConfiguration"]["scope"] == "shared"
    assert doc["placementConstraints"] == [
        {"type": "memberOf", "expression": "attribute:ecs.cpu-architecture == x86_64"}
    ]


def test_the_readme_lists_the_same_fields() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Real applications:", 1)[1].split("\n## ", 1)[0]
    for where, names in (
        ("container", taskdef_fields.CONTAINER_HONOURED),
        ("task", taskdef_fields.TASK_HONOURED),
        ("volume", taskdef_fields.VOLUME_HONOURED),
    ):
        line = next(x for x in section.splitlines() if x.startswith(f"- **{where}**: "))
        assert sorted(x.strip("`, ") for x in line.split(": ", 1)[1].split()) == sorted(names)
    rows = {tuple(c.strip(" `") for c in x.split("|")[1:3]) for x in section.splitlines()}
    for where, refused in (
        ("container", taskdef_fields.CONTAINER_REFUSED),
        ("task", taskdef_fields.TASK_REFUSED),
        ("volume", taskdef_fields.VOLUME_REFUSED),
        ("linuxParameters", taskdef_fields.LINUX_PARAMETERS_REFUSED),
    ):
        for name in refused:
            assert (where, name) in rows, f"README: refused {where} field {name}"


def test_the_ecs_api_takes_dockers_local_and_none_log_drivers() -> None:
    for driver in ("local", "none", "json-file"):
        validate_request("RegisterTaskDefinition", td({"logConfiguration": {"logDriver": driver}}))
    with pytest.raises(ApiError) as err:
        validate_request("RegisterTaskDefinition", td({"logConfiguration": {"logDriver": "x"}}))
    assert "local, none" in err.value.message
