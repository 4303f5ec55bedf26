"""Render state objects in ECS's response shapes (botocore's model, API 2014-11-13).

The native API, the CLI's `--output json` and the ECS-compatible endpoint all show these.
Timestamps are epoch seconds; absent optional members are left out, as ECS does.
"""

from __future__ import annotations

from typing import Any

from controller.model import Cluster, Instance, Task, TaskDefinition
from controller.state import ClusterState
from dockyard.arns import ArnFactory


def _restarts(count: int) -> str | None:
    """ECS's Container has no restart count (its metadata endpoint's RestartCount does):
    a container restarted by its restartPolicy says so in its reason (issue 18)."""
    if not count:
        return None
    return f"Restarted {count} time{'s' if count > 1 else ''} by its restartPolicy"


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def cluster_view(
    c: Cluster, state: ClusterState, arns: ArnFactory, services: int = 0, tags: bool = False
) -> dict[str, Any]:
    """ECS's Cluster; `tags`: show its tags (ECS: only when asked, and only if it has any)."""
    tasks = state.cluster_tasks(c.name)
    instances = [i for i in state.cluster_instances(c.name) if i.status != "INACTIVE"]
    view: dict[str, Any] = {
        "clusterArn": c.arn,
        "clusterName": c.name,
        "status": c.status,
        "registeredContainerInstancesCount": len(instances),
        "runningTasksCount": sum(t.last_status == "RUNNING" for t in tasks),
        "pendingTasksCount": sum(
            t.last_status in ("PROVISIONING", "PENDING", "ACTIVATING") for t in tasks
        ),
        "activeServicesCount": services,
        "statistics": [],
        "settings": c.settings or [{"name": "containerInsights", "value": "disabled"}],
        "capacityProviders": [],
        "defaultCapacityProviderStrategy": [],
    }
    if tags and c.tags:
        view["tags"] = c.tags
    if c.configuration:
        view["configuration"] = c.configuration
    if c.service_connect_namespace:
        view["serviceConnectDefaults"] = {"namespace": c.service_connect_namespace}
    return view


def taskdef_view(td: TaskDefinition) -> dict[str, Any]:
    return dict(td.doc)


def task_view(t: Task, arns: ArnFactory, tags: bool = False) -> dict[str, Any]:
    """ECS's Task; `tags`: show its tags (ECS: DescribeTasks only with include TAGS)."""
    cluster_arn = arns.cluster(t.cluster)
    containers = []
    for i, c in enumerate(t.containers):
        containers.append(
            _drop_none(
                {
                    "containerArn": arns.container(t.cluster, t.id, f"{i}-{c.name}"),
                    "taskArn": t.arn,
                    "name": c.name,
                    "image": c.image,
                    "runtimeId": c.runtime_id or None,
                    "lastStatus": c.last_status,
                    "exitCode": c.exit_code,
                    "reason": c.reason or _restarts(c.restart_count),
                    "networkBindings": c.bindings
                    or [
                        {
                            "bindIP": "0.0.0.0",
                            "containerPort": p.container_port,
                            "hostPort": p.host_port,
                            "protocol": p.protocol,
                        }
                        for p in c.ports
                    ],
                    "networkInterfaces": [],
                    "gpuIds": c.gpu_ids or None,  # issue 18
                    "healthStatus": c.health,
                    "imageDigest": c.image_digest or None,
                    "cpu": str(c.cpu),
                    "memory": str(c.memory) if c.memory else None,
                    "memoryReservation": str(c.memory_reservation)
                    if c.memory_reservation
                    else None,
                }
            )
        )
    return _drop_none(
        {
            "taskArn": t.arn,
            "clusterArn": cluster_arn,
            "taskDefinitionArn": t.task_definition_arn,
            "containerInstanceArn": t.instance_arn or None,
            "capacityProviderName": t.capacity_provider or None,
            "overrides": {
                "containerOverrides": [],
                "inferenceAcceleratorOverrides": [],
                **t.overrides,
            },
            "lastStatus": t.last_status,
            "desiredStatus": t.desired_status,
            "cpu": str(t.cpu),
            "memory": str(t.memory),
            "containers": containers,
            "startedBy": t.started_by or None,
            "version": t.version,
            "stopCode": t.stop_code or None,
            "stoppedReason": t.stopped_reason or None,
            "connectivity": t.connectivity,
            "connectivityAt": t.connectivity_at,
            "pullStartedAt": t.pull_started_at,
            "pullStoppedAt": t.pull_stopped_at,
            "createdAt": t.created_at,
            "startedAt": t.started_at,
            "stoppingAt": t.stopping_at,
            "stoppedAt": t.stopped_at,
            "group": t.group,
            "launchType": "EC2",
            "healthStatus": t.health,
            "tags": t.tags if tags else None,
            "attachments": [],
            "attributes": [],
            "enableExecuteCommand": t.exec_enabled,
            "availabilityZone": None,
        }
    )


def _resources(
    cpu: int, memory: int, tcp: set[int] | list[int], udp: set[int] | list[int]
) -> list[dict[str, Any]]:
    return [
        {"name": "CPU", "type": "INTEGER", "integerValue": cpu, "doubleValue": 0.0, "longValue": 0},
        {
            "name": "MEMORY",
            "type": "INTEGER",
            "integerValue": memory,
            "doubleValue": 0.0,
            "longValue": 0,
        },
        {
            "name": "PORTS",
            "type": "STRINGSET",
            "stringSetValue": sorted(str(p) for p in tcp),
            "integerValue": 0,
            "doubleValue": 0.0,
            "longValue": 0,
        },
        {
            "name": "PORTS_UDP",
            "type": "STRINGSET",
            "stringSetValue": sorted(str(p) for p in udp),
            "integerValue": 0,
            "doubleValue": 0.0,
            "longValue": 0,
        },
    ]


def _gpus(ids: list[str]) -> list[dict[str, Any]]:
    """ECS's GPU resource: the host's GPU ids (issue 18)."""
    if not ids:
        return []
    return [
        {
            "name": "GPU",
            "type": "STRINGSET",
            "stringSetValue": list(ids),
            "integerValue": 0,
            "doubleValue": 0.0,
            "longValue": 0,
        }
    ]


def instance_view(inst: Instance, state: ClusterState, tags: bool = False) -> dict[str, Any]:
    """ECS's ContainerInstance; `tags`: show its tags (ECS: only with include TAGS)."""
    view = state.views.get(inst.arn)
    tasks = [t for t in state.instance_tasks(inst.arn) if t.active]
    remaining = (
        _resources(view.cpu_free, view.memory_free, view.tcp_ports_used, view.udp_ports_used)
        if view
        else []
    )
    attrs = [{"name": k, "value": v} for k, v in sorted(inst.all_attributes.items())]
    out: dict[str, Any] = {
        "containerInstanceArn": inst.arn,
        "ec2InstanceId": inst.id,
        "version": inst.version,
        "versionInfo": {
            "agentVersion": inst.agent_version,
            "agentHash": "",
            "dockerVersion": f"DockerVersion: {inst.docker_version}",
        },
        "remainingResources": remaining,
        "registeredResources": _resources(
            inst.cpu_total, inst.memory_total, inst.reserved_tcp, inst.reserved_udp
        )
        + _gpus(inst.gpu_ids),
        "status": inst.status,
        "agentConnected": inst.connected,
        "runningTasksCount": sum(t.last_status == "RUNNING" for t in tasks),
        "pendingTasksCount": sum(t.last_status != "RUNNING" for t in tasks),
        "attributes": attrs,
        "registeredAt": inst.registered_at,
        "attachments": [],
    }
    if tags:
        out["tags"] = inst.tags
    return out
