"""Application Auto Scaling for ECS services (issue 22): the API and the loop that scales.

boto3's `application-autoscaling` client and `aws application-autoscaling` talk to the
controller's HTTP endpoint (`X-Amz-Target: AnyScaleFrontendService.<Op>`, controller/ecs_http.py);
the chain checks every body against botocore's model first. Only `ecs:service:DesiredCount`
of namespace `ecs` is served; anything else is refused, naming the field.

Stored (controller/state_of_record.py KINDS): scalable targets, scaling policies, scheduled
actions and scaling activities (the newest MAX_ACTIVITIES per target), each under its
resource id, so they survive a restart.

The loop (`run`): every `period` seconds (CloudWatch's one-minute period by default; the
controller's --autoscaling-period) it fires the scheduled actions that fell due, reads each
target's service utilisation (controller/usage.py), asks the pure policy
(controller/autoscaling/target_tracking.py) and applies its answer through the operation
chain's UpdateService (validated and audited as an API call), recording a scaling activity
and a service event.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from controller.autoscaling import schedule as sched
from controller.autoscaling import target_tracking as tt
from controller.ecs_paging import paginate
from controller.orchestrator.model import add_event
from controller.store_api import Delete, Put
from dockyard.errors import ApiError

if TYPE_CHECKING:
    from controller.orchestrator.model import Service
    from controller.orchestrator.scheduler import ServiceScheduler
    from controller.state_of_record import StateOfRecord
    from controller.usage import UsageHistory
    from dockyard.arns import ArnFactory

log = logging.getLogger(__name__)

TARGET, POLICY, ACTION, ACTIVITY = (
    "scalable_target",
    "scaling_policy",
    "scheduled_action",
    "scaling_activity",
)
NAMESPACE, DIMENSION = "ecs", "ecs:service:DesiredCount"
METRICS = {"ECSServiceAverageCPUUtilization": "cpu", "ECSServiceAverageMemoryUtilization": "memory"}
MAX_ACTIVITIES = 100  # kept per scalable target, newest first
DEFAULT_COOLDOWN = 300
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
Call = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


def validation(message: str) -> ApiError:
    return ApiError("ValidationException", message)


def not_found(message: str) -> ApiError:
    return ApiError("ObjectNotFoundException", message)


def _check_dimension(body: dict[str, Any], required: bool = True) -> None:
    ns = body.get("ServiceNamespace")
    if ns != NAMESPACE:
        raise validation(f"ServiceNamespace: Dockyard scales ECS services only (ecs), not {ns!r}")
    dim = body.get("ScalableDimension")
    if (required or dim is not None) and dim != DIMENSION:
        raise validation(f"ScalableDimension: Dockyard scales {DIMENSION} only, not {dim!r}")


def parse_resource(resource_id: str) -> tuple[str, str]:
    """(cluster, service) of `service/<cluster>/<service>`."""
    parts = resource_id.split("/")
    if len(parts) != 3 or parts[0] != "service" or not parts[1] or not parts[2]:
        raise validation(
            f"ResourceId {resource_id[:200]!r} must be service/<cluster-name>/<service-name>"
        )
    return parts[1], parts[2]


class AutoScaling:
    """Scalable targets, policies, scheduled actions and activities: in memory, stored."""

    def __init__(
        self,
        record: StateOfRecord,
        arns: ArnFactory,
        services: ServiceScheduler,
        usage: UsageHistory,
        period: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.record = record
        self.arns = arns
        self.services = services
        self.usage = usage
        self.period = period
        self.clock = clock
        self.targets: dict[str, dict[str, Any]] = {}  # resource id -> ScalableTarget
        self.policies: dict[str, dict[str, Any]] = {}  # "resource|name" -> ScalingPolicy
        self.actions: dict[str, dict[str, Any]] = {}  # "resource|name" -> ScheduledAction
        self.activities: dict[str, list[dict[str, Any]]] = {}  # resource id -> newest first
        self.readings: dict[tuple[str, str], deque[float | None]] = {}
        self.last_out: dict[str, float] = {}
        self.last_in: dict[str, float] = {}
        self._call: Call | None = None  # the chain's call, bound once it exists
        self._checked = clock()  # scheduled actions are due from here on
        self._lock = asyncio.Lock()

    def handlers(self) -> dict[str, Handler]:
        return {
            "RegisterScalableTarget": self.register,
            "DescribeScalableTargets": self.describe_targets,
            "DeregisterScalableTarget": self.deregister,
            "PutScalingPolicy": self.put_policy,
            "DescribeScalingPolicies": self.describe_policies,
            "DeleteScalingPolicy": self.delete_policy,
            "PutScheduledAction": self.put_action,
            "DescribeScheduledActions": self.describe_actions,
            "DeleteScheduledAction": self.delete_action,
            "DescribeScalingActivities": self.describe_activities,
        }

    def bind(self, call: Call) -> None:
        """The operation chain's call (UpdateService goes through it, validated, audited)."""
        self._call = call

    def load(self) -> None:
        """Take the stored kinds from the state of record's loader (startup)."""
        for doc in self.record.docs(TARGET):
            self.targets[doc["ResourceId"]] = doc
        for doc in self.record.docs(POLICY):
            self.policies[f"{doc['ResourceId']}|{doc['PolicyName']}"] = doc
        for doc in self.record.docs(ACTION):
            self.actions[f"{doc['ResourceId']}|{doc['ScheduledActionName']}"] = doc
        for doc in self.record.docs(ACTIVITY):
            self.activities.setdefault(doc["ResourceId"], []).append(doc)
        for acts in self.activities.values():
            acts.sort(key=lambda a: a["StartTime"], reverse=True)

    # ------------------------------------------------------------ scalable targets

    def _target(self, body: dict[str, Any]) -> dict[str, Any]:
        _check_dimension(body)
        rid = str(body["ResourceId"])
        target = self.targets.get(rid)
        if target is None:
            raise not_found(
                f"No scalable target registered for service namespace: {NAMESPACE}, "
                f"resource ID: {rid}, scalable dimension: {DIMENSION}"
            )
        return target

    async def register(self, body: dict[str, Any]) -> dict[str, Any]:
        _check_dimension(body)
        rid = str(body["ResourceId"])
        cluster, name = parse_resource(rid)
        svc = self.services.find(cluster, name)
        if svc is None or svc.status != "ACTIVE":
            raise validation(f"ECS service doesn't exist: {rid}")
        if svc.scheduling != "REPLICA":
            raise validation(f"ResourceId {rid}: only REPLICA services have a desired count")
        async with self._lock:
            old = self.targets.get(rid)
            doc = self._target_doc(body, old)
            await self.record.commit([Put(TARGET, rid, cluster, doc)])
            self.targets[rid] = doc
        await self._fit_bounds(rid, svc, f"minimum capacity was set to {doc['MinCapacity']}")
        return {"ScalableTargetARN": doc["ScalableTargetARN"]}

    def _target_doc(self, body: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        if old is None and ("MinCapacity" not in body or "MaxCapacity" not in body):
            raise validation("MinCapacity and MaxCapacity are required to register a new target")
        base = old or {}
        low = int(body.get("MinCapacity", base.get("MinCapacity", 0)))
        high = int(body.get("MaxCapacity", base.get("MaxCapacity", 0)))
        if low < 0 or high < 0:
            raise validation("MinCapacity and MaxCapacity must not be negative")
        if low > high:
            raise validation(f"Minimum capacity ({low}) cannot be greater than maximum ({high})")
        suspended = {**base.get("SuspendedState", _NOT_SUSPENDED), **body.get("SuspendedState", {})}
        rid = str(body["ResourceId"])
        arn_id = base.get("ScalableTargetARN", "").rpartition("/")[2] or uuid.uuid4().hex
        region, account = self.arns.region, self.arns.account
        return {
            "ServiceNamespace": NAMESPACE,
            "ResourceId": rid,
            "ScalableDimension": DIMENSION,
            "MinCapacity": low,
            "MaxCapacity": high,
            "RoleARN": body.get("RoleARN")
            or base.get("RoleARN")
            or f"arn:aws:iam::{account}:role/aws-service-role/ecs.application-autoscaling"
            ".amazonaws.com/AWSServiceRoleForApplicationAutoScaling_ECSService",
            "CreationTime": base.get("CreationTime", self.clock()),
            "SuspendedState": suspended,
            "ScalableTargetARN": f"arn:aws:application-autoscaling:{region}:{account}:"
            f"scalable-target/{arn_id}",
        }

    async def describe_targets(self, body: dict[str, Any]) -> dict[str, Any]:
        _check_dimension(body, required=False)
        ids = body.get("ResourceIds")
        found = [t for rid, t in self.targets.items() if not ids or rid in ids]
        page, token = _page(found, body, key=lambda t: t["ResourceId"])
        return {"ScalableTargets": page, **({"NextToken": token} if token else {})}

    async def deregister(self, body: dict[str, Any]) -> dict[str, Any]:
        """The target and its policies and scheduled actions go (as AWS deletes them)."""
        target = self._target(body)
        rid = target["ResourceId"]
        async with self._lock:
            mine = [k for k in (*self.policies, *self.actions) if k.startswith(rid + "|")]
            ops: list[Any] = [Delete(TARGET, rid)]
            ops += [Delete(POLICY, k) for k in mine if k in self.policies]
            ops += [Delete(ACTION, k) for k in mine if k in self.actions]
            await self.record.commit(ops)
            self.targets.pop(rid, None)
            for k in mine:
                self.policies.pop(k, None)
                self.actions.pop(k, None)
        return {}

    # ------------------------------------------------------------ scaling policies

    async def put_policy(self, body: dict[str, Any]) -> dict[str, Any]:
        target = self._target(body)
        rid, name = target["ResourceId"], str(body["PolicyName"])
        kind = body.get("PolicyType", "StepScaling")
        if kind != "TargetTrackingScaling":
            raise validation(
                f"PolicyType: Dockyard supports TargetTrackingScaling only, not {kind}"
            )
        config = _tracking_config(body.get("TargetTrackingScalingPolicyConfiguration"))
        key = f"{rid}|{name}"
        async with self._lock:
            old = self.policies.get(key)
            doc = self._policy_doc(rid, name, config, old)
            await self.record.commit([Put(POLICY, key, parse_resource(rid)[0], doc)])
            self.policies[key] = doc
        return {"PolicyARN": doc["PolicyARN"], "Alarms": doc["Alarms"]}

    def _policy_doc(
        self, rid: str, name: str, config: dict[str, Any], old: dict[str, Any] | None
    ) -> dict[str, Any]:
        region, account = self.arns.region, self.arns.account
        pid = old["PolicyARN"].split(":")[5] if old else str(uuid.uuid4())
        alarms = old["Alarms"] if old else _alarms(rid, region, account)
        return {
            "PolicyARN": f"arn:aws:autoscaling:{region}:{account}:scalingPolicy:{pid}:"
            f"resource/{NAMESPACE}/{rid}:policyName/{name}",
            "PolicyName": name,
            "ServiceNamespace": NAMESPACE,
            "ResourceId": rid,
            "ScalableDimension": DIMENSION,
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": config,
            "Alarms": alarms,
            "CreationTime": old["CreationTime"] if old else self.clock(),
        }

    async def describe_policies(self, body: dict[str, Any]) -> dict[str, Any]:
        return _describe(self.policies, body, "PolicyName", "PolicyNames", "ScalingPolicies")

    async def delete_policy(self, body: dict[str, Any]) -> dict[str, Any]:
        await self._delete(POLICY, self.policies, body, "PolicyName", "scaling policy")
        return {}

    async def _delete(
        self, kind: str, held: dict[str, Any], body: dict[str, Any], field: str, what: str
    ) -> None:
        """Delete a policy or a scheduled action, ObjectNotFoundException (AWS's words) if
        there is none."""
        _check_dimension(body)
        key = f"{body['ResourceId']}|{body[field]}"
        if key not in held:
            raise not_found(
                f"No {what} found for service namespace: {NAMESPACE}, resource ID: "
                f"{body['ResourceId']}, scalable dimension: {DIMENSION}, {what} name: "
                f"{body[field]}"
            )
        async with self._lock:
            await self.record.commit([Delete(kind, key)])
            held.pop(key, None)

    # ------------------------------------------------------------ scheduled actions

    async def put_action(self, body: dict[str, Any]) -> dict[str, Any]:
        target = self._target(body)
        rid, name = target["ResourceId"], str(body["ScheduledActionName"])
        key = f"{rid}|{name}"
        old = self.actions.get(key, {})
        doc = self._action_doc(rid, name, body, old)
        try:
            sched.check(_schedule(doc))
        except ValueError as exc:
            raise validation(str(exc)) from None
        async with self._lock:
            await self.record.commit([Put(ACTION, key, parse_resource(rid)[0], doc)])
            self.actions[key] = doc
        return {}

    def _action_doc(
        self, rid: str, name: str, body: dict[str, Any], old: dict[str, Any]
    ) -> dict[str, Any]:
        region, account = self.arns.region, self.arns.account
        aid = old["ScheduledActionARN"].split(":")[5] if old else str(uuid.uuid4())
        merged = {**old, **{k: body[k] for k in _ACTION_FIELDS if k in body}}
        if "Schedule" not in merged:
            raise validation("Schedule is required for a new scheduled action")
        if merged.get("StartTime") and merged.get("EndTime"):
            if merged["EndTime"] <= merged["StartTime"]:
                raise validation("EndTime must be after StartTime")
        bounds = merged.get("ScalableTargetAction", {})
        low, high = bounds.get("MinCapacity"), bounds.get("MaxCapacity")
        if low is not None and high is not None and low > high:
            raise validation(f"ScalableTargetAction: MinCapacity ({low}) > MaxCapacity ({high})")
        return {
            **merged,
            "ScheduledActionName": name,
            "ScheduledActionARN": f"arn:aws:autoscaling:{region}:{account}:scheduledAction:"
            f"{aid}:resource/{NAMESPACE}/{rid}:scheduledActionName/{name}",
            "ServiceNamespace": NAMESPACE,
            "ResourceId": rid,
            "ScalableDimension": DIMENSION,
            "CreationTime": old.get("CreationTime", self.clock()),
        }

    async def describe_actions(self, body: dict[str, Any]) -> dict[str, Any]:
        return _describe(
            self.actions, body, "ScheduledActionName", "ScheduledActionNames", "ScheduledActions"
        )

    async def delete_action(self, body: dict[str, Any]) -> dict[str, Any]:
        await self._delete(ACTION, self.actions, body, "ScheduledActionName", "scheduled action")
        return {}

    # ------------------------------------------------------------ activities

    async def describe_activities(self, body: dict[str, Any]) -> dict[str, Any]:
        _check_dimension(body, required=False)
        rid = body.get("ResourceId")
        found = [
            {k: v for k, v in a.items() if not k.startswith("_")}
            for r, acts in self.activities.items()
            if rid in (None, r)
            for a in acts
        ]
        page, token = _page(found, body, key=lambda a: (a["StartTime"], a["ActivityId"]), desc=True)
        return {"ScalingActivities": page, **({"NextToken": token} if token else {})}

    async def _record(self, rid: str, description: str, cause: str, message: str) -> None:
        now, activity_id = self.clock(), str(uuid.uuid4())
        doc = {
            "ActivityId": activity_id,
            "ServiceNamespace": NAMESPACE,
            "ResourceId": rid,
            "ScalableDimension": DIMENSION,
            "Description": description,
            "Cause": cause,
            "StartTime": now,
            "EndTime": now,
            "StatusCode": "Successful",
            "StatusMessage": message,
        }
        acts = self.activities.setdefault(rid, [])
        acts.insert(0, doc)
        ops: list[Any] = [Put(ACTIVITY, activity_id, parse_resource(rid)[0], doc)]
        ops += [Delete(ACTIVITY, old["ActivityId"]) for old in acts[MAX_ACTIVITIES:]]
        del acts[MAX_ACTIVITIES:]
        await self.record.commit(ops)

    # ------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Evaluate every `period` seconds until cancelled; a failure is logged, not fatal."""
        while True:
            await asyncio.sleep(self.period)
            try:
                await self.tick()
            except Exception:
                log.exception("auto scaling pass failed")

    async def tick(self) -> None:
        """One pass: due scheduled actions, then each target's policies."""
        now = self.clock()
        await self._fire_due(self._checked, now)
        self._checked = now
        for rid in list(self.targets):
            await self._track(rid, now)

    async def _fire_due(self, since: float, now: float) -> None:
        for doc in list(self.actions.values()):
            target = self.targets.get(doc["ResourceId"])
            if target is None or target["SuspendedState"].get("ScheduledScalingSuspended"):
                continue
            try:
                due = sched.next_firing(_schedule(doc), since)
            except ValueError:
                continue
            if due is not None and due <= now:
                await self._fire(doc, target)

    async def _fire(self, action: dict[str, Any], target: dict[str, Any]) -> None:
        rid = target["ResourceId"]
        bounds = action.get("ScalableTargetAction", {})
        new = {k: int(bounds[k]) for k in ("MinCapacity", "MaxCapacity") if k in bounds}
        async with self._lock:
            doc = {**target, **new}
            if doc["MinCapacity"] > doc["MaxCapacity"]:  # AWS moves the other bound along
                doc["MaxCapacity" if "MinCapacity" in new else "MinCapacity"] = doc[
                    "MinCapacity" if "MinCapacity" in new else "MaxCapacity"
                ]
            await self.record.commit([Put(TARGET, rid, parse_resource(rid)[0], doc)])
            self.targets[rid] = doc
        said = " and ".join(
            f"{'min' if k == 'MinCapacity' else 'max'} capacity to {v}" for k, v in new.items()
        )
        cause = f"scheduled action name {action['ScheduledActionName']} was triggered"
        await self._record(rid, f"Setting {said}", cause, f"Successfully set {said}")
        svc = self.services.find(*parse_resource(rid))
        if svc is not None:
            await self._fit_bounds(rid, svc, cause)

    async def _fit_bounds(self, rid: str, svc: Service, cause: str) -> None:
        """A desired count outside the target's bounds is brought inside them."""
        t = self.targets[rid]
        count = svc.desired_count
        wanted = tt.clamp(count, tt.Bounds(t["MinCapacity"], t["MaxCapacity"]))
        if wanted != count:
            if wanted > count:
                cause = f"minimum capacity was set to {t['MinCapacity']}"
            else:
                cause = f"maximum capacity was set to {t['MaxCapacity']}"
            await self._apply(rid, svc, wanted, cause)

    async def _track(self, rid: str, now: float) -> None:
        target = self.targets[rid]
        cluster, name = parse_resource(rid)
        svc = self.services.find(cluster, name)
        policies = [p for p in self.policies.values() if p["ResourceId"] == rid]
        if svc is None or svc.status != "ACTIVE" or not policies:
            return
        util = self.usage.service_now(cluster, name, now)
        decisions = []
        for p in policies:
            decisions.append(self._decide(p, target, svc, util, now))
        best = tt.combine([d for d, _ in decisions], svc.desired_count)
        if best is None:
            return
        policy = next(p for d, p in decisions if d is best)
        alarm = policy["Alarms"][0 if best.direction == "out" else 1]["AlarmName"]
        cause = f"monitor alarm {alarm} in state ALARM triggered policy {policy['PolicyName']}"
        await self._apply(rid, svc, best.desired, cause)
        (self.last_out if best.direction == "out" else self.last_in)[rid] = now

    def _decide(
        self, p: dict[str, Any], t: dict[str, Any], svc: Service, util: Any, now: float
    ) -> tuple[tt.Decision | None, dict[str, Any]]:
        config = p["TargetTrackingScalingPolicyConfiguration"]
        metric = METRICS[config["PredefinedMetricSpecification"]["PredefinedMetricType"]]
        history = self.readings.setdefault((p["PolicyARN"], metric), deque(maxlen=tt.IN_PERIODS))
        history.append(getattr(util, metric) if util.samples else None)
        policy = tt.Policy(
            p["PolicyName"],
            float(config["TargetValue"]),
            float(config.get("ScaleOutCooldown", DEFAULT_COOLDOWN)),
            float(config.get("ScaleInCooldown", DEFAULT_COOLDOWN)),
            bool(config.get("DisableScaleIn", False)),
        )
        s = t["SuspendedState"]
        bounds = tt.Bounds(
            t["MinCapacity"],
            t["MaxCapacity"],
            bool(s.get("DynamicScalingInSuspended")),
            bool(s.get("DynamicScalingOutSuspended")),
        )
        rid = t["ResourceId"]
        decision = tt.decide(
            policy,
            bounds,
            svc.desired_count,
            list(history),
            now,
            self.last_out.get(rid),
            self.last_in.get(rid),
            rolling_back=_rolling_back(svc),
        )
        return decision, p

    async def _apply(self, rid: str, svc: Service, desired: int, cause: str) -> None:
        """UpdateService through the chain, then the activity and the service event."""
        if self._call is None:
            raise RuntimeError("AutoScaling.bind was not called")
        before = svc.desired_count
        await self._call(
            "UpdateService", {"cluster": svc.cluster, "service": svc.name, "desiredCount": desired}
        )
        await self._record(
            rid,
            f"Setting desired count to {desired}.",
            cause,
            f"Successfully set desired count to {desired}. Change successfully fulfilled by ecs.",
        )
        async with self.services.lock_for(svc.arn):
            live = self.services.find(svc.cluster, svc.name)
            if live is not None:
                add_event(
                    live,
                    f"desired count changed from {before} to {desired} by Application Auto "
                    f"Scaling: {cause}.",
                    self.clock(),
                )
                await self.services.save(live)
        log.info("auto scaling %s: desired count %d -> %d (%s)", rid, before, desired, cause)


_NOT_SUSPENDED = {
    "DynamicScalingInSuspended": False,
    "DynamicScalingOutSuspended": False,
    "ScheduledScalingSuspended": False,
}
_ACTION_FIELDS = ("Schedule", "Timezone", "StartTime", "EndTime", "ScalableTargetAction")


def _rolling_back(svc: Service) -> bool:
    return any(d.rollback_of and d.rollout_state == "IN_PROGRESS" for d in svc.deployments)


def _schedule(doc: dict[str, Any]) -> sched.Schedule:
    return sched.Schedule(
        doc["Schedule"],
        doc.get("Timezone") or "UTC",
        doc.get("StartTime"),
        doc.get("EndTime"),
        doc.get("CreationTime", 0.0),
    )


def _tracking_config(config: Any) -> dict[str, Any]:
    """The policy's configuration, refused unless Dockyard can track it."""
    if not isinstance(config, dict):
        raise validation("TargetTrackingScalingPolicyConfiguration is required")
    if "CustomizedMetricSpecification" in config:
        raise validation(
            "CustomizedMetricSpecification: Dockyard has no CloudWatch; use "
            f"PredefinedMetricSpecification ({', '.join(METRICS)})"
        )
    spec = config.get("PredefinedMetricSpecification", {})
    kind = spec.get("PredefinedMetricType")
    if kind not in METRICS:
        raise validation(
            f"PredefinedMetricType: Dockyard tracks {', '.join(METRICS)} only, not {kind!r}"
        )
    if "ResourceLabel" in spec:
        raise validation("ResourceLabel: ECSService metrics take no resource label")
    value = config["TargetValue"]
    if not 0 < value <= 100:
        raise validation(f"TargetValue: a utilisation target is a percentage (0-100], not {value}")
    return config


def _alarms(rid: str, region: str, account: str) -> list[dict[str, str]]:
    """The names AWS gives a target tracking policy's high and low alarms (Dockyard keeps
    no CloudWatch alarms; activities' causes name them as AWS's do)."""
    out = []
    for kind in ("AlarmHigh", "AlarmLow"):
        name = f"TargetTracking-{rid}-{kind}-{uuid.uuid4()}"
        out.append(
            {"AlarmName": name, "AlarmARN": f"arn:aws:cloudwatch:{region}:{account}:alarm:{name}"}
        )
    return out


def _describe(
    held: dict[str, dict[str, Any]], body: dict[str, Any], field: str, names: str, answer: str
) -> dict[str, Any]:
    """A Describe* answer: the items of `held` named in `names` (all if none), of
    ResourceId if given, a page at a time."""
    _check_dimension(body, required=False)
    wanted, rid = body.get(names), body.get("ResourceId")
    found = [
        item
        for item in held.values()
        if (not wanted or item[field] in wanted) and rid in (None, item["ResourceId"])
    ]
    page, token = _page(found, body, key=lambda item: (item["ResourceId"], item[field]))
    return {answer: page, **({"NextToken": token} if token else {})}


def _page(
    items: list[dict[str, Any]], body: dict[str, Any], key: Any, desc: bool = False
) -> tuple[list[dict[str, Any]], str | None]:
    return paginate(
        items,
        body.get("NextToken"),
        body.get("MaxResults"),
        key=key,
        default=50,
        limit=50,
        descending=desc,
    )
