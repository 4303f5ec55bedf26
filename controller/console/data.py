"""What the console shows, read through the operations chain as the API's own callers read it.

Every read is an ECS operation (List*/Describe*) called with the signed-in key's rights
(`authorize`, the same rule as SigV4 and the native API), and the ECS views are cut down to
what the page draws, so a page of 100 tasks is a few tens of KiB.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from controller.events import EventLog
from controller.security.apiauth import authorize
from controller.security.keys import AccessKey

Call = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]

STOPPED_SHOWN = 50  # the most recently created stopped tasks shown beside the live ones
LIVE_SHOWN = 500  # at most this many live tasks (the newest): a snapshot stays small
EVENTS_SHOWN = 60
ZONE_ATTRIBUTES = ("ecs.availability-zone", "zone")  # ECS's, then the lab's and operators'
HOST_ATTRIBUTE = "dockyard.hostname"


def caller(call: Callable[..., Awaitable[dict[str, Any]]], key: AccessKey) -> Call:
    """`call` (OperationChain.call) with `key`'s rights checked first, as the API does."""

    async def checked(operation: str, body: dict[str, Any]) -> dict[str, Any]:
        authorize(key, operation)
        return await call(operation, body)

    return checked


async def _list_all(call: Call, operation: str, body: dict[str, Any], field: str) -> list[str]:
    """Every ARN a List* operation returns, page after page."""
    out: list[str] = []
    token = ""
    while True:
        page = await call(operation, {**body, **({"nextToken": token} if token else {})})
        out.extend(page.get(field, []))
        token = page.get("nextToken", "")
        if not token:
            return out


async def _describe(
    call: Call, operation: str, body: dict[str, Any], field: str, refs: list[str], chunk: int
) -> list[dict[str, Any]]:
    """Describe* over `refs` in the operation's largest batches."""
    out: list[dict[str, Any]] = []
    for i in range(0, len(refs), chunk):
        out.extend((await call(operation, {**body, field: refs[i : i + chunk]}))[field])
    return out


def _resource(resources: list[dict[str, Any]], name: str) -> int:
    return next((int(r.get("integerValue", 0)) for r in resources if r["name"] == name), 0)


def instance_row(view: dict[str, Any]) -> dict[str, Any]:
    attrs = {a["name"]: a.get("value", "") for a in view.get("attributes", [])}
    registered, remaining = view["registeredResources"], view["remainingResources"]
    cpu, mem = _resource(registered, "CPU"), _resource(registered, "MEMORY")
    cpu_free = _resource(remaining, "CPU") if remaining else cpu
    mem_free = _resource(remaining, "MEMORY") if remaining else mem
    return {
        "arn": view["containerInstanceArn"],
        "id": view["ec2InstanceId"],
        "host": attrs.get(HOST_ATTRIBUTE) or view["ec2InstanceId"],
        "status": view["status"],
        "connected": view["agentConnected"],
        "zone": next((attrs[a] for a in ZONE_ATTRIBUTES if attrs.get(a)), ""),
        "cpu": {"total": cpu, "free": cpu_free, "used": cpu - cpu_free},
        "memory": {"total": mem, "free": mem_free, "used": mem - mem_free},
        "running": view["runningTasksCount"],
        "pending": view["pendingTasksCount"],
        "attributes": attrs,
    }


def service_row(view: dict[str, Any]) -> dict[str, Any]:
    return {
        "arn": view["serviceArn"],
        "name": view["serviceName"],
        "status": view["status"],
        "desired": view["desiredCount"],
        "running": view["runningCount"],
        "pending": view["pendingCount"],
        "taskDefinition": view["taskDefinition"].rsplit("/", 1)[-1],
        "deployments": [
            {
                "id": d["id"],
                "status": d["status"],
                "taskDefinition": d["taskDefinition"].rsplit("/", 1)[-1],
                "desired": d["desiredCount"],
                "running": d["runningCount"],
                "pending": d["pendingCount"],
                "failed": d.get("failedTasks", 0),
                "rollout": d.get("rolloutState", ""),
                "rolloutReason": d.get("rolloutStateReason", ""),
            }
            for d in view.get("deployments", [])
        ],
        "events": [
            {"at": e["createdAt"], "message": e["message"]} for e in view.get("events", [])[:10]
        ],
    }


def _ports(task: dict[str, Any]) -> list[str]:
    out = []
    for c in task.get("containers", []):
        for b in c.get("networkBindings", []):
            if b.get("hostPort"):
                out.append(f"{b['hostPort']}->{b['containerPort']}/{b.get('protocol', 'tcp')}")
    return out


def task_row(view: dict[str, Any], hosts: dict[str, str]) -> dict[str, Any]:
    group = view.get("group", "")
    return {
        "arn": view["taskArn"],
        "id": view["taskArn"].rsplit("/", 1)[-1],
        "taskDefinition": view["taskDefinitionArn"].rsplit("/", 1)[-1],
        "service": group.removeprefix("service:") if group.startswith("service:") else "",
        "lastStatus": view["lastStatus"],
        "desiredStatus": view["desiredStatus"],
        "health": view.get("healthStatus", "UNKNOWN"),
        "host": hosts.get(view.get("containerInstanceArn", ""), ""),
        "ports": _ports(view),
        "containers": [c["name"] for c in view.get("containers", [])],
        "createdAt": view.get("createdAt"),
        "startedAt": view.get("startedAt"),
        "stoppedAt": view.get("stoppedAt"),
        "stopCode": view.get("stopCode", ""),
        "stoppedReason": view.get("stoppedReason", ""),
    }


async def cluster_names(call: Call) -> list[dict[str, Any]]:
    arns = await _list_all(call, "ListClusters", {}, "clusterArns")
    views = await _describe(call, "DescribeClusters", {}, "clusters", arns, 100)
    return [
        {
            "name": c["clusterName"],
            "status": c["status"],
            "instances": c["registeredContainerInstancesCount"],
            "running": c["runningTasksCount"],
            "pending": c["pendingTasksCount"],
            "services": c["activeServicesCount"],
        }
        for c in views
    ]


async def _tasks(
    call: Call, cluster: str, hosts: dict[str, str]
) -> tuple[list[dict[str, Any]], int]:
    """The newest live and stopped tasks, drawn; and how many live tasks there are."""
    scope = {"cluster": cluster}
    live = await _list_all(call, "ListTasks", {**scope, "desiredStatus": "RUNNING"}, "taskArns")
    stopped = await _list_all(call, "ListTasks", {**scope, "desiredStatus": "STOPPED"}, "taskArns")
    refs = live[-LIVE_SHOWN:] + stopped[-STOPPED_SHOWN:]  # ListTasks sorts by creation
    views = await _describe(call, "DescribeTasks", scope, "tasks", refs, 100)
    return [task_row(v, hosts) for v in views], len(live)


async def snapshot(call: Call, events: EventLog, cluster: str = "") -> dict[str, Any]:
    """The page's whole state for one cluster (the first one when `cluster` is empty)."""
    clusters = await cluster_names(call)
    names = [c["name"] for c in clusters]
    if cluster not in names:
        cluster = "default" if "default" in names else (names[0] if names else "")
    out: dict[str, Any] = {"clusters": clusters, "cluster": cluster, "events": []}
    out.update(instances=[], services=[], tasks=[], liveTasks=0)
    if not cluster:
        return out
    scope = {"cluster": cluster}
    inst_arns = await _list_all(call, "ListContainerInstances", scope, "containerInstanceArns")
    instances = await _describe(
        call, "DescribeContainerInstances", scope, "containerInstances", inst_arns, 100
    )
    out["instances"] = [instance_row(v) for v in instances]
    hosts = {i["arn"]: i["host"] for i in out["instances"]}
    svc_arns = await _list_all(call, "ListServices", scope, "serviceArns")
    services = await _describe(call, "DescribeServices", scope, "services", svc_arns, 10)
    out["services"] = [service_row(v) for v in services]
    out["tasks"], out["liveTasks"] = await _tasks(call, cluster, hosts)
    out["events"] = recent_events(events, cluster)
    return out


def recent_events(events: EventLog, cluster: str) -> list[dict[str, Any]]:
    """The cluster's last events, newest first (the event log's ring, no store read)."""
    rows = []
    for row in reversed(events.recent):
        if row.cluster == cluster:
            rows.append(event_row(row))
            if len(rows) == EVENTS_SHOWN:
                break
    return rows


def event_row(row: Any) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "at": row.at,
        "kind": row.kind,
        "subject": row.subject.rsplit("/", 1)[-1],
        "message": row.message,
    }
