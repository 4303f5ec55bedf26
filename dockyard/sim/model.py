"""What a simulated agent is and does, as plain data and pure functions (no gRPC, no I/O).

A simulated agent is a host that never runs a container: it registers like a real agent,
takes desired state, and reports the statuses a real agent would derive from Docker, after
a simulated start latency and with a configurable failure rate. Its identity comes from a
seed and an index, so restarting the simulator brings back the same instances.
"""

from __future__ import annotations

import hashlib
import hmac
import random
from dataclasses import dataclass, field

from dockyard import __version__
from dockyard.v1 import agent_pb2

ZONES = ("a", "b", "c")
TASK_CPU = 128  # capacity unit: an agent holds containers-per-agent tasks of this size
TASK_MEMORY_MIB = 128
STARTED = ("ACTIVATING", "RUNNING", "DEACTIVATING", "STOPPING", "DEPROVISIONING")
SIGTERM_EXIT = 143


@dataclass(frozen=True)
class SimConfig:
    """Knobs of a simulated fleet (the `dockyard sim` flags)."""

    controller: str
    agents: int = 100
    first_index: int = 0
    cluster: str = "default"
    seed: str = "sim"
    region: str = "us-east-1"
    containers_per_agent: int = 10
    start_latency_ms: float = 200.0
    failure_rate: float = 0.0
    exit_code: int = 1
    heartbeat_period: float = 0.0  # 0: obey the controller's period
    status_interval: float = 0.1  # status reports of one agent are batched this long
    streams_per_channel: int = 250
    backoff_cap: float = 5.0
    join_token: str = ""  # from `dockyard tokens create`; loopback may need none
    attributes: tuple[tuple[str, str], ...] = ()  # --attribute NAME=VALUE, on every agent

    def check(self) -> None:
        """Raise ValueError naming the bad knob."""
        if self.agents < 1:
            raise ValueError("--agents: must be at least 1")
        if self.first_index < 0:
            raise ValueError("--first-index: must be 0 or more")
        if self.containers_per_agent < 1:
            raise ValueError("--containers-per-agent: must be at least 1")
        if self.start_latency_ms < 0:
            raise ValueError("--start-latency-ms: must be 0 or more")
        if not 0.0 <= self.failure_rate <= 1.0:
            raise ValueError("--failure-rate: must be between 0 and 1")
        if self.heartbeat_period < 0:
            raise ValueError("--heartbeat-period: must be 0 (obey the controller) or more")
        if self.streams_per_channel < 1:
            raise ValueError("--streams-per-channel: must be at least 1")


def instance_id(seed: str, index: int) -> str:
    """Stable per (seed, index): a restarted simulator is the same set of instances."""
    digest = hashlib.sha256(f"{seed}:{index}".encode()).hexdigest()
    return f"i-{digest[:17]}"


def instance_secret(join_token: str, iid: str) -> str:
    """The simulated host's state-dir secret: stable per (token, id), so that a restarted
    simulator is the same instances again. Simulated hosts only: a real agent's is random."""
    return hmac.new(join_token.encode(), iid.encode(), hashlib.sha256).hexdigest()


def zone(index: int) -> str:
    return ZONES[index % len(ZONES)]


def register_message(cfg: SimConfig, index: int) -> agent_pb2.Register:
    """What a real agent sends, with resources sized for containers-per-agent tasks."""
    host = f"sim-{cfg.seed}-{index:05d}"
    return agent_pb2.Register(
        instance_id=instance_id(cfg.seed, index),
        cluster=cfg.cluster,
        hostname=host,
        agent_version=f"{__version__}-sim",
        total=agent_pb2.Resources(
            cpu=cfg.containers_per_agent * TASK_CPU,
            memory_mib=cfg.containers_per_agent * TASK_MEMORY_MIB,
            reserved_tcp_ports=[22, 2375, 2376, 51678, 51679],
        ),
        attributes={
            "ecs.os-type": "linux",
            "ecs.cpu-architecture": "x86_64",
            "ecs.docker-version": "simulated",
            "ecs.availability-zone": f"{cfg.region}{zone(index)}",
            "ecs.capability.network.bridge": "true",
            "ecs.capability.network.host": "true",
            "dockyard.hostname": host,
            "dockyard.simulated": "true",
            "zone": zone(index),
            **dict(cfg.attributes),
        },
        address="127.0.0.1",
        join_token=cfg.join_token,
        instance_secret=instance_secret(cfg.join_token, instance_id(cfg.seed, index)),
    )


@dataclass
class SimTask:
    """A task as the simulated host sees it: the containers it pretends to run."""

    arn: str
    containers: list[str]
    desired: str = "RUNNING"
    status: str = "PENDING"  # PENDING | RUNNING | STOPPED
    exit_code: int | None = None
    stop_code: str = ""
    reason: str = ""
    started_at: float = 0.0
    docker_ids: list[str] = field(default_factory=list)


@dataclass
class Step:
    """What to do for one desired task: report now, and maybe finish starting later."""

    report: bool
    start_after: float | None = None  # seconds until the start completes (or fails)


def apply_desired(
    tasks: dict[str, SimTask], d: agent_pb2.DesiredTask, cfg: SimConfig, rng: random.Random
) -> Step:
    """Fold one desired task into the host's tasks (a real agent's reconcile, simulated)."""
    t = tasks.get(d.task_arn)
    if t is None:
        t = SimTask(d.task_arn, [c.name for c in d.containers], desired=d.desired_status)
        t.docker_ids = [f"sim{rng.getrandbits(60):015x}" for _ in t.containers]
        tasks[d.task_arn] = t
        if d.desired_status != "RUNNING":
            return _stopped(t, None, d.stop_code or "TaskFailedToStart", "never started")
        if d.known_status in STARTED:  # the controller saw it start: adopt it (agent restart)
            t.status = "RUNNING"
            return Step(report=True)
        return Step(report=True, start_after=start_delay(cfg, rng))
    t.desired = d.desired_status
    if d.desired_status != "RUNNING" and t.status != "STOPPED":
        code = SIGTERM_EXIT if t.status == "RUNNING" else None
        return _stopped(t, code, d.stop_code, d.stopped_reason)
    return Step(report=False)


def start_delay(cfg: SimConfig, rng: random.Random) -> float:
    """The simulated pull + create + start time, ±50 % so a batch does not finish in step."""
    return cfg.start_latency_ms / 1000.0 * rng.uniform(0.5, 1.5)


def finish_start(t: SimTask, cfg: SimConfig, rng: random.Random, now: float) -> bool:
    """The start completes: RUNNING, or (at the failure rate) an essential container exits.
    False when the task no longer wants to start (stopped meanwhile)."""
    if t.status != "PENDING" or t.desired != "RUNNING":
        return False
    if rng.random() < cfg.failure_rate:
        name = t.containers[0] if t.containers else "main"
        reason = f"Essential container in task exited ({name}: exit code {cfg.exit_code})"
        _stopped(t, cfg.exit_code, "EssentialContainerExited", reason)
        return True
    t.status, t.started_at = "RUNNING", now
    return True


def _stopped(t: SimTask, exit_code: int | None, code: str, reason: str) -> Step:
    t.status, t.exit_code, t.stop_code, t.reason = "STOPPED", exit_code, code, reason
    return Step(report=True)


def task_status(t: SimTask, now: float) -> agent_pb2.TaskStatus:
    """The report a real agent would send for this task."""
    containers = []
    for name, did in zip(t.containers, t.docker_ids, strict=True):
        c = agent_pb2.ContainerStatus(name=name, docker_id=did, last_status=t.status)
        if t.status == "STOPPED" and t.exit_code is not None:
            c.has_exit_code, c.exit_code = True, t.exit_code
        containers.append(c)
    stopped = t.status == "STOPPED"
    return agent_pb2.TaskStatus(
        task_arn=t.arn,
        last_status=t.status,
        containers=containers,
        stop_code=t.stop_code if stopped else "",
        stopped_reason=t.reason if stopped else "",
        updated_at=now,
        started_at=t.started_at if t.status == "RUNNING" else 0.0,
    )


def next_backoff(previous: float, cap: float, rng: random.Random) -> float:
    """SwarmKit's reconnect backoff: min(100 ms + 2 x previous, cap), randomised to ±50 %."""
    base = min(0.1 + 2 * previous, cap)
    return base * rng.uniform(0.5, 1.5)
