"""RunTask -> RUNNING latency against a raw `docker run -d` of the same image, same run.

Warm image, one task at a time, alternating Dockyard and raw Docker so noise hits both.
Latency is from the RunTask call to the moment DescribeTasks shows RUNNING (polled every
5 ms), and from `docker run -d` starting to it returning (the container is running then).
Usage: python -m bench.run_task_latency [--runs 30]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from dockyard import images
from tests.support import DOCKER_HOST, LocalCluster, wait_for

IMAGE = "dockyard/sleeper:latest"


def pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


def time_dockyard(lc: LocalCluster) -> float:
    client = lc.client()
    t0 = time.perf_counter()
    [task] = client.call("RunTask", {"taskDefinition": "bench"})["tasks"]
    wait_for(
        lambda: (
            client.call("DescribeTasks", {"tasks": [task["taskArn"]]})["tasks"][0]["lastStatus"]
            == "RUNNING"
        ),
        30,
        interval=0.005,
        what="RUNNING",
    )
    elapsed = time.perf_counter() - t0
    client.call("StopTask", {"task": task["taskArn"]})
    return elapsed


def time_docker() -> float:
    t0 = time.perf_counter()
    cid = subprocess.run(
        [
            "docker",
            "-H",
            DOCKER_HOST,
            "run",
            "-d",
            "--memory",
            "32m",
            "--label",
            "dockyard.bench=1",
            IMAGE,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    elapsed = time.perf_counter() - t0
    subprocess.run(["docker", "-H", DOCKER_HOST, "rm", "-f", cid], capture_output=True)
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    images.build_all()
    with tempfile.TemporaryDirectory() as tmp:
        lc = LocalCluster(Path(tmp))
        try:
            lc.start_controller()
            lc.start_agent("bench")
            lc.wait_connected("bench")
            lc.client().call(
                "RegisterTaskDefinition",
                {
                    "family": "bench",
                    "containerDefinitions": [{"name": "s", "image": IMAGE, "memory": 32}],
                },
            )
            time_dockyard(lc)  # warm-up: first pass loads code paths
            time_docker()
            ours, raw = [], []
            for _ in range(args.runs):
                ours.append(time_dockyard(lc))
                raw.append(time_docker())
        finally:
            lc.stop()
    print(f"runs: {args.runs} each, image {IMAGE} (warm), agent --pull-behavior prefer-cached")
    print(f"{'':28}{'p50 ms':>10}{'p95 ms':>10}")
    for name, vals in (("dockyard RunTask->RUNNING", ours), ("docker run -d", raw)):
        print(f"{name:28}{pct(vals, 50) * 1000:10.0f}{pct(vals, 95) * 1000:10.0f}")
    print(
        f"{'ratio (dockyard / docker)':28}{pct(ours, 50) / pct(raw, 50):10.2f}"
        f"{pct(ours, 95) / pct(raw, 95):10.2f}"
    )


if __name__ == "__main__":
    main()
