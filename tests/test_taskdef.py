"""Task definition validation: bad definitions are refused with the field named."""

from __future__ import annotations

from typing import Any

import pytest

from controller import taskdef
from dockyard.errors import ApiError


def td(**containers: Any) -> dict[str, Any]:
    c = {"name": "web", "image": "dockyard/httpd", "memory": 64, **containers}
    return {"family": "web", "containerDefinitions": [c]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"family": "web", "containerDefinitions": [{"name": "web", "memory": 64}]},
            "Container.image should not be null or empty.",  # ECS's words
        ),
        (td(memory=0), "containerDefinitions[0].memory"),
        (td(memory=-5), "containerDefinitions[0].memory"),
        ({**td(), "memory": "32"}, "containerDefinitions[0].memory"),
        (
            {
                "family": "web",
                "containerDefinitions": [
                    {"name": "a", "image": "x", "memory": 32},
                    {"name": "a", "image": "y", "memory": 32},
                ],
            },
            "containerDefinitions[1].name",
        ),
        ({**td(), "networkMode": "overlay"}, "networkMode"),
        ({**td(), "networkMode": "awsvpc"}, "networkMode"),
        (td(portMappings=[{"containerPort": "80"}]), "containerDefinitions[0].portMappings[0]"),
        (td(portMappings=[{"containerPort": 70000}]), "portMappings[0].containerPort"),
        (td(portMappings=[{"containerPort": 80, "protocol": "sctp"}]), "portMappings[0].protocol"),
        (td(portMappings=[{"hostPort": 80}]), "portMappings[0].containerPort"),
        ({"containerDefinitions": td()["containerDefinitions"]}, "family"),
        ({"family": "web", "containerDefinitions": []}, "containerDefinitions"),
        (td(memoryReservation=128), "containerDefinitions[0].memoryReservation"),
        (td(essential=False), "containerDefinitions"),
        (td(healthCheck={"command": ["exit 0"]}), "healthCheck.command"),
        (
            {"family": "web", "containerDefinitions": [{"name": "web", "image": "x"}]},
            "Invalid setting for container 'web'. At least one of 'memory'",  # ECS's words
        ),
    ],
)
def test_invalid_definitions_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ApiError) as err:
        taskdef.validate(body)
    assert err.value.name in ("InvalidParameterException", "ClientException")
    assert field in err.value.message


def test_ecs_doc_example_registers_unchanged() -> None:
    """The ECS documentation's EC2 bridge-mode web server example."""
    body = {
        "family": "webserver",
        "containerDefinitions": [
            {
                "name": "web",
                "image": "nginx",
                "memory": 100,
                "cpu": 99,
                "portMappings": [{"containerPort": 80, "hostPort": 80}],
                "essential": True,
            }
        ],
        "requiresCompatibilities": ["EC2"],
        "networkMode": "bridge",
    }
    out = taskdef.validate(body)
    assert out["containerDefinitions"][0]["portMappings"][0] == {
        "containerPort": 80,
        "hostPort": 80,
        "protocol": "tcp",
    }
    assert taskdef.task_resources(out) == (99, 100)


def test_resources_prefer_task_level_and_soft_limits() -> None:
    body = {
        "family": "f",
        "cpu": "0.5 vCPU",
        "memory": "1 GB",
        "containerDefinitions": [{"name": "a", "image": "x", "memoryReservation": 64}],
    }
    assert taskdef.task_resources(taskdef.validate(body)) == (512, 1024)
    body = {
        "family": "f",
        "containerDefinitions": [
            {"name": "a", "image": "x", "memory": 256, "memoryReservation": 64, "cpu": 10},
            {"name": "b", "image": "x", "memory": 32, "cpu": 20},
        ],
    }
    assert taskdef.task_resources(taskdef.validate(body)) == (30, 96)


def test_host_mode_port_defaults_to_container_port() -> None:
    out = taskdef.validate({**td(portMappings=[{"containerPort": 8080}]), "networkMode": "host"})
    assert out["containerDefinitions"][0]["portMappings"][0]["hostPort"] == 8080
