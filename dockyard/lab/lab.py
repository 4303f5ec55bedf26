"""The multi-host lab as a library: `Lab.up(...)`, the chaos verbs, `status()`, `down()`.

The CLI (`dockyard lab ...`) and the pytest fixture both drive this class. Every method
re-reads nothing it does not need: the state lives in `DIR/lab.json`, so a verb works
from a fresh process while the lab's daemons run detached.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from controller.capacity.strategy import PROVIDER_ATTRIBUTE as GROUP_ATTRIBUTE
from dockyard.client import Client
from dockyard.errors import ApiError
from dockyard.lab import control, engines, ha, netns, procs, registry
from dockyard.lab import state as st
from dockyard.lab.state import Host, LabError, LabState

# binary -> Debian package that provides it
REQUIRED = {
    "dockerd": "docker.io",
    "containerd": "containerd",
    "docker": "docker.io",
    "docker-registry": "docker-registry",
    "nsenter": "util-linux",
    "iptables": "iptables",
    "ip": "iproute2",
}


def preflight(euid: int | None = None, which: Any = None) -> list[str]:
    """What keeps `lab up` from working here, phrased as what to do about it."""
    which = which or shutil.which
    problems = []
    if (os.geteuid() if euid is None else euid) != 0:
        problems.append(
            "the lab needs root (namespaces, bridge, iptables, dockerd): run it with sudo"
        )
    missing = sorted({pkg for binary, pkg in REQUIRED.items() if not which(binary)})
    if missing:
        problems.append(f"missing packages: apt-get install -y {' '.join(missing)}")
    return problems


class Lab:
    def __init__(self, state: LabState) -> None:
        self.state = state

    # ---- the fixture's view ---------------------------------------------------------
    @property
    def dir(self) -> str:
        return self.state.dir

    @property
    def hosts(self) -> list[Host]:
        return self.state.hosts

    @property
    def controller_address(self) -> str:
        """The controller's gRPC address (with several: the leader's, at this moment)."""
        return control.address(self.state)

    @property
    def controller_http(self) -> str:
        if not self.state.nodes:
            return self.state.controller_http
        lead = ha.leader(self.state)
        return (lead or self.state.nodes[0]).http

    @property
    def registry(self) -> str:
        return self.state.registry

    @property
    def cluster(self) -> str:
        return self.state.cluster

    @property
    def has_control_plane(self) -> bool:
        return self.state.control_plane

    def host(self, name: str) -> Host:
        return self.state.host(name)

    def image(self, name: str) -> str:
        return registry.image_ref(self.state, name)

    def client(self, timeout: float = 30.0) -> Client:
        return control.client(self.state, timeout=timeout)

    def docker(self, host: str, *args: str, timeout: float = 60.0) -> str:
        return engines.docker(self.host(host), *args, timeout=timeout)

    def enter(self, host: str) -> list[str]:
        """Command prefix that runs something inside the host's network namespace."""
        return netns.enter(self.host(host))

    # ---- lifecycle ------------------------------------------------------------------
    @classmethod
    def open(cls, lab_dir: str) -> Lab:
        return cls(st.load(os.path.abspath(lab_dir)))

    @classmethod
    def up(
        cls,
        hosts: int = 3,
        lab_dir: str = st.DEFAULT_DIR,
        index: int = 0,
        cluster: str = "default",
        control_plane: bool = True,
        heartbeat_period: float | None = None,
        disconnect_grace: float | None = None,
        controllers: int = 1,
    ) -> Lab:
        """Bring a lab up from nothing; on failure the lab is left for `down` (and its logs).
        `controllers` > 1: that many controller nodes, each an etcd member and a controller
        (dockyard/lab/ha.py); 1: the one controller in the root namespace."""
        problems = preflight()
        if problems:
            raise LabError("; ".join(problems))
        lab_dir = os.path.abspath(lab_dir)
        state = st.new_state(
            lab_dir,
            index,
            hosts,
            cluster,
            control_plane,
            heartbeat_period,
            disconnect_grace,
            controllers,
        )
        if state.nodes:
            if not control_plane:
                raise LabError("--controllers with --no-control-plane: there is nothing to run")
            ha.etcd_binary()
        if Path(lab_dir, st.STATE_FILE).exists():
            raise LabError(
                f"a lab already exists in {lab_dir}: `dockyard lab down --dir {lab_dir}` first"
            )
        lab = cls(state)
        with st.locked(lab_dir):
            st.save(state)
            try:
                lab._bring_up()
                state.phase = "up"
            except Exception:
                state.phase = "failed"
                raise
            finally:
                st.save(state)
        return lab

    def _bring_up(self) -> None:
        s, t0 = self.state, time.monotonic()
        netns.create_bridge(s)
        for node in s.boxes:
            netns.create_host(s, node)
        with ThreadPoolExecutor(max_workers=2 * len(s.hosts) + 4) as pool:
            reg = pool.submit(registry.start, s)
            start = ha.bring_up if s.nodes else control.start_controller
            ctl = pool.submit(start, s) if s.control_plane else None
            engines_up = {h.name: pool.submit(engines.start, s, h) for h in s.hosts}
            img = pool.submit(self._images, reg, engines_up[s.hosts[0].name], t0)
            agents = (
                [pool.submit(self._agent, h, engines_up[h.name], ctl) for h in s.hosts]
                if ctl
                else []
            )
            self._collect(reg, ctl, engines_up)
            s.timings["daemons"] = round(time.monotonic() - t0, 2)
            for fut in agents:
                fut.result()
            if s.control_plane:
                note = control.wait_registered(s)
                if note:
                    s.timings["agents_note"] = note  # type: ignore[assignment]
                s.timings["agents"] = round(time.monotonic() - t0, 2)
            s.images = img.result()
        s.timings["total"] = round(time.monotonic() - t0, 2)

    def _collect(
        self, reg: Future[Any], ctl: Future[Any] | None, engines_up: dict[str, Future[Any]]
    ) -> None:
        """Record every started daemon's ProcRef (even if another one failed), then raise."""
        s, errors = self.state, []
        for name, fut in engines_up.items():
            try:
                s.host(name).dockerd = fut.result()
            except Exception as err:
                errors.append(str(err))
        try:
            s.registry_proc = reg.result()
        except Exception as err:
            errors.append(str(err))
        if ctl is not None:
            try:
                s.controller = ctl.result()  # None with several (each node records its own)
            except Exception as err:
                errors.append(str(err))
        if errors:
            raise LabError("; ".join(errors))

    def _images(self, reg: Future[Any], builder: Future[Any], t0: float) -> list[str]:
        reg.result()
        builder.result()
        pushed = registry.publish_images(self.state, self.state.hosts[0])
        self.state.timings["images"] = round(time.monotonic() - t0, 2)
        return pushed

    def _agent(self, host: Host, engine: Future[Any], ctl: Future[Any] | None) -> None:
        engine.result()
        if ctl is not None:
            ctl.result()
        host.agent = control.start_agent(self.state, host)

    # ---- chaos verbs ----------------------------------------------------------------
    def _save(self) -> None:
        st.save(self.state)

    def _need_control_plane(self) -> None:
        if not self.state.control_plane:
            raise LabError(
                "this lab was started with --no-control-plane: no controller or agents to act on"
            )

    def kill_agent(self, name: str) -> None:
        """SIGKILL the agent: its stream drops, its containers keep running."""
        self._need_control_plane()
        procs.kill(self.host(name).agent)

    def start_agent(self, name: str) -> None:
        self._need_control_plane()
        host = self.host(name)
        if not procs.alive(host.agent):
            with st.locked(self.dir):
                host.agent = control.start_agent(self.state, host)
                self._save()

    def stop_docker(self, name: str) -> None:
        """Stop the host's dockerd gracefully (it stops its containers, like systemctl would)."""
        engines.stop(self.host(name))

    def start_docker(self, name: str) -> None:
        host = self.host(name)
        if not procs.alive(host.dockerd):
            with st.locked(self.dir):
                host.dockerd = engines.start(self.state, host)
                self._save()

    def _box(self, name: str) -> netns.Node:
        """A host, or with several controllers a controller node (c1, c2, ...)."""
        if self.state.nodes and name in {n.name for n in self.state.nodes}:
            return self.state.node(name)
        return self.host(name)

    def partition(self, name: str) -> None:
        """Cut the host (or controller node: from etcd's other members and the agents too)
        off from the controller, the registry and the other hosts."""
        netns.partition(self._box(name))

    def heal(self, name: str) -> None:
        netns.heal(self._box(name))

    def _node(self, name: str | None) -> st.ControllerNode | None:
        """The controller node NAME; None for the lab with one controller (no NAME)."""
        self._need_control_plane()
        if not self.state.nodes:
            if name:
                raise LabError(f"this lab has one controller: no NAME ({name!r}) to give")
            return None
        if not name:
            names = ", ".join(n.name for n in self.state.nodes)
            raise LabError(f"this lab has several controllers: name one ({names})")
        return self.state.node(name)

    def kill_controller(self, name: str | None = None) -> None:
        node = self._node(name)
        procs.kill(node.controller if node else self.state.controller)

    def start_controller(self, name: str | None = None) -> None:
        """Start it again, same data dir (a node's controller comes back as a standby)."""
        node = self._node(name)
        with st.locked(self.dir):
            if node is None and not procs.alive(self.state.controller):
                self.state.controller = control.start_controller(self.state)
            elif node is not None and not procs.alive(node.controller):
                node.controller = ha.start_controller(self.state, node)
            self._save()

    def kill_etcd(self, name: str) -> None:
        """SIGKILL the node's etcd member (its controller stays up)."""
        node = self._node(name)
        assert node is not None
        procs.kill(node.etcd)

    def start_etcd(self, name: str) -> None:
        node = self._node(name)
        assert node is not None
        with st.locked(self.dir):
            if not procs.alive(node.etcd):
                node.etcd = ha.start_etcd(self.state, node)
            self._save()

    def leader(self) -> str | None:
        """The name of the controller node that leads now (None: none does, or one controller)."""
        lead = ha.leader(self.state) if self.state.nodes else None
        return lead.name if lead else None

    # ---- hosts joining and leaving (`lab add-host`, `remove-host`, `resize-group`) -------
    def add_host(self, attributes: dict[str, str] | None = None) -> Host:
        """A new host as `up` makes them (namespace, its own dockerd, an agent joined to the
        lab's controller with `attributes` besides its zone), returned once registered.
        Recorded before anything starts, so `down` finds it whatever fails; a failed add
        removes what it made."""
        self._need_control_plane()
        with st.locked(self.dir):
            self.state = st.load(self.dir)  # another verb may have changed the lab
            host = st.add_host(self.state, attributes or {})
            self._save()
            try:
                netns.create_host(self.state, host)
                host.dockerd = engines.start(self.state, host)
                host.agent = control.start_agent(self.state, host)
                self._save()
                control.wait_registered(self.state, hosts=[host])
            except BaseException:
                self._teardown_host(host)
                raise
        return host

    def remove_host(self, name: str) -> list[str]:
        """Stop the host's agent and dockerd (its containers stop with it), delete its
        namespace and files, forget it, and deregister its container instance (the machine
        is gone: its tasks are recorded stopped). Returns warnings (controller unreachable)."""
        with st.locked(self.dir):
            self.state = st.load(self.dir)
            host = self.host(name)
            self._teardown_host(host)
        return self._deregister(host)

    def _teardown_host(self, host: Host) -> None:
        root = str(self.state.path(host.name))
        procs.stop(host.agent)
        engines.stop(host)
        _kill_everything(self.state, [host.netns], root=root)
        _unmount_under(root)
        netns.remove_host(host.netns, host.veth)
        procs.remove_cgroups(host.netns)
        shutil.rmtree(root, ignore_errors=True)
        self.state.hosts.remove(host)
        self._save()

    def _instances_of(self, host: Host) -> list[dict[str, Any]]:
        """The controller's live (not INACTIVE) container instances that are this host."""
        return [
            i
            for i in control.instances(self.state)
            if i.get("status") != "INACTIVE" and control.instance_host(i, [host])
        ]

    def _deregister(self, host: Host) -> list[str]:
        if not self.state.control_plane:
            return []
        try:
            with self.client() as api:
                for inst in self._instances_of(host):
                    api.call(
                        "DeregisterContainerInstance",
                        {
                            "cluster": self.cluster,
                            "containerInstance": inst["containerInstanceArn"],
                            "force": True,
                        },
                    )
        except ApiError as err:
            return [f"{host.name} removed, but not deregistered: {err.name}: {err.message}"]
        return []

    def group(self, name: str) -> list[Host]:
        """The hosts of host group `name`: those whose agent carries the capacity provider
        attribute naming it."""
        return [h for h in self.hosts if h.attributes.get(GROUP_ATTRIBUTE) == name]

    def busy(self, host: Host) -> int:
        """Tasks of the cluster the controller has on the host (running or pending)."""
        return sum(
            int(i.get("runningTasksCount", 0)) + int(i.get("pendingTasksCount", 0))
            for i in self._instances_of(host)
        )

    def resize_group(
        self, name: str, desired: int, first: list[str] | None = None
    ) -> tuple[list[str], list[str]]:
        """Add or remove hosts of group `name` until it has `desired` (a capacity provider's
        group-size command). Removes only hosts without tasks, those named in `first` (the
        controller's DOCKYARD_REMOVE_HOSTS) first, then the newest; raises LabError naming
        the busy hosts kept when that leaves the group too big. Returns (added, removed)."""
        if desired < 0:
            raise LabError(f"desired: {desired} is negative")
        added: list[str] = []
        removed: list[str] = []
        while len(self.group(name)) < desired:
            added.append(self.add_host({GROUP_ATTRIBUTE: name}).name)
        members = self.group(name)
        surplus = len(members) - desired
        order = sorted(members, key=lambda h: (h.name not in (first or []), -int(h.name[1:])))
        kept = []
        for host in order:
            if len(removed) == surplus:
                break
            tasks = self.busy(host)
            if tasks:
                kept.append(f"{host.name} ({tasks} tasks)")
                continue
            self.remove_host(host.name)
            removed.append(host.name)
        if len(removed) < surplus:
            raise LabError(
                f"group {name} kept {len(members) - len(removed)} hosts, not {desired}: "
                f"{', '.join(kept)} still run tasks of the cluster (drain them first)"
            )
        return added, removed

    # ---- status ---------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        s = self.state
        connected = self.agents_connected()
        hosts = []
        for h in s.hosts:
            hosts.append(
                {
                    "name": h.name,
                    "address": h.address,
                    "netns": h.netns,
                    "zone": h.zone,
                    "dockerHost": h.docker_host,
                    "docker": "running"
                    if engines.DockerApi(h.docker_host, 2).ping()
                    else ("unresponsive" if procs.alive(h.dockerd) else "stopped"),
                    "agent": ("running" if procs.alive(h.agent) else "dead")
                    if s.control_plane
                    else "none",
                    "connected": connected.get(h.name),
                    "partitioned": not netns.link_up(h.veth),
                }
            )
        return {
            "dir": s.dir,
            "phase": s.phase,
            "cluster": s.cluster,
            "bridge": s.bridge,
            "subnet": s.subnet,
            "registry": s.registry,
            "controller": {
                "grpc": self.controller_address,
                "http": self.controller_http,
                "state": self._controller_state(),
            },
            "hosts": hosts,
            "controllers": ha.status(s) if s.nodes else [],
            "timings": s.timings,
        }

    def _controller_state(self) -> str:
        s = self.state
        if not s.control_plane:
            return "none"
        if s.nodes:
            lead = self.leader()
            return f"{lead} leads" if lead else "no leader"
        return "running" if procs.alive(s.controller) else "dead"

    def agents_connected(self) -> dict[str, bool]:
        """Host name -> whether the controller (the leader) has its agent connected; empty
        while no controller answers. One API call: cheaper than `status()`."""
        up = self.leader() if self.state.nodes else procs.alive(self.state.controller)
        if not (self.state.control_plane and up):
            return {}
        try:
            found = control.instances(self.state, timeout=3)
        except ApiError:
            return {}
        out = {}
        for inst in found:
            host = control.instance_host(inst, self.state.hosts)
            if host:
                out[host.name] = bool(inst.get("agentConnected", False))
        return out

    # ---- teardown -------------------------------------------------------------------
    @staticmethod
    def down(lab_dir: str = st.DEFAULT_DIR, index: int | None = None) -> list[str]:
        """Remove everything a lab in `lab_dir` made, whatever state it is in. Idempotent.

        Returns what could not be removed (empty when clean)."""
        lab_dir = os.path.abspath(lab_dir)
        try:
            state = st.load(lab_dir)
        except LabError:
            state = st.LabState(dir=lab_dir, index=index or 0)
        return _teardown(state)


def _teardown(s: LabState) -> list[str]:
    names = netns.lab_netns(s)
    nodes = [ref for n in s.nodes for ref in (n.controller, n.etcd)]
    for ref in [s.controller, s.registry_proc, *(h.agent for h in s.hosts), *nodes]:
        procs.kill(ref)
    _kill_everything(s, names)
    _unmount_under(s.dir)
    netns.destroy(s, names)
    for name in names:
        procs.remove_cgroups(name)
    _remove_files(s)
    return _leftovers(s, names)


def _lab_pids(s: LabState, names: list[str], root: str | None = None) -> set[int]:
    """The lab's processes (with `root`, a host's dir: only the daemons using it)."""
    pids = set(procs.pids_of_lab_daemons(root or s.dir))
    for name in names:
        pids |= set(procs.pids_in_netns(f"/run/netns/{name}"))
        pids |= set(procs.pids_in_cgroups(name))
    return pids


def _kill_everything(
    s: LabState, names: list[str], timeout: float = 15.0, root: str | None = None
) -> None:
    """SIGKILL daemons, shims and container processes until none is left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = _lab_pids(s, names, root) - {os.getpid()}
        if not pids:
            return
        procs.kill_pids(pids)
        time.sleep(0.1)


def _mounts_under(path: str) -> list[str]:
    prefix, found = path.rstrip("/") + "/", []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == path or point.startswith(prefix):
                found.append(point)
    return found


def _unmount_under(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    for _ in range(5):  # stacked mounts need several rounds
        mounts = _mounts_under(path)
        if not mounts:
            return
        for point in sorted(mounts, key=lambda p: -p.count("/")):
            libc.umount2(point.encode(), 2)  # MNT_DETACH


def _remove_files(s: LabState) -> None:
    """Remove what the lab made under its dir (never the rest: --dir might be shared)."""
    root = Path(s.dir)
    made = [
        *(f"h{n}" for n in range(1, 201)),
        *(f"c{n}" for n in range(1, 10)),  # controller nodes: etcd's and a controller's data
        "registry",
        "controller",
        "controller.key",  # the key sealing the controller's secrets, beside its data dir
        "ca.crt",  # `lab env`'s world-readable copy of the controller's CA
        "logs",
        st.STATE_FILE,
        st.LOCK_FILE,
        "lab.tmp",
    ]
    for name in made:
        path = root / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink(missing_ok=True)
    try:
        root.rmdir()
    except OSError:
        pass


def _leftovers(s: LabState, names: list[str]) -> list[str]:
    left = [f"namespace {n}" for n in names if netns.netns_exists(n)]
    left += [f"link {h.veth}" for h in s.boxes if netns.link_exists(h.veth)]
    if netns.link_exists(s.bridge):
        left.append(f"bridge {s.bridge}")
    left += [f"mount {m}" for m in _mounts_under(s.dir)]
    left += [f"process {p}" for p in sorted(_lab_pids(s, names) - {os.getpid()})]
    return left
