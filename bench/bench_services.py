"""Service figures on this machine: 3 agents on the local dockerd (the multi-host lab version
is for the lab's owner to add).

1. Convergence 0 -> N tasks of a service against N raw `docker run -d` of the same image
   (3 parallel streams, like three engines), in the same run; the ratio.
2. SIGKILL of an agent running service tasks: time to DISCONNECTED, then from
   DISCONNECTED + grace to the service back at desiredCount RUNNING, and duplicates after
   the agent returns and things settle.

    .venv/bin/python bench/bench_services.py [--tasks 30] [--grace 3]
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dockyard import images, labels
from tests.support import LocalCluster, docker, wait_for

IMAGE = "dockyard/sleeper:latest"


def raw_docker(n: int) -> float:
    names = [f"bench-raw-{k}" for k in range(n)]
    t0 = time.monotonic()
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda nm: docker("run", "-d", "-m", "32m", "--name", nm, IMAGE), names))
    took = time.monotonic() - t0
    subprocess.run(["docker", "rm", "-f", *names], capture_output=True, check=False)
    return took


def running_count(family: str, instance: str = "") -> int:
    args = ["ps", "-q", "--filter", f"label={labels.FAMILY}={family}"]
    if instance:
        args += ["--filter", f"label={labels.INSTANCE}={instance}"]
    return len(docker(*args).split())


def service_running(c: LocalCluster, name: str) -> int:
    s = c.client().call("DescribeServices", {"services": [name]})["services"][0]
    return int(s["runningCount"])


def converge(c: LocalCluster, n: int) -> float:
    t0 = time.monotonic()
    c.client().call("UpdateService", {"service": "bench", "desiredCount": n})
    wait_for(lambda: service_running(c, "bench") == n, 300, 0.05, what=f"{n} running")
    return time.monotonic() - t0


def chaos(c: LocalCluster, n: int, grace: float) -> tuple[float, float, int]:
    victim = c.instance_id("a1")
    t0 = time.monotonic()
    c.agents["a1"].kill(signal.SIGKILL)
    c.wait_connected("a1", connected=False, timeout=10)
    t_disc = time.monotonic() - t0
    wait_for(
        lambda: running_count("bench-svc") - running_count("bench-svc", victim) == n,
        120,
        0.05,
        what="replacements",
    )
    back = time.monotonic() - t0 - t_disc - grace
    c.start_agent("a1")
    c.wait_connected("a1")
    wait_for(lambda: running_count("bench-svc", victim) == 0, 120, what="originals stopped")
    wait_for(lambda: service_running(c, "bench") == n, 60, what="settled")
    return t_disc, back, running_count("bench-svc") - n


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=30)
    ap.add_argument("--grace", type=float, default=3.0)
    args = ap.parse_args()
    images.build_all()
    with tempfile.TemporaryDirectory() as tmp:
        c = LocalCluster(Path(tmp), grace=args.grace)
        try:
            c.start_controller()
            for name in ("a1", "a2", "a3"):
                c.start_agent(name)
            for name in ("a1", "a2", "a3"):
                c.wait_connected(name)
            td = {
                "family": "bench-svc",
                "containerDefinitions": [{"name": "main", "image": IMAGE, "memory": 32}],
            }
            c.client().call("RegisterTaskDefinition", td)
            c.client().call(
                "CreateService",
                {"serviceName": "bench", "taskDefinition": "bench-svc", "desiredCount": 0},
            )
            raw = raw_docker(args.tasks)
            svc = converge(c, args.tasks)
            print(f"raw docker run -d x{args.tasks} (3 streams): {raw:.2f} s")
            print(f"service 0 -> {args.tasks} RUNNING:            {svc:.2f} s")
            print(f"ratio service / raw:                   {svc / raw:.2f}")
            disc, back, dupes = chaos(c, args.tasks, args.grace)
            print(f"SIGKILL agent -> DISCONNECTED:         {disc:.2f} s")
            print(f"DISCONNECTED + grace -> desired count: {back:.2f} s")
            print(f"duplicates after the agent returns:    {dupes}")
            c.client().call("UpdateService", {"service": "bench", "desiredCount": 0})
            wait_for(lambda: running_count("bench-svc") == 0, 120, what="scaled to 0")
        finally:
            c.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
