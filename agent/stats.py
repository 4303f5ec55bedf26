"""Per-container CPU and memory sampling, for task metadata v4 /stats and the controller.

Every `interval_s` (5 s by default) the sampler reads each running container of this
instance. Two sources, the same figures:
- `cgroup` (the default): the kernel's cgroup files of the container, found from its init
  process's /proc/<pid>/cgroup, cgroup v2 (`cpu.stat`, `memory.current`, `memory.stat`,
  `memory.max`, `pids.current`) or v1 (`cpuacct.*`, `memory.*`, `pids.current`), plus
  /proc/<pid>/net/dev in the container's network namespace. A few small file reads per
  container, in a worker thread; no engine call but one container listing per pass.
- `engine`: Docker's `GET /containers/{id}/stats?stream=false&one-shot=true`, one HTTP call
  per container; dockerd reads the same files and adds its own JSON work (measured: see
  bench/stats_cost.py and the README's "Per-task CPU and memory").
The last two readings per container give what `/stats` serves (Docker's format, with
`precpu_stats` from the previous reading, as ECS's agent does); the CPU used over the report
window and the memory in use go to the controller in a compact UsageReport.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.usage_shape import (
    Reading,
    cpu_units,
    docker_stats,
    from_engine,
    memory_in_use,
    parse_flat_keyed,
    parse_net_dev,
    parse_proc_stat_ns,
)
from dockyard import labels
from dockyard.v1 import agent_pb2

log = logging.getLogger("dockyard.agent.stats")

CGROUP_ROOT = Path("/sys/fs/cgroup")
SOURCES = ("auto", "cgroup", "engine")
Lister = Callable[[], Awaitable[list[dict[str, Any]]]]  # Docker's list JSON, running ones
EngineStats = Callable[[str], Awaitable[dict[str, Any] | None]]
Inspect = Callable[[str], Awaitable[dict[str, Any] | None]]


@dataclass
class Sampled:
    """What the sampler knows of one container."""

    task_arn: str
    name: str
    docker_id: str
    pid: int = 0
    paths: dict[str, Path] | None = None  # cgroup dirs by controller ("" on cgroup v2)
    own_netns: bool = False
    prev: Reading | None = None
    cur: Reading | None = None
    window_start: Reading | None = None  # the reading the current report window began at


def _read(path: Path) -> str:
    return path.read_text()


def _read_int(path: Path, default: int = 0) -> int:
    try:
        text = path.read_text().strip()
    except OSError:
        return default
    return int(text) if text.isdigit() else default


class CgroupFiles:
    """Reads containers' counters from the kernel's cgroup files (v2, or v1 controllers)."""

    def __init__(self, root: Path = CGROUP_ROOT) -> None:
        self.root = root
        self.v2 = (root / "cgroup.controllers").exists()
        self.clock_ticks = os.sysconf("SC_CLK_TCK")
        self.host_memory = _host_memory()
        self.online_cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        self.own_netns = _netns(os.getpid())

    def paths(self, pid: int) -> dict[str, Path] | None:
        """The container's cgroup directories, from its init process (None: it is gone)."""
        try:
            lines = _read(Path(f"/proc/{pid}/cgroup")).splitlines()
        except OSError:
            return None
        found: dict[str, Path] = {}
        for line in lines:
            _, controllers, rel = line.split(":", 2)
            rel = rel.lstrip("/")
            if self.v2 and controllers == "":
                found[""] = self.root / rel
            for name in filter(None, controllers.split(",")):
                for mount in (name, controllers):
                    if (self.root / mount / rel).is_dir():
                        found[name] = self.root / mount / rel
                        break
        return found

    def read(self, c: Sampled, system_ns: int, at: float) -> Reading | None:
        """One reading of c; None when its cgroup is gone (the container stopped)."""
        if not c.paths:
            return None
        try:
            reading = self._v2(c.paths[""], at) if self.v2 else self._v1(c.paths, at)
        except (OSError, KeyError, ValueError):
            return None
        reading.system_ns, reading.online_cpus = system_ns, self.online_cpus
        if c.own_netns:
            with contextlib.suppress(OSError):
                reading.networks = parse_net_dev(_read(Path(f"/proc/{c.pid}/net/dev")))
        return reading

    def _v2(self, d: Path, at: float) -> Reading:
        cpu = parse_flat_keyed(_read(d / "cpu.stat"))
        limit = _read(d / "memory.max").strip()
        return Reading(
            at=at,
            cpu_ns=cpu["usage_usec"] * 1000,
            system_ns=0,
            online_cpus=0,
            user_ns=cpu.get("user_usec", 0) * 1000,
            kernel_ns=cpu.get("system_usec", 0) * 1000,
            memory_usage=int(_read(d / "memory.current")),
            memory_max_usage=_read_int(d / "memory.peak"),
            memory_limit=self.host_memory if limit == "max" else int(limit),
            memory_stats=parse_flat_keyed(_read(d / "memory.stat")),
            pids=_read_int(d / "pids.current"),
            throttling=(
                cpu.get("nr_periods", 0),
                cpu.get("nr_throttled", 0),
                cpu.get("throttled_usec", 0) * 1000,
            ),
            cgroup_v2=True,
        )

    def _v1(self, p: dict[str, Path], at: float) -> Reading:
        acct, mem = p["cpuacct"], p["memory"]
        ticks = parse_flat_keyed(_read(acct / "cpuacct.stat"))
        tick_ns = 1_000_000_000 // self.clock_ticks
        throttle = parse_flat_keyed(_read(p["cpu"] / "cpu.stat")) if "cpu" in p else {}
        limit = int(_read(mem / "memory.limit_in_bytes"))
        return Reading(
            at=at,
            cpu_ns=int(_read(acct / "cpuacct.usage")),
            system_ns=0,
            online_cpus=0,
            user_ns=ticks.get("user", 0) * tick_ns,
            kernel_ns=ticks.get("system", 0) * tick_ns,
            percpu_ns=[int(x) for x in _read(acct / "cpuacct.usage_percpu").split()],
            memory_usage=int(_read(mem / "memory.usage_in_bytes")),
            memory_max_usage=_read_int(mem / "memory.max_usage_in_bytes"),
            memory_limit=min(limit, self.host_memory),
            memory_stats=parse_flat_keyed(_read(mem / "memory.stat")),
            pids=_read_int(p["pids"] / "pids.current") if "pids" in p else 0,
            throttling=(
                throttle.get("nr_periods", 0),
                throttle.get("nr_throttled", 0),
                throttle.get("throttled_time", 0),
            ),
        )

    def system_ns(self) -> int:
        return parse_proc_stat_ns(_read(Path("/proc/stat")), self.clock_ticks)


def _host_memory() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _netns(pid: int) -> int:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return 0


class Sampler:
    """Samples this instance's running containers; keeps each one's last two readings."""

    def __init__(
        self,
        lister: Lister,
        inspect: Inspect,
        engine_stats: EngineStats,
        source: str = "auto",
        interval_s: float = 5.0,
    ) -> None:
        self.lister, self.inspect, self.engine_stats = lister, inspect, engine_stats
        self.interval_s = interval_s
        self.cgroups = CgroupFiles()
        self.source = "engine" if source == "engine" else "cgroup"
        self.auto = source == "auto"  # cgroup files unreadable here: fall back to the engine
        self.containers: dict[str, Sampled] = {}  # docker id -> what we know
        self.passes = 0

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.sample_once()
            except Exception as err:  # Docker down, a race with a removal: next pass
                log.debug("stats pass failed: %s", err)
            await asyncio.sleep(max(0.1, self.interval_s - (time.monotonic() - started)))

    async def sample_once(self) -> None:
        running = await self.lister()
        seen = {}
        for data in running:
            found = self.containers.get(data["Id"]) or await self._adopt(data)
            if found is not None:
                seen[found.docker_id] = found
        self.containers = seen
        at = time.time()
        if self.source == "engine":
            readings = await asyncio.gather(*(self._engine(c, at) for c in seen.values()))
        else:
            readings = await asyncio.to_thread(self._cgroup_pass, list(seen.values()), at)
        for c, reading in zip(seen.values(), readings, strict=True):
            if reading is not None:
                c.prev, c.cur = c.cur, reading
                c.window_start = c.window_start or reading
            elif self.source == "cgroup":
                c.paths = None  # restarted (new pid) or gone: found again next pass
                self.containers.pop(c.docker_id, None)
        self.passes += 1

    def _cgroup_pass(self, containers: list[Sampled], at: float) -> list[Reading | None]:
        system_ns = self.cgroups.system_ns()
        return [self.cgroups.read(c, system_ns, at) for c in containers]

    async def _engine(self, c: Sampled, at: float) -> Reading | None:
        try:
            doc = await self.engine_stats(c.docker_id)
        except Exception:
            return None
        return None if not doc or not doc.get("read") else from_engine(doc, at)

    async def _adopt(self, data: dict[str, Any]) -> Sampled | None:
        """A container seen for the first time: its task, name and (cgroup source) pid."""
        lab = data.get("Labels") or {}
        arn, name = lab.get(labels.TASK_ARN), lab.get(labels.CONTAINER_NAME)
        if not arn or not name:
            return None
        c = Sampled(arn, name, data["Id"])
        if self.source == "cgroup":
            full = await self.inspect(c.docker_id)
            c.pid = int(((full or {}).get("State") or {}).get("Pid") or 0)
            if not c.pid:
                return None
            c.paths = await asyncio.to_thread(self.cgroups.paths, c.pid)
            c.own_netns = _netns(c.pid) not in (0, self.cgroups.own_netns)
            if self.auto and not self._readable(c.paths):
                log.warning(
                    "cannot read the cgroup files of %s: stats from the engine", c.docker_id
                )
                self.source = "engine"
        return c

    def _readable(self, paths: dict[str, Path] | None) -> bool:
        """Whether a container's cgroup dirs hold what the cgroup source reads."""
        need = ("",) if self.cgroups.v2 else ("cpuacct", "memory")
        return paths is not None and all(k in paths for k in need)

    # ------------------------------------------------------------ what others read

    def stats_of(self, task_arn: str, name: str) -> dict[str, Any] | None:
        """Docker's stats document of one container (None: not sampled yet, or not running)."""
        for c in self.containers.values():
            if c.task_arn == task_arn and c.name == name and c.cur is not None:
                return docker_stats(c.prev, c.cur, c.name, c.docker_id)
        return None

    def task_stats(self, task_arn: str) -> dict[str, dict[str, Any]]:
        """ECS's /task/stats: every sampled container of the task, by Docker id."""
        return {
            c.docker_id: docker_stats(c.prev, c.cur, c.name, c.docker_id)
            for c in self.containers.values()
            if c.task_arn == task_arn and c.cur is not None
        }

    def _limit(self, r: Reading) -> int:
        """A container's hard memory limit; 0 when it has none (Docker shows the host's)."""
        host = self.cgroups.host_memory
        return 0 if host and r.memory_limit >= host else r.memory_limit

    def report(self) -> agent_pb2.UsageReport:
        """The compact aggregates since the last report; starts the next window."""
        by_task: dict[str, agent_pb2.TaskUsage] = {}
        windows = []
        for c in self.containers.values():
            if c.cur is None:
                continue
            start = c.window_start if c.window_start is not c.cur else c.prev
            windows.append(c.cur.at - start.at if start else 0.0)
            task = by_task.setdefault(c.task_arn, agent_pb2.TaskUsage(task_arn=c.task_arn))
            task.containers.append(
                agent_pb2.ContainerUsage(
                    name=c.name,
                    cpu_units=cpu_units(start, c.cur),
                    memory_bytes=memory_in_use(c.cur),
                    memory_limit_bytes=self._limit(c.cur),
                )
            )
            c.window_start = c.cur
        return agent_pb2.UsageReport(
            window_s=max(windows, default=0.0), source=self.source, tasks=list(by_task.values())
        )
