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

Usage (Docker: under the lock): flock /tmp/dyk-docker.lock python -m bench.bench_stats_cost
    [--containers 30] [--passes 40] [--interval 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from pathlib import Path

from agent.docker_driver import DockerDriver
from agent.stats import Sampler
from dockyard import labels
from tests.support import DOCKER_HOST, docker

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--containers", type=int, default=30)
    parser.add_argument("--passes", type=int, default=40)
    parser.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args()
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
