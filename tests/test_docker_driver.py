"""DockerDriver: the pure ContainerSpec mapping, and every engine call against a real dockerd."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiodocker.exceptions import DockerError

from agent.docker_driver import (
    ContainerError,
    DockerDriver,
    DockerUnavailable,
    PullError,
    container_config,
    docker_name,
    task_docker_names,
)
from agent.pull_progress import PullProgress
from dockyard import images, labels
from dockyard.v1 import agent_pb2
from tests import registry_support

MIB = 1024 * 1024
docker = pytest.mark.docker


# ---------------------------------------------------------------- helpers


def make_task(cluster: str, *specs: agent_pb2.ContainerSpec, **kw: Any) -> agent_pb2.DesiredTask:
    arn = f"arn:aws:ecs:local:000000000000:task/{cluster}/{uuid.uuid4().hex}"
    return agent_pb2.DesiredTask(
        task_arn=arn, cluster=cluster, family="web", revision=3, containers=specs, **kw
    )


def spec(name: str = "app", image: str = "dockyard/busybox:latest", **kw: Any):
    return agent_pb2.ContainerSpec(name=name, image=image, **kw)


def env(**values: str) -> list[agent_pb2.KeyValue]:
    return [agent_pb2.KeyValue(name=k, value=v) for k, v in values.items()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def sh(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def docker_inspect(ref: str) -> dict[str, Any]:
    return json.loads(sh("docker", "inspect", ref))[0]


async def wait_for(cond: Callable[[], Awaitable[Any]], what: str, limit_s: float = 30) -> Any:
    """Poll an async condition until it returns something truthy, or fail after limit_s."""
    deadline = time.monotonic() + limit_s
    while True:
        value = await cond()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def http_get(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
            return r.read().decode()
    except OSError:
        return None


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def sample_images() -> list[str]:
    return images.build_all()


@pytest.fixture
def cluster(sample_images: list[str]) -> Iterator[str]:
    """A cluster name unique to the test; every container labelled with it is removed after."""
    name = f"drvtest-{uuid.uuid4().hex[:8]}"
    try:
        yield name
    finally:
        ids = sh("docker", "ps", "-aq", "--filter", f"label={labels.CLUSTER}={name}").split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)


@pytest.fixture
async def driver() -> AsyncIterator[DockerDriver]:
    d = DockerDriver()
    try:
        yield d
    finally:
        await d.close()


@pytest.fixture
def registry(sample_images: list[str]) -> Iterator[str]:
    """Debian's docker-registry on 127.0.0.1:<free port>, holding dockyard/busybox."""
    port = free_port()
    addr = f"127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp, "config.yml")
        conf.write_text(
            "version: 0.1\nlog:\n  level: error\n"
            f"storage:\n  filesystem:\n    rootdirectory: {tmp}/data\n"
            f"http:\n  addr: {addr}\n"
        )
        proc = subprocess.Popen(
            ["/usr/bin/docker-registry", "serve", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ref = f"{addr}/dockyard/busybox:latest"
        try:
            _wait_registry(port)
            sh("docker", "tag", images.BASE, ref)
            sh("docker", "push", ref)
            yield addr
        finally:
            subprocess.run(["docker", "rmi", ref], capture_output=True, check=False)
            proc.terminate()
            proc.wait(timeout=10)


def _wait_registry(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail("docker-registry did not start")


# ---------------------------------------------------------------- pure mapping


def test_env_merges_environment_secrets_and_credentials_uri() -> None:
    s = spec(environment=env(A="1", B="2"), secrets={"DB_PASSWORD": "s3cret"})
    task = make_task("c", s, credentials=agent_pb2.Credentials(id="abc"))
    cfg = container_config(task, s, "i-1", task_docker_names(task))
    assert set(cfg["Env"]) == {
        "A=1",
        "B=2",
        "DB_PASSWORD=s3cret",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/v2/credentials/abc",
    }


def test_static_ports_are_exposed_and_published_in_bridge_mode_only() -> None:
    pms = [
        agent_pb2.PortMapping(container_port=8080, host_port=18080, protocol="tcp"),
        agent_pb2.PortMapping(container_port=53, host_port=1053, protocol="udp"),
    ]
    s = spec(port_mappings=pms)
    cfg = container_config(make_task("c", s), s, "i-1", {})
    assert cfg["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert cfg["HostConfig"]["PortBindings"] == {
        "8080/tcp": [{"HostIp": "", "HostPort": "18080"}],
        "53/udp": [{"HostIp": "", "HostPort": "1053"}],
    }
    host = container_config(make_task("c", s, network_mode="host"), s, "i-1", {})
    assert host["HostConfig"]["NetworkMode"] == "host"
    assert "PortBindings" not in host["HostConfig"]


def test_bad_port_protocol_names_the_field() -> None:
    s = spec(port_mappings=[agent_pb2.PortMapping(container_port=80, protocol="sctp")])
    with pytest.raises(ContainerError, match=r"portMappings\[0\]\.protocol"):
        container_config(make_task("c", s), s, "i-1", {})


def test_labels_carry_task_identity_and_user_labels() -> None:
    s = spec(docker_labels={"team": "blue", labels.CLUSTER: "spoofed"})
    task = make_task("prod", s)
    lab = container_config(task, s, "i-9", {})["Labels"]
    assert lab["team"] == "blue"
    assert lab[labels.CLUSTER] == "prod"  # ours win over the user's
    assert lab[labels.TASK_ARN] == task.task_arn
    assert lab[labels.CONTAINER_NAME] == "app"
    assert lab[labels.REVISION] == "3"
    assert lab[labels.INSTANCE] == "i-9"
    assert lab["com.amazonaws.ecs.task-arn"] == task.task_arn


def test_limits_map_to_bytes_and_docker_cpu_share_minimum() -> None:
    s = spec(memory_mib=128, memory_reservation_mib=64, cpu=1)
    host = container_config(make_task("c", s), s, "i", {})["HostConfig"]
    assert host["Memory"] == 128 * MIB
    assert host["MemoryReservation"] == 64 * MIB
    assert host["CpuShares"] == 2
    bare = container_config(make_task("c", spec()), spec(), "i", {})["HostConfig"]
    assert not {"Memory", "MemoryReservation", "CpuShares"} & set(bare)


def test_health_check_converts_seconds_and_fills_ecs_defaults() -> None:
    hc = agent_pb2.HealthCheck(
        command=["CMD-SHELL", "wget -q localhost:8080"], interval_s=10, start_period_s=5
    )
    s = spec(health_check=hc)
    cfg = container_config(make_task("c", s), s, "i", {})
    assert cfg["Healthcheck"] == {
        "Test": ["CMD-SHELL", "wget -q localhost:8080"],
        "Interval": 10_000_000_000,
        "Timeout": 5_000_000_000,
        "Retries": 3,
        "StartPeriod": 5_000_000_000,
    }
    assert "Healthcheck" not in container_config(make_task("c", spec()), spec(), "i", {})


def test_network_mode_defaults_to_bridge_and_rejects_unknown() -> None:
    s = spec()
    assert container_config(make_task("c", s), s, "i", {})["HostConfig"]["NetworkMode"] == "bridge"
    with pytest.raises(ContainerError, match="networkMode"):
        container_config(make_task("c", s, network_mode="awsvpc"), s, "i", {})


def test_entrypoint_command_and_misc_fields() -> None:
    s = spec(
        entry_point=["sh", "-c"],
        command=["echo hi"],
        working_directory="/tmp",
        user="nobody",
        hostname="web1",
        stop_timeout_s=7,
    )
    cfg = container_config(make_task("c", s), s, "i", {})
    assert cfg["Entrypoint"] == ["sh", "-c"]
    assert cfg["Cmd"] == ["echo hi"]
    assert (cfg["WorkingDir"], cfg["User"], cfg["Hostname"]) == ("/tmp", "nobody", "web1")
    assert cfg["StopTimeout"] == 7
    assert "RestartPolicy" not in cfg["HostConfig"] and "Init" not in cfg["HostConfig"]
    plain = container_config(make_task("c", spec()), spec(), "i", {})
    assert "Cmd" not in plain and "Entrypoint" not in plain  # the image's own


def test_links_point_at_docker_names_of_the_same_task() -> None:
    db, app = spec("db"), spec("app", links=["db:database"])
    task = make_task("c", db, app)
    names = task_docker_names(task)
    cfg = container_config(task, app, "i", names)
    assert cfg["HostConfig"]["Links"] == [f"{names['db']}:database"]
    bad = spec("app", links=["cache"])
    with pytest.raises(ContainerError, match="links: 'cache'"):
        container_config(make_task("c", bad), bad, "i", {})


def test_docker_name_is_deterministic_and_sanitised() -> None:
    s = spec("my app")
    task = make_task("c", s)
    name = docker_name(task, s)
    assert name == docker_name(task, s)
    assert name.startswith("dockyard-web-3-my-app-")
    assert name.endswith(task.task_arn.rsplit("/", 1)[-1])


# ---------------------------------------------------------------- pulls (pure / fake engine)


def _layer(layer: str, status: str, current: int = 0, total: int = 0) -> dict[str, Any]:
    detail = {"current": current, "total": total} if total else {}
    return {"id": layer, "status": status, "progressDetail": detail}


def test_pull_progress_is_rate_limited_but_says_every_finished_layer() -> None:
    p = PullProgress(interval=1.0)
    said = [p.update({"id": "latest", "status": "Pulling from app/web"}, 0.0)]
    said += [p.update(_layer(x, "Pulling fs layer"), 0.0) for x in ("a", "b", "c")]
    said.append(p.update(_layer("c", "Already exists"), 0.0))
    assert said == [None] * 5  # nothing downloaded yet: nothing to say
    lines = []
    for tick in range(30):  # a's 3 MB arrive over 3 s in 100 ms chunks
        line = p.update(_layer("a", "Downloading", (tick + 1) * 100_000, 3_000_000), tick / 10)
        if line:
            lines.append(line)
    assert lines == ["1/3 layers, 100.0 kB/3.0 MB", "1/3 layers, 1.1 MB/3.0 MB",
                     "1/3 layers, 2.1 MB/3.0 MB"]  # fmt: skip
    assert p.update(_layer("b", "Extracting", 10, 500_000), 2.95) is None  # within the second
    assert p.update(_layer("a", "Pull complete"), 2.96) == "2/3 layers, 3.5 MB/3.5 MB"
    assert p.update(_layer("b", "Pull complete"), 2.97) == "3/3 layers, 3.5 MB/3.5 MB"
    assert p.update({"status": "Digest: sha256:00"}, 5.0) is None
    assert p.summary() == "3 layers, 3.5 MB"


class _FakeImages:
    """The engine's pull stream, held at a gate; a refused password fails like a registry."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict | None]] = []
        self.gate = asyncio.Event()

    def pull(self, image: str, *, auth: dict | None = None, stream: bool = False) -> Any:
        self.calls.append((image, auth))
        return self._stream(auth)

    async def _stream(self, auth: dict | None) -> AsyncIterator[dict[str, Any]]:
        yield _layer("l1", "Pulling fs layer")
        await self.gate.wait()
        if auth and auth["password"] != "right":
            raise DockerError(500, "unauthorized: authentication required")
        yield _layer("l1", "Downloading", 500, 1000)
        yield _layer("l1", "Pull complete")


class _FakeDocker:
    def __init__(self) -> None:
        self.images = _FakeImages()

    async def close(self) -> None:
        pass


async def test_concurrent_pulls_merge_per_image_and_login_only() -> None:
    driver = DockerDriver()
    fake = _FakeDocker()
    driver._client = fake  # type: ignore[assignment]
    ref = "reg.example:5000/app:1"
    right = {"username": "u", "password": "right", "serveraddress": "reg.example:5000"}
    wrong = dict(right, password="wrong")
    heard: dict[str, list[str]] = {"a": [], "b": [], "w": [], "anon": []}
    pulls = [
        driver.ensure_image(ref, "always", right, heard["a"].append),
        driver.ensure_image(ref, "always", dict(right), heard["b"].append),  # same login
        driver.ensure_image(ref, "always", wrong, heard["w"].append),
        driver.ensure_image(ref, "always", None, heard["anon"].append),
    ]
    running = [asyncio.create_task(p) for p in pulls]
    await asyncio.sleep(0.05)
    assert len(driver._pulls) == 3  # right, wrong and anonymous each pull on their own
    assert "right" not in repr(driver._pulls) and "wrong" not in repr(driver._pulls)
    fake.images.gate.set()
    results = await asyncio.gather(*running, return_exceptions=True)
    try:
        assert results[0] is None and results[1] is None and results[3] is None
        assert isinstance(results[2], PullError) and "unauthorized" in str(results[2])
        assert sorted(str(a and a["password"]) for _, a in fake.images.calls) == [
            "None", "right", "wrong"]  # fmt: skip
        for who in ("a", "b"):  # both waiters of the merged pull hear its progress
            assert f"pulling {ref}: 1/1 layers, 1.0 kB/1.0 kB" in heard[who]
            assert heard[who][-1] == f"pulling {ref}: done (1 layers, 1.0 kB)"
        assert heard["w"][-1] == f"pulling {ref}: failed"
        assert driver.pull_count == 3 and not driver._pulls
    finally:
        await driver.close()


# ---------------------------------------------------------------- engine


async def test_ping_is_false_for_a_missing_socket_without_raising(tmp_path: Path) -> None:
    d = DockerDriver(f"unix://{tmp_path}/no.sock")
    try:
        assert await d.ping() is False
        with pytest.raises(DockerUnavailable, match="unreachable"):
            await d.info()
    finally:
        await d.close()


def test_bad_docker_host_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="docker_host"):
        DockerDriver("ftp://example")


@docker
async def test_ping_and_info(driver: DockerDriver) -> None:
    assert await driver.ping() is True
    info = await driver.info()
    assert info.cpus >= 1 and info.memory_mib > 0
    assert info.os == "linux" and info.arch in ("x86_64", "aarch64")
    assert info.server_version


@docker
async def test_create_and_start_applies_spec_and_publishes_port(
    driver: DockerDriver, cluster: str
) -> None:
    port = free_port()
    s = spec(
        image="dockyard/httpd:latest",
        environment=env(GREETING="hello"),
        port_mappings=[agent_pb2.PortMapping(container_port=8080, host_port=port)],
        memory_mib=64,
        memory_reservation_mib=32,
        cpu=256,
        docker_labels={"team": "blue"},
    )
    task = make_task(cluster, s)
    docker_id = await driver.create_and_start(task, s, "i-test")
    data = docker_inspect(docker_id)
    assert data["State"]["Running"]
    assert "GREETING=hello" in data["Config"]["Env"]
    assert data["HostConfig"]["Memory"] == 64 * MIB
    assert data["HostConfig"]["MemoryReservation"] == 32 * MIB
    assert data["HostConfig"]["CpuShares"] == 256
    assert data["Config"]["Labels"]["team"] == "blue"
    assert data["Config"]["Labels"][labels.TASK_ARN] == task.task_arn
    assert data["HostConfig"]["PortBindings"]["8080/tcp"][0]["HostPort"] == str(port)
    body = await wait_for(lambda: asyncio.to_thread(http_get, port), what="httpd on host port")
    assert body.strip() == "ok"
    tcp, _udp = await driver.host_ports_in_use()
    assert port in tcp


@docker
async def test_create_and_start_twice_and_concurrently_makes_one_container(
    driver: DockerDriver, cluster: str
) -> None:
    s = spec(image="dockyard/sleeper:latest")
    task = make_task(cluster, s)
    other = DockerDriver()  # a second agent process racing on the same engine
    try:
        first = await driver.create_and_start(task, s, "i")
        assert await driver.create_and_start(task, s, "i") == first
        s2 = spec("second", image="dockyard/sleeper:latest")
        task2 = make_task(cluster, s2)
        ids = await asyncio.gather(
            *(d.create_and_start(task2, s2, "i") for d in (driver, driver, other, other))
        )
    finally:
        await other.close()
    assert len(set(ids)) == 1
    names = sh(
        "docker",
        "ps",
        "-a",
        "--format",
        "{{.Names}}",
        "--filter",
        f"label={labels.CLUSTER}={cluster}",
    )
    assert sorted(names.split()) == sorted([docker_name(task, s), docker_name(task2, s2)])
    assert docker_inspect(ids[0])["State"]["Running"]


@docker
async def test_an_exited_container_is_never_started_again(
    driver: DockerDriver, cluster: str
) -> None:
    s = spec(image="dockyard/crasher:latest", environment=env(EXIT_CODE="5", DELAY="0"))
    task = make_task(cluster, s)
    docker_id = await driver.create_and_start(task, s, "i")
    seen = await wait_for(lambda: _exited(driver, docker_id), what="crasher to exit")
    assert await driver.create_and_start(task, s, "i") == docker_id
    again = await driver.inspect(docker_id)
    assert again is not None
    assert (again.state, again.started_at) == ("exited", seen.started_at)


async def _exited(driver: DockerDriver, docker_id: str) -> Any:
    o = await driver.inspect(docker_id)
    return o if o is not None and o.state == "exited" else None


async def _wait_sleeping(docker_id: str) -> None:
    """Wait until the container's shell installed its trap and runs `sleep`."""

    async def sleeping() -> bool:
        top = await asyncio.to_thread(sh, "docker", "top", docker_id)
        return "sleep" in top

    await wait_for(sleeping, what="container to reach sleep")


@docker
async def test_stop_is_graceful_then_kills_after_timeout(
    driver: DockerDriver, cluster: str
) -> None:
    sleeper, stubborn = spec("s", "dockyard/sleeper:latest"), spec("t", "dockyard/stubborn:latest")
    task = make_task(cluster, sleeper, stubborn)
    sid = await driver.create_and_start(task, sleeper, "i")
    tid = await driver.create_and_start(task, stubborn, "i")
    await _wait_sleeping(sid)
    await _wait_sleeping(tid)
    await asyncio.gather(driver.stop(sid, 30), driver.stop(tid, 1))
    s_obs, t_obs = await driver.inspect(sid), await driver.inspect(tid)
    assert s_obs is not None and (s_obs.state, s_obs.exit_code) == ("exited", 0)
    assert t_obs is not None and (t_obs.state, t_obs.exit_code) == ("exited", 137)
    await driver.stop(sid, 1)  # idempotent
    await driver.remove(sid)
    assert await driver.inspect(sid) is None
    await driver.stop("no-such-container-xyz", 1)
    await driver.remove("no-such-container-xyz")


@docker
async def test_list_managed_and_inspect_report_state_exit_code_and_bindings(
    driver: DockerDriver, cluster: str
) -> None:
    port = free_port()
    crash = spec("crash", "dockyard/crasher:latest", environment=env(EXIT_CODE="5", DELAY="0"))
    web = spec(
        "web",
        "dockyard/httpd:latest",
        port_mappings=[agent_pb2.PortMapping(container_port=8080, host_port=port)],
    )
    task = make_task(cluster, crash, web)
    cid = await driver.create_and_start(task, crash, "i")
    wid = await driver.create_and_start(task, web, "i")
    obs = await wait_for(lambda: _exited(driver, cid), what="crasher to exit")
    assert obs.exit_code == 5 and obs.finished_at and obs.started_at
    assert (obs.task_arn, obs.container_name, obs.cluster) == (task.task_arn, "crash", cluster)
    assert (obs.family, obs.revision, obs.health, obs.oom_killed) == ("web", 3, "UNKNOWN", False)
    listed = {o.docker_id: o for o in await driver.list_managed(cluster)}
    assert set(listed) == {cid, wid}
    assert listed[wid].state == "running" and listed[wid].exit_code is None
    assert (8080, port, "tcp") in [b[:3] for b in listed[wid].bindings]
    assert not await driver.list_managed(f"{cluster}-other")
    assert {cid, wid} <= {o.docker_id for o in await driver.list_managed()}


@docker
async def test_events_report_die_of_a_crashing_container(
    driver: DockerDriver, cluster: str
) -> None:
    s = spec(image="dockyard/crasher:latest", environment=env(EXIT_CODE="3", DELAY="0"))
    since = time.time() - 1
    docker_id = await driver.create_and_start(make_task(cluster, s), s, "i")

    async def first_die() -> list[str]:
        actions = []
        async for ev_id, action in driver.events(since=since):
            if ev_id == docker_id:
                actions.append(action)
                if action == "die":
                    return actions
        return actions

    actions = await asyncio.wait_for(first_die(), timeout=30)
    assert actions[0] == "start" and actions[-1] == "die"


@docker
async def test_logs_return_what_the_container_printed(driver: DockerDriver, cluster: str) -> None:
    s = spec(command=["sh", "-c", "echo one; echo oops >&2; echo two; echo three"])
    docker_id = await driver.create_and_start(make_task(cluster, s), s, "i")
    await wait_for(lambda: _exited(driver, docker_id), what="container to exit")
    lines = b"".join([c async for c in driver.logs(docker_id, follow=False, tail=0)]).split()
    assert sorted(lines) == sorted([b"one", b"oops", b"two", b"three"])
    assert [x for x in lines if x != b"oops"] == [b"one", b"two", b"three"]  # stdout in order
    last = b"".join([c async for c in driver.logs(docker_id, follow=False, tail=1)])
    assert len(last.split()) == 1
    with pytest.raises(ContainerError, match="no such container"):
        _ = [c async for c in driver.logs("no-such-container-xyz", follow=False, tail=0)]


@docker
async def test_followed_logs_stream_until_the_container_exits(
    driver: DockerDriver, cluster: str
) -> None:
    s = spec(command=["sh", "-c", "echo start; sleep 1; echo end"])
    docker_id = await driver.create_and_start(make_task(cluster, s), s, "i")

    async def follow() -> bytes:
        return b"".join([c async for c in driver.logs(docker_id, follow=True, tail=0)])

    assert (await asyncio.wait_for(follow(), timeout=30)).split() == [b"start", b"end"]


# ---------------------------------------------------------------- images


@docker
async def test_prefer_cached_with_a_local_image_does_not_pull(driver: DockerDriver) -> None:
    await driver.ensure_image("dockyard/busybox:latest", "prefer-cached")
    await driver.ensure_image("dockyard/busybox", "prefer-cached")
    assert driver.pull_count == 0


@docker
async def test_always_from_an_unreachable_registry_raises_pull_error(driver: DockerDriver) -> None:
    lines: list[str] = []
    with pytest.raises(PullError, match=r"^CannotPullContainerError: .*127\.0\.0\.1:1"):
        await driver.ensure_image("127.0.0.1:1/nope:latest", "always", progress=lines.append)
    assert lines == ["pulling 127.0.0.1:1/nope:latest", "pulling 127.0.0.1:1/nope:latest: failed"]
    with pytest.raises(PullError, match="imagePullBehavior"):
        await driver.ensure_image("dockyard/busybox:latest", "sometimes")


@docker
async def test_default_falls_back_to_the_local_copy(
    driver: DockerDriver, sample_images: list[str]
) -> None:
    ref = f"127.0.0.1:1/fallback-{uuid.uuid4().hex[:6]}:latest"
    sh("docker", "tag", images.BASE, ref)
    try:
        lines: list[str] = []
        await driver.ensure_image(ref, "default", progress=lines.append)
        assert driver.pull_count == 1
        assert "using the local copy" in lines[-1]
        with pytest.raises(PullError):
            await driver.ensure_image(ref, "always")
    finally:
        await asyncio.to_thread(subprocess.run, ["docker", "rmi", ref], capture_output=True)


@docker
async def test_pulls_from_a_local_registry_are_merged_and_remembered(
    driver: DockerDriver, registry: str
) -> None:
    ref = f"{registry}/dockyard/busybox:latest"
    sh("docker", "rmi", ref)  # untag: only the registry has it under this name now
    await asyncio.gather(*(driver.ensure_image(ref, "always") for _ in range(4)))
    assert driver.pull_count == 1
    assert ref in sh("docker", "images", "--format", "{{.Repository}}:{{.Tag}}").split()
    await driver.ensure_image(ref, "once")  # pulled in this agent's lifetime: cached
    await driver.ensure_image(ref, "prefer-cached")
    assert driver.pull_count == 1
    await asyncio.gather(driver.ensure_image(ref, "default"), driver.ensure_image(ref, "always"))
    assert driver.pull_count == 2
    fresh = DockerDriver()  # a new agent lifetime: "once" pulls again
    try:
        await fresh.ensure_image(ref, "once")
        assert fresh.pull_count == 1
    finally:
        await fresh.close()


@docker
async def test_pulls_with_different_logins_each_use_their_own(
    driver: DockerDriver, sample_images: list[str]
) -> None:
    login = ("puller", "right-pass")
    with registry_support.local_registry(login) as addr:
        ref = f"{addr}/private/busybox:latest"
        registry_support.push(images.BASE, ref, login)
        right = {"username": "puller", "password": "right-pass", "serveraddress": addr}
        wrong = dict(right, password="wrong-pass")
        try:
            out = await asyncio.gather(  # the wrong login first: nobody may ride on it
                driver.ensure_image(ref, "always", wrong),
                driver.ensure_image(ref, "always", right),
                driver.ensure_image(ref, "always", dict(right)),
                return_exceptions=True,
            )
            assert isinstance(out[0], PullError), out
            assert "CannotPullContainerError" in str(out[0]) and "wrong-pass" not in str(out[0])
            assert out[1:] == [None, None]
            assert driver.pull_count == 2  # the two right ones merged
        finally:
            await asyncio.to_thread(subprocess.run, ["docker", "rmi", ref], capture_output=True)


@docker
async def test_health_check_runs_in_docker_and_reports_healthy(
    driver: DockerDriver, cluster: str
) -> None:
    hc = agent_pb2.HealthCheck(
        command=["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:8080/"],
        interval_s=1,
        timeout_s=2,
        retries=2,
    )
    s = spec(image="dockyard/httpd:latest", health_check=hc)
    since = time.time() - 1
    docker_id = await driver.create_and_start(make_task(cluster, s), s, "i")

    async def healthy() -> bool:
        o = await driver.inspect(docker_id)
        return o is not None and o.health == "HEALTHY"

    await wait_for(healthy, what="health check to pass")

    async def health_event() -> None:
        async for ev_id, action in driver.events(since=since):
            if ev_id == docker_id and action == "health_status":
                return

    await asyncio.wait_for(health_event(), timeout=30)


@docker
async def test_docker_refusals_become_clear_container_errors(
    driver: DockerDriver, cluster: str
) -> None:
    port = free_port()
    pm = [agent_pb2.PortMapping(container_port=8080, host_port=port)]
    a, b = (
        spec("a", "dockyard/httpd:latest", port_mappings=pm),
        spec("b", "dockyard/httpd:latest", port_mappings=pm),
    )
    task = make_task(cluster, a, b)
    await driver.create_and_start(task, a, "i")
    with pytest.raises(ContainerError, match=r"^CannotStartContainerError: .*already allocated"):
        await driver.create_and_start(task, b, "i")
    missing = spec("m", "dockyard/not-built-anywhere:latest")
    with pytest.raises(ContainerError, match=r"^CannotCreateContainerError: .*No such image"):
        await driver.create_and_start(make_task(cluster, missing), missing, "i")


async def test_events_on_a_missing_socket_raise_docker_unavailable(tmp_path: Path) -> None:
    d = DockerDriver(f"unix://{tmp_path}/no.sock")
    try:
        with pytest.raises(DockerUnavailable):
            async for _ in d.events():
                pass
        with pytest.raises(DockerUnavailable):
            await d.list_managed()
    finally:
        await d.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@docker
async def test_tcp_docker_host_is_respected() -> None:
    """A tcp:// engine address works: a loopback TCP proxy in front of the unix socket."""

    async def forward(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_unix_connection("/var/run/docker.sock")
        await asyncio.gather(_pipe(r, uw), _pipe(ur, w))

    server = await asyncio.start_server(forward, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    d = DockerDriver(f"tcp://127.0.0.1:{port}")
    try:
        assert await d.ping() is True
        assert (await d.info()).os == "linux"
    finally:
        await d.close()
        server.close()
        await server.wait_closed()
