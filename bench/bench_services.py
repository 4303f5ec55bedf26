"""Service convergence on the 3-host lab against raw `docker run -d`, in the same run.

A service goes 0 -> N RUNNING (UpdateService, then DescribeServices until runningCount == N)
against N raw `docker run -d` of the same image split over the same three engines (one
stream per engine, as three operators would). Alternated `--repeats` times; medians.
Disconnect and replacement figures are bench/bench_failures.py's.

    .venv/bin/python -m bench.bench_services [--tasks 30] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from dockyard.lab import Lab
from tests.support import wait_for

LAB_DIR, LAB_INDEX = "/tmp/dyk-bench-services", 151


def raw_docker(lab: Lab, n: int) -> float:
    """N `docker run -d` split over the hosts' engines, one stream per engine."""
    hosts = [h.name for h in lab.hosts]
    share = {
        h: [f"raw-{h}-{k}" for k in range(n) if k % len(hosts) == i] for i, h in enumerate(hosts)
    }

    def stream(host: str) -> None:
        for name in share[host]:
            lab.docker(host, "run", "-d", "-m", "32m", "--name", name, lab.image("sleeper"))

    t0 = time.monotonic()
    with ThreadPoolExecutor(len(hosts)) as pool:
        list(pool.map(stream, hosts))
    took = time.monotonic() - t0
    for host, names in share.items():
        lab.docker(host, "rm", "-f", *names)
    return took


def running(lab: Lab) -> int:
    svc = lab.client().call("DescribeServices", {"cluster": lab.cluster, "services": ["bench"]})[
        "services"
    ][0]
    return int(svc["runningCount"])


def scale(lab: Lab, n: int) -> float:
    t0 = time.monotonic()
    lab.client().call(
        "UpdateService", {"cluster": lab.cluster, "service": "bench", "desiredCount": n}
    )
    wait_for(lambda: running(lab) == n and _in_docker(lab) == n, 300, 0.05, what=f"{n} running")
    return time.monotonic() - t0


def _in_docker(lab: Lab) -> int:
    return sum(
        len(
            lab.docker(
                h.name, "ps", "-q", "--filter", "label=dockyard.task-definition-family=bench"
            ).split()
        )
        for h in lab.hosts
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tasks", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    Lab.down(LAB_DIR, LAB_INDEX)
    lab = Lab.up(hosts=3, lab_dir=LAB_DIR, index=LAB_INDEX)
    try:
        client = lab.client()
        client.call(
            "RegisterTaskDefinition",
            {
                "family": "bench",
                "containerDefinitions": [
                    {"name": "main", "image": lab.image("sleeper"), "memory": 32}
                ],
            },
        )
        client.call(
            "CreateService",
            {
                "cluster": lab.cluster,
                "serviceName": "bench",
                "taskDefinition": "bench",
                "desiredCount": 0,
            },
        )
        raw, svc = [], []
        for _ in range(args.repeats):
            raw.append(raw_docker(lab, args.tasks))
            svc.append(scale(lab, args.tasks))
            scale(lab, 0)
    finally:
        Lab.down(LAB_DIR, LAB_INDEX)
    r, s = statistics.median(raw), statistics.median(svc)
    print(f"{args.tasks} tasks over 3 lab hosts, medians of {args.repeats}")
    print(f"raw docker run -d (one stream per engine): {r:6.2f} s")
    print(f"service 0 -> {args.tasks} RUNNING:                 {s:6.2f} s")
    print(f"ratio service / raw:                      {s / r:6.2f}")


if __name__ == "__main__":
    main()
