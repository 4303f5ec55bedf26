"""The agent's only door to Docker: every engine call goes through `DockerDriver`.

The reconciliation planner stays pure; this module turns its decisions into aiodocker
calls and turns Docker's answers (and failures) back into small typed values, so the
agent never sees an aiodocker stack trace. The ContainerSpec -> Docker mapping is the
pure `container_config`, testable without an engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
import secrets
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiodocker
import aiohttp
from aiodocker.exceptions import DockerError
from aiodocker.volumes import DockerVolume

from agent import host, host_config
from agent.observed import ObservedContainer
from agent.pull_progress import PullProgress
from dockyard import labels
from dockyard.v1 import agent_pb2

MIB = 1024 * 1024
NS = 1_000_000_000
NETWORK_MODES = ("bridge", "host", "none")
PULL_BEHAVIORS = ("default", "always", "once", "prefer-cached")
VOLUMES_FROM_WAIT_S = 300
WATCHED_EVENTS = ("start", "die", "oom", "health_status", "destroy", "kill")
HOST_SCHEMES = ("unix://", "tcp://", "http://", "https://", "ssh://")
_ARCH = {"amd64": "x86_64", "x86-64": "x86_64", "arm64": "aarch64", "armhf": "armv7l"}
_HEALTH = {"healthy": "HEALTHY", "unhealthy": "UNHEALTHY"}
# ECS defaults for a health check whose fields are left at 0.
_HC_DEFAULTS = {"interval_s": 30, "timeout_s": 5, "retries": 3}


class DriverError(Exception):
    """Base of every error the driver raises; str() is a message fit for an operator."""


class DockerUnavailable(DriverError):
    """The engine cannot be reached (socket gone, daemon down, connection dropped)."""


class PullError(DriverError):
    """An image could not be made available; message starts with CannotPullContainerError."""


class ContainerError(DriverError):
    """Docker refused a container operation (create, start, bad spec, missing container)."""


@dataclass
class EngineInfo:
    cpus: int
    memory_mib: int
    server_version: str
    os: str
    arch: str
    name: str
    engine_id: str = ""  # `docker info`'s ID: one per engine (its data root), for the engine claim


# ---------------------------------------------------------------- pure mapping


def task_id(task_arn: str) -> str:
    """The last path part of a task ARN (ECS's task id)."""
    return task_arn.rsplit("/", 1)[-1]


def docker_name(task: agent_pb2.DesiredTask, spec: agent_pb2.ContainerSpec) -> str:
    """Deterministic Docker name: the key that makes create_and_start idempotent."""
    raw = f"dockyard-{task.family}-{task.revision}-{spec.name}-{task_id(task.task_arn)}"
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", raw)


def task_docker_names(task: agent_pb2.DesiredTask) -> dict[str, str]:
    """Container name -> Docker name for every container of the task (for links)."""
    return {c.name: docker_name(task, c) for c in task.containers}


def container_config(
    task: agent_pb2.DesiredTask,
    spec: agent_pb2.ContainerSpec,
    instance_id: str,
    docker_names: dict[str, str],
) -> dict[str, Any]:
    """The Docker create body for one container of a task. Raises ContainerError on bad input."""
    mode = task.network_mode or "bridge"
    if mode not in NETWORK_MODES:
        raise ContainerError(f"networkMode: {mode!r} is not supported (use bridge, host or none)")
    host: dict[str, Any] = {"NetworkMode": mode}
    host.update(_limits(spec))
    config: dict[str, Any] = {"Image": spec.image, "HostConfig": host}
    if spec.command:
        config["Cmd"] = list(spec.command)
    if spec.entry_point:
        config["Entrypoint"] = list(spec.entry_point)
    config["Env"] = _env(task, spec)
    exposed, bindings = _ports(spec)
    if exposed:
        config["ExposedPorts"] = exposed
        if mode == "bridge":
            host["PortBindings"] = bindings
    ours = labels.container_labels(
        task.cluster, task.task_arn, spec.name, task.family, task.revision, instance_id
    )
    config["Labels"] = dict(spec.docker_labels) | ours
    if spec.HasField("health_check") and spec.health_check.command:
        config["Healthcheck"] = _healthcheck(spec.health_check)
    for key, value in (
        ("WorkingDir", spec.working_directory),
        ("User", spec.user),
        ("Hostname", spec.hostname),
    ):
        if value:
            config[key] = value
    stop_timeout = spec.stop_timeout_s or task.stop_timeout_s
    if stop_timeout:
        config["StopTimeout"] = stop_timeout
    if spec.links and mode == "bridge":
        host["Links"] = _links(spec, docker_names)
    host.update(_storage(task, spec, docker_names))
    if spec.HasField("log_config") and spec.log_config.driver:
        host["LogConfig"] = {
            "Type": spec.log_config.driver,
            "Config": dict(spec.log_config.options),
        }
    host_config.apply(config, task, spec, docker_names)
    return config


def _limits(spec: agent_pb2.ContainerSpec) -> dict[str, int]:
    out: dict[str, int] = {}
    if spec.memory_mib < 0 or spec.memory_reservation_mib < 0 or spec.cpu < 0:
        raise ContainerError(f"container {spec.name!r}: memory and cpu must not be negative")
    if spec.memory_mib:
        out["Memory"] = spec.memory_mib * MIB
    if spec.memory_reservation_mib:
        out["MemoryReservation"] = spec.memory_reservation_mib * MIB
    if spec.cpu:
        out["CpuShares"] = max(spec.cpu, 2)  # Docker rejects 1; ECS maps it to 2 too
    return out


def _env(task: agent_pb2.DesiredTask, spec: agent_pb2.ContainerSpec) -> list[str]:
    env = {kv.name: kv.value for kv in spec.environment}
    env.update(spec.secrets)
    if task.HasField("credentials") and task.credentials.id:
        # ECS's contract: SDKs read credentials from 169.254.170.2 + this relative URI.
        env["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"] = f"/v2/credentials/{task.credentials.id}"
    return [f"{k}={v}" for k, v in env.items()]


def _ports(spec: agent_pb2.ContainerSpec) -> tuple[dict[str, dict], dict[str, list]]:
    exposed: dict[str, dict] = {}
    bindings: dict[str, list] = {}
    for i, pm in enumerate(spec.port_mappings):
        proto = (pm.protocol or "tcp").lower()
        if proto not in ("tcp", "udp"):
            raise ContainerError(f"portMappings[{i}].protocol: must be tcp or udp, got {proto!r}")
        if not 0 < pm.container_port < 65536 or pm.host_port > 65535:
            raise ContainerError(f"portMappings[{i}]: ports must be in 1-65535")
        key = f"{pm.container_port}/{proto}"
        exposed[key] = {}
        host_port = str(pm.host_port) if pm.host_port else ""  # "" = Docker picks
        bindings.setdefault(key, []).append({"HostIp": "", "HostPort": host_port})
    return exposed, bindings


def _healthcheck(hc: agent_pb2.HealthCheck) -> dict[str, Any]:
    cmd = list(hc.command)
    if cmd[0] not in ("CMD", "CMD-SHELL", "NONE"):
        cmd = ["CMD-SHELL", " ".join(cmd)]  # ECS requires the keyword; be lenient
    out: dict[str, Any] = {
        "Test": cmd,
        "Interval": (hc.interval_s or _HC_DEFAULTS["interval_s"]) * NS,
        "Timeout": (hc.timeout_s or _HC_DEFAULTS["timeout_s"]) * NS,
        "Retries": hc.retries or _HC_DEFAULTS["retries"],
    }
    if hc.start_period_s:
        out["StartPeriod"] = hc.start_period_s * NS
    return out


def volume_docker_name(task: agent_pb2.DesiredTask, vol: agent_pb2.VolumeSpec) -> str:
    """A shared volume keeps the name it was given (the next task finds it, as on ECS); a
    task-scoped one is the task's own."""
    if vol.docker.scope == "shared":
        return vol.name
    raw = f"dockyard-{task.family}-{task.revision}-{vol.name}-{task_id(task.task_arn)}"
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", raw)


def _task_volume(task: agent_pb2.DesiredTask, name: str, where: str) -> agent_pb2.VolumeSpec:
    for vol in task.volumes:
        if vol.name == name:
            return vol
    raise ContainerError(f"{where}: {name!r} is not a volume of the task")


def _storage(
    task: agent_pb2.DesiredTask, spec: agent_pb2.ContainerSpec, docker_names: dict[str, str]
) -> dict[str, list[str]]:
    """mountPoints -> Binds (host paths and Docker volumes), volumesFrom -> VolumesFrom."""
    binds = []
    for i, m in enumerate(spec.mounts):
        vol = _task_volume(task, m.source_volume, f"mountPoints[{i}].sourceVolume")
        source = vol.host_path or volume_docker_name(task, vol)
        binds.append(f"{source}:{m.container_path}:{'ro' if m.read_only else 'rw'}")
    volumes_from = []
    for vf in spec.volumes_from:
        if vf.source_container not in docker_names or vf.source_container == spec.name:
            raise ContainerError(f"volumesFrom: {vf.source_container!r} is not another container")
        volumes_from.append(f"{docker_names[vf.source_container]}:{'ro' if vf.read_only else 'rw'}")
    out: dict[str, list[str]] = {}
    if binds:
        out["Binds"] = binds
    if volumes_from:
        out["VolumesFrom"] = volumes_from
    return out


def _check_shared(name: str, wanted: dict[str, Any], existing: dict[str, Any]) -> None:
    """An existing shared volume serves an autoprovisioning task only if its driver, options
    and labels are the ones the definition asks for (ECS refuses a mismatch too)."""
    have_labels = existing.get("Labels") or {}
    problems = []
    if existing.get("Driver") != wanted["Driver"]:
        problems.append(f"driver {existing.get('Driver')!r}, not {wanted['Driver']!r}")
    if wanted["DriverOpts"] and (existing.get("Options") or {}) != wanted["DriverOpts"]:
        problems.append(f"driverOpts {existing.get('Options') or {}}")
    if any(have_labels.get(k) != v for k, v in wanted["Labels"].items()):
        problems.append(f"labels {have_labels}")
    if problems:
        raise ContainerError(
            f"CannotCreateContainerError: shared volume {name!r} exists with "
            f"{', '.join(problems)}: the task definition asks otherwise"
        )


def _links(spec: agent_pb2.ContainerSpec, docker_names: dict[str, str]) -> list[str]:
    out = []
    for link in spec.links:
        name, _, alias = link.partition(":")
        if name not in docker_names:
            raise ContainerError(f"links: {name!r} is not a container of this task")
        out.append(f"{docker_names[name]}:{alias or name}")
    return out


# ---------------------------------------------------------------- pure parsing


def _epoch(ts: str | None) -> float | None:
    """Docker's RFC 3339 (nanosecond) time -> epoch seconds; its zero time -> None."""
    if not ts or ts.startswith("0001-01-01"):
        return None
    m = re.match(r"^(.*?T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", ts)
    if not m:
        return None
    frac = (m.group(2) or ".0")[:7]
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(f"{m.group(1)}{frac}{zone}").timestamp()


def _bindings(data: dict[str, Any]) -> list[tuple[int, int, str, str]]:
    ports = (data.get("NetworkSettings") or {}).get("Ports") or {}
    if not any(ports.values()):  # not running: fall back to what was asked for
        ports = (data.get("HostConfig") or {}).get("PortBindings") or {}
    out = []
    for key, binds in ports.items():
        cport, _, proto = key.partition("/")
        for b in binds or []:
            if b.get("HostPort"):
                out.append((int(cport), int(b["HostPort"]), proto or "tcp", b.get("HostIp", "")))
    return out


def observed_from_inspect(data: dict[str, Any]) -> ObservedContainer | None:
    """Docker's inspect JSON -> ObservedContainer; None if Dockyard does not manage it."""
    lab = (data.get("Config") or {}).get("Labels") or {}
    if labels.TASK_ARN not in lab:
        return None
    st = data.get("State") or {}
    status = st.get("Status", "")
    health = _HEALTH.get(((st.get("Health") or {}).get("Status")) or "", "UNKNOWN")
    try:
        revision = int(lab.get(labels.REVISION, "0"))
    except ValueError:
        revision = 0
    return ObservedContainer(
        docker_id=data["Id"],
        docker_name=data.get("Name", "").lstrip("/"),
        task_arn=lab[labels.TASK_ARN],
        container_name=lab.get(labels.CONTAINER_NAME, ""),
        cluster=lab.get(labels.CLUSTER, ""),
        family=lab.get(labels.FAMILY, ""),
        revision=revision,
        state=status,
        exit_code=st.get("ExitCode") if status in ("exited", "dead") else None,
        started_at=_epoch(st.get("StartedAt")),
        finished_at=_epoch(st.get("FinishedAt")),
        health=health,
        oom_killed=bool(st.get("OOMKilled")),
        error=st.get("Error") or "",
        bindings=_bindings(data),
        image_id=str(data.get("Image") or ""),
        image=str((data.get("Config") or {}).get("Image") or ""),
        gpu_ids=[g for g in lab.get(host_config.GPU_LABEL, "").split(",") if g],
    )


def image_digest(image: str, image_inspect: dict[str, Any]) -> str:
    """ECS's imageDigest: the registry digest of the reference the container ran
    (RepoDigests), else the image id for an image that never came from a registry."""
    repo = normalize_image(image).rsplit(":", 1)[0] if "@" not in image else image.split("@")[0]
    digests = image_inspect.get("RepoDigests") or []
    for ref in digests:
        name, _, digest = ref.partition("@")
        if name == repo or name.endswith("/" + repo):
            return digest
    if digests:
        return str(digests[0]).partition("@")[2]
    return str(image_inspect.get("Id") or "")


def normalize_image(image: str) -> str:
    """`name` -> `name:latest` so concurrent pulls of one image share one key."""
    last = image.rsplit("/", 1)[-1]
    return image if ":" in last or "@" in last else f"{image}:latest"


def normalize_arch(arch: str) -> str:
    return _ARCH.get(arch.lower(), arch.lower())


# ---------------------------------------------------------------- errors


def _unavailable(host: str, exc: object) -> DockerUnavailable:
    return DockerUnavailable(f"Docker engine at {host} is unreachable: {exc}")


@contextlib.contextmanager
def _translate(host: str, what: str, kind: type[DriverError] = ContainerError) -> Iterator[None]:
    """aiodocker/aiohttp failures -> DriverError subclasses with one-line messages."""
    try:
        yield
    except DockerError as e:
        if e.status == 900:  # aiodocker's code for "could not connect"
            raise _unavailable(host, e.message) from None
        raise kind(f"{what}: {e.message.strip()}") from None
    except (aiohttp.ClientConnectionError, ConnectionError) as e:
        raise _unavailable(host, e) from None
    except TimeoutError:
        raise DockerUnavailable(f"{what}: Docker engine at {host} did not answer in time") from None


# ---------------------------------------------------------------- the driver


@dataclass(eq=False)
class _Pull:
    """One engine pull and the waiters that hear its progress."""

    task: asyncio.Task[str] = field(init=False)
    listeners: list[Callable[[str], None]] = field(default_factory=list)

    def tell(self, line: str) -> None:
        for listener in list(self.listeners):
            listener(line)


class DockerDriver:
    """Async Docker I/O for the agent. Create and use it inside a running event loop."""

    def __init__(self, docker_host: str = "unix:///var/run/docker.sock") -> None:
        if docker_host.startswith("/"):
            docker_host = "unix://" + docker_host
        if not docker_host.startswith(HOST_SCHEMES):
            raise ValueError(
                f"docker_host: {docker_host!r} must start with unix://, tcp://, http(s):// or ssh://"
            )
        self.docker_host = docker_host
        self.pull_count = 0  # pulls actually sent to the engine (merged ones count once)
        self._client: aiodocker.Docker | None = None
        self._pulls: dict[tuple[str, str], _Pull] = {}  # (image, login_id) -> the pull
        self._login_key = secrets.token_bytes(32)
        self._pulled: set[str] = set()
        self._name_locks: dict[str, tuple[asyncio.Lock, int]] = {}  # name -> (lock, users)
        self._digests: dict[str, str] = {}  # "reference|image id" -> imageDigest

    @property
    def _docker(self) -> aiodocker.Docker:
        if self._client is None:
            timeout = aiohttp.ClientTimeout(total=300, connect=10, sock_connect=10)
            self._client = aiodocker.Docker(url=self.docker_host, timeout=timeout)
        return self._client

    def _errors(self, what: str, kind: type[DriverError] = ContainerError) -> Any:
        return _translate(self.docker_host, what, kind)

    async def close(self) -> None:
        for pull in self._pulls.values():
            pull.task.cancel()
        if self._client is not None:
            await self._client.close()
            self._client = None

    # ------------------------------------------------------------ engine

    async def info(self) -> EngineInfo:
        with self._errors("docker info", DockerUnavailable):
            data = await self._docker.system.info()
        return EngineInfo(
            cpus=int(data.get("NCPU", 0)),
            memory_mib=int(data.get("MemTotal", 0)) // MIB,
            server_version=data.get("ServerVersion", ""),
            os=(data.get("OSType") or "linux").lower(),
            arch=normalize_arch(data.get("Architecture", "")),
            name=data.get("Name", ""),
            engine_id=str(data.get("ID", "")),
        )

    async def ping(self) -> bool:
        """True when the engine answers /_ping within 5 s; never raises for a dead engine."""
        try:
            async with asyncio.timeout(5):
                async with self._docker._query("_ping", versioned_api=False) as resp:
                    return resp.status == 200
        except (DockerError, aiohttp.ClientError, OSError, TimeoutError):
            return False

    # ------------------------------------------------------------ images

    async def _image_present(self, image: str) -> bool:
        with self._errors(f"inspect image {image}", PullError):
            try:
                await self._docker.images.inspect(image)
                return True
            except DockerError as e:
                if e.status == 404:
                    return False
                raise

    async def ensure_image(
        self,
        image: str,
        behavior: str,
        auth: dict | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        """Make `image` available locally following ECS's image pull behaviours.

        `progress` gets "pulling IMAGE", rate-limited "pulling IMAGE: 3/5 layers, 1.2 MB/4.0 MB"
        lines while the engine pulls, and "pulling IMAGE: done (...)" or "...: failed"."""
        if behavior not in PULL_BEHAVIORS:
            raise PullError(f"imagePullBehavior: {behavior!r} is not one of {PULL_BEHAVIORS}")
        key = normalize_image(image)
        if behavior == "prefer-cached" or (behavior == "once" and key in self._pulled):
            if await self._image_present(key):
                return
        say = progress or (lambda _line: None)
        say(f"pulling {image}")
        try:
            summary = await self._shared_pull(key, auth, lambda t: say(f"pulling {image}: {t}"))
        except PullError as e:
            if behavior == "default" and await self._image_present(key):
                say(f"pulling {image}: failed, using the local copy ({e})")
                return
            say(f"pulling {image}: failed")
            raise
        say(f"pulling {image}: done ({summary})")

    def login_id(self, auth: dict | None) -> str:
        """Who a pull is made as, for merging: a keyed hash of the login (never the secret;
        the key lives in this process only, so the id cannot be tried against guesses)."""
        if not auth:
            return ""
        blob = json.dumps(auth, sort_keys=True).encode()
        return hmac.new(self._login_key, blob, hashlib.sha256).hexdigest()[:16]

    async def _shared_pull(
        self, key: str, auth: dict | None, progress: Callable[[str], None]
    ) -> str:
        """One engine pull per image and login at a time: tasks pulling the same image with
        another login pull on their own (their login may be refused where this one is not).
        Every waiter hears the progress; a cancelled waiter does not cancel the pull."""
        ident = (key, self.login_id(auth))
        pull = self._pulls.get(ident)
        if pull is None:
            pull = _Pull()
            pull.task = asyncio.create_task(self._pull(key, auth, pull.tell))
            self._pulls[ident] = pull
            pull.task.add_done_callback(lambda t: self._pull_done(ident, t))
        pull.listeners.append(progress)
        try:
            return await asyncio.shield(pull.task)
        finally:
            pull.listeners.remove(progress)

    def _pull_done(self, ident: tuple[str, str], task: asyncio.Task[str]) -> None:
        pull = self._pulls.get(ident)
        if pull is not None and pull.task is task:
            del self._pulls[ident]
        if not task.cancelled():
            task.exception()  # retrieved: waiters re-raise it; none may be left

    async def _pull(self, key: str, auth: dict | None, tell: Callable[[str], None]) -> str:
        """The engine pull; returns a summary ("5 layers, 40.1 MB")."""
        self.pull_count += 1
        progress = PullProgress()
        try:
            with self._errors("CannotPullContainerError", PullError):
                async for chunk in self._docker.images.pull(key, auth=auth, stream=True):
                    line = progress.update(chunk, time.monotonic())
                    if line:
                        tell(line)
        except ValueError as e:  # aiodocker: auth given for an image without registry host
            raise PullError(f"CannotPullContainerError: {e}") from None
        self._pulled.add(key)
        return progress.summary()

    def was_pulled(self, image: str) -> bool:
        """True if this driver pulled `image` (image cleanup only removes those)."""
        return normalize_image(image) in self._pulled

    async def images_in_use(self) -> set[str]:
        """Images referenced by any container on the engine, running or not (normalised
        names and image ids): cleanup never removes these."""
        with self._errors("list containers", DockerUnavailable):
            found = await self._docker.containers.list(all=True)
        used: set[str] = set()
        for c in found:
            used.add(normalize_image(str(c["Image"])))
            used.add(str(c["ImageID"]))
        return used

    async def remove_image(self, image: str) -> bool:
        """Remove an image by name; False (no error) if it is in use or already gone."""
        try:
            await self._docker.images.delete(normalize_image(image))
        except aiodocker.DockerError:
            return False
        self._pulled.discard(normalize_image(image))
        return True

    # ------------------------------------------------------------ containers

    async def create_and_start(
        self,
        task: agent_pb2.DesiredTask,
        spec: agent_pb2.ContainerSpec,
        instance_id: str,
        networks: Sequence[str] = (),
    ) -> str:
        """Create (once) and start (once) the container; returns its Docker id.

        The deterministic name makes a second call, a concurrent call or a call after an
        agent restart find the existing container instead of making another one. Extra
        `networks` are joined before the start (Docker creates with one network only), so
        the container's first action can already use them.
        """
        names = task_docker_names(task)
        names[spec.name] = docker_name(task, spec)
        name = names[spec.name]
        config = container_config(task, spec, instance_id, names)
        async with self._exclusive(name):
            state = await self._state_of(name)
            if state is None:
                await self._ensure_volumes(task, spec)
                await self._wait_sources(task, spec, names)
                state = await self._create(name, config)
            docker_id, status = state
            if status == "created":
                await self._connect(docker_id, name, networks)
                with self._errors(f"CannotStartContainerError: {name}"):
                    await self._docker.containers.container(docker_id).start()
            return docker_id

    async def _ensure_volumes(
        self, task: agent_pb2.DesiredTask, spec: agent_pb2.ContainerSpec
    ) -> None:
        """The Docker volumes the container mounts: a task's own are created (labelled with
        the task, so they are removed with it); a shared one is created only with
        autoprovision, else it must exist on this host."""
        for m in spec.mounts:
            vol = _task_volume(task, m.source_volume, "mountPoints")
            if vol.host_path:
                continue
            name = volume_docker_name(task, vol)
            body: dict[str, Any] = {
                "Name": name,
                "Driver": vol.docker.driver or "local",
                "DriverOpts": dict(vol.docker.driver_opts),
                "Labels": dict(vol.docker.labels),
            }
            if vol.docker.scope != "shared":
                body["Labels"] |= {labels.TASK_ARN: task.task_arn, labels.CLUSTER: task.cluster}
            else:
                existing = await self._volume(name)
                if existing is not None:
                    if vol.docker.autoprovision:  # ECS: an autoprovisioned one must match
                        _check_shared(name, body, existing)
                    continue  # used as it is
                if not vol.docker.autoprovision:
                    raise ContainerError(
                        f"CannotCreateContainerError: shared volume {name!r} does not exist on "
                        "this host (create it with docker volume create, or set autoprovision)"
                    )
            with self._errors(f"CannotCreateContainerError: volume {name}"):
                await self._docker.volumes.create(body)  # idempotent for the same name

    async def _volume(self, name: str) -> dict[str, Any] | None:
        """Docker's volume JSON by name; None if there is none."""
        with self._errors(f"inspect volume {name}"):
            found = await self._docker.volumes.list(filters={"name": [name]})
        return next((v for v in found.get("Volumes") or [] if v["Name"] == name), None)

    async def _wait_sources(
        self, task: agent_pb2.DesiredTask, spec: agent_pb2.ContainerSpec, names: dict[str, str]
    ) -> None:
        """volumesFrom needs its source containers created: wait for their own start
        (their image may still be pulling), up to VOLUMES_FROM_WAIT_S."""
        deadline = time.monotonic() + VOLUMES_FROM_WAIT_S
        for vf in spec.volumes_from:
            source = names.get(vf.source_container, vf.source_container)
            while await self._state_of(source) is None:
                if time.monotonic() > deadline:
                    raise ContainerError(
                        f"CannotCreateContainerError: volumesFrom: container "
                        f"{vf.source_container!r} of the task was not created"
                    )
                await asyncio.sleep(0.2)

    async def remove_task_volumes(self, task_arn: str) -> None:
        """Remove a task's own Docker volumes once no container uses them (in use: kept,
        the last container's removal takes them)."""
        with self._errors("list volumes"):
            found = await self._docker.volumes.list(
                filters={"label": [f"{labels.TASK_ARN}={task_arn}"]}
            )
        for v in found.get("Volumes") or []:
            with contextlib.suppress(DockerError):  # 409: still in use
                await DockerVolume(self._docker, v["Name"]).delete()

    async def _connect(self, docker_id: str, name: str, networks: Sequence[str]) -> None:
        for net in networks:
            with self._errors(f"CannotStartContainerError: {name}: join network {net}"):
                try:
                    network = await self._docker.networks.get(net)
                    await network.connect({"Container": docker_id})
                except DockerError as e:
                    if "already exists" not in e.message:  # joined by an earlier attempt
                        raise

    @contextlib.asynccontextmanager
    async def _exclusive(self, name: str) -> AsyncIterator[None]:
        """Serialise this process's calls for one container name; the lock lives while used."""
        lock, users = self._name_locks.get(name, (asyncio.Lock(), 0))
        self._name_locks[name] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._name_locks[name]
            if users == 1:
                del self._name_locks[name]
            else:
                self._name_locks[name] = (lock, users - 1)

    async def bridge_gateway(self) -> str:
        """The default bridge network's gateway: where bridge-mode containers reach the host
        (the agent's DNS resolver listens there); "" when the engine has none."""
        with self._errors("inspect network bridge"):
            try:
                info = await (await self._docker.networks.get("bridge")).show()
            except DockerError:
                return ""
        for cfg in (info.get("IPAM") or {}).get("Config") or []:
            if cfg.get("Gateway") and ":" not in cfg["Gateway"]:
                return str(cfg["Gateway"])
        # dockerd names no gateway when it found its bridge already addressed (a restart, or
        # a bridge made before it): the gateway is then that interface's own address
        bridge = (info.get("Options") or {}).get("com.docker.network.bridge.name", "docker0")
        return host.interface_ipv4(bridge)

    async def _state_of(self, ref: str) -> tuple[str, str] | None:
        """(id, status) of a container by name or id, None if it does not exist."""
        data = await self._get(ref)
        return None if data is None else (data["Id"], data["State"]["Status"])

    async def _get(self, ref: str) -> dict[str, Any] | None:
        """Docker's inspect JSON by name or id; None if there is no such container."""
        with self._errors(f"inspect {ref}"):
            try:
                return (await self._docker.containers.get(ref))._container
            except DockerError as e:
                if e.status == 404:
                    return None
                raise

    async def _create(self, name: str, config: dict[str, Any]) -> tuple[str, str]:
        """Create, or adopt a container of that name made concurrently by someone else.

        Docker reserves the name before the racing container is inspectable, so a 409
        can precede a 404 for a moment: retry until one of the two wins.
        """
        for attempt in range(50):
            with self._errors(f"CannotCreateContainerError: {name}"):
                try:
                    container = await self._docker.containers.create(config, name=name)
                    return container.id, "created"
                except DockerError as e:
                    if e.status != 409:
                        raise
            state = await self._state_of(name)
            if state is not None:
                return state
            await asyncio.sleep(min(0.01 * 2**attempt, 0.2))
        raise ContainerError(f"CannotCreateContainerError: {name}: name stays in conflict")

    async def restart(self, docker_id: str) -> None:
        """Start an exited container again, in place (restart policy): same id, same config."""
        with self._errors(f"CannotStartContainerError: restart {docker_id}"):
            await self._docker.containers.container(docker_id).start()

    async def stop(self, docker_id: str, timeout_s: int) -> None:
        """SIGTERM (or the image's stop signal), SIGKILL after timeout_s; missing is fine."""
        with self._errors(f"stop {docker_id}"):
            try:
                await self._docker.containers.container(docker_id).stop(t=max(0, timeout_s))
            except DockerError as e:
                if e.status != 404:
                    raise

    async def remove(self, docker_id: str) -> None:
        """Force-remove with anonymous volumes, then the task's own volumes no container of
        it uses any more; missing or already being removed is fine."""
        data = await self._get(docker_id)
        with self._errors(f"remove {docker_id}"):
            try:
                await self._docker.containers.container(docker_id).delete(force=True, v=True)
            except DockerError as e:
                if e.status != 404 and "already in progress" not in e.message:
                    raise
        task_arn = ((data or {}).get("Config") or {}).get("Labels", {}).get(labels.TASK_ARN)
        if task_arn:
            await self.remove_task_volumes(task_arn)

    async def list_managed(
        self, cluster: str | None = None, instance_id: str | None = None
    ) -> list[ObservedContainer]:
        """Every Dockyard container, running or not; optionally only one cluster's, and only
        those one instance created (an agent never touches another instance's containers)."""
        wanted = [labels.TASK_ARN] + ([f"{labels.CLUSTER}={cluster}"] if cluster else [])
        if instance_id:
            wanted.append(f"{labels.INSTANCE}={instance_id}")
        filters = json.dumps({"label": wanted})
        with self._errors("list containers", DockerUnavailable):
            found = await self._docker.containers.list(all=True, filters=filters)
        seen = await asyncio.gather(*(self.inspect(c.id) for c in found))
        return [o for o in seen if o is not None]

    async def running_of(self, instance_id: str) -> list[dict[str, Any]]:
        """Docker's list JSON (Id, HostConfig.NetworkMode, NetworkSettings.Networks with
        each IPAddress) of the running containers this instance started: one engine call,
        for the task endpoint to tell which task a caller's address belongs to."""
        wanted = [labels.TASK_ARN, f"{labels.INSTANCE}={instance_id}"]
        # "created" too: a container's first action may come before Docker calls it running
        filters = json.dumps({"label": wanted, "status": ["created", "running"]})
        with self._errors("list containers", DockerUnavailable):
            found = await self._docker.containers.list(all=True, filters=filters)
        return [c._container for c in found]

    async def stats(self, docker_id: str) -> dict[str, Any] | None:
        """Docker's stats document of a running container, one shot (the `engine` stats
        source, agent/stats.py); None when it is gone."""
        with self._errors(f"stats {docker_id}"):
            try:
                doc = await self._docker._query_json(
                    f"containers/{docker_id}/stats",
                    params={"stream": "false", "one-shot": "true"},
                )
            except DockerError as e:
                if e.status == 404:
                    return None
                raise
        return doc if isinstance(doc, dict) else None

    async def inspect(self, docker_id: str) -> ObservedContainer | None:
        """None when the container is gone or is not Dockyard's."""
        data = await self._get(docker_id)
        observed = None if data is None else observed_from_inspect(data)
        if observed is not None and observed.image_id:
            observed.image_digest = await self._digest(observed.image, observed.image_id)
        return observed

    async def _digest(self, image: str, image_id: str) -> str:
        """image_digest of an image id, asked of the engine once per (reference, id)."""
        key = f"{image}|{image_id}"
        if key not in self._digests:
            try:
                found = await self._docker.images.inspect(image_id)
            except DockerError:
                return image_id  # removed meanwhile: the id is what ran
            self._digests[key] = image_digest(image, found)
        return self._digests[key]

    async def host_ports_in_use(self) -> tuple[set[int], set[int]]:
        """(tcp, udp) host ports published by any running container on this engine."""
        with self._errors("list containers", DockerUnavailable):
            running = await self._docker.containers.list()
        tcp: set[int] = set()
        udp: set[int] = set()
        for c in running:
            for p in c._container.get("Ports") or []:
                if p.get("PublicPort"):
                    (udp if p.get("Type") == "udp" else tcp).add(int(p["PublicPort"]))
        return tcp, udp

    # ------------------------------------------------------------ streams

    def _stream_timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=None, sock_read=None, connect=10, sock_connect=10)

    async def events(self, since: float | None = None) -> AsyncIterator[tuple[str, str]]:
        """(docker_id, action) for Dockyard containers; ends when the engine goes away.

        `health_status: healthy` is reported as `health_status`: inspect for the value.
        `since` (epoch seconds) replays older events, so a reconnecting caller misses none.
        """
        filters = {"type": ["container"], "label": [labels.TASK_ARN], "event": WATCHED_EVENTS}
        params = {"filters": json.dumps(filters)}
        if since is not None:
            params["since"] = f"{since:.9f}"
        with self._errors("docker events", DockerUnavailable):
            async with self._docker._query(
                "events", params=params, timeout=self._stream_timeout()
            ) as resp:
                async for line in resp.content:
                    if not line.strip():
                        continue
                    ev = json.loads(line)
                    action = ev.get("Action") or ev.get("status") or ""
                    yield ev.get("id") or ev["Actor"]["ID"], action.split(":", 1)[0]

    async def logs(self, docker_id: str, follow: bool, tail: int) -> AsyncIterator[bytes]:
        """stdout+stderr chunks, in order; tail 0 = everything. Missing -> ContainerError."""
        info = await self._get(docker_id)
        if info is None:
            raise ContainerError(f"logs {docker_id}: no such container")
        tty = bool(info["Config"].get("Tty"))
        driver = ((info.get("HostConfig") or {}).get("LogConfig") or {}).get("Type", "")
        if driver == "none":
            raise ContainerError(
                f"logs {docker_id}: the container logs to driver none: nothing is kept"
            )
        what = f"logs {docker_id} (log driver {driver or 'default'}; Docker reads back json-file,"
        what += " local and journald, others only with its dual-logging cache)"
        with self._errors(what):
            params: dict[str, Any] = {
                "stdout": True,
                "stderr": True,
                "follow": follow,
                "tail": str(tail) if tail > 0 else "all",
            }
            async with self._docker._query(
                f"containers/{info['Id']}/logs", params=params, timeout=self._stream_timeout()
            ) as resp:
                chunks = resp.content.iter_any() if tty else _demux(resp.content)
                async for chunk in chunks:
                    yield chunk

    # ------------------------------------------------------------ exec (issue 20)

    async def exec_start(
        self, docker_id: str, command: list[str], stdin: bool, tty: bool, size: tuple[int, int]
    ) -> tuple[str, Any]:
        """Create and start an exec attached to its streams: (exec id, attach stream).
        `size` (rows, cols) is the terminal's from the start on engines with API 1.42+
        (ConsoleSize); older ones ignore it and get resized right after the start."""
        config: dict[str, Any] = {
            "AttachStdin": stdin,
            "AttachStdout": True,
            "AttachStderr": True,
            "Tty": tty,
            "Cmd": command,
        }
        if tty and all(size):
            config["ConsoleSize"] = list(size)
        with self._errors(f"exec in {docker_id[:12]}"):
            created = await self._docker._query_json(
                f"containers/{docker_id}/exec", method="POST", data=config
            )
            ex = aiodocker.execs.Exec(self._docker, created["Id"], tty=tty)
            stream = ex.start(detach=False, timeout=aiohttp.ClientTimeout(sock_connect=10))
            await stream.__aenter__()  # the attach request itself: the command starts now
        return ex.id, stream

    async def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        with self._errors(f"exec {exec_id[:12]}"):
            return await self._docker._query_json(f"exec/{exec_id}/json", "GET")  # type: ignore[no-any-return]

    async def exec_pid(self, exec_id: str) -> int:
        """The exec's host pid, once the engine has it (0 if it ended at once)."""
        for _ in range(40):
            info = await self.exec_inspect(exec_id)
            if info.get("Pid") or not info.get("Running", True):
                return int(info.get("Pid") or 0)
            await asyncio.sleep(0.025)
        return 0

    async def exec_resize(self, exec_id: str, rows: int, cols: int, tries: int = 1) -> None:
        """Resize an exec's terminal; `tries` > 1 retries while the engine has not started
        the process yet (it answers the attach before it starts the command)."""
        for attempt in range(tries):
            try:
                with self._errors(f"exec {exec_id[:12]} resize"):
                    await self._docker.containers.exec(exec_id).resize(h=rows, w=cols)
                return
            except ContainerError:
                if attempt == tries - 1:
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))

    async def exec_close_stdin(self, stream: Any) -> None:
        """End the command's stdin (half-close the attach connection), keep its output."""
        transport = stream._resp.connection.transport if stream._resp is not None else None
        if transport is not None and transport.can_write_eof():
            transport.write_eof()


async def _demux(stream: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """Docker's multiplexed log stream: 8-byte header (stream, size) then the payload."""
    while True:
        try:
            header = await stream.readexactly(8)
        except asyncio.IncompleteReadError:
            return
        (size,) = struct.unpack(">4xL", header)
        if size:
            try:
                yield await stream.readexactly(size)
            except asyncio.IncompleteReadError as e:
                if e.partial:
                    yield e.partial
                return
