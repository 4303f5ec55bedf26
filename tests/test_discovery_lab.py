"""Service discovery across the lab's hosts (issue 21): a client task on h1 finds, through
its agent's DNS, a service whose tasks run on h2 and h3.

The ECS service registers its tasks in a Cloud Map service of a private DNS namespace
(`serviceRegistries`); the controller pushes the records to every agent, and each agent
answers its tasks on its Docker bridge's gateway. Here a busybox task on h1 asks with
nslookup (A: the hosts' addresses; SRV: each task's host port; an unknown name:
NXDOMAIN), then the agent of h2 is killed and h3 is partitioned: the answer at h1 loses
that host within the controller's detection of the loss plus the push (killed: at once;
partitioned: three heartbeats), well before the disconnect grace would replace the tasks.
Scaling 2 -> 1 -> 2 removes and adds the records.

A stopped task is gone from DNS before its container is: the controller deregisters it and
queues the snapshot without it on every agent's stream before it sends the stop
(controller/discovery_gate.py). The servers' containers keep serving for STOP_GRACE_S after
SIGTERM (as a server draining its connections does), and a probe on each host asks its
agent's resolver every 10 ms. Asserted at each scale-in: on the stopped task's own host, no
query sent after Docker signalled the container got its address (that agent reads the
snapshot before the stop on one stream: an order, not a race); at h1, the address left the
answer before the container exited. Printed (-s), never asserted: propagation of Cloud Map
changes to h1, a new task's start -> resolvable at h1, and how far ahead of the SIGTERM
h1's answer changed (bench/bench_discovery.py measures propagation over more changes).
"""

from __future__ import annotations

import json
import re
import ssl
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from controller.discovery_dns import DEBOUNCE_S
from controller.server import ControllerConfig
from dockyard.lab import Lab, procs
from dockyard.lab import control as lab_control
from tests.support import cloud_map, wait_for
from tests.test_chaos import delete_service, describe, stop_all

pytestmark = pytest.mark.lab

NAMESPACE = "disc-lab.local"
NAME = f"web.{NAMESPACE}"
SERVICE = "disc-web"
CLIENT = "disc-client"
SERVERS = ("h2", "h3")
PUSH_S = 1.0  # the bound from a registration change to every agent's resolver
SLACK_S = 3.0  # a loaded shared machine: docker exec, scheduling
CHANGES = 40
CYCLES = 5
STOP_GRACE_S = 3  # a server's container serves this long after SIGTERM, then exits

# Runs in a host's network namespace: asks its agent's resolver for NAME's A records every
# 10 ms and, whenever the answer changes, prints "<unix time the query was sent> <when the
# last query with the previous answer was sent> <sorted addresses>".
PROBE = """
import sys, time
import dns.message, dns.query, dns.rdatatype
server, name, last, last_at = sys.argv[1], sys.argv[2], None, 0.0
while True:
    sent = time.time()
    try:
        reply = dns.query.udp(dns.message.make_query(name, "A"), server, timeout=1)
        ips = sorted(r.address for s in reply.answer if s.rdtype == dns.rdatatype.A for r in s)
        now = ",".join(ips) or ("-" if reply.rcode() == 0 else "rcode:" + str(reply.rcode()))
    except Exception as err:
        now = "error:" + type(err).__name__
    if now != last:
        print(sent, last_at, now, flush=True)
        last = now
    last_at = sent
    time.sleep(0.01)
"""


class Probe:
    """The PROBE process on `host` and the answers it has seen, as (time, addresses);
    `before[t]`: when the last query answered as before the change seen at `t` was sent."""

    def __init__(self, lab: Lab, host: str, server: str) -> None:
        cmd = [*lab.enter(host), sys.executable, "-c", PROBE, server, NAME]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        self.seen: list[tuple[float, set[str]]] = []
        self.before: dict[float, float] = {}
        self.last = ""  # the probe's last line: addresses, "-" (none), rcode:N or error:E
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            at, before, answer = line.strip().split(" ", 2)
            ips = set() if answer == "-" else set(answer.split(","))
            self.before[float(at)] = float(before)  # before the answer is in `seen`
            self.seen.append((float(at), ips))
            self.last = answer

    def first(self, since: float, test: Any, timeout: float, what: str) -> float:
        """When the answer first passed `test` at or after `since` (unix time)."""

        def found() -> float | None:
            return next((at for at, ips in list(self.seen) if at >= since and test(ips)), None)

        return wait_for(found, timeout, interval=0.01, what=what)

    def last_asked(self, since: float, test: Any, timeout: float, what: str) -> float:
        """When the last query answered before the answer first passed `test` (at or
        after `since`) was sent: the address left the answers after that."""
        at = self.first(since, test, timeout, what)
        return self.before[at]

    def current(self) -> set[str]:
        return self.seen[-1][1] if self.seen else set()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


@dataclass
class Disc:
    """What the module set up on the lab."""

    lab: Lab
    sd: Any
    service_id: str
    client_container: str
    resolver: str  # h1's agent resolver, as the client task's resolv.conf names it
    probe: Probe  # h1's
    probes: dict[str, Probe]  # each host's, asking its own agent's resolver
    made: list[str] = field(default_factory=list)

    def nslookup(self, *args: str) -> str:
        """busybox nslookup in the client task on h1 (its output, whatever its status)."""
        cmd = " ".join(["nslookup", *args, "2>&1; true"])
        return self.lab.docker("h1", "exec", self.client_container, "sh", "-c", cmd, timeout=20)

    def addresses(self) -> set[str]:
        """The A records the client gets for NAME (the server's own lines left out)."""
        _, _, answer = self.nslookup(NAME).partition("Name:")
        return set(re.findall(r"Address:\s*(\d+\.\d+\.\d+\.\d+)\s*$", answer, re.M))


def server_addresses(lab: Lab) -> set[str]:
    return {lab.host(h).address for h in SERVERS}


def running(lab: Lab) -> list[dict[str, Any]]:
    arns = lab.client().call("ListTasks", {"cluster": lab.cluster, "serviceName": SERVICE})
    tasks = describe(lab, arns["taskArns"]) if arns["taskArns"] else []
    return [t for t in tasks if t["lastStatus"] == "RUNNING"]


def host_port(task: dict[str, Any]) -> int:
    bindings = task["containers"][0]["networkBindings"]  # IPv4 and IPv6: one port
    [port] = {b["hostPort"] for b in bindings if b["containerPort"] == 8080}
    return int(port)


def steady(d: Disc) -> None:
    """Both servers' tasks RUNNING and answered at h1 (after a chaos step too)."""

    seen: list[Any] = []

    def both() -> bool:
        hosts = {t["containerInstanceArn"] for t in running(d.lab)}
        answer = d.addresses()
        want = server_addresses(d.lab)
        seen[:] = [len(hosts), answer, want, d.probe.current()]
        return len(hosts) == 2 and answer == want

    try:
        wait_for(both, 120, interval=0.5, what="the service's tasks on h2 and h3 answered at h1")
    except AssertionError as err:
        logs = {
            h: procs.log_tail(d.lab.state.path("logs", f"{h}-agent.log")) for h in ("h1", *SERVERS)
        }
        raise AssertionError(
            f"{err}; hosts, nslookup, wanted, probe: {seen}; agents: {logs}"
        ) from None


def heartbeat_period(lab: Lab) -> float:
    ca = lab_control.ca_cert(lab.state)
    ctx = ssl.create_default_context(cadata=ca.decode()) if ca else None
    with urllib.request.urlopen(f"{lab.controller_http}/healthz", timeout=10, context=ctx) as r:
        return float(json.load(r)["heartbeatPeriodMs"]) / 1000


def disconnect_grace(lab: Lab) -> float:
    grace = lab.state.disconnect_grace
    # unset: the controller's own default (the lab passes no flag)
    return float(grace) if grace is not None else ControllerConfig(Path()).disconnect_grace


def register_definitions(lab: Lab) -> None:
    client = lab.client()
    server = {
        "name": "main",
        "image": lab.image("httpd"),
        "memory": 16,
        "stopTimeout": STOP_GRACE_S + 3,
        "portMappings": [{"containerPort": 8080, "hostPort": 0}],
        # the image's own command, but on SIGTERM it goes on serving for STOP_GRACE_S
        "command": [
            "sh",
            "-c",
            f"hostname > /www/host; trap 'sleep {STOP_GRACE_S}; exit 0' TERM; "
            "httpd -f -v -p 8080 -h /www & wait",
        ],
    }
    client.call("RegisterTaskDefinition", {"family": SERVICE, "containerDefinitions": [server]})
    sleeper = {"name": "c", "image": lab.image("sleeper"), "memory": 8, "stopTimeout": 2}
    client.call("RegisterTaskDefinition", {"family": CLIENT, "containerDefinitions": [sleeper]})


def start_client(lab: Lab) -> tuple[str, str]:
    """The client task on h1 (started once the cluster has a namespace, so that its agent
    gives it the resolver): its task ARN and container id."""
    out = lab.client().call(
        "RunTask",
        {
            "cluster": lab.cluster,
            "taskDefinition": CLIENT,
            "placementConstraints": [
                {"type": "memberOf", "expression": "attribute:dockyard.hostname == h1"}
            ],
        },
    )
    arn = out["tasks"][0]["taskArn"]

    def container() -> str:
        [task] = describe(lab, [arn])
        if task["lastStatus"] != "RUNNING":
            return ""
        ps = ["ps", "-q", "--filter", f"label=dockyard.task-arn={arn}"]
        return lab.docker("h1", *ps).strip()

    return arn, wait_for(container, 90, interval=0.5, what="the client task running on h1")


@pytest.fixture(scope="module")
def disc(lab: Lab) -> Iterator[Disc]:
    if not lab.has_control_plane:
        pytest.skip("the lab has no control plane")
    creds = lab_control.admin_credentials(lab.state)
    assert creds is not None
    ca = lab.state.path("controller", "ca.crt")
    sd = cloud_map(
        lab.controller_http,
        creds.access_key_id,
        creds.secret_access_key,
        verify=str(ca) if ca.exists() else None,
    )
    client, ns_id, sid, tasks = lab.client(), "", "", []
    probes: dict[str, Probe] = {}
    try:
        sd.create_private_dns_namespace(Name=NAMESPACE, Vpc="lab")
        [ns] = [n for n in sd.list_namespaces()["Namespaces"] if n["Name"] == NAMESPACE]
        ns_id = ns["Id"]
        dns = {"DnsRecords": [{"Type": "A", "TTL": 5}, {"Type": "SRV", "TTL": 5}]}
        registry = sd.create_service(Name="web", NamespaceId=ns_id, DnsConfig=dns)["Service"]
        sid = registry["Id"]
        register_definitions(lab)
        client.call(
            "CreateService",
            {
                "cluster": lab.cluster,
                "serviceName": SERVICE,
                "taskDefinition": SERVICE,
                "desiredCount": 2,
                "serviceRegistries": [
                    {"registryArn": registry["Arn"], "containerName": "main", "containerPort": 8080}
                ],
                "placementConstraints": [
                    {"type": "distinctInstance"},
                    {"type": "memberOf", "expression": "attribute:dockyard.hostname in [h2, h3]"},
                ],
            },
        )
        for host in ("h1", *SERVERS):  # where each agent answers: its bridge's gateway
            probes[host] = Probe(lab, host, lab.host(host).bip.partition("/")[0])
        gateway, probe = lab.host("h1").bip.partition("/")[0], probes["h1"]
        # Cloud Map's calls are asynchronous: the namespace reaches the agents shortly after
        # (a task started before gets the host's resolvers, as before any namespace)
        wait_for(lambda: probe.last == "-" or "." in probe.last, 10, what="h1 knows the zone")
        arn, container = start_client(lab)
        tasks.append(arn)
        conf = lab.docker("h1", "exec", container, "cat", "/etc/resolv.conf")
        resolver = re.findall(r"^nameserver\s+(\S+)", conf, re.M)
        assert resolver == [gateway], f"not h1's agent resolver: {conf}"
        d = Disc(lab, sd, sid, container, gateway, probe, probes)
        steady(d)
        yield d
    finally:
        for p in probes.values():
            p.stop()
        for host in SERVERS:  # whatever a failed test left broken
            lab.heal(host)
            lab.start_agent(host)
        delete_service(lab, SERVICE)
        stop_all(lab, tasks)
        cleanup_cloud_map(sd, ns_id, sid)


def cleanup_cloud_map(sd: Any, ns_id: str, sid: str) -> None:
    """Deregister what is left (the probe's), then the service and the namespace."""
    if sid:
        for inst in sd.list_instances(ServiceId=sid)["Instances"]:
            sd.deregister_instance(ServiceId=sid, InstanceId=inst["Id"])
        wait_for(
            lambda: not sd.list_instances(ServiceId=sid)["Instances"],
            60,
            interval=0.5,
            what="the Cloud Map service emptied",
        )
        sd.delete_service(Id=sid)
    if ns_id:
        sd.delete_namespace(Id=ns_id)


def test_a_client_on_h1_finds_the_tasks_on_h2_and_h3(disc: Disc) -> None:
    d, lab = disc, disc.lab
    # the client task got its agent's resolver without asking for one
    assert d.addresses() == server_addresses(lab)
    tasks = running(lab)
    want = {(t["taskArn"].rsplit("/", 1)[-1], host_port(t)) for t in tasks}
    srv = d.nslookup("-type=srv", NAME)
    got = {
        (target.split(".", 1)[0], int(port))
        for port, target in re.findall(r"service = \d+ \d+ (\d+) (\S+)", srv)
    }
    assert got == want, srv
    # DiscoverInstances says the same
    out = d.sd.discover_instances(NamespaceName=NAMESPACE, ServiceName="web")["Instances"]
    found = {(i["InstanceId"], int(i["Attributes"]["AWS_INSTANCE_PORT"])) for i in out}
    assert found == want
    assert {i["Attributes"]["AWS_INSTANCE_IPV4"] for i in out} == server_addresses(lab)
    # an unknown name in the namespace: NXDOMAIN, never someone's address
    out_unknown = d.nslookup(f"nope.{NAMESPACE}")
    assert "NXDOMAIN" in out_unknown, out_unknown


def lose_and_recover(d: Disc, host: str, deadline: float, how: str) -> float:
    """Break `host` (kill its agent or partition it); the answer at h1 must lose its
    address within `deadline` s; then mend it and wait for both again. The time taken."""
    lab = d.lab
    gone = lab.host(host).address
    other = server_addresses(lab) - {gone}
    t0 = time.time()
    try:
        if how == "kill":
            lab.kill_agent(host)
        else:
            lab.partition(host)
        lost = d.probe.first(t0, lambda ips: ips == other, deadline, f"{host} gone from DNS")
        assert d.addresses() == other  # the client task sees it too
        # its tasks still run, within the grace: the service did not replace them yet
        assert len(running(lab)) == 2
    finally:
        if how == "kill":
            lab.start_agent(host)
        else:
            lab.heal(host)
    steady(d)
    return lost - t0


def test_killed_agent_leaves_the_answer_at_once(disc: Disc) -> None:
    grace = disconnect_grace(disc.lab)
    deadline = PUSH_S + SLACK_S  # the stream drops with the agent: no heartbeat to miss
    assert deadline < grace, "the lab's grace is too short to tell the two apart"
    took = lose_and_recover(disc, "h2", deadline, "kill")
    print(f"\nagent of h2 killed: its address left h1's answer in {took:.2f} s (grace {grace} s)")


def test_partitioned_host_leaves_the_answer_after_missed_heartbeats(disc: Disc) -> None:
    lab = disc.lab
    period, grace = heartbeat_period(lab), disconnect_grace(lab)
    deadline = 2.75 * period + PUSH_S + SLACK_S  # liveness.silence_limit, checked each 1/4
    assert deadline < grace, "the lab's grace is too short to tell the two apart"
    took = lose_and_recover(disc, "h3", deadline, "partition")
    print(
        f"\nh3 partitioned: its address left h1's answer in {took:.2f} s "
        f"(heartbeat {period} s, grace {grace} s)"
    )


def test_propagation_of_registration_changes_to_h1(disc: Disc) -> None:
    """RegisterInstance / DeregisterInstance -> the new answer at h1's resolver, for lone
    changes (paced: the controller pushes at most one snapshot per DEBOUNCE_S)."""
    d, took = disc, []
    base = server_addresses(d.lab)
    for i in range(CHANGES // 2):
        ip, iid = f"10.99.0.{i + 1}", f"probe-{i}"
        attrs = {"AWS_INSTANCE_IPV4": ip, "AWS_INSTANCE_PORT": "9"}
        time.sleep(2 * DEBOUNCE_S)
        t0 = time.time()
        d.sd.register_instance(ServiceId=d.service_id, InstanceId=iid, Attributes=attrs)
        took.append(d.probe.first(t0, lambda ips, ip=ip: ip in ips, 10, f"{ip} answered") - t0)
        time.sleep(2 * DEBOUNCE_S)
        t0 = time.time()
        d.sd.deregister_instance(ServiceId=d.service_id, InstanceId=iid)
        took.append(d.probe.first(t0, lambda ips: ips == base, 10, f"{ip} gone") - t0)
    ms = sorted(t * 1000 for t in took)
    p95 = ms[min(len(ms) - 1, round(0.95 * len(ms)) - 1)]
    print(
        f"\npropagation to h1's resolver over {len(ms)} changes: "
        f"median {statistics.median(ms):.0f} ms, p95 {p95:.0f} ms, max {ms[-1]:.0f} ms"
    )


def scale(d: Disc, count: int) -> None:
    d.lab.client().call(
        "UpdateService", {"cluster": d.lab.cluster, "service": SERVICE, "desiredCount": count}
    )


def host_address(lab: Lab, task: dict[str, Any]) -> str:
    """The address the task is published on (its container instance's)."""
    arn = task["containerInstanceArn"]
    [inst] = lab.client().call(
        "DescribeContainerInstances", {"cluster": lab.cluster, "containerInstances": [arn]}
    )["containerInstances"]
    name = {a["name"]: a.get("value") for a in inst["attributes"]}["dockyard.hostname"]
    return lab.host(str(name)).address


def container_stop(lab: Lab, host: str, task_arn: str, since: float) -> tuple[float, float]:
    """When its host's Docker first signalled the task's container (the stop reached it)
    and when the container exited (unix times)."""
    ps = ["ps", "-aq", "--filter", f"label=dockyard.task-arn={task_arn}"]
    cid = lab.docker(host, *ps).strip()

    def finished() -> float | None:
        out = lab.docker(
            host, "inspect", "--format", "{{.State.Running}} {{.State.FinishedAt}}", cid
        )
        running, at = out.split()
        if running == "true":
            return None
        stamp = re.sub(r"(\.\d{6})\d*", r"\1", at).replace("Z", "+00:00")
        return datetime.fromisoformat(stamp).timestamp()

    exited = wait_for(finished, 60, interval=0.2, what=f"the container of {task_arn} exited")
    window = ["--since", f"{since - 1:.3f}", "--until", f"{time.time() + 1:.3f}"]
    only = ["--filter", f"container={cid}", "--filter", "event=kill"]
    kills = lab.docker(host, "events", *window, *only, "--format", "{{.TimeNano}}").split()
    assert kills, f"Docker on {host} never signalled {cid}"
    return min(int(k) for k in kills) / 1e9, exited


def one_running(lab: Lab) -> dict[str, Any] | None:
    tasks = running(lab)
    return tasks[0] if len(tasks) == 1 else None


def test_scaling_adds_and_removes_records(disc: Disc) -> None:
    """Scale 2 -> 1 -> 2, several times: the answer at h1 follows, and the stopped task
    leaves DNS before its stop: on its own host no query sent after Docker signalled its
    container got its address; at h1 it was gone before the container exited. Printed: a
    new task's start (its startedAt) -> its address at h1, and how far ahead of the SIGTERM
    the last query at h1 that still got the address was sent."""
    d, lab = disc, disc.lab
    both, up, ahead = server_addresses(lab), [], []
    for _ in range(CYCLES):
        time.sleep(2 * DEBOUNCE_S)  # a lone change, not held by the push's pacing
        before = {t["taskArn"] for t in running(lab)}
        t0 = time.time()
        scale(d, 1)
        kept = wait_for(lambda: one_running(lab), 60, what="one task left")
        gone_host = next(h for h in SERVERS if lab.host(h).address != host_address(lab, kept))
        [stopped] = before - {kept["taskArn"]}
        alone = both - {lab.host(gone_host).address}
        gone_ip = lab.host(gone_host).address
        lost = d.probe.first(t0, lambda ips, a=alone: ips == a, 30, f"{gone_host} out of DNS")
        last_h1 = d.probe.last_asked(t0, lambda ips, a=alone: ips == a, 30, "at h1")
        last_own = d.probes[gone_host].last_asked(
            t0, lambda ips, g=gone_ip: g not in ips, 30, f"out of {gone_host}'s own DNS"
        )
        signalled, exited = container_stop(lab, gone_host, stopped, t0)
        assert last_own < signalled, "its own host's resolver answered it after the stop"
        assert lost < exited, "h1 answered the stopped task after its container exited"
        ahead.append(last_h1 - signalled)
        scale(d, 2)
        steady(d)
        [new] = [t for t in running(lab) if t["taskArn"] != kept["taskArn"]]
        started = float(new["startedAt"])
        up.append(d.probe.first(started, lambda ips: ips == both, 30, "both in DNS") - started)
    print(
        f"\nscale-out, task startedAt -> resolvable at h1 over {len(up)}: "
        f"median {statistics.median(up) * 1000:.0f} ms, max {max(up) * 1000:.0f} ms"
        f"\nscale-in, last query at h1 answered with the task minus its SIGTERM over "
        f"{len(ahead)}: " + ", ".join(f"{x * 1000:+.0f} ms" for x in ahead)
    )
