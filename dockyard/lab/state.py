"""The lab's names, addresses and recorded processes, kept in `DIR/lab.json`.

Every verb runs in a fresh process, so everything a later verb needs (pids with their
start times, addresses, sockets) is written here. Names and addresses are a pure function
of the lab index, so `down` can find what a half-failed `up` left even without the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "lab.json"
LOCK_FILE = "lab.lock"
ZONES = ("a", "b", "c")
GRPC_PORT = 7070
HTTP_PORT = 7080
REGISTRY_PORT = 5000
MAX_DIR_CHARS = 60  # unix socket paths under DIR (containerd's) must stay below 108 bytes
DEFAULT_DIR = "/var/lib/dockyard/lab"


class LabError(Exception):
    """A lab failure the user can act on; the CLI prints it without a trace."""


@dataclass
class ProcRef:
    """A process we started: the pid plus its start time, so a reused pid is never signalled."""

    pid: int
    start: int


@dataclass
class Host:
    name: str
    address: str
    netns: str
    veth: str
    zone: str
    docker_host: str
    bip: str
    dockerd: ProcRef | None = None
    agent: ProcRef | None = None
    # the agent's extra --attribute k=v (`lab add-host --attribute`), e.g. a capacity provider
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.netns}"

    @property
    def cgroup_parent(self) -> str:
        """Containers of this host's dockerd live under /sys/fs/cgroup/*/<this>."""
        return self.netns


@dataclass
class ControllerNode:
    """A controller machine of a lab with several controllers (`lab up --controllers N`):
    a network namespace on the bridge running an etcd member and a controller."""

    name: str
    address: str
    netns: str
    veth: str
    etcd: ProcRef | None = None
    controller: ProcRef | None = None

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.netns}"

    @property
    def grpc(self) -> str:
        return f"{self.address}:{GRPC_PORT}"

    @property
    def http(self) -> str:
        """Plain HTTP: controllers on etcd run with --tls never for now (see README)."""
        return f"http://{self.address}:{HTTP_PORT}"


@dataclass
class LabState:
    dir: str
    index: int
    cluster: str = "default"
    hosts: list[Host] = field(default_factory=list)
    control_plane: bool = True
    heartbeat_period: float | None = None
    disconnect_grace: float | None = None
    phase: str = "creating"
    controller: ProcRef | None = None
    registry_proc: ProcRef | None = None
    images: list[str] = field(default_factory=list)
    # several controllers on etcd (empty: the one controller in the root namespace)
    nodes: list[ControllerNode] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    # Names and addresses derived from the index.
    @property
    def prefix(self) -> str:
        return naming_prefix(self.index)

    @property
    def bridge(self) -> str:
        return f"dyk{self.index}"

    @property
    def gateway(self) -> str:
        return f"10.77.{self.index}.1"

    @property
    def subnet(self) -> str:
        return f"10.77.{self.index}.0/24"

    @property
    def controller_address(self) -> str:
        return f"{self.gateway}:{GRPC_PORT}"

    @property
    def controller_http(self) -> str:
        """The ECS endpoint: HTTPS, the controller being off loopback (`--tls auto`)."""
        return f"https://{self.gateway}:{HTTP_PORT}"

    @property
    def registry(self) -> str:
        return f"{self.gateway}:{REGISTRY_PORT}"

    @property
    def iptables_tag(self) -> str:
        return f"dockyard-lab-{self.index}"

    def path(self, *parts: str) -> Path:
        return Path(self.dir, *parts)

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        known = ", ".join(h.name for h in self.hosts) or "none"
        raise LabError(f"unknown host {name!r}: the lab's hosts are {known}")

    @property
    def boxes(self) -> list[Host | ControllerNode]:
        """Every namespace the lab puts on its bridge: hosts, then controller nodes."""
        return [*self.hosts, *self.nodes]

    def node(self, name: str) -> ControllerNode:
        for n in self.nodes:
            if n.name == name:
                return n
        known = ", ".join(n.name for n in self.nodes) or "none (one controller: no NAME)"
        raise LabError(f"unknown controller {name!r}: the lab's controllers are {known}")


def naming_prefix(index: int) -> str:
    """`dyk` for the default lab 0, `dyk<K>` for side-by-side labs."""
    return "dyk" if index == 0 else f"dyk{index}"


def make_host(state_dir: str, index: int, n: int) -> Host:
    """Host number n (1-based) of lab `index`."""
    name = f"h{n}"
    netns = f"{naming_prefix(index)}-{name}"
    return Host(
        name=name,
        address=f"10.77.{index}.{10 + n}",
        netns=netns,
        veth=netns,  # root-side end of the veth pair; the netns end is eth0
        zone=ZONES[(n - 1) % len(ZONES)],
        docker_host=f"unix://{state_dir}/{name}/docker.sock",
        bip=f"172.30.{n}.1/24",
    )


MAX_HOST_NUMBER = 190  # h190 is 10.77.INDEX.200; controller nodes start at .201


def add_host(state: LabState, attributes: dict[str, str]) -> Host:
    """The next host of a running lab (`lab add-host`): the lowest free number, so a host
    group that shrinks and grows again reuses names and addresses."""
    used = {int(h.name[1:]) for h in state.hosts}
    free = next((n for n in range(1, MAX_HOST_NUMBER + 1) if n not in used), None)
    if free is None:
        raise LabError(f"the lab already has {MAX_HOST_NUMBER} hosts: no address left")
    host = make_host(state.dir, state.index, free)
    host.attributes = dict(attributes)
    state.hosts.append(host)
    return host


def new_state(
    lab_dir: str,
    index: int,
    hosts: int,
    cluster: str = "default",
    control_plane: bool = True,
    heartbeat_period: float | None = None,
    disconnect_grace: float | None = None,
    controllers: int = 1,
) -> LabState:
    if not 0 <= index <= 254:
        raise LabError(f"--index: {index} is out of range 0..254")
    if not 1 <= hosts <= 200:
        raise LabError(f"--hosts: {hosts} is out of range 1..200")
    if not 1 <= controllers <= 9 or controllers == 2:
        raise LabError(
            f"--controllers: {controllers}: want 1, or 3 to 9 (etcd needs a majority: two "
            "members survive the loss of none)"
        )
    if len(lab_dir) > MAX_DIR_CHARS:
        raise LabError(
            f"--dir: {lab_dir!r} is longer than {MAX_DIR_CHARS} characters "
            "(Docker's unix sockets live under it); pick a shorter path"
        )
    return LabState(
        dir=lab_dir,
        index=index,
        cluster=cluster,
        control_plane=control_plane,
        heartbeat_period=heartbeat_period,
        disconnect_grace=disconnect_grace,
        hosts=[make_host(lab_dir, index, n) for n in range(1, hosts + 1)],
        nodes=[make_node(index, n) for n in range(1, controllers + 1)] if controllers > 1 else [],
    )


def make_node(index: int, n: int) -> ControllerNode:
    """Controller node number n (1-based) of lab `index`: c1 at 10.77.INDEX.201, ..."""
    netns = f"{naming_prefix(index)}-c{n}"
    return ControllerNode(name=f"c{n}", address=f"10.77.{index}.{200 + n}", netns=netns, veth=netns)


def _proc(raw: dict[str, Any] | None) -> ProcRef | None:
    return ProcRef(**raw) if raw else None


def from_dict(raw: dict[str, Any]) -> LabState:
    hosts = []
    for h in raw.pop("hosts", []):
        h["dockerd"], h["agent"] = _proc(h.get("dockerd")), _proc(h.get("agent"))
        hosts.append(Host(**h))
    nodes = []
    for n in raw.pop("nodes", []):
        n["etcd"], n["controller"] = _proc(n.get("etcd")), _proc(n.get("controller"))
        nodes.append(ControllerNode(**n))
    raw["nodes"] = nodes
    raw["controller"] = _proc(raw.get("controller"))
    raw["registry_proc"] = _proc(raw.get("registry_proc"))
    return LabState(hosts=hosts, **raw)


def save(state: LabState) -> None:
    path = state.path(STATE_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2))
    os.replace(tmp, path)


def load(lab_dir: str) -> LabState:
    path = Path(lab_dir, STATE_FILE)
    try:
        return from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise LabError(
            f"no lab in {lab_dir} (start one with `dockyard lab up --dir {lab_dir}`)"
        ) from None
    except (ValueError, TypeError) as err:
        raise LabError(
            f"{path} is unreadable ({err}); `dockyard lab down --dir {lab_dir}` cleans up anyway"
        ) from None


@contextlib.contextmanager
def locked(lab_dir: str) -> Iterator[None]:
    """Serialise verbs that change the lab (two shells running chaos verbs at once)."""
    Path(lab_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(lab_dir, LOCK_FILE), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
