"""What the agent's CPU and memory sampling costs, per source, with N containers on the host.

Starts N sleeper containers labelled as one instance's tasks, then runs the agent's own
Sampler (agent/stats.py) against the machine's dockerd for both sources, `cgroup` and
`engine`, for a number of passes each, and measures:
- the agent process's CPU time per pass (time.process_time: every thread of the process,
  so the cgroup source's worker thread counts too);
- dockerd's CPU time over the same passes (from /proc/<dockerd pid>/stat): the engine
  source makes dockerd do the reading and the JSON, which the host pays for as well;
and reports them as % of one core at the agent's default period (--stats-interval 5 s),
plus the usage report (every 15 s) on top. Everything it starts is removed at the end.

`--whole-agent` measures the real thing instead: a controller and a real `dockyard agent`
running N tasks, the agent process's CPU over `--seconds` with sampling on (defaults: 5 s
samples, 15 s reports), then the same agent restarted with `--stats-interval 0`; the
difference is what sampling costs it (the rest is its reconcile loop).

Usage (Docker: under the lock): flock /tmp/dyk-docker.lock python -m bench.bench_stats_cost
    [--containers 30] [--passes 40] [--interval 5] [--whole-agent --seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import tempfile
import time
import uuid
from pathlib import Path

from agent import netconfig
from agent.docker_driver import DockerDriver
from agent.stats import Sampler
from dockyard import labels
from tests.support import DOCKER_HOST, LocalCluster, docker, free_port

INSTANCE = "bench-stats-" + uuid.uuid4().hex[:8]


def _dockerd_cpu_s(pid_file: Path = Path("/var/run/docker.pid")) -> float:
    """The machine's dockerd's CPU seconds so far (user + system); 0 if not found."""
    try:
        pid = pid_file.read_text().strip()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(n: int) -> list[str]:
    ids = []
    for k in range(n):
        ids.append(
            docker(
                "run",
                "-d",
                "--label",
                f"{labels.TASK_ARN}=arn:aws:ecs:bench:task/{INSTANCE}/{k}",
                "--label",
                f"{labels.CONTAINER_NAME}=main",
                "--label",
                f"{labels.INSTANCE}={INSTANCE}",
                "-m",
                "64m",
                "dockyard/sleeper",
            )
        )
    return ids


async def measure(source: str, passes: int) -> tuple[float, float, float, int]:
    """(agent CPU s per pass, dockerd CPU s per pass, report CPU s, containers sampled)."""
    driver = DockerDriver(DOCKER_HOST)
    try:
        sampler = Sampler(
            lambda: driver.running_of(INSTANCE), driver._get, driver.stats, source, 5.0
        )
        await sampler.sample_once()  # adopt the containers (a one-time inspect each)
        cpu0, d0 = time.process_time(), _dockerd_cpu_s()
        for _ in range(passes):
            await sampler.sample_once()
        agent = (time.process_time() - cpu0) / passes
        engine = (_dockerd_cpu_s() - d0) / passes
        r0 = time.process_time()
        report = sampler.report()
        return agent, engine, time.process_time() - r0, len(report.tasks)
    finally:
        await driver.close()


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _agent_cpu(lc: LocalCluster, port: int, interval: str, seconds: float) -> float:
    """% of a core the agent used over `seconds`, after a warm-up, at this --stats-interval."""
    proc = lc.start_agent(
        "a1", "--credentials-listen", f"127.0.0.1:{port}", "--stats-interval", interval
    )
    lc.wait_connected("a1")
    time.sleep(15)  # warm-up: the first sample, a report (outside the measurement)
    assert proc.popen is not None
    before = _cpu_s(proc.popen.pid)
    time.sleep(seconds)
    used = _cpu_s(proc.popen.pid) - before
    proc.kill(signal.SIGTERM)  # a clean stop; the tasks keep running
    return used / seconds * 100


def whole_agent(n: int, seconds: float) -> None:
    lc = LocalCluster(Path(tempfile.mkdtemp(prefix="dyk-bench-stats-")))
    port = free_port()
    try:
        lc.start_controller()
        lc.start_agent("a1", "--credentials-listen", f"127.0.0.1:{port}")
        lc.wait_connected("a1")
        c = lc.client()
        td = {
            "family": "idle",
            "containerDefinitions": [
                {"name": "main", "image": "dockyard/sleeper", "memory": 16, "cpu": 16}
            ],
        }
        c.call("RegisterTaskDefinition", td)
        arns = []
        for k in range(0, n, 10):
            out = c.call("RunTask", {"taskDefinition": "idle", "count": min(10, n - k)})
            arns += [t["taskArn"] for t in out["tasks"]]
        lc.wait_status(arns, "RUNNING", timeout=120)
        lc.agents["a1"].kill(signal.SIGTERM)
        on = _agent_cpu(lc, port, "5", seconds)
        off = _agent_cpu(lc, port, "0", seconds)
        print(
            f"whole agent, {len(arns)} tasks, {seconds:g} s each: sampling on {on:.2f} % "
            f"of a core, off {off:.2f} %: sampling {on - off:.2f} %"
        )
    finally:
        for proc in lc.agents.values():
            proc.kill(signal.SIGTERM)
        lc.stop()
        asyncio.run(netconfig.drop_chain(netconfig.chain_name(port)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--containers", type=int, default=30)
    parser.add_argument("--passes", type=int, default=40)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--whole-agent", action="store_true")
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    if args.whole_agent:
        whole_agent(args.containers, args.seconds)
        return
    ids = start(args.containers)
    try:
        for source in ("cgroup", "engine"):
            agent, engine, report, n = asyncio.run(measure(source, args.passes))
            print(
                f"{source:6}: {n} containers, agent {agent * 1000:.1f} ms CPU/pass "
                f"= {agent / args.interval * 100:.2f} % of a core at {args.interval:g} s; "
                f"dockerd {engine * 1000:.1f} ms/pass "
                f"= {engine / args.interval * 100:.2f} %; report {report * 1000:.2f} ms"
            )
    finally:
        docker("rm", "-f", *ids)


if __name__ == "__main__":
    main()
