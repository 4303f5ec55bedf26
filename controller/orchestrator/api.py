"""ECS's service operations: CreateService, UpdateService, DeleteService, DescribeServices,
ListServices. Requests are checked against botocore's model, then for meaning (with the
field named); writes run under the scheduler's lock for that service and wake it.

Dockyard extra: the tag `dockyard:disconnect-grace` (seconds) overrides the cluster's
disconnect grace for one service.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from controller import placement
from controller.discovery_ecs import check_registries
from controller.ecs_paging import paginate
from controller.model import Cluster, TaskDefinition, now
from controller.ops.discovery_state import Discovery
from controller.orchestrator.model import Service, grace_from_tags, new_deployment
from controller.orchestrator.scheduler import ServiceScheduler
from controller.orchestrator.views import service_view
from dockyard.arns import last_part
from dockyard.errors import ApiError, client_error, invalid, service_not_found

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_DESIRED = 5000  # ECS: tasks per service
NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9_-]{0,254}")
UNSUPPORTED = (
    "loadBalancers",
    "networkConfiguration",
    "serviceConnectConfiguration",
    "volumeConfigurations",
    "vpcLatticeConfigurations",
)


def _unsupported(body: dict[str, Any]) -> None:
    for field in UNSUPPORTED:
        if body.get(field):
            raise invalid(field, "is not supported by Dockyard (EC2 launch type, bridge/host)")
    if body.get("launchType", "EC2") != "EC2":
        raise invalid("launchType", "Dockyard runs the EC2 launch type only")
    ctl = (body.get("deploymentController") or {}).get("type", "ECS")
    if ctl != "ECS":
        raise invalid("deploymentController.type", "only the ECS (rolling) controller exists")


def _desired(body: dict[str, Any], scheduling: str, required: bool) -> int | None:
    count = body.get("desiredCount")
    if scheduling == "DAEMON":
        if count is not None:
            raise invalid("desiredCount", "DAEMON services run one task per instance: omit it")
        return None
    if count is None:
        if required:
            raise invalid("desiredCount", "is required for REPLICA services")
        return None
    if not 0 <= count <= MAX_DESIRED:
        raise invalid("desiredCount", f"must be from 0 to {MAX_DESIRED}")
    return int(count)


def _deployment_config(svc: Service, raw: dict[str, Any]) -> None:
    """Apply deploymentConfiguration onto svc (after checking it)."""
    lo = raw.get("minimumHealthyPercent", svc.min_healthy)
    hi = raw.get("maximumPercent", svc.max_percent)
    where = "deploymentConfiguration"
    if not 0 <= lo <= 100:
        raise invalid(f"{where}.minimumHealthyPercent", "must be from 0 to 100")
    if svc.scheduling == "DAEMON" and hi != 100:
        raise invalid(f"{where}.maximumPercent", "must be 100 for DAEMON services")
    if hi < 100:
        raise invalid(f"{where}.maximumPercent", "must be at least 100")
    if lo == 100 and hi == 100 and svc.scheduling == "REPLICA":
        raise invalid(
            f"{where}.maximumPercent",
            "with minimumHealthyPercent 100 it must be above 100, or no rollout can progress",
        )
    cb = raw.get("deploymentCircuitBreaker")
    if cb is not None:
        svc.breaker, svc.rollback = bool(cb["enable"]), bool(cb["rollback"])
    svc.min_healthy, svc.max_percent = int(lo), int(hi)


def _placement(svc: Service, body: dict[str, Any]) -> None:
    cons = body.get("placementConstraints")
    strat = body.get("placementStrategy")
    if strat and svc.scheduling == "DAEMON":
        raise invalid("placementStrategy", "DAEMON services take no placement strategy")
    cons = svc.constraints if cons is None else [dict(c) for c in cons]
    strat = svc.strategies if strat is None else [dict(s) for s in strat]
    placement.validate(
        [placement.Constraint(c.get("type", ""), c.get("expression", "")) for c in cons],
        [placement.Strategy(s.get("type", ""), s.get("field", "")) for s in strat],
    )
    svc.constraints, svc.strategies = cons, strat


class ServiceApi:
    def __init__(self, sched: ServiceScheduler) -> None:
        self.sched = sched
        self.cs = sched.cs

    def handlers(self) -> dict[str, Handler]:
        return {
            "CreateService": self.create,
            "UpdateService": self.update,
            "DeleteService": self.delete,
            "DescribeServices": self.describe,
            "ListServices": self.list,
            "ListServicesByNamespace": self.list_by_namespace,
        }

    def view(self, svc: Service, with_tags: bool | None = None) -> dict[str, Any]:
        """ECS's Service; tags when asked for (None: when it has any, as writes answer)."""
        if with_tags is None:
            with_tags = bool(svc.tags)
        arn = self.cs.arns.cluster(svc.cluster)
        tasks = self.cs.state.service_tasks(svc.cluster, svc.name)  # all it counts: not STOPPED
        return service_view(svc, arn, tasks, with_tags)

    def lookup(self, cluster: Cluster, ref: Any, active: bool = True) -> Service:
        if not isinstance(ref, str) or not ref:
            raise invalid("service", "is required: a service name or ARN")
        svc = self.sched.find(cluster.name, last_part(ref))
        if svc is None:
            raise service_not_found()
        if active and svc.status != "ACTIVE":
            raise ApiError("ServiceNotActiveException", f"Service {svc.name} is {svc.status}")
        return svc

    def _role_arn(self, role: str) -> str:
        """ECS's roleArn as ECS shows it: a bare role name becomes the role's full ARN."""
        if not role or role.startswith("arn:"):
            return role
        return f"arn:aws:iam::{self.cs.arns.account}:role/{role.lstrip('/')}"

    def _taskdef(self, ref: Any) -> TaskDefinition:
        td = self.cs.taskdef(ref)
        if td.status != "ACTIVE":
            raise client_error(f"TaskDefinition {td.key} is inactive")  # ECS: ClientException
        return td

    def _capacity(self, svc: Service, body: dict[str, Any]) -> None:
        """capacityProviderStrategy (else the cluster's default, when no launchType): which
        providers' instances the service's tasks go to, by base and weight (issue 22)."""
        raw = body.get("capacityProviderStrategy")
        if svc.scheduling == "DAEMON":  # as ECS: a daemon runs on every instance it fits
            if raw:
                raise invalid("capacityProviderStrategy", "DAEMON services take no strategy")
            return
        if raw and "launchType" in body:
            raise invalid("capacityProviderStrategy", "give either it or launchType, not both")
        if "launchType" in body and not raw:
            svc.capacity_strategy = []
            return
        items = self.cs.capacity.strategy_for(svc.cluster, raw)
        svc.capacity_strategy = [
            {"capacityProvider": it.provider, "base": it.base, "weight": it.weight} for it in items
        ]

    async def _save(self, svc: Service, what: str) -> None:
        await self.sched.save(svc, self.cs.event(svc.cluster, "service", svc.arn, what))
        self.sched.wake()

    # ------------------------------------------------------------------ writes

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        _unsupported(body)
        cluster = self.cs.cluster(body.get("cluster") or None)
        name = body["serviceName"]
        if not NAME.fullmatch(name):
            raise invalid("serviceName", "1-255 letters, digits, hyphens and underscores")
        svc = self._new(cluster, name, body)
        async with self.sched.lock_for(svc.arn):
            old = self.sched.find(cluster.name, name)
            if old is not None and old.status != "INACTIVE":
                if svc.client_token and old.client_token == svc.client_token:
                    return {"service": self.view(old)}
                raise ApiError(
                    "InvalidParameterException", "Creation of service was not idempotent."
                )
            self.sched.services[svc.arn] = svc
            await self._save(svc, "service created")
        return {"service": self.view(svc)}

    def _new(self, cluster: Cluster, name: str, body: dict[str, Any]) -> Service:
        scheduling = body.get("schedulingStrategy", "REPLICA")
        if scheduling not in ("REPLICA", "DAEMON"):
            raise invalid("schedulingStrategy", "must be REPLICA or DAEMON")
        td = self._taskdef(body.get("taskDefinition"))
        at = now()
        svc = Service(
            name=name,
            arn=self.cs.arns.service(cluster.name, name),
            cluster=cluster.name,
            task_definition=td.key,
            task_definition_arn=td.arn,
            desired_count=_desired(body, scheduling, required=True) or 0,
            scheduling=scheduling,
            min_healthy=0 if scheduling == "DAEMON" else 100,
            max_percent=100 if scheduling == "DAEMON" else 200,
            tags=[dict(t) for t in body.get("tags") or []],
            propagate_tags=body.get("propagateTags", "NONE"),
            managed_tags=bool(body.get("enableECSManagedTags", False)),
            exec_enabled=bool(body.get("enableExecuteCommand", False)),
            role_arn=self._role_arn(body.get("role", "")),
            client_token=body.get("clientToken", ""),
            grace=grace_from_tags(body.get("tags") or []),
            created_at=at,
        )
        _deployment_config(svc, body.get("deploymentConfiguration") or {})
        _placement(svc, body)
        svc.registries = check_registries(body.get("serviceRegistries") or [], td, self._sd())
        self._capacity(svc, body)
        new_deployment(svc, td.key, td.arn, at)
        return svc

    def _sd(self) -> Discovery | None:
        """The Cloud Map objects (issue 21), when the controller has them."""
        return self.sched.discovery

    async def update(self, body: dict[str, Any]) -> dict[str, Any]:
        _unsupported(body)
        cluster = self.cs.cluster(body.get("cluster") or None)
        async with self.sched.lock_for(self.lookup(cluster, body.get("service")).arn):
            svc = self.lookup(cluster, body.get("service"))
            count = _desired(body, svc.scheduling, required=False)
            td = self._taskdef(body["taskDefinition"]) if "taskDefinition" in body else None
            _deployment_config(svc, body.get("deploymentConfiguration") or {})
            _placement(svc, body)
            if "serviceRegistries" in body:  # its tasks re-register (controller/discovery_ecs.py)
                regs = body["serviceRegistries"] or []
                svc.registries = check_registries(
                    regs, td or self._taskdef(svc.task_definition_arn), self._sd()
                )
            if "capacityProviderStrategy" in body:
                self._capacity(svc, body)
            if count is not None:
                svc.desired_count = count
            svc.propagate_tags = body.get("propagateTags", svc.propagate_tags)
            svc.managed_tags = bool(body.get("enableECSManagedTags", svc.managed_tags))
            # as ECS: tasks started from now on get it (forceNewDeployment replaces the others)
            svc.exec_enabled = bool(body.get("enableExecuteCommand", svc.exec_enabled))
            fresh = td is not None and td.key != svc.task_definition
            if fresh or body.get("forceNewDeployment"):
                target = td or self._taskdef(svc.task_definition_arn)
                new_deployment(svc, target.key, target.arn, now())
            svc.steady = False
            await self._save(svc, "service updated")
            return {"service": self.view(svc)}

    async def delete(self, body: dict[str, Any]) -> dict[str, Any]:
        cluster = self.cs.cluster(body.get("cluster") or None)
        async with self.sched.lock_for(self.lookup(cluster, body.get("service")).arn):
            svc = self.lookup(cluster, body.get("service"))
            if svc.scheduling == "REPLICA" and svc.desired_count > 0 and not body.get("force"):
                raise ApiError(  # ECS's words (scale it to 0 first, or pass force)
                    "InvalidParameterException",
                    "The service cannot be stopped while it is scaled above 0.",
                )
            svc.status, svc.desired_count, svc.steady = "DRAINING", 0, False
            await self._save(svc, "service deleted")
            return {"service": self.view(svc)}

    # ------------------------------------------------------------------ reads

    async def describe(self, body: dict[str, Any]) -> dict[str, Any]:
        cluster = self.cs.cluster(body.get("cluster") or None)
        refs = body["services"]
        if not 1 <= len(refs) <= 10:
            raise invalid("services", "1 to 10 service names or ARNs")
        tags = "TAGS" in (body.get("include") or [])
        found, failures = [], []
        for ref in refs:
            svc = self.sched.find(cluster.name, last_part(ref))
            if svc is None:  # ECS names a missing service by the short ARN (no cluster)
                arn = ref if ref.startswith("arn:") else self.cs.arns.short_service(ref)
                failures.append({"arn": arn, "reason": "MISSING"})
            else:
                found.append(self.view(svc, tags))
        return {"services": found, "failures": failures}

    async def list(self, body: dict[str, Any]) -> dict[str, Any]:
        cluster = self.cs.cluster(body.get("cluster") or None)
        launch = body.get("launchType")
        if launch is not None and launch not in ("EC2", "FARGATE", "EXTERNAL", "MANAGED_INSTANCES"):
            raise invalid("launchType", "must be EC2, FARGATE, EXTERNAL or MANAGED_INSTANCES")
        scheduling = body.get("schedulingStrategy")
        if scheduling is not None and scheduling not in ("REPLICA", "DAEMON"):
            raise invalid("schedulingStrategy", "must be REPLICA or DAEMON")
        arns = sorted(
            s.arn
            for s in self.sched.services.values()
            if s.cluster == cluster.name
            and s.status != "INACTIVE"
            and launch in (None, "EC2")
            and scheduling in (None, s.scheduling)
        )
        page, token = paginate(arns, body.get("nextToken"), body.get("maxResults"), default=10)
        return {"serviceArns": page, **({"nextToken": token} if token else {})}

    async def list_by_namespace(self, body: dict[str, Any]) -> dict[str, Any]:
        """The services (of every cluster) whose serviceRegistries are in the Cloud Map
        namespace `namespace` (its name, id or ARN)."""
        ref = body["namespace"]
        sd = self._sd()
        found = [
            n
            for n in (sd.namespaces.values() if sd else [])
            if ref in (n["Name"], n["Id"], n["Arn"])
        ]
        if not found:
            raise ApiError("NamespaceNotFoundException", f"namespace {ref[:200]} not found")
        assert sd is not None
        ids = {s["Id"] for s in sd.namespace_services(found[0]["Id"])}
        arns = sorted(
            s.arn
            for s in self.sched.services.values()
            if s.status != "INACTIVE"
            and any(r["registryArn"].rsplit("/", 1)[-1] in ids for r in s.registries)
        )
        page, token = paginate(arns, body.get("nextToken"), body.get("maxResults"), default=10)
        return {"serviceArns": page, **({"nextToken": token} if token else {})}
