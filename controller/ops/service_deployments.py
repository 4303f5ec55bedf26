"""ECS's service deployments and revisions over Dockyard's deployments:
ListServiceDeployments, DescribeServiceDeployments, DescribeServiceRevisions.

Each Dockyard deployment (`ecs-svc/<19 digits>`, a service moving to one task definition)
is one ECS service revision (what runs: the task definition and its images) and one
service deployment (the move to it), both named by the deployment's digits:
`service-revision/<cluster>/<service>/<digits>`, `service-deployment/<cluster>/<service>/
<digits>`. A rollback the circuit breaker starts is, as in ECS, part of the deployment that
failed (its `rollback` member and ROLLBACK_* status), not a deployment of its own.
Finished deployments are kept per service (controller.orchestrator.model.retire).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from controller.ecs_paging import paginate
from controller.model import Task
from controller.orchestrator.model import Deployment, Service
from controller.orchestrator.planner import breaker_threshold
from dockyard.arns import last_part
from dockyard.errors import ApiError, invalid

if TYPE_CHECKING:
    from controller.ops.context import OpContext

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_DESCRIBE = 20  # ECS: up to 20 ARNs per Describe call
STATUSES = (
    "PENDING",
    "SUCCESSFUL",
    "STOPPED",
    "STOP_REQUESTED",
    "IN_PROGRESS",
    "ROLLBACK_REQUESTED",
    "ROLLBACK_IN_PROGRESS",
    "ROLLBACK_SUCCESSFUL",
    "ROLLBACK_FAILED",
)
_ROLLBACK_STATUS = {
    "IN_PROGRESS": "ROLLBACK_IN_PROGRESS",
    "COMPLETED": "ROLLBACK_SUCCESSFUL",
    "FAILED": "ROLLBACK_FAILED",
}
_DESCRIBE = {  # kind -> (operation, request field, response field)
    "deployment": ("DescribeServiceDeployments", "serviceDeploymentArns", "serviceDeployments"),
    "revision": ("DescribeServiceRevisions", "serviceRevisionArns", "serviceRevisions"),
}
_ARN = re.compile(r"arn:aws:ecs:([^:]+):(\d+):service-(deployment|revision)/([^/]+)/([^/]+)/(\d+)")


def digits(dep: Deployment) -> str:
    """The deployment's number: `ecs-svc/0123...` -> `0123...` (its ARNs' last part)."""
    return dep.id.rsplit("/", 1)[-1]


def history(svc: Service) -> list[Deployment]:
    """Every deployment Dockyard still knows of for the service, newest first."""
    return sorted(svc.deployments + svc.past, key=lambda d: d.id, reverse=True)


def rollback_for(svc: Service, dep: Deployment) -> Deployment | None:
    return next((d for d in history(svc) if d.rollback_of == dep.id), None)


def status(svc: Service, dep: Deployment) -> tuple[str, str]:
    """ECS's ServiceDeployment status and reason for a Dockyard deployment."""
    if dep.rollout_state == "COMPLETED":
        return "SUCCESSFUL", dep.rollout_reason
    if dep.rollout_state == "FAILED":
        back = rollback_for(svc, dep)
        if back is None or (back.superseded_at and back.rollout_state == "IN_PROGRESS"):
            return "STOPPED", dep.rollout_reason
        return _ROLLBACK_STATUS[back.rollout_state], dep.rollout_reason
    if dep.superseded_at:
        newer = next((d.id for d in history(svc) if dep.id in d.sources), "a newer one")
        return "STOPPED", f"ECS deployment stopped: superseded by deployment {newer}."
    return "IN_PROGRESS", ""


def _brief_times(times: dict[str, float]) -> dict[str, float]:
    """ServiceDeploymentBrief has no updatedAt or stoppedAt: a stop is when it finished."""
    brief = {k: v for k, v in times.items() if k not in ("updatedAt", "stoppedAt")}
    if "stoppedAt" in times:
        brief["finishedAt"] = times["stoppedAt"]
    return brief


class ServiceDeployments:
    """The three read operations; the services' scheduler holds the services."""

    def __init__(self, cs: OpContext) -> None:
        self.cs = cs

    def handlers(self) -> dict[str, Handler]:
        return {
            "ListServiceDeployments": self.list_deployments,
            "DescribeServiceDeployments": self.describe_deployments,
            "DescribeServiceRevisions": self.describe_revisions,
        }

    # ------------------------------------------------------------------ lookups

    def _service(self, cluster: str, name: str) -> Service | None:
        found: Service | None = self.cs.services.find(cluster, name)
        return found

    def _tasks(self, svc: Service) -> list[Task]:
        return self.cs.state.service_tasks(svc.cluster, svc.name)

    def _find(self, arn: str, kind: str) -> tuple[Service, Deployment] | None:
        """The (service, deployment) an ARN of `kind` (deployment|revision) names."""
        m = _ARN.fullmatch(arn)
        if m is None or m.group(3) != kind:
            return None
        region, account, _, cluster, name, number = m.groups()
        if (region, account) != (self.cs.arns.region, self.cs.arns.account):
            return None
        svc = self._service(cluster, name)
        if svc is None:
            return None
        dep = next((d for d in history(svc) if digits(d) == number), None)
        if dep is None or (kind == "deployment" and dep.rollback_of):
            return None
        return svc, dep

    # ------------------------------------------------------------------ views

    def revision_arn(self, svc: Service, dep: Deployment) -> str:
        return self.cs.arns.service_revision(svc.cluster, svc.name, digits(dep))

    def deployment_arn(self, svc: Service, dep: Deployment) -> str:
        return self.cs.arns.service_deployment(svc.cluster, svc.name, digits(dep))

    def _summary(self, svc: Service, dep: Deployment, tasks: list[Task]) -> dict[str, Any]:
        """ServiceRevisionSummary: the revision's tasks now."""
        mine = [t for t in tasks if t.started_by == dep.id and t.desired_status == "RUNNING"]
        primary = svc.deployments and svc.primary is dep and svc.status == "ACTIVE"
        return {
            "arn": self.revision_arn(svc, dep),
            "requestedTaskCount": svc.desired_count if primary else len(mine),
            "runningTaskCount": sum(t.last_status == "RUNNING" for t in mine),
            "pendingTaskCount": sum(
                t.last_status in ("PROVISIONING", "PENDING", "ACTIVATING") for t in mine
            ),
        }

    def _times(self, svc: Service, dep: Deployment, state: str) -> dict[str, float]:
        back = rollback_for(svc, dep)
        times = {"createdAt": dep.created_at, "startedAt": dep.created_at}
        last = max(dep.updated_at, dep.superseded_at, back.updated_at if back else 0.0)
        times["updatedAt"] = last
        if state in ("SUCCESSFUL", "ROLLBACK_SUCCESSFUL", "ROLLBACK_FAILED"):
            times["finishedAt"] = last
        elif state == "STOPPED":
            times["stoppedAt"] = dep.superseded_at or dep.updated_at
        return times

    def brief(self, svc: Service, dep: Deployment) -> dict[str, Any]:
        state, reason = status(svc, dep)
        view: dict[str, Any] = {
            "serviceDeploymentArn": self.deployment_arn(svc, dep),
            "serviceArn": svc.arn,
            "clusterArn": self.cs.arns.cluster(svc.cluster),
            "targetServiceRevisionArn": self.revision_arn(svc, dep),
            "status": state,
            **_brief_times(self._times(svc, dep, state)),
        }
        if reason:
            view["statusReason"] = reason
        return view

    def deployment_view(self, svc: Service, dep: Deployment) -> dict[str, Any]:
        state, reason = status(svc, dep)
        tasks = self._tasks(svc)
        by_id = {d.id: d for d in history(svc)}
        view: dict[str, Any] = {
            "serviceDeploymentArn": self.deployment_arn(svc, dep),
            "serviceArn": svc.arn,
            "clusterArn": self.cs.arns.cluster(svc.cluster),
            **self._times(svc, dep, state),
            "sourceServiceRevisions": [
                self._summary(svc, by_id[s], tasks) for s in dep.sources if s in by_id
            ],
            "targetServiceRevision": self._summary(svc, dep, tasks),
            "status": state,
            "deploymentConfiguration": {
                "deploymentCircuitBreaker": {"enable": svc.breaker, "rollback": svc.rollback},
                "maximumPercent": svc.max_percent,
                "minimumHealthyPercent": svc.min_healthy,
            },
            "deploymentCircuitBreaker": self._breaker(svc, dep, state),
            "alarms": {"status": "DISABLED"},
        }
        if reason:
            view["statusReason"] = reason
        back = rollback_for(svc, dep)
        if back is not None:
            view["rollback"] = {
                "reason": dep.rollout_reason,
                "startedAt": back.created_at,
                "serviceRevisionArn": self.revision_arn(svc, back),
            }
        return view

    def _breaker(self, svc: Service, dep: Deployment, state: str) -> dict[str, Any]:
        if not svc.breaker:
            watch = "DISABLED"
        elif dep.rollout_state == "FAILED":
            watch = "TRIGGERED"
        elif state == "IN_PROGRESS":
            watch = "MONITORING"
        else:
            watch = "MONITORING_COMPLETE"
        return {
            "status": watch,
            "failureCount": dep.failed_tasks,
            "threshold": breaker_threshold(svc.desired_count),
        }

    def revision_view(self, svc: Service, dep: Deployment) -> dict[str, Any]:
        family, _, rev = dep.task_definition.partition(":")
        td = self.cs.state.taskdefs.get(family, {}).get(int(rev)) if rev.isdigit() else None
        images = [
            {"containerName": c["name"], "image": c["image"]}
            for c in (td.doc.get("containerDefinitions", []) if td else [])
        ]
        return {
            "serviceRevisionArn": self.revision_arn(svc, dep),
            "serviceArn": svc.arn,
            "clusterArn": self.cs.arns.cluster(svc.cluster),
            "taskDefinition": dep.task_definition_arn,
            "launchType": "EC2",
            "loadBalancers": [],
            "serviceRegistries": svc.registries,
            "containerImages": images,
            "guardDutyEnabled": False,
            "createdAt": dep.created_at,
        }

    # ------------------------------------------------------------------ operations

    async def list_deployments(self, body: dict[str, Any]) -> dict[str, Any]:
        cluster = self.cs.cluster(body.get("cluster") or None)
        svc = self._service(cluster.name, last_part(body["service"]))
        if svc is None:
            raise ApiError("ServiceNotFoundException", f"Service not found: {body['service']}")
        wanted = body.get("status") or []
        for i, s in enumerate(wanted):
            if s not in STATUSES:
                raise invalid(f"status[{i}]", f"must be one of {', '.join(STATUSES)}")
        window = body.get("createdAt") or {}
        after, before = window.get("after"), window.get("before")
        deps = [
            d
            for d in history(svc)
            if not d.rollback_of
            and (not wanted or status(svc, d)[0] in wanted)
            and (after is None or d.created_at >= float(after))
            and (before is None or d.created_at <= float(before))
        ]
        page, token = paginate(
            deps,
            body.get("nextToken"),
            body.get("maxResults"),
            key=lambda d: d.id,
            default=20,
            limit=100,
            descending=True,
        )
        briefs = [self.brief(svc, d) for d in page]
        return {"serviceDeployments": briefs, **({"nextToken": token} if token else {})}

    async def describe_deployments(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._describe(body, "deployment", self.deployment_view)

    async def describe_revisions(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._describe(body, "revision", self.revision_view)

    def _describe(
        self,
        body: dict[str, Any],
        kind: str,
        render: Callable[[Service, Deployment], dict[str, Any]],
    ) -> dict[str, Any]:
        """DescribeService{Deployments,Revisions}: ECS's found + MISSING failures shape."""
        _, field, out = _DESCRIBE[kind]
        arns = body[field]
        if not 1 <= len(arns) <= MAX_DESCRIBE:
            raise invalid(field, f"1 to {MAX_DESCRIBE} ARNs")
        found, failures = [], []
        for i, arn in enumerate(arns):
            if not arn.startswith("arn:aws:ecs:") or f":service-{kind}/" not in arn:
                raise invalid(
                    f"{field}[{i}]",
                    f"is not a service {kind} ARN "
                    f"(arn:aws:ecs:<region>:<account>:service-{kind}/<cluster>/<service>/<id>)",
                )
            hit = self._find(arn, kind)
            if hit is None:
                failures.append({"arn": arn, "reason": "MISSING"})
            else:
                found.append(render(*hit))
        return {out: found, "failures": failures}
