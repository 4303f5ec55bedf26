"""Services and deployments in ECS's response shapes (botocore's Service and Deployment)."""

from __future__ import annotations

from typing import Any

from controller.model import Task
from controller.orchestrator.model import Deployment, Service

PENDING = ("PROVISIONING", "PENDING", "ACTIVATING")


def _counts(tasks: list[Task]) -> tuple[int, int]:
    """(running, pending) among tasks still wanted."""
    wanted = [t for t in tasks if t.desired_status == "RUNNING"]
    return (
        sum(t.last_status == "RUNNING" for t in wanted),
        sum(t.last_status in PENDING for t in wanted),
    )


def deployment_view(svc: Service, dep: Deployment, tasks: list[Task]) -> dict[str, Any]:
    mine = [t for t in tasks if t.started_by == dep.id]
    running, pending = _counts(mine)
    desired = (
        svc.desired_count
        if dep.status == "PRIMARY"
        else sum(t.desired_status == "RUNNING" for t in mine)
    )
    view: dict[str, Any] = {
        "id": dep.id,
        "status": dep.status,
        "taskDefinition": dep.task_definition_arn,
        "desiredCount": desired,
        "pendingCount": pending,
        "runningCount": running,
        "failedTasks": dep.failed_tasks,
        "createdAt": dep.created_at,
        "updatedAt": dep.updated_at,
        "launchType": "EC2",
        "rolloutState": dep.rollout_state,
    }
    if dep.rollout_reason:
        view["rolloutStateReason"] = dep.rollout_reason
    elif dep.rollout_state == "IN_PROGRESS":  # ECS says so while a rollout runs
        view["rolloutStateReason"] = f"ECS deployment {dep.id} in progress."
    return view


def service_view(
    svc: Service, cluster_arn: str, tasks: list[Task], with_tags: bool = False
) -> dict[str, Any]:
    """ECS's Service; `tasks` are the service's tasks not yet STOPPED (all it counts)."""
    running, pending = _counts(tasks)
    view: dict[str, Any] = {
        "serviceArn": svc.arn,
        "serviceName": svc.name,
        "clusterArn": cluster_arn,
        "loadBalancers": [],
        "serviceRegistries": svc.registries,
        "status": svc.status,
        "desiredCount": svc.desired_count,
        "runningCount": running,
        "pendingCount": pending,
        "launchType": "EC2",
        "taskDefinition": svc.task_definition_arn,
        "deploymentConfiguration": {
            "deploymentCircuitBreaker": {"enable": svc.breaker, "rollback": svc.rollback},
            "maximumPercent": svc.max_percent,
            "minimumHealthyPercent": svc.min_healthy,
        },
        "deployments": [deployment_view(svc, d, tasks) for d in svc.deployments],
        "events": [{"id": e.id, "createdAt": e.at, "message": e.message} for e in svc.events],
        "createdAt": svc.created_at,
        "placementConstraints": svc.constraints,
        "placementStrategy": svc.strategies,
        "schedulingStrategy": svc.scheduling,
        "deploymentController": {"type": "ECS"},
        "createdBy": "dockyard",
        "enableECSManagedTags": svc.managed_tags,
        "propagateTags": svc.propagate_tags,
        "enableExecuteCommand": svc.exec_enabled,
    }
    if svc.role_arn:
        view["roleArn"] = svc.role_arn
    if svc.capacity_strategy:  # ECS shows the strategy instead of a launch type
        view.pop("launchType")
        view["capacityProviderStrategy"] = svc.capacity_strategy
    if with_tags:
        view["tags"] = svc.tags
    return view
