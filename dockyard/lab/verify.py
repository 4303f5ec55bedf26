"""`dockyard verify`: audit a cluster by comparing the controller's view with each Docker host.

`audit()` is the pure comparison (controller tasks and services, containers seen on the
hosts) and is unit-tested on its own; `collect()` does the I/O: the native API for the
controller's side, the Engine API on each host's socket for Docker's side.

Violations: *orphan* (a running container of the cluster whose task the controller does not
know, believes STOPPED, or placed on another instance), *missing* (the controller says
RUNNING, Docker says otherwise) and *duplicate* (a service with more running copies than
desiredCount x maximumPercent allows). Tasks on hosts that could not be asked are
*unverified*, not missing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from dockyard import auth, labels
from dockyard.arns import last_part, resource_name
from dockyard.client import Client
from dockyard.errors import ApiError
from dockyard.lab import control
from dockyard.lab.engines import DockerApi

VIOLATIONS = ("orphan", "missing", "duplicate")


@dataclass(frozen=True)
class SeenContainer:
    """A container labelled with a task ARN, as one host's Docker reports it."""

    host: str
    id: str
    task_arn: str
    cluster: str
    name: str = ""
    instance_id: str = ""
    running: bool = True
    state: str = "running"


@dataclass
class Finding:
    kind: str  # orphan | missing | duplicate | unverified
    detail: str
    task_arn: str = ""
    host: str = ""
    container: str = ""
    service: str = ""


@dataclass
class Report:
    cluster: str
    hosts: list[str]
    unreachable: list[str]
    tasks_known: int
    containers_seen: int
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def violations(self) -> list[Finding]:
        return [f for f in self.findings if f.kind in VIOLATIONS]

    @property
    def exit_code(self) -> int:
        """1 on any violation; 2 when clean but incomplete (a host or check left out)."""
        if self.violations:
            return 1
        return 2 if self.unreachable or any(f.kind == "unverified" for f in self.findings) else 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"violations": len(self.violations), "ok": self.exit_code == 0}

    def render(self) -> str:
        lines = [
            f"cluster {self.cluster}: {self.tasks_known} tasks known to the controller, "
            f"{self.containers_seen} task containers on {len(self.hosts)} host(s) "
            f"({', '.join(self.hosts) or 'none'})"
        ]
        if self.unreachable:
            lines.append(f"UNREACHABLE hosts (not audited): {', '.join(self.unreachable)}")
        for kind in (*VIOLATIONS, "unverified"):
            found = [f for f in self.findings if f.kind == kind]
            if found:
                lines.append(f"{kind.upper()} ({len(found)}):")
                lines += [f"  {_where(f)}: {f.detail}" for f in found]
        lines += [f"note: {n}" for n in self.notes]
        verdict = {
            0: "OK: no orphan, missing or duplicate tasks",
            1: f"FAILED: {len(self.violations)} violation(s)",
            2: "INCOMPLETE: no violation found, but not everything could be checked",
        }
        lines.append(verdict[self.exit_code])
        return "\n".join(lines)


def _where(f: Finding) -> str:
    parts = [
        p
        for p in (
            f.host,
            f.service and f"service {f.service}",
            f.task_arn and f"task {last_part(f.task_arn)}",
            f.container and f"container {f.container}",
        )
        if p
    ]
    return " ".join(parts) or "-"


# ---- the pure comparison ------------------------------------------------------------------


def audit(
    cluster: str,
    tasks: list[dict[str, Any]],
    containers: Iterable[SeenContainer],
    services: list[dict[str, Any]] | None,
    hosts: list[str],
    unreachable: Iterable[str] = (),
    instance_hosts: dict[str, str] | None = None,
) -> Report:
    """Compare the controller's tasks/services with the containers the hosts run."""
    name = resource_name(cluster)
    seen = [c for c in containers if resource_name(c.cluster or name) == name]
    down = sorted(set(unreachable))
    where = _instance_hosts(seen, instance_hosts or {})
    known = {t["taskArn"]: t for t in tasks if t.get("taskArn")}
    report = Report(name, sorted(hosts), down, len(known), len(seen))
    report.findings += _orphans(seen, known)
    report.findings += _missing(tasks, seen, where, set(down))
    if services is None:
        report.notes.append("duplicates not checked: the controller does not list services")
    else:
        report.findings += _duplicates(services, tasks, seen, known, where, set(down))
    return report


def _instance_hosts(seen: list[SeenContainer], given: dict[str, str]) -> dict[str, str]:
    """instance id -> host, from the agents' labels and whatever the caller knows."""
    out = {last_part(k): v for k, v in given.items()}
    for c in seen:
        if c.instance_id:
            out.setdefault(c.instance_id, c.host)
    return out


def _orphans(seen: list[SeenContainer], known: dict[str, dict[str, Any]]) -> list[Finding]:
    found = []
    for c in seen:
        if not c.running:
            continue
        task = known.get(c.task_arn)
        problem = ""
        if task is None:
            problem = "running, but the controller does not know this task"
        elif task.get("lastStatus") == "STOPPED":
            reason = task.get("stoppedReason") or task.get("stopCode") or "no reason"
            problem = f"running, but the controller says STOPPED ({reason})"
        else:
            placed = last_part(task.get("containerInstanceArn") or "")
            if c.instance_id and placed and placed != c.instance_id:
                problem = f"running here, but the controller placed the task on {placed}"
        if problem:
            found.append(Finding("orphan", problem, c.task_arn, c.host, c.name or c.id[:12]))
    return found


def _match(want: dict[str, Any], arn: str, seen: list[SeenContainer]) -> SeenContainer | None:
    runtime = want.get("runtimeId") or ""
    mine = [c for c in seen if c.task_arn == arn]
    if runtime:
        for c in seen:
            if c.id.startswith(runtime) or runtime.startswith(c.id):
                return c
    named = [c for c in mine if want.get("name") and c.name == want["name"]]
    running = [c for c in named or mine if c.running]
    best = running or named or mine
    return best[0] if best else None


def _missing(
    tasks: list[dict[str, Any]], seen: list[SeenContainer], where: dict[str, str], down: set[str]
) -> list[Finding]:
    found = []
    for t in tasks:
        if t.get("lastStatus") != "RUNNING" or t.get("desiredStatus", "RUNNING") != "RUNNING":
            continue
        arn = t["taskArn"]
        host = where.get(last_part(t.get("containerInstanceArn") or ""), "")
        for want in t.get("containers") or [{}]:
            if want.get("lastStatus", "RUNNING") != "RUNNING":
                continue
            label = want.get("name", "")
            c = _match(want, arn, seen)
            if c is not None and c.running:
                continue
            if c is not None:
                found.append(
                    Finding(
                        "missing",
                        f"controller says RUNNING, Docker says {c.state}",
                        arn,
                        c.host,
                        label or c.name,
                    )
                )
            elif host in down or (not host and down):
                found.append(Finding("unverified", "its host could not be asked", arn, host, label))
            else:
                found.append(
                    Finding(
                        "missing",
                        "controller says RUNNING, no such container on any host",
                        arn,
                        host,
                        label,
                    )
                )
    return found


def _allowed(svc: dict[str, Any]) -> tuple[int, int, int]:
    """(allowed copies, desiredCount, maximumPercent) for a service."""
    primary = [d for d in svc.get("deployments") or [] if d.get("status") == "PRIMARY"]
    desired = int((primary[0] if primary else svc).get("desiredCount", 0))
    default = 100 if svc.get("schedulingStrategy") == "DAEMON" else 200
    conf = svc.get("deploymentConfiguration") or {}
    maximum = int(conf.get("maximumPercent") or default)
    return desired * maximum // 100, desired, maximum


def _duplicates(
    services: list[dict[str, Any]],
    tasks: list[dict[str, Any]],
    seen: list[SeenContainer],
    known: dict[str, dict[str, Any]],
    where: dict[str, str],
    down: set[str],
) -> list[Finding]:
    found = []
    for svc in services:
        name = svc.get("serviceName") or last_part(svc.get("serviceArn", ""))
        group = f"service:{name}"
        copies = {
            c.task_arn: c.host
            for c in seen
            if c.running and known.get(c.task_arn, {}).get("group") == group
        }
        for t in tasks:  # copies on hosts we could not ask still count
            host = where.get(last_part(t.get("containerInstanceArn") or ""), "")
            if t.get("group") == group and t.get("lastStatus") == "RUNNING" and host in down:
                copies.setdefault(t["taskArn"], host)
        allowed, desired, maximum = _allowed(svc)
        if len(copies) > allowed:
            spread = ", ".join(sorted(f"{last_part(a)}@{h}" for a, h in copies.items()))
            found.append(
                Finding(
                    "duplicate",
                    f"{len(copies)} running copies, the deployment allows {allowed} "
                    f"(desiredCount {desired} x maximumPercent {maximum}%): {spread}",
                    service=name,
                )
            )
    return found


# ---- I/O: gather both views ---------------------------------------------------------------


def _paged(client: Client, op: str, body: dict[str, Any], key: str) -> list[str]:
    out: list[str] = []
    while True:
        page = client.call(op, body)
        out += page.get(key, [])
        if not page.get("nextToken"):
            return out
        body = body | {"nextToken": page["nextToken"]}


def controller_view(client: Client, cluster: str) -> list[dict[str, Any]]:
    arns: list[str] = []
    for status in ("RUNNING", "STOPPED"):
        arns += _paged(
            client, "ListTasks", {"cluster": cluster, "desiredStatus": status}, "taskArns"
        )
    tasks: list[dict[str, Any]] = []
    for i in range(0, len(arns), 100):
        tasks += client.call("DescribeTasks", {"cluster": cluster, "tasks": arns[i : i + 100]}).get(
            "tasks", []
        )
    return tasks


def services_view(client: Client, cluster: str) -> tuple[list[dict[str, Any]] | None, str]:
    try:
        arns = _paged(client, "ListServices", {"cluster": cluster}, "serviceArns")
        found: list[dict[str, Any]] = []
        for i in range(0, len(arns), 10):
            found += client.call(
                "DescribeServices", {"cluster": cluster, "services": arns[i : i + 10]}
            ).get("services", [])
    except ApiError as err:
        if err.name == "ConnectionError":
            raise
        return None, f"duplicates not checked: services unavailable ({err.name}: {err.message})"
    return found, ""


def docker_view(docker_hosts: dict[str, str]) -> tuple[list[SeenContainer], list[str]]:
    seen, unreachable = [], []
    for host, url in sorted(docker_hosts.items()):
        try:
            listed = DockerApi(url, timeout=5).containers(label=labels.TASK_ARN)
        except OSError:
            unreachable.append(host)
            continue
        for c in listed:
            lab = c.get("Labels") or {}
            seen.append(
                SeenContainer(
                    host=host,
                    id=c["Id"],
                    task_arn=lab[labels.TASK_ARN],
                    cluster=lab.get(labels.CLUSTER, ""),
                    name=lab.get(labels.CONTAINER_NAME, ""),
                    instance_id=lab.get(labels.INSTANCE, ""),
                    running=c.get("State") == "running",
                    state=c.get("State", ""),
                )
            )
    return seen, unreachable


def collect(
    controller: str,
    cluster: str,
    docker_hosts: dict[str, str],
    credentials: auth.Credentials | None = None,
    ca_cert: bytes | None = None,
) -> Report:
    """Ask the controller and every host, then audit; raises ApiError if the controller is
    unreachable."""
    if credentials is None and ca_cert is None:  # a lab controller this process knows
        credentials, ca_cert = control.KNOWN.get(controller, (None, None))
    with Client(controller, timeout=15, credentials=credentials, ca_cert=ca_cert) as client:
        tasks = controller_view(client, cluster)
        services, note = services_view(client, cluster)
    seen, unreachable = docker_view(docker_hosts)
    report = audit(cluster, tasks, seen, services, list(docker_hosts), unreachable)
    if note:
        report.notes = [n for n in report.notes if not n.startswith("duplicates")] + [note]
    return report
