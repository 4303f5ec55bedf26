"""GPUs (resourceRequirements GPU, issue 18): validation, the agent's report and choice,
placement and the controller's accounting, and Docker's DeviceRequests on a created (never
started: this host has no NVIDIA runtime) container."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent import gpus, host_config
from agent.docker_driver import DockerDriver, container_config, docker_name, task_docker_names
from controller import taskdef, taskdef_host
from controller.model import Instance, Task, TaskDefinition
from controller.placement import Failure, Placement, TaskDemand
from controller.state import ClusterState
from dockyard.errors import ApiError
from tests import test_docker_driver as drv
from tests.test_app_fields import _desired
from tests.test_placement_engine import inst
from tests.test_placement_engine import run as place_run

cluster, driver, docker_inspect = drv.cluster, drv.driver, drv.docker_inspect  # shared fixtures


def gpu_doc(value: Any = "2", kind: str = "GPU") -> dict[str, Any]:
    c = {"name": "train", "image": "dockyard/busybox:latest", "memory": 32}
    c["resourceRequirements"] = [{"type": kind, "value": value}]
    return {"family": "train", "containerDefinitions": [c]}


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        (gpu_doc("0"), "resourceRequirements[0].value: must be a GPU count"),
        (gpu_doc(2), "resourceRequirements[0].value: must be a GPU count"),
        (gpu_doc(kind="InferenceAccelerator"), "resourceRequirements[0].type: Inference"),
        (gpu_doc(kind="TPU"), "resourceRequirements[0].type: must be GPU"),
    ],
)
def test_bad_gpu_requirements_name_the_field(doc: dict[str, Any], words: str) -> None:
    with pytest.raises(ApiError, match=words.replace("[", r"\[").replace("]", r"\]")):
        taskdef.validate(doc)


def test_the_spec_carries_the_count_and_the_agent_maps_the_devices() -> None:
    task = _desired(gpu_doc("2"))
    spec = task.containers[0]
    assert spec.gpus == 2 and not spec.gpu_ids  # the agent picks which
    spec.gpu_ids[:] = ["GPU-a", "GPU-b"]
    config = container_config(task, spec, "i-test", task_docker_names(task))
    assert config["HostConfig"]["DeviceRequests"] == [
        {"Driver": "nvidia", "DeviceIDs": ["GPU-a", "GPU-b"], "Capabilities": [["gpu"]]}
    ]
    assert config["Labels"][host_config.GPU_LABEL] == "GPU-a,GPU-b"


def test_the_agent_reads_declared_gpus_and_picks_free_ones(tmp_path: Path) -> None:
    listing = tmp_path / "gpus"
    listing.write_text("# test GPUs\nGPU-0\nGPU-1\n\nGPU-2\n")
    found = gpus.detect(str(listing))
    assert found == ["GPU-0", "GPU-1", "GPU-2"]
    assert gpus.pick(found, {"GPU-0"}, 2) == ["GPU-1", "GPU-2"]
    assert gpus.pick(found, {"GPU-0", "GPU-2"}, 2) == []


def test_placement_counts_gpus_and_says_why_a_host_without_them_is_skipped() -> None:
    plain, one_gpu = inst(1), inst(2, gpu_free=1)
    two = [TaskDemand(256, 64, gpus=1), TaskDemand(256, 64, gpus=1)]
    first, second = place_run(two, [plain, one_gpu])
    assert isinstance(first, Placement) and first.instance_arn == "arn:ci/2"
    assert isinstance(second, Failure) and second.reason == "RESOURCE:GPU"
    [none] = place_run([TaskDemand(256, 64, gpus=1)], [plain])
    assert isinstance(none, Failure) and none.reason == "RESOURCE:GPU"
    assert "1 RESOURCE:GPU" in none.detail
    [cpu_only] = place_run([TaskDemand(256, 64)], [plain])
    assert isinstance(cpu_only, Placement)


def test_the_controller_state_claims_and_releases_gpus() -> None:
    state = ClusterState()
    doc = taskdef.validate(gpu_doc("2"))
    state.put_taskdef(TaskDefinition("train", 1, "ACTIVE", doc))
    host = Instance(arn="arn:i/1", id="i1", cluster="default", cpu_total=4096, memory_total=4096)
    host.gpu_ids = ["GPU-0", "GPU-1", "GPU-2"]
    state.put_instance(host)
    assert state.views["arn:i/1"].gpu_free == 3
    task = Task("arn:t/1", "1", "default", "train", 1, "td", "arn:i/1", [], 0, 32, "")
    state.add_task(task)
    assert state.views["arn:i/1"].gpu_free == 1 and taskdef_host.task_gpus(doc) == 2
    state.refresh_view("arn:i/1")  # a reconnect rebuilds the view from the tasks
    assert state.views["arn:i/1"].gpu_free == 1
    task.last_status = "STOPPED"
    state.task_stopped(task)
    assert state.views["arn:i/1"].gpu_free == 3


@pytest.mark.docker
async def test_docker_gets_the_device_request(driver: DockerDriver, cluster: str) -> None:
    task = _desired(gpu_doc("1"), cluster)
    spec = task.containers[0]
    spec.gpu_ids[:] = ["GPU-fake-0"]
    name = docker_name(task, spec)
    config = container_config(task, spec, "i-test", task_docker_names(task))
    await driver._create(name, config)  # created, not started: no NVIDIA runtime here
    data = docker_inspect(name)
    [request] = data["HostConfig"]["DeviceRequests"]
    assert (request["Driver"], request["DeviceIDs"]) == ("nvidia", ["GPU-fake-0"])
    assert request["Capabilities"] == [["gpu"]]
    observed = await driver.inspect(data["Id"])
    assert observed is not None and observed.gpu_ids == ["GPU-fake-0"]
