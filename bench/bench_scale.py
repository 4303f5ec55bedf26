"""Scale benchmarks: one controller process, simulated agents (`dockyard sim`) in others.

  storm       N agents connect at once -> all connected; controller CPU and peak RSS
  steady      N agents connected, default heartbeat policy: controller CPU cores and RSS
  throughput  services scaling 0 -> T tasks across N agents: tasks reaching RUNNING per s
  failure     10 % of N agents vanish (their simulator SIGKILLed): time until DISCONNECTED
              and until their service tasks are running elsewhere
  disconnect  every one of N agents vanishes at once (all simulators SIGKILLed, or with
              --partition SIGSTOPped), ~2 service tasks each: time until every stream is
              closed and every task's instance is DISCONNECTED (mass failure: it must not
              grow with N); then the agents come back after the grace: time until the
              services are back, tasks placed meanwhile, excess RUNNING once settled

Small defaults for a quick check; the full runs (bench/README-scale.md):
  python -m bench.bench_scale storm --agents 5000 --repeat 3
  python -m bench.bench_scale steady --agents 1000 5000 10000 --window 30
  python -m bench.bench_scale throughput --agents 5000 --tasks 50000 --repeat 3
  python -m bench.bench_scale failure --agents 5000 --tasks 10000 --repeat 3
  python -m bench.bench_scale disconnect --agents 1000 5000 10000 --repeat 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import statistics
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.scale_support import CpuMeter, ScaleRig, cpu_seconds, rss_mib
from dockyard.client import Client
from tests.etcd_fixture import etcd_cluster
from tests.support import metric, scrape, wait_for

# 20 % spare capacity (12 slots for 10 tasks per host): tasks of a host that drops out
# under load can be placed elsewhere, so "all RUNNING" is reachable
SIM_FLAGS = ("--start-latency-ms", "500", "--containers-per-agent", "12")
PROBE_PERIOD_S = 0.2  # the API probe: one call every 200 ms during a throughput run
LAG_POLL_EVERY = 10  # the probe reads the controller's recent loop-lag max every 10 calls
SERVICE_MAX = 5000  # ECS's tasks per service: bigger targets use several services
TASKDEF = {
    "family": "scale",
    "containerDefinitions": [
        {"name": "app", "image": "dockyard/sleeper", "cpu": 128, "memory": 128, "essential": True}
    ],
}


def sim_processes(agents: int) -> int:
    return max(1, min(10, agents // 1000 or 1))


def storm(args: argparse.Namespace) -> dict[str, Any]:
    rig = ScaleRig(store=store_for_run(args))
    try:
        rig.start_controller()
        cpu = CpuMeter(rig.pid).start()
        rig.start_sims(args.agents, sim_processes(args.agents))
        secs = rig.wait_connected(args.agents, args.timeout)
        h = rig.health()
        return {
            "agents": args.agents,
            "all_connected_s": round(secs, 2),
            "instances": h["instances"],
            "cpu_cores_during": round(cpu.read(), 2),
            "rss_mib": round(rss_mib(rig.pid)),
        }
    finally:
        rig.stop()


def steady(args: argparse.Namespace, agents: int) -> dict[str, Any]:
    rig = ScaleRig(store=store_for_run(args))
    try:
        rig.start_controller()
        standby = rig.start_standby() if args.standby else 0
        rig.start_sims(agents, sim_processes(agents))
        rig.wait_connected(agents, args.timeout)
        period = rig.health().get("heartbeatPeriodMs", 1000) / 1000
        time.sleep(3 * period + 2)  # every agent has taken up the period
        cpu = CpuMeter(rig.pid).start()
        standby_cpu = CpuMeter(standby).start() if standby else None
        time.sleep(args.window)
        h = rig.health()
        out = {
            "agents": agents,
            "connected": h["connected"],
            "heartbeat_period_s": period,
            "cpu_cores": round(cpu.read(), 3),
            "rss_mib": round(rss_mib(rig.pid)),
        }
        if standby_cpu is not None:
            out |= {
                "standby_cpu_cores": round(standby_cpu.read(), 3),
                "standby_rss_mib": round(rss_mib(standby)),
            }
        return out
    finally:
        rig.stop()


def _services(client: Client, tasks: int) -> list[tuple[str, int]]:
    client.call("RegisterTaskDefinition", TASKDEF)
    out = []
    for i in range(0, tasks, SERVICE_MAX):
        name = f"scale-{i // SERVICE_MAX}"
        client.call(
            "CreateService", {"serviceName": name, "taskDefinition": "scale", "desiredCount": 0}
        )
        out.append((name, min(SERVICE_MAX, tasks - i)))
    return out


def _run_tasks(
    rig: ScaleRig,
    tasks: int,
    use_services: bool,
    at_once: bool = False,
    probe: ApiProbe | None = None,
) -> None:
    """Scale services (ECS caps one at 5,000 tasks) one UpdateService after another, or
    all at once (one scaling event); or run the tasks with RunTask calls of 10. `probe`
    starts once the services exist, just before they are scaled."""
    client = rig.client()
    if use_services:
        updates = [{"service": name, "desiredCount": n} for name, n in _services(client, tasks)]
        if probe is not None:
            probe.start()
        with ThreadPoolExecutor(len(updates) if at_once else 1) as pool:
            list(pool.map(lambda body: client.call("UpdateService", body), updates))
        return
    client.call("RegisterTaskDefinition", TASKDEF)
    body = {"taskDefinition": "scale", "count": 10}
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda _: client.call("RunTask", body), range(tasks // 10)))


class ApiProbe:
    """A steady trickle of DescribeServices / UpdateService calls (alternating, on their own
    connection) while the run scales: client-side latencies of the API calls a user makes
    meanwhile (issue 17's goal: p99 <= 250 ms), beside the controller's event-loop lag.

    Open loop: a call goes every PROBE_PERIOD_S whether or not the previous ones have
    answered (each in a thread of its own pool), so a slow call cannot thin the trickle and
    hide the slow stretch it fell in. The UpdateService asks for the desired count the
    service already has (what a user re-applying a config does). The loop lag comes from
    the controller's /metrics (controller/loop_lag.py): its histogram over the probed
    window (p99 as the bucket bound it falls under) and its recent-max gauge, polled."""

    def __init__(self, client: Client, service: str, desired: int, http_port: int) -> None:
        self.client, self.service, self.desired = client, service, desired
        self.http_port = http_port
        self.latencies: list[float] = []
        self.by_op: dict[str, list[float]] = {"DescribeServices": [], "UpdateService": []}
        self.health: list[float] = []  # GET /healthz beside each call: the HTTP path
        self.errors = 0
        self.lag_max = 0.0
        self._lag0: dict[float, float] = {}
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(16, thread_name_prefix="probe")
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> ApiProbe:
        self._lag0 = lag_buckets(scrape(self.http_port))
        self._thread.start()
        return self

    def _run(self) -> None:
        calls: list[tuple[str, dict[str, Any]]] = [
            ("DescribeServices", {"services": [self.service]}),
            ("UpdateService", {"service": self.service, "desiredCount": self.desired}),
        ]
        t0 = time.monotonic()
        i = 0
        while not self._stop.wait(max(0.0, t0 + (i + 1) * PROBE_PERIOD_S - time.monotonic())):
            self._pool.submit(self._call, *calls[i % 2])
            self._pool.submit(self._healthz)
            i += 1
            if i % LAG_POLL_EVERY == 0:
                self._pool.submit(self._poll_lag)

    def _call(self, op: str, body: dict[str, Any]) -> None:
        t = time.monotonic()
        try:
            self.client.call(op, body)
        except Exception:  # counted, not timed: a failed call is reported apart
            self.errors += 1
            return
        self.latencies.append(time.monotonic() - t)
        self.by_op[op].append(self.latencies[-1])

    def _healthz(self) -> None:
        t = time.monotonic()
        url = f"http://127.0.0.1:{self.http_port}/healthz"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=60) as r:
            r.read()
            self.health.append(time.monotonic() - t)

    def _poll_lag(self) -> None:
        value = metric(scrape(self.http_port), "dockyard_event_loop_lag_recent_max_seconds")
        self.lag_max = max(self.lag_max, value or 0.0)

    def stop(self) -> dict[str, Any]:
        if self._thread.ident is None:  # never started (the run failed before scaling)
            return {}
        self._stop.set()
        self._thread.join(timeout=30)
        self._pool.shutdown(wait=True)
        self._poll_lag()
        now = lag_buckets(scrape(self.http_port))
        lag = {le: n - self._lag0.get(le, 0.0) for le, n in now.items()}
        ms = _ms(self.latencies)
        health = _ms(self.health)
        return {
            "api_calls": len(self.latencies),
            "api_errors": self.errors,
            "api_p50_ms": round(ms[len(ms) // 2]),
            "api_p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))]),
            "api_max_ms": round(ms[-1]),
            "describe_p99_ms": round(_p99(self.by_op["DescribeServices"])),
            "update_p99_ms": round(_p99(self.by_op["UpdateService"])),
            "healthz_p50_ms": round(health[len(health) // 2]),
            "healthz_p99_ms": round(health[min(len(health) - 1, int(len(health) * 0.99))]),
            "loop_lag_p99_le_ms": round(quantile_bound(lag, 0.99) * 1000),
            "loop_lag_max_ms": round(self.lag_max * 1000),
        }


def _ms(seconds: list[float]) -> list[float]:
    return sorted(x * 1000 for x in seconds) or [0.0]


def _p99(seconds: list[float]) -> float:
    ms = _ms(seconds)
    return ms[min(len(ms) - 1, int(len(ms) * 0.99))]


def lag_buckets(samples: list[Any]) -> dict[float, float]:
    """The loop-lag histogram's cumulative counts by upper bound (empty: no such metric)."""
    return {
        float(s.labels["le"]): s.value
        for s in samples
        if s.name == "dockyard_event_loop_lag_seconds_bucket"
    }


def quantile_bound(buckets: dict[float, float], q: float) -> float:
    """The bucket bound a quantile falls under, from cumulative counts (0.0: no samples)."""
    ordered = sorted(buckets.items())
    total = ordered[-1][1] if ordered else 0.0
    for le, n in ordered:
        if total and n >= q * total:
            return le
    return 0.0


def _via(args: argparse.Namespace) -> str:
    return "services, updates at once" if args.at_once else "services, updates in turn"


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    rig = ScaleRig(store=store_for_run(args))
    try:
        rig.start_controller()
        rig.start_sims(args.agents, sim_processes(args.agents), *SIM_FLAGS)
        rig.wait_connected(args.agents, args.timeout)
        cpu = CpuMeter(rig.pid).start()
        probe: ApiProbe | None = None
        t0 = time.monotonic()
        if not args.run_task:  # probes the first service once it exists
            probe = ApiProbe(rig.client(), "scale-0", min(SERVICE_MAX, args.tasks), rig.http_port)
        try:
            _run_tasks(rig, args.tasks, not args.run_task, args.at_once, probe)
            api_s = time.monotonic() - t0
            wait_for(
                lambda: rig.task_counts().get("RUNNING", 0) >= args.tasks,
                args.timeout,
                0.25,
                f"{args.tasks} RUNNING",
            )
            secs = time.monotonic() - t0
        finally:
            probed = probe.stop() if probe is not None else {}
        return {
            "agents": args.agents,
            "tasks": args.tasks,
            "via": "RunTask x10" if args.run_task else _via(args),
            "api_s": round(api_s, 1),
            "all_running_s": round(secs, 1),
            "running_per_s": round(args.tasks / secs),
            "cpu_cores": round(cpu.read(), 2),
            "rss_mib": round(rss_mib(rig.pid)),
            **probed,
        }
    finally:
        rig.stop()


def failure(args: argparse.Namespace) -> dict[str, Any]:
    rig = ScaleRig(grace=args.grace, store=store_for_run(args))
    try:
        rig.start_controller()
        procs = rig.start_sims(args.agents, 10, *SIM_FLAGS)
        rig.wait_connected(args.agents, args.timeout)
        client = rig.client()
        _run_tasks(rig, args.tasks, True)
        wait_for(lambda: rig.task_counts().get("RUNNING", 0) >= args.tasks, args.timeout, 0.25)
        victim = procs[0]
        lost = args.agents // 10
        t0 = time.monotonic()
        victim.kill()
        wait_for(lambda: rig.health()["connected"] <= args.agents - lost, args.timeout, 0.05)
        disconnected_s = time.monotonic() - t0
        wait_for(lambda: _replaced(rig, client, args.tasks), args.grace + args.timeout, 0.25)
        return {
            "agents": args.agents,
            "vanished": lost,
            "tasks": args.tasks,
            "grace_s": args.grace,
            "all_disconnected_s": round(disconnected_s, 2),
            "replaced_s": round(time.monotonic() - t0, 1),
            "rss_mib": round(rss_mib(rig.pid)),
        }
    finally:
        rig.stop()


def _replaced(rig: ScaleRig, client: Client, tasks: int) -> bool:
    """Every service back at its desired count, counting only tasks on connected hosts (one
    metrics scrape: listing and describing every task each poll was a third of the
    controller's CPU during the measurement)."""
    names = [f"scale-{i}" for i in range((tasks + SERVICE_MAX - 1) // SERVICE_MAX)]
    svcs = client.call("DescribeServices", {"services": names})["services"]
    return sum(s["runningCount"] for s in svcs) >= tasks and rig.tasks_on_disconnected() == 0


def disconnect(args: argparse.Namespace) -> dict[str, Any]:
    """Mass failure: SIGKILL every simulator at once. Times (polled every 20 ms) until the
    controller has no agent stream left and until every service task sits on an instance
    marked DISCONNECTED; then the same agents return after the grace (the simulators keep
    their identities, not their containers): time until the services are back at their
    counts on connected hosts, tasks placed meanwhile (one replacement per lost task is
    right; more is a duplicate-placement storm) and RUNNING tasks beyond the desired
    counts once settled."""
    tasks = args.tasks_per_agent * args.agents
    rig = ScaleRig(grace=args.grace, store=store_for_run(args))
    try:
        rig.start_controller()
        procs = rig.start_sims(args.agents, sim_processes(args.agents), *SIM_FLAGS)
        rig.wait_connected(args.agents, args.timeout)
        client = rig.client()
        _run_tasks(rig, tasks, True, at_once=True)
        wait_for(lambda: rig.task_counts().get("RUNNING", 0) >= tasks, args.timeout, 0.25)
        time.sleep(args.settle)  # a steady cluster: its services planned, their tasks healthy
        created = sum(rig.task_counts().values())
        cpu0 = cpu_seconds(rig.pid)
        t0 = time.monotonic()
        period = rig.health().get("heartbeatPeriodMs", 1000) / 1000
        sig = signal.SIGSTOP if args.partition else signal.SIGKILL
        for p in procs:  # all at once: signals first, reaping after
            assert p.popen is not None
            os.killpg(p.popen.pid, sig)
        closed = _seconds_until(t0, lambda: rig.health()["connected"] == 0, args.timeout)
        marked = _seconds_until(t0, lambda: rig.tasks_on_disconnected() >= tasks, args.timeout)
        cpu = cpu_seconds(rig.pid) - cpu0  # the controller's work, whatever else ran beside
        for p in procs:
            p.kill()
        rig.sims.clear()
        detected = {
            "agents": args.agents,
            "tasks": tasks,
            "how": "partition (SIGSTOP)" if args.partition else "SIGKILL",
            "heartbeat_period_s": period,
            "streams_closed_s": round(closed, 2),
            "all_disconnected_s": round(marked, 2),
            "controller_cpu_s": round(cpu, 2),
        }
        if args.no_return:
            return detected
        time.sleep(max(0.0, t0 + marked + args.grace + 1 - time.monotonic()))  # grace over
        t1 = time.monotonic()
        rig.start_sims(args.agents, sim_processes(args.agents), *SIM_FLAGS)
        wait_for(
            lambda: rig.health()["connected"] >= args.agents and _replaced(rig, client, tasks),
            args.timeout,
            0.25,
            f"{tasks} RUNNING again",
        )
        back_s = time.monotonic() - t1
        time.sleep(3)  # settle: late duplicates would show now
        counts = rig.task_counts()
        return {
            **detected,
            "back_running_s": round(back_s, 1),
            "placed_on_return": sum(counts.values()) - created,
            "excess_running_settled": counts.get("RUNNING", 0) - tasks,
            "rss_mib": round(rss_mib(rig.pid)),
        }
    finally:
        rig.stop()


def _seconds_until(t0: float, cond: Callable[[], bool], timeout: float) -> float:
    wait_for(cond, timeout, 0.02)
    return time.monotonic() - t0


def repeat(n: int, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run n times; numeric fields become medians, each run printed as it ends."""
    runs = []
    for i in range(n):
        try:
            r = fn()
        except AssertionError as err:  # a timed-out wait: report it, keep the other runs
            print(f"  run {i + 1}/{n} failed: {err}", flush=True)
            continue
        print(f"  run {i + 1}/{n}: {json.dumps(r)}", flush=True)
        runs.append(r)
    if not runs:
        return {"failed_runs": n}
    out = dict(runs[0])
    for k, v in out.items():
        if isinstance(v, int | float) and not isinstance(v, bool):
            out[k] = statistics.median(r[k] for r in runs)
    out["runs"] = len(runs)
    out["failed_runs"] = n - len(runs)
    return out


def store_for_run(args: argparse.Namespace) -> str:
    """The controller's --store for one run: "" (SQLite in the run's dir), or the benchmark's
    etcd cluster under a prefix of the run's own, so that no run sees another's state."""
    etcd = getattr(args, "etcd_url", "")
    return f"{etcd}?prefix=/bench-{secrets.token_hex(4)}" if etcd else ""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("bench", choices=["storm", "steady", "throughput", "failure", "disconnect"])
    p.add_argument("--agents", type=int, nargs="+", default=[500])
    p.add_argument("--tasks", type=int, default=2000)
    p.add_argument("--window", type=float, default=10.0, help="steady: measuring window (s)")
    p.add_argument("--grace", type=float, default=10.0, help="failure: disconnect grace (s)")
    p.add_argument(
        "--tasks-per-agent", type=int, default=2, help="disconnect: service tasks per agent"
    )
    p.add_argument(
        "--partition",
        action="store_true",
        help="disconnect: SIGSTOP the simulators (streams stay open: heartbeats must tell)",
    )
    p.add_argument(
        "--settle", type=float, default=8.0, help="disconnect: seconds steady before the kill"
    )
    p.add_argument("--no-return", action="store_true", help="disconnect: measure detection only")
    p.add_argument("--run-task", action="store_true", help="throughput via RunTask x10 calls")
    p.add_argument(
        "--at-once", action="store_true", help="throughput: send the UpdateService calls at once"
    )
    p.add_argument(
        "--store",
        choices=["sqlite", "etcd"],
        default="sqlite",
        help="the controller's store: sqlite, or three etcd members started on this machine",
    )
    p.add_argument(
        "--standby",
        action="store_true",
        help="steady, with --store etcd: a second controller stands by; its CPU is reported",
    )
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--timeout", type=float, default=300.0)
    args = p.parse_args()
    with contextlib.ExitStack() as stack:
        if args.store == "etcd":  # the members share this machine with the controller
            args.etcd_url = stack.enter_context(etcd_cluster(3)).url
        run_all(args)


def run_all(args: argparse.Namespace) -> None:
    for n in args.agents:
        a = argparse.Namespace(**{**vars(args), "agents": n})
        fn: Callable[[], dict[str, Any]] = {
            "storm": lambda a=a: storm(a),
            "steady": lambda a=a: steady(a, a.agents),
            "throughput": lambda a=a: throughput(a),
            "failure": lambda a=a: failure(a),
            "disconnect": lambda a=a: disconnect(a),
        }[args.bench]
        print(json.dumps({"bench": args.bench, **repeat(args.repeat, fn)}), flush=True)


if __name__ == "__main__":
    main()
