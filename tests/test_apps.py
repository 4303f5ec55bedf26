"""Real applications on Docker: volumes, mounts, volumesFrom, log drivers, image digests.

Pure tests check the definition -> ContainerSpec -> Docker create body mapping; docker
tests check the created containers with `docker inspect` and by behaviour (data written by
one container read by another, kept across a task replacement, removed with its task).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from agent.docker_driver import ContainerError, DockerDriver, container_config, image_digest
from controller import desired, taskdef
from controller.model import ContainerState, Task, TaskDefinition
from controller.roles import TaskExtras
from dockyard import images, labels
from dockyard.errors import ApiError
from dockyard.v1 import agent_pb2
from tests.support import LocalCluster
from tests.support import wait_for as wait_for_sync
from tests.test_cli import Cli, dy  # noqa: F401  (the in-process CLI fixture)
from tests.test_docker_driver import docker_inspect, make_task, sh, spec, wait_for
from tests.test_docker_driver import driver as driver  # the fixture: an engine client

docker = pytest.mark.docker


def _task_of(doc: dict[str, Any]) -> tuple[Task, TaskDefinition]:
    td = TaskDefinition(family=doc["family"], revision=1, status="ACTIVE", doc=doc)
    states = [ContainerState(name=c["name"], image=c["image"]) for c in doc["containerDefinitions"]]
    task = Task(
        arn="arn:aws:ecs:local:0:task/c/abc",
        id="abc",
        cluster="c",
        family=doc["family"],
        revision=1,
        task_definition_arn="",
        instance_arn="",
        containers=states,
        cpu=0,
        memory=0,
        group="",
    )
    return task, td


APP = {
    "family": "app",
    "volumes": [
        {
            "name": "data",
            "dockerVolumeConfiguration": {
                "scope": "shared",
                "autoprovision": True,
                "driver": "local",
                "driverOpts": {"type": "tmpfs", "device": "tmpfs"},
                "labels": {"team": "blue"},
            },
        },
        {"name": "scratch"},
        {"name": "etc", "host": {"sourcePath": "/srv/app"}},
    ],
    "containerDefinitions": [
        {
            "name": "db",
            "image": "dockyard/busybox",
            "memory": 32,
            "mountPoints": [
                {"sourceVolume": "data", "containerPath": "/data"},
                {"sourceVolume": "scratch", "containerPath": "/tmp/s"},
                {"sourceVolume": "etc", "containerPath": "/etc/app", "readOnly": True},
            ],
            "logConfiguration": {
                "logDriver": "local",
                "options": {"max-size": "1m"},
                "secretOptions": [{"name": "token", "valueFrom": "log-token"}],
            },
        },
        {
            "name": "web",
            "image": "dockyard/busybox",
            "memory": 32,
            "volumesFrom": [{"sourceContainer": "db", "readOnly": True}],
        },
    ],
}


def test_definition_becomes_volume_mount_and_log_specs() -> None:
    task, td = _task_of(taskdef.validate(APP))
    extras = TaskExtras(log_options={"db": {"token": "s3cret"}})
    d = desired.desired_task(task, td, extras)
    assert [(v.name, v.host_path, v.docker.scope) for v in d.volumes] == [
        ("data", "", "shared"),
        ("scratch", "", "task"),  # neither host nor docker config: an empty task volume
        ("etc", "/srv/app", ""),
    ]
    assert d.volumes[0].docker.autoprovision and d.volumes[0].docker.labels["team"] == "blue"
    db, web = d.containers
    assert [(m.source_volume, m.container_path, m.read_only) for m in db.mounts] == [
        ("data", "/data", False),
        ("scratch", "/tmp/s", False),
        ("etc", "/etc/app", True),
    ]
    assert db.log_config.driver == "local"
    assert dict(db.log_config.options) == {"max-size": "1m", "token": "s3cret"}
    assert not web.HasField("log_config")  # the engine's default driver
    assert [(v.source_container, v.read_only) for v in web.volumes_from] == [("db", True)]


def test_docker_body_binds_volumes_and_sets_log_config() -> None:
    task, td = _task_of(taskdef.validate(APP))
    d = desired.desired_task(task, td)
    names = {"db": "dk-db", "web": "dk-web"}
    db = container_config(d, d.containers[0], "i", names)["HostConfig"]
    assert db["Binds"] == [
        "data:/data:rw",  # shared: the name the user gave, found by the next task
        "dockyard-app-1-scratch-abc:/tmp/s:rw",  # the task's own
        "/srv/app:/etc/app:ro",
    ]
    assert db["LogConfig"] == {"Type": "local", "Config": {"max-size": "1m"}}
    web = container_config(d, d.containers[1], "i", names)["HostConfig"]
    assert web["VolumesFrom"] == ["dk-db:ro"]
    assert "Binds" not in web and "LogConfig" not in web
    bad = agent_pb2.ContainerSpec(
        name="x", image="i", mounts=[agent_pb2.Mount(source_volume="ghost", container_path="/g")]
    )
    with pytest.raises(ContainerError, match="ghost"):
        container_config(d, bad, "i", names)


def test_image_digest_prefers_the_registry_digest_of_the_reference() -> None:
    found = {
        "Id": "sha256:aaa",
        "RepoDigests": ["other/x@sha256:111", "127.0.0.1:5000/web@sha256:222"],
    }
    assert image_digest("127.0.0.1:5000/web:1", found) == "sha256:222"
    assert image_digest("web", {"Id": "sha256:aaa", "RepoDigests": []}) == "sha256:aaa"


# ---------------------------------------------------------------- real Docker


@pytest.fixture
def names() -> Iterator[dict[str, str]]:
    """A cluster and a shared volume name unique to the test; both removed after."""
    tag = uuid.uuid4().hex[:8]
    out = {"cluster": f"appstest-{tag}", "shared": f"appstest-shared-{tag}"}
    images.build_all()
    try:
        yield out
    finally:
        ids = sh("docker", "ps", "-aq", "--filter", f"label={labels.CLUSTER}={out['cluster']}")
        if ids.split():
            subprocess.run(["docker", "rm", "-f", *ids.split()], capture_output=True, check=False)
        vols = sh(
            "docker", "volume", "ls", "-q", "--filter", f"label={labels.CLUSTER}={out['cluster']}"
        ).split()
        subprocess.run(
            ["docker", "volume", "rm", "-f", out["shared"], *vols], capture_output=True, check=False
        )


def _volumes_task(cluster: str, shared: str, host_dir: Path) -> agent_pb2.DesiredTask:
    def mount(vol: str, path: str, ro: bool = False) -> agent_pb2.Mount:
        return agent_pb2.Mount(source_volume=vol, container_path=path, read_only=ro)

    writer = spec(
        "db",
        command=[
            "sh",
            "-c",
            "echo kept > /shared/f; echo own > /own/f; echo host > /host/f;"
            "echo empty > /empty/f; echo started; sleep 300",
        ],
        mounts=[
            mount(shared, "/shared"),
            mount("own", "/own"),
            mount("host", "/host"),
            mount("empty", "/empty"),
        ],
        log_config=agent_pb2.LogConfig(driver="local", options={"max-size": "1m"}),
    )
    reader = spec(
        "web",
        command=["sh", "-c", "sleep 300"],
        volumes_from=[agent_pb2.VolumeFrom(source_container="db", read_only=True)],
    )
    return make_task(
        cluster,
        writer,
        reader,
        volumes=[
            agent_pb2.VolumeSpec(
                name=shared,
                docker=agent_pb2.DockerVolume(scope="shared", autoprovision=True),
            ),
            agent_pb2.VolumeSpec(
                name="own",
                docker=agent_pb2.DockerVolume(
                    scope="task",
                    driver_opts={"type": "tmpfs", "device": "tmpfs"},
                    labels={"team": "blue"},
                ),
            ),
            agent_pb2.VolumeSpec(name="host", host_path=str(host_dir)),
            agent_pb2.VolumeSpec(name="empty", docker=agent_pb2.DockerVolume(scope="task")),
        ],
    )


def _exec(docker_id: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "exec", docker_id, "sh", "-c", script],
        capture_output=True,
        text=True,
        check=False,
    )


@docker
async def test_volumes_mounts_and_logs_reach_docker(
    driver: DockerDriver, names: dict[str, str], tmp_path: Path
) -> None:
    task = _volumes_task(names["cluster"], names["shared"], tmp_path)
    db, web = task.containers
    # the reader is started first: it waits for its volumesFrom source to exist
    web_start = asyncio.create_task(driver.create_and_start(task, web, "i-apps"))
    db_id = await driver.create_and_start(task, db, "i-apps")
    web_id = await asyncio.wait_for(web_start, 30)

    data = docker_inspect(db_id)
    assert data["HostConfig"]["LogConfig"] == {"Type": "local", "Config": {"max-size": "1m"}}
    mounts = {m["Destination"]: m for m in data["Mounts"]}
    own = f"dockyard-web-3-own-{task.task_arn.rsplit('/', 1)[1]}"
    assert mounts["/shared"]["Name"] == names["shared"] and mounts["/shared"]["RW"]
    assert mounts["/own"]["Name"] == own
    assert mounts["/host"]["Type"] == "bind" and mounts["/host"]["Source"] == str(tmp_path)
    vol = json_volume(own)
    assert vol["Options"] == {"type": "tmpfs", "device": "tmpfs"}
    assert vol["Labels"]["team"] == "blue" and vol["Labels"][labels.TASK_ARN] == task.task_arn
    assert docker_inspect(web_id)["HostConfig"]["VolumesFrom"] == [f"{data['Name'][1:]}:ro"]

    async def written() -> bool:
        return (tmp_path / "f").exists() and _exec(web_id, "cat /shared/f").stdout == "kept\n"

    await wait_for(written, "the writer's files, seen through volumesFrom")
    assert _exec(web_id, "cat /own/f /empty/f").stdout == "own\nempty\n"
    assert (tmp_path / "f").read_text() == "host\n"
    denied = _exec(web_id, "echo no > /shared/g")  # volumesFrom readOnly
    assert denied.returncode != 0 and "Read-only" in denied.stderr
    logs = b"".join([c async for c in driver.logs(db_id, follow=False, tail=0)])
    assert logs == b"started\n"  # the local driver is read back

    # the task goes: its own volumes go with its last container, the shared one stays
    await driver.remove(web_id)
    assert volume_exists(own)  # still used by db
    await driver.remove(db_id)
    assert not volume_exists(own)
    assert volume_exists(names["shared"])
    assert (
        sh("docker", "run", "--rm", "-v", f"{names['shared']}:/s", images.BASE, "cat", "/s/f")
        == "kept\n"
    )


@docker
async def test_a_missing_shared_volume_without_autoprovision_is_refused(
    driver: DockerDriver, names: dict[str, str]
) -> None:
    s = spec(mounts=[agent_pb2.Mount(source_volume="v", container_path="/v")])
    vol = agent_pb2.VolumeSpec(name="v", docker=agent_pb2.DockerVolume(scope="shared"))
    task = make_task(names["cluster"], s, volumes=[vol])
    task.volumes[0].name = names["shared"]
    task.containers[0].mounts[0].source_volume = names["shared"]
    with pytest.raises(ContainerError, match="does not exist on this host"):
        await driver.create_and_start(task, task.containers[0], "i-apps")


@docker
async def test_an_autoprovisioned_shared_volume_must_match_the_one_found(
    driver: DockerDriver, names: dict[str, str]
) -> None:
    sh("docker", "volume", "create", "--label", "team=red", names["shared"])
    s = spec(mounts=[agent_pb2.Mount(source_volume=names["shared"], container_path="/v")])
    wanted = agent_pb2.DockerVolume(scope="shared", autoprovision=True, labels={"team": "blue"})
    task = make_task(names["cluster"], s, volumes=[
        agent_pb2.VolumeSpec(name=names["shared"], docker=wanted)])  # fmt: skip
    with pytest.raises(ContainerError, match="exists with labels"):
        await driver.create_and_start(task, task.containers[0], "i-apps")
    task.volumes[0].docker.labels["team"] = "red"  # as found: used
    assert await driver.create_and_start(task, task.containers[0], "i-apps")


@docker
async def test_logs_of_a_container_logging_to_none_say_why(
    driver: DockerDriver, names: dict[str, str]
) -> None:
    s = spec(command=["echo", "hi"], log_config=agent_pb2.LogConfig(driver="none"))
    task = make_task(names["cluster"], s)
    docker_id = await driver.create_and_start(task, s, "i-apps")
    with pytest.raises(ContainerError, match="logs to driver none"):
        async for _ in driver.logs(docker_id, follow=False, tail=0):
            pass


def json_volume(name: str) -> dict[str, Any]:
    return dict(json.loads(sh("docker", "volume", "inspect", name))[0])


def volume_exists(name: str) -> bool:
    done = subprocess.run(["docker", "volume", "inspect", name], capture_output=True, check=False)
    return done.returncode == 0


# ---------------------------------------------------------------- the sample, end to end

EXAMPLE = Path(__file__).resolve().parent.parent / "deploy" / "examples" / "notes.json"


def _running_task(lc: LocalCluster, service: str, not_arn: str = "") -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        arns = lc.client().call("ListTasks", {"serviceName": service})["taskArns"]
        tasks = [t for t in lc.describe(arns) if t["lastStatus"] == "RUNNING"] if arns else []
        return next((t for t in tasks if t["taskArn"] != not_arn), None)

    return dict(wait_for_sync(found, 60, what=f"a RUNNING task of {service}"))


@docker
def test_the_notes_sample_keeps_its_data_when_its_task_is_replaced(
    cluster: LocalCluster,
    dy: Cli,  # noqa: F811  (the fixture imported above)
) -> None:
    doc = json.loads(EXAMPLE.read_text())
    volume = f"appstest-notes-{uuid.uuid4().hex[:8]}"  # the sample's volume, for this test
    doc["volumes"][0]["name"] = volume
    for c in doc["containerDefinitions"]:
        c["mountPoints"][0]["sourceVolume"] = volume
    try:
        cluster.client().call("RegisterTaskDefinition", doc)
        cluster.client().call(
            "CreateService", {"serviceName": "notes", "taskDefinition": "notes", "desiredCount": 1}
        )
        first = _running_task(cluster, "notes")
        db = next(c for c in first["containers"] if c["name"] == "db")
        web_id = next(c["runtimeId"] for c in first["containers"] if c["name"] == "web")
        # read now: Docker keeps only the last five probes
        db_health = docker_inspect(db["runtimeId"])["State"]["Health"]
        healthy_at = min(docker_time(p["End"]) for p in db_health["Log"] if p["ExitCode"] == 0)
        web_started = docker_time(docker_inspect(web_id)["State"]["StartedAt"])
        assert web_started >= healthy_at, "web (dependsOn db HEALTHY) started before db was"
        assert _logs(dy, first, "db: 1 boots recorded")
        assert db["imageDigest"] == docker_inspect(db["runtimeId"])["Image"]  # what ran
        assert docker_inspect(db["runtimeId"])["HostConfig"]["LogConfig"]["Type"] == "local"
        denied = _exec(web_id, "echo x >> /www/journal")  # web mounts it readOnly
        assert denied.returncode != 0

        sh("docker", "kill", db["runtimeId"])  # the database dies: the service replaces it
        second = _running_task(cluster, "notes", not_arn=first["taskArn"])
        assert _logs(dy, second, "db: 2 boots recorded")
        web = next(c for c in second["containers"] if c["name"] == "web")
        port = web["networkBindings"][0]["hostPort"]
        page = wait_for_sync(lambda: http_get_path(port, "/journal"), 20, what="the journal")
        assert len(page.splitlines()) == 2  # both boots, served from the shared volume
    finally:
        with contextlib.suppress(ApiError):  # the service may not have been made
            cluster.client().call("DeleteService", {"service": "notes", "force": True})
        cluster.stop()  # its containers go, then the volume can
        subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True, check=False)


def _logs(cli: Cli, task: dict[str, Any], line: str) -> bool:
    def has() -> bool:
        return line in cli("logs", task["taskArn"], "--container", "db").out

    return bool(wait_for_sync(has, 20, what=f"{line!r} in dockyard logs"))


def docker_time(stamp: str) -> datetime:
    """Docker's RFC 3339 time with nanoseconds, to microseconds (what datetime holds)."""
    day, frac = [*stamp.rstrip("Z").split("."), "0"][:2]
    return datetime.fromisoformat(f"{day}.{frac[:6]:0<6}+00:00")


def http_get_path(port: int, path: str) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return str(r.read().decode())
    except OSError:
        return None


@docker
def test_awslogs_runs_only_where_the_agent_allows_it(cluster: LocalCluster) -> None:
    doc = {
        "family": "cloudy",
        "containerDefinitions": [
            {
                "name": "main",
                "image": "dockyard/sleeper:latest",
                "memory": 32,
                "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "g"}},
            }
        ],
    }
    cluster.client().call("RegisterTaskDefinition", doc)
    arn = cluster.client().call("RunTask", {"taskDefinition": "cloudy"})["tasks"][0]["taskArn"]
    task = cluster.wait_status([arn], "STOPPED")[0]
    assert task["stopCode"] == "TaskFailedToStart"
    assert "awslogs is not allowed on this instance" in task["stoppedReason"]
    assert "--allow-awslogs" in task["stoppedReason"]


@docker
def test_log_secret_options_are_resolved_like_secrets(cluster: LocalCluster) -> None:
    c = cluster.client()
    log = {
        "logDriver": "json-file",
        "options": {"max-file": "2"},
        "secretOptions": [{"name": "max-size", "valueFrom": "log-size"}],
    }
    doc = {
        "family": "secret-logs",
        "executionRoleArn": "exec",
        "containerDefinitions": [
            {"name": "main", "image": "dockyard/sleeper:latest", "memory": 32,
             "logConfiguration": log}
        ],
    }  # fmt: skip
    c.call("CreateRole", {"roleName": "exec", "accessKeyId": "AKIDEXEC", "secretAccessKey": "x"})
    c.call("RegisterTaskDefinition", doc)
    with pytest.raises(ApiError) as err:  # the secret does not exist yet
        c.call("RunTask", {"taskDefinition": "secret-logs"})
    assert "containerDefinitions[0].logConfiguration.secretOptions[0].valueFrom" in str(err.value)
    c.call("PutSecret", {"name": "log-size", "value": "3m"})
    arn = c.call("RunTask", {"taskDefinition": "secret-logs"})["tasks"][0]["taskArn"]
    task = cluster.wait_status([arn], "RUNNING")[0]
    config = docker_inspect(task["containers"][0]["runtimeId"])["HostConfig"]["LogConfig"]
    assert config == {"Type": "json-file", "Config": {"max-file": "2", "max-size": "3m"}}


@docker
def test_runtime_platform_places_only_on_matching_agents(cluster: LocalCluster) -> None:
    c = cluster.client()
    here = sh("docker", "info", "--format", "{{.Architecture}}").strip()
    other = "ARM64" if here in ("x86_64", "amd64") else "X86_64"
    mine = "X86_64" if other == "ARM64" else "ARM64"
    for family, arch in (("elsewhere", other), ("here", mine)):
        c.call(
            "RegisterTaskDefinition",
            {
                "family": family,
                "runtimePlatform": {"operatingSystemFamily": "LINUX", "cpuArchitecture": arch},
                "containerDefinitions": [
                    {"name": "main", "image": "dockyard/sleeper:latest", "memory": 32}
                ],
            },
        )
    out = c.call("RunTask", {"taskDefinition": "elsewhere"})
    assert out["tasks"] == [] and out["failures"][0]["reason"] == "ATTRIBUTE"
    arn = c.call("RunTask", {"taskDefinition": "here"})["tasks"][0]["taskArn"]
    cluster.wait_status([arn], "RUNNING")
