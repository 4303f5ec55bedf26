"""Container CPU and memory readings -> Docker's stats JSON and the controller's aggregates.

Pure: no I/O. agent/stats.py reads the numbers (cgroup files, or the engine's stats API) into
`Reading`s; this module turns two consecutive readings into what ECS's task metadata v4
serves at `${ECS_CONTAINER_METADATA_URI_V4}/stats` (Docker's stats format: `cpu_stats` and
`precpu_stats`, `memory_stats`, `pids_stats`, `networks`...) and into the compact figures the
agent sends the controller (CPU units used, memory bytes in use).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

CPU_UNITS_PER_CORE = 1024  # ECS's unit: 1024 = one core
ZERO_TIME = "0001-01-01T00:00:00Z"  # Docker's "never" (precpu of a first reading)


@dataclass
class Reading:
    """One reading of one container's counters (cumulative ones in nanoseconds)."""

    at: float  # epoch seconds
    cpu_ns: int  # CPU time used since the container started
    system_ns: int  # the host's CPU time (all cores), /proc/stat: Docker's system_cpu_usage
    online_cpus: int
    user_ns: int = 0
    kernel_ns: int = 0
    percpu_ns: list[int] = field(default_factory=list)  # cgroup v1 only, as Docker
    memory_usage: int = 0  # bytes charged to the cgroup (page cache included)
    memory_max_usage: int = 0  # high-water mark (v1; v2 memory.peak when the kernel has it)
    memory_limit: int = 0  # the hard limit, or the host's memory when there is none
    memory_stats: dict[str, int] = field(default_factory=dict)  # memory.stat as Docker gives
    pids: int = 0
    throttling: tuple[int, int, int] = (0, 0, 0)  # periods, throttled periods, throttled ns
    networks: dict[str, dict[str, int]] = field(default_factory=dict)  # bridge mode only
    cgroup_v2: bool = False


def iso(epoch: float) -> str:
    """Docker's timestamps: RFC 3339 with nanoseconds."""
    stamp = datetime.fromtimestamp(epoch, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond:06d}000Z"


def memory_in_use(r: Reading) -> int:
    """What `docker stats` shows as memory usage: usage minus the inactive file cache (which
    the kernel reclaims first); ECS's MemoryUtilization uses the same figure."""
    key = "inactive_file" if r.cgroup_v2 else "total_inactive_file"
    cache = r.memory_stats.get(key, 0)
    return max(0, r.memory_usage - cache) if cache < r.memory_usage else r.memory_usage


def cpu_units(prev: Reading | None, cur: Reading) -> float:
    """Average CPU used between two readings, in CPU units (1024 = one core busy)."""
    if prev is None or cur.at <= prev.at or cur.cpu_ns < prev.cpu_ns:
        return 0.0
    return (cur.cpu_ns - prev.cpu_ns) / ((cur.at - prev.at) * 1e9) * CPU_UNITS_PER_CORE


def _cpu_stats(r: Reading | None) -> dict[str, Any]:
    if r is None:  # Docker's precpu_stats before a second reading
        return {
            "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        }
    usage: dict[str, Any] = {
        "total_usage": r.cpu_ns,
        "usage_in_kernelmode": r.kernel_ns,
        "usage_in_usermode": r.user_ns,
    }
    if r.percpu_ns:
        usage["percpu_usage"] = list(r.percpu_ns)
    periods, throttled, throttled_ns = r.throttling
    return {
        "cpu_usage": usage,
        "system_cpu_usage": r.system_ns,
        "online_cpus": r.online_cpus,
        "throttling_data": {
            "periods": periods,
            "throttled_periods": throttled,
            "throttled_time": throttled_ns,
        },
    }


def _memory_stats(r: Reading) -> dict[str, Any]:
    doc: dict[str, Any] = {"usage": r.memory_usage, "stats": dict(r.memory_stats)}
    if r.memory_max_usage:
        doc["max_usage"] = r.memory_max_usage
    doc["limit"] = r.memory_limit
    return doc


def docker_stats(prev: Reading | None, cur: Reading, name: str, docker_id: str) -> dict[str, Any]:
    """Docker's `GET /containers/{id}/stats?stream=false` document from two readings, which
    is what ECS's agent serves at task metadata v4's /stats (precpu = the previous one)."""
    doc: dict[str, Any] = {
        "read": iso(cur.at),
        "preread": iso(prev.at) if prev is not None else ZERO_TIME,
        "pids_stats": {"current": cur.pids},
        "blkio_stats": {
            "io_service_bytes_recursive": [],
            "io_serviced_recursive": [],
            "io_queue_recursive": [],
            "io_service_time_recursive": [],
            "io_wait_time_recursive": [],
            "io_merged_recursive": [],
            "io_time_recursive": [],
            "sectors_recursive": [],
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": _cpu_stats(cur),
        "precpu_stats": _cpu_stats(prev),
        "memory_stats": _memory_stats(cur),
        "name": "/" + name.lstrip("/"),
        "id": docker_id,
    }
    if cur.networks:
        doc["networks"] = {k: dict(v) for k, v in cur.networks.items()}
    return doc


def from_engine(doc: dict[str, Any], at: float) -> Reading:
    """A `Reading` from the engine's own stats document (the `engine` source)."""
    cpu = doc.get("cpu_stats") or {}
    usage = cpu.get("cpu_usage") or {}
    mem = doc.get("memory_stats") or {}
    throttling = cpu.get("throttling_data") or {}
    stats = {k: int(v) for k, v in (mem.get("stats") or {}).items() if isinstance(v, int)}
    return Reading(
        at=at,
        cpu_ns=int(usage.get("total_usage") or 0),
        system_ns=int(cpu.get("system_cpu_usage") or 0),
        online_cpus=int(cpu.get("online_cpus") or 0),
        user_ns=int(usage.get("usage_in_usermode") or 0),
        kernel_ns=int(usage.get("usage_in_kernelmode") or 0),
        percpu_ns=[int(x) for x in usage.get("percpu_usage") or []],
        memory_usage=int(mem.get("usage") or 0),
        memory_max_usage=int(mem.get("max_usage") or 0),
        memory_limit=int(mem.get("limit") or 0),
        memory_stats=stats,
        pids=int((doc.get("pids_stats") or {}).get("current") or 0),
        throttling=(
            int(throttling.get("periods") or 0),
            int(throttling.get("throttled_periods") or 0),
            int(throttling.get("throttled_time") or 0),
        ),
        networks={k: dict(v) for k, v in (doc.get("networks") or {}).items()},
        cgroup_v2="total_inactive_file" not in stats,
    )


def parse_flat_keyed(text: str) -> dict[str, int]:
    """A cgroup "key value" file (memory.stat, cpu.stat, cpuacct.stat)."""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def parse_net_dev(text: str) -> dict[str, dict[str, int]]:
    """/proc/<pid>/net/dev -> Docker's `networks` (every interface but lo)."""
    out = {}
    for line in text.splitlines()[2:]:
        name, _, rest = line.partition(":")
        name = name.strip()
        f = [int(x) for x in rest.split()]
        if name == "lo" or len(f) < 16:
            continue
        out[name] = {
            "rx_bytes": f[0],
            "rx_packets": f[1],
            "rx_errors": f[2],
            "rx_dropped": f[3],
            "tx_bytes": f[8],
            "tx_packets": f[9],
            "tx_errors": f[10],
            "tx_dropped": f[11],
        }
    return out


def parse_proc_stat_ns(text: str, clock_ticks: int) -> int:
    """The host's total CPU time in ns from /proc/stat's first line (Docker's
    system_cpu_usage: user+nice+system+idle+iowait+irq+softirq+steal)."""
    first = text.split("\n", 1)[0].split()
    ticks = sum(int(x) for x in first[1:9])
    return ticks * (1_000_000_000 // clock_ticks)
