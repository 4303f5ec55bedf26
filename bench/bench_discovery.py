"""Service discovery's figures (issue 21): propagation on a real 3-host lab, then the
agent's resolver against the host's own (bench/bench_dns.py's comparison), in one run.

Propagation: an ECS service registered in a private DNS namespace (A and SRV records) is
scaled up one task at a time to `--max-tasks` and down again, until `--changes` tasks were
added (and about as many removed). A probe in each host's network namespace asks its own
agent's resolver for the service's SRV records every 5 ms and notes when the set of
instance ids (task ids) changes. For each added task: its `startedAt` (its agent's word
that the container runs) -> the first answer naming it on every host (the slowest host
counts); for each removed one: UpdateService -> gone on every host (the controller takes
it out of DNS before it sends the stop: controller/discovery_gate.py). Polling adds up
to 5 ms. Real containers (the lab's httpd image): a change takes a container start or stop,
about a second each on the lab.

    .venv/bin/python -m bench.bench_discovery [--changes 50] [--max-tasks 6]
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import threading
import time
from typing import Any

from bench import bench_dns
from bench.lab_support import bench_lab
from dockyard.lab import Lab
from dockyard.lab import control as lab_control
from tests.support import cloud_map, wait_for

LAB_DIR, LAB_INDEX = "/tmp/dyk-bench-discovery", 152
KEPT_LOGS = "/tmp/dyk-bench-discovery-logs"
NAMESPACE, SERVICE = "bench-disc.local", "bench-web"
NAME = f"web.{NAMESPACE}"

# In a host's network namespace: SRV queries for NAME to the agent's resolver every 5 ms
# (over TCP when the UDP answer is truncated: six tasks' SRV records exceed 512 bytes);
# prints "<unix time the query was sent> <sorted instance ids>" whenever they change.
PROBE = """
import sys, time
import dns.message, dns.query, dns.rdatatype
server, name, last = sys.argv[1], sys.argv[2], None
while True:
    sent = time.time()
    try:
        query = dns.message.make_query(name, "SRV")
        reply, _ = dns.query.udp_with_fallback(query, server, timeout=1)  # TC: over TCP
        srv = [r for s in reply.answer if s.rdtype == dns.rdatatype.SRV for r in s]
        now = ",".join(sorted(r.target.labels[0].decode() for r in srv)) or "-"
    except Exception as err:
        now = "error:" + type(err).__name__
    if now != last:
        print(sent, now, flush=True)
        last = now
    time.sleep(0.005)
"""


class HostProbe:
    """The PROBE on one host: the instance id sets it has seen, as (time, ids)."""

    def __init__(self, lab: Lab, host: str) -> None:
        server = lab.host(host).bip.partition("/")[0]  # where the host's agent answers
        cmd = [*lab.enter(host), sys.executable, "-c", PROBE, server, NAME]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        self.seen: list[tuple[float, set[str]]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            at, _, answer = line.strip().partition(" ")
            if answer.startswith("error"):
                continue  # no answer is no word on the names: never "gone"
            self.seen.append((float(at), set() if answer == "-" else set(answer.split(","))))

    def first(self, since: float, test: Any) -> float:
        """When the answer first passed `test` at or after `since` (unix time)."""

        def found() -> float | None:
            return next((at for at, ids in list(self.seen) if at >= since and test(ids)), None)

        return wait_for(found, 60, interval=0.01, what="the probe's answer")

    def current(self) -> set[str]:
        return self.seen[-1][1] if self.seen else set()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def set_up(lab: Lab) -> None:
    """The Cloud Map namespace and service, and the ECS service (1 task) registered in it."""
    creds = lab_control.admin_credentials(lab.state)
    assert creds is not None
    ca = lab.state.path("controller", "ca.crt")
    verify = str(ca) if ca.exists() else None
    sd = cloud_map(lab.controller_http, creds.access_key_id, creds.secret_access_key, verify=verify)
    sd.create_private_dns_namespace(Name=NAMESPACE, Vpc="lab")
    [ns] = [n for n in sd.list_namespaces()["Namespaces"] if n["Name"] == NAMESPACE]
    dns = {"DnsRecords": [{"Type": "A", "TTL": 5}, {"Type": "SRV", "TTL": 5}]}
    registry = sd.create_service(Name="web", NamespaceId=ns["Id"], DnsConfig=dns)["Service"]
    client = lab.client()
    server = {
        "name": "main",
        "image": lab.image("httpd"),
        "memory": 16,
        "portMappings": [{"containerPort": 8080, "hostPort": 0}],
    }
    client.call("RegisterTaskDefinition", {"family": SERVICE, "containerDefinitions": [server]})
    client.call(
        "CreateService",
        {
            "cluster": lab.cluster,
            "serviceName": SERVICE,
            "taskDefinition": SERVICE,
            "desiredCount": 1,
            "serviceRegistries": [
                {"registryArn": registry["Arn"], "containerName": "main", "containerPort": 8080}
            ],
        },
    )


def running(lab: Lab) -> dict[str, dict[str, Any]]:
    """The service's RUNNING tasks by task id."""
    client = lab.client()
    arns = client.call("ListTasks", {"cluster": lab.cluster, "serviceName": SERVICE})["taskArns"]
    tasks = (
        client.call("DescribeTasks", {"cluster": lab.cluster, "tasks": arns})["tasks"]
        if arns
        else []
    )
    return {t["taskArn"].rsplit("/", 1)[-1]: t for t in tasks if t["lastStatus"] == "RUNNING"}


def scale(lab: Lab, count: int) -> None:
    body = {"cluster": lab.cluster, "service": SERVICE, "desiredCount": count}
    lab.client().call("UpdateService", body)


def add_one(lab: Lab, probes: list[HostProbe], count: int) -> float:
    """Scale to `count`: the new task's startedAt -> named on every host (seconds)."""
    before = set(running(lab))
    scale(lab, count)

    def new() -> dict[str, Any] | None:
        fresh = [t for tid, t in running(lab).items() if tid not in before]
        return fresh[0] if fresh else None

    task = wait_for(new, 120, interval=0.05, what="the new task RUNNING")
    tid, started = task["taskArn"].rsplit("/", 1)[-1], float(task["startedAt"])
    return max(p.first(started, lambda ids: tid in ids) for p in probes) - started


def remove_one(lab: Lab, probes: list[HostProbe], count: int) -> float:
    """Scale to `count`: UpdateService -> the stopped task gone on every host (seconds)."""
    before = probes[0].current()
    t0 = time.time()
    scale(lab, count)
    gone = wait_for(lambda: before - probes[0].current(), 60, interval=0.01, what="a task gone")
    return max(p.first(t0, lambda ids: not gone & ids) for p in probes) - t0


def propagation(lab: Lab, changes: int, max_tasks: int) -> tuple[list[float], list[float]]:
    """(added: startedAt -> everywhere, removed: UpdateService -> gone everywhere)."""
    probes = [HostProbe(lab, h.name) for h in lab.hosts]
    try:
        wait_for(lambda: all(len(p.current()) == 1 for p in probes), 60, what="every host answers")
        added: list[float] = []
        removed: list[float] = []
        count = 1
        while len(added) < changes:
            while count < max_tasks and len(added) < changes:
                count += 1
                added.append(add_one(lab, probes, count))
            while count > 1:
                count -= 1
                removed.append(remove_one(lab, probes, count))
        return added, removed
    finally:
        for p in probes:
            p.stop()


def percentile(values: list[float], q: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--changes", type=int, default=50, help="tasks added (about as many removed)")
    ap.add_argument("--max-tasks", type=int, default=6)
    ap.add_argument("--queries", type=int, default=5000, help="DNS queries per resolver")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--host-name", default="localhost", help="a name the host resolver caches")
    args = ap.parse_args()
    with bench_lab(LAB_DIR, LAB_INDEX, KEPT_LOGS) as lab:
        set_up(lab)
        added, removed = propagation(lab, args.changes, args.max_tasks)
    head = "".join(f"{h:>9}" for h in ("p50 ms", "p99 ms", "max ms"))
    print(f"{'propagation to every host (3-host lab)':48}{'n':>4}{head}")
    for what, vals in (
        ("task startedAt -> resolvable on every host", added),
        ("scale-in UpdateService -> gone on every host", removed),
    ):
        ms = [v * 1000 for v in vals]
        print(
            f"{what:48}{len(ms):4}{percentile(ms, 0.5):9.0f}{percentile(ms, 0.99):9.0f}"
            f"{max(ms):9.0f}"
        )
    print()
    bench_dns.print_rows(bench_dns.compare(args.queries, args.clients, args.host_name))


if __name__ == "__main__":
    main()
