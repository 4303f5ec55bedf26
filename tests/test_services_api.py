"""Service operations on an in-process controller (real gRPC/HTTP listeners and SQLite, no
agents): ECS shapes, clear errors, persistence across a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controller.ecs_shapes import check_response
from controller.server import Controller, ControllerConfig
from dockyard.errors import ApiError

TD = {
    "family": "api-web",
    "containerDefinitions": [
        {"name": "main", "image": "dockyard/sleeper:latest", "memory": 32, "essential": True}
    ],
}


async def start(path: Path) -> Controller:
    ctl = Controller(ControllerConfig(path, listen="127.0.0.1:0", http="127.0.0.1:0"))
    await ctl.start()
    await ctl.api.call("CreateCluster", {})  # `default`: no agent joins to create it
    return ctl


@pytest.fixture
async def ctl(tmp_path: Path) -> AsyncIterator[Controller]:
    c = await start(tmp_path)
    try:
        await c.api.call("RegisterTaskDefinition", TD)
        yield c
    finally:
        await c.stop()


async def call(ctl: Controller, op: str, body: dict) -> dict:  # type: ignore[type-arg]
    out = await ctl.api.call(op, body)
    check_response(op, out)
    return out


async def test_create_describe_list_update_delete(ctl: Controller) -> None:
    out = await call(
        ctl,
        "CreateService",
        {
            "serviceName": "web",
            "taskDefinition": "api-web",
            "desiredCount": 0,
            "deploymentConfiguration": {
                "deploymentCircuitBreaker": {"enable": True, "rollback": True},
                "minimumHealthyPercent": 50,
            },
            "tags": [{"key": "dockyard:disconnect-grace", "value": "2.5"}],
        },
    )
    svc = out["service"]
    assert svc["serviceArn"].endswith(":service/default/web")
    assert svc["deploymentConfiguration"]["maximumPercent"] == 200
    assert svc["deploymentConfiguration"]["minimumHealthyPercent"] == 50
    assert [d["status"] for d in svc["deployments"]] == ["PRIMARY"]
    assert svc["deployments"][0]["id"].startswith("ecs-svc/")
    assert ctl.services.find("default", "web").grace == 2.5  # type: ignore[union-attr]
    listed = await call(ctl, "ListServices", {})
    assert listed["serviceArns"] == [svc["serviceArn"]]
    clusters = await call(ctl, "DescribeClusters", {"clusters": ["default"]})
    assert clusters["clusters"][0]["activeServicesCount"] == 1
    await ctl.services.pass_once()
    desc = await call(ctl, "DescribeServices", {"services": ["web", "nope"], "include": ["TAGS"]})
    assert desc["services"][0]["deployments"][0]["rolloutState"] == "COMPLETED"
    assert desc["services"][0]["tags"][0]["key"] == "dockyard:disconnect-grace"
    assert desc["failures"][0]["reason"] == "MISSING"
    assert "steady state" in desc["services"][0]["events"][0]["message"]
    await ctl.api.call("RegisterTaskDefinition", TD)
    up = await call(ctl, "UpdateService", {"service": "web", "taskDefinition": "api-web:2"})
    deps = up["service"]["deployments"]
    assert [(d["status"], d["taskDefinition"].rsplit(":", 1)[1]) for d in deps] == [
        ("PRIMARY", "2"),
        ("ACTIVE", "1"),
    ]
    gone = await call(ctl, "DeleteService", {"service": "web"})
    assert gone["service"]["status"] == "DRAINING"
    await ctl.services.pass_once()
    desc = await call(ctl, "DescribeServices", {"services": ["web"]})
    assert desc["services"][0]["status"] == "INACTIVE"
    assert (await call(ctl, "ListServices", {}))["serviceArns"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"taskDefinition": "api-web", "desiredCount": 1}, "serviceName"),
        ({"serviceName": "x y", "taskDefinition": "api-web", "desiredCount": 1}, "serviceName"),
        ({"serviceName": "a", "taskDefinition": "api-web"}, "desiredCount"),
        ({"serviceName": "a", "taskDefinition": "api-web", "desiredCount": -1}, "desiredCount"),
        (
            {"serviceName": "a", "taskDefinition": "nope", "desiredCount": 1},
            "Unable to describe task definition.",  # ECS's words
        ),
        (
            {
                "serviceName": "a",
                "taskDefinition": "api-web",
                "desiredCount": 1,
                "deploymentConfiguration": {"minimumHealthyPercent": 120},
            },
            "minimumHealthyPercent",
        ),
        (
            {
                "serviceName": "a",
                "taskDefinition": "api-web",
                "schedulingStrategy": "DAEMON",
                "desiredCount": 2,
            },
            "desiredCount",
        ),
        (
            {
                "serviceName": "a",
                "taskDefinition": "api-web",
                "desiredCount": 1,
                "placementStrategy": [{"type": "spread", "field": "nowhere"}],
            },
            "placementStrategy[0].field",
        ),
        (
            {
                "serviceName": "a",
                "taskDefinition": "api-web",
                "desiredCount": 1,
                "tags": [{"key": "dockyard:disconnect-grace", "value": "soon"}],
            },
            "tags[0].value",
        ),
        (
            {"serviceName": "a", "taskDefinition": "api-web", "desiredCount": "3"},
            "desiredCount",
        ),
    ],
)
async def test_bad_input_names_the_field(ctl: Controller, body: dict, field: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ApiError) as err:
        await ctl.api.call("CreateService", body)
    assert field in err.value.message


async def test_update_and_delete_errors(ctl: Controller) -> None:
    with pytest.raises(ApiError) as err:
        await ctl.api.call("UpdateService", {"service": "ghost", "desiredCount": 1})
    assert err.value.name == "ServiceNotFoundException"
    body = {"serviceName": "web", "taskDefinition": "api-web", "desiredCount": 2}
    await ctl.api.call("CreateService", body)
    with pytest.raises(ApiError) as err:
        await ctl.api.call("CreateService", body)
    assert "not idempotent" in err.value.message
    with pytest.raises(ApiError) as err:
        await ctl.api.call("DeleteService", {"service": "web"})
    assert "scaled above 0" in err.value.message
    with pytest.raises(ApiError) as err:
        await ctl.api.call("DeleteCluster", {"cluster": "default"})
    assert err.value.name in ("ClusterContainsServicesException", "ClusterContainsTasksException")


async def test_services_survive_a_restart(tmp_path: Path) -> None:
    c = await start(tmp_path)
    try:
        await c.api.call("RegisterTaskDefinition", TD)
        await c.api.call(
            "CreateService",
            {"serviceName": "kept", "taskDefinition": "api-web", "desiredCount": 3},
        )
    finally:
        await c.stop()
    c = await start(tmp_path)
    try:
        out = await call(c, "DescribeServices", {"services": ["kept"]})
        svc = out["services"][0]
        assert (svc["status"], svc["desiredCount"]) == ("ACTIVE", 3)
        assert svc["deployments"][0]["rolloutState"] == "IN_PROGRESS"
    finally:
        await c.stop()


async def test_tagging_the_disconnect_grace_takes_effect_at_once(ctl: Controller) -> None:
    created = await call(
        ctl, "CreateService", {"serviceName": "g", "taskDefinition": "api-web", "desiredCount": 0}
    )
    arn = created["service"]["serviceArn"]
    svc = lambda: ctl.services.find("default", "g")  # noqa: E731
    assert svc().grace is None  # type: ignore[union-attr]
    tag = {"key": "dockyard:disconnect-grace", "value": "7"}
    await call(ctl, "TagResource", {"resourceArn": arn, "tags": [tag]})
    assert svc().grace == 7.0  # type: ignore[union-attr]
    with pytest.raises(ApiError) as err:
        await call(ctl, "TagResource", {"resourceArn": arn, "tags": [{**tag, "value": "-1"}]})
    assert "dockyard:disconnect-grace" in err.value.message
    assert svc().grace == 7.0  # type: ignore[union-attr]  # the refused value changed nothing
    await call(ctl, "UntagResource", {"resourceArn": arn, "tagKeys": [tag["key"]]})
    assert svc().grace is None  # type: ignore[union-attr]
