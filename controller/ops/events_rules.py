"""Scheduled tasks (issue 22): EventBridge's rules API (`AWSEvents`, JSON 1.1) and the loop
that fires them.

boto3's `events` client talks to the controller's HTTP endpoint (`X-Amz-Target:
AWSEvents.<Op>`, controller/ecs_http.py); the chain checks every body against botocore's
model first. Dockyard serves scheduled rules on the default event bus whose targets run ECS
tasks on one of its clusters; event patterns, other buses, other target types and fields it
cannot honour are refused with a ValidationException naming the field.

Stored (controller/state_of_record.py KINDS, kind `events_rule`): a rule with its targets and
its schedule's state (`_next`: the firing due next, `_last`: the one fired last, `_anchor`:
where a rate counts from), one document per rule, so a restart resumes where it was.

Firing (`run`, on the controller that leads: a standby starts no controller; for the
disconnect grace after a start, a rule waits while an agent of its cluster is away): a rule whose
`_next` came due runs each target as RunTask would (`startedBy` events-rule/NAME), through
the operation chain with a client token made of the rule and the due time; the rule's next
firing and the cluster event are then committed together. A crash between the two fires the
same due time again after the restart, and the token makes RunTask answer with the tasks it
already started: never doubled. A firing that came due while no controller ran fires once at
start, not once per missed period; the next one is then the first due after that moment.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from controller import schedule_expr
from controller.ecs_paging import paginate
from controller.ecs_shapes import ECS, request_problems
from controller.records import EventRow
from controller.store_api import Delete, Put
from dockyard.errors import ApiError

if TYPE_CHECKING:
    from controller.events import EventLog
    from controller.state_of_record import StateOfRecord
    from dockyard.arns import ArnFactory

log = logging.getLogger(__name__)

RULE = "events_rule"
BUS = "default"
MAX_TARGETS = 5  # EventBridge's per-rule limit
MAX_STARTED_BY = 36  # ECS's startedBy limit
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
Call = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]

# Target members and EcsParameters members Dockyard cannot honour, with why
_TARGET_REFUSED = {
    "InputPath": "Dockyard passes no event to the task; give the overrides in Input",
    "InputTransformer": "Dockyard passes no event to the task; give the overrides in Input",
    "KinesisParameters": "Dockyard's targets are ECS tasks only",
    "RunCommandParameters": "Dockyard's targets are ECS tasks only",
    "BatchParameters": "Dockyard's targets are ECS tasks only",
    "SqsParameters": "Dockyard's targets are ECS tasks only",
    "HttpParameters": "Dockyard's targets are ECS tasks only",
    "RedshiftDataParameters": "Dockyard's targets are ECS tasks only",
    "SageMakerPipelineParameters": "Dockyard's targets are ECS tasks only",
    "AppSyncParameters": "Dockyard's targets are ECS tasks only",
    "DeadLetterConfig": "Dockyard has no SQS dead-letter queue; failed firings are events",
    "RetryPolicy": "Dockyard does not retry a firing; a failed one is recorded as an event",
}
_ECS_REFUSED = {
    "NetworkConfiguration": "Dockyard runs bridge and host network modes, not awsvpc",
    "PlatformVersion": "platform versions are Fargate's; Dockyard runs the EC2 launch type",
    "ReferenceId": "Dockyard's RunTask keeps no reference id",
    "EnableECSManagedTags": "Dockyard adds no ECS managed tags",
}
# EcsParameters member -> RunTask member
_ECS_TO_RUNTASK = {
    "TaskDefinitionArn": "taskDefinition",
    "TaskCount": "count",
    "LaunchType": "launchType",
    "Group": "group",
    "CapacityProviderStrategy": "capacityProviderStrategy",
    "EnableExecuteCommand": "enableExecuteCommand",
    "PlacementConstraints": "placementConstraints",
    "PlacementStrategy": "placementStrategy",
    "PropagateTags": "propagateTags",
    "Tags": "tags",
}


def validation(message: str) -> ApiError:
    return ApiError("ValidationException", message)


def not_found(name: str) -> ApiError:
    return ApiError("ResourceNotFoundException", f"Rule {name} does not exist on EventBus {BUS}.")


def _check_bus(body: dict[str, Any]) -> None:
    bus = body.get("EventBusName")
    if bus is not None and bus != BUS and not str(bus).endswith(":event-bus/" + BUS):
        raise validation(f"EventBusName: Dockyard has the default event bus only, not {bus!r}")


def _view(rule: dict[str, Any], listing: bool = False) -> dict[str, Any]:
    """A rule as DescribeRule (or ListRules, `listing`) shows it: its internals left out."""
    view = {k: v for k, v in rule.items() if not k.startswith("_") and k != "Targets"}
    if listing:
        view.pop("CreatedBy", None)
    return view


def firing_token(rule_arn: str, due: float, target_id: str) -> str:
    """RunTask's client token for one target of one firing: the same after a restart."""
    return hashlib.sha256(f"{rule_arn}|{due:.0f}|{target_id}".encode()).hexdigest()[:40]


class ScheduledRules:
    """EventBridge scheduled rules: in memory, stored, fired by `run`."""

    def __init__(
        self,
        record: StateOfRecord,
        arns: ArnFactory,
        events: EventLog,
        period: float = 1.0,
        clock: Callable[[], float] = time.time,
        settle: float = 0.0,
    ) -> None:
        self.record = record
        self.arns = arns
        self.events = events
        self.period = period
        self.settle = settle  # seconds after the start a firing waits for agents to reconnect
        self._started = 0.0  # (monotonic) when `run` started
        self.clock = clock
        self.rules: dict[str, dict[str, Any]] = {}  # by name
        self._call: Call | None = None
        self._lock = asyncio.Lock()  # the rules' writes
        self._firing = asyncio.Lock()  # one pass at a time: a rule is never fired twice at once

    def handlers(self) -> dict[str, Handler]:
        return {
            "PutRule": self.put_rule,
            "DescribeRule": self.describe_rule,
            "ListRules": self.list_rules,
            "DeleteRule": self.delete_rule,
            "EnableRule": self.enable_rule,
            "DisableRule": self.disable_rule,
            "PutTargets": self.put_targets,
            "ListTargetsByRule": self.list_targets,
            "RemoveTargets": self.remove_targets,
            "DescribeSchedules": self.describe_schedules,
        }

    def bind(self, call: Call) -> None:
        """The operation chain's call: firings run RunTask through it, validated, audited."""
        self._call = call

    def load(self) -> None:
        """Take the stored rules from the state of record's loader (startup)."""
        for doc in self.record.docs(RULE):
            self.rules[doc["Name"]] = doc

    def _rule(self, body: dict[str, Any], field: str = "Name") -> dict[str, Any]:
        _check_bus(body)
        name = str(body[field])
        rule = self.rules.get(name)
        if rule is None:
            raise not_found(name)
        return rule

    async def _save(self, rule: dict[str, Any], extra: list[Any] | None = None) -> None:
        await self.record.commit([Put(RULE, rule["Name"], BUS, rule), *(extra or [])])
        self.rules[rule["Name"]] = rule

    # ------------------------------------------------------------ rules

    async def put_rule(self, body: dict[str, Any]) -> dict[str, Any]:
        _check_bus(body)
        if "EventPattern" in body:
            raise validation(
                "EventPattern: Dockyard runs scheduled rules only (ScheduleExpression); "
                "event patterns are not supported"
            )
        if "Tags" in body:
            raise validation("Tags: Dockyard does not tag rules (it serves no TagResource)")
        expr = body.get("ScheduleExpression")
        if not expr:
            raise validation("ScheduleExpression is required: Dockyard runs scheduled rules only")
        schedule = schedule_expr.parse(expr)
        state = body.get("State", "ENABLED")
        if state not in ("ENABLED", "DISABLED"):
            raise validation(f"State: ENABLED or DISABLED, not {state!r}")
        name, now = str(body["Name"]), self.clock()
        async with self._lock:
            old = self.rules.get(name, {})
            same = old.get("ScheduleExpression") == expr
            anchor = old["_anchor"] if same and "_anchor" in old else now
            rule: dict[str, Any] = {
                "Name": name,
                "Arn": f"arn:aws:events:{self.arns.region}:{self.arns.account}:rule/{name}",
                "ScheduleExpression": expr,
                "State": state,
                "EventBusName": BUS,
                "CreatedBy": self.arns.account,
                **{k: body[k] for k in ("Description", "RoleArn") if k in body},
                "Targets": old.get("Targets", []),
                "_anchor": anchor,
                "_last": old.get("_last"),
                "_next": (
                    old["_next"]
                    if same and old.get("_next") and old.get("State") == state
                    else schedule_expr.next_firing(schedule, now, anchor)
                ),
            }
            await self._save(rule)
        return {"RuleArn": rule["Arn"]}

    async def describe_rule(self, body: dict[str, Any]) -> dict[str, Any]:
        return _view(self._rule(body))

    async def list_rules(self, body: dict[str, Any]) -> dict[str, Any]:
        _check_bus(body)
        prefix = body.get("NamePrefix", "")
        found = [_view(r, listing=True) for n, r in self.rules.items() if n.startswith(prefix)]
        page, token = paginate(
            found, body.get("NextToken"), body.get("Limit"), key=lambda r: r["Name"]
        )
        return {"Rules": page, **({"NextToken": token} if token else {})}

    async def delete_rule(self, body: dict[str, Any]) -> dict[str, Any]:
        """As EventBridge: a rule with targets is refused; an unknown one is no error."""
        _check_bus(body)
        name = str(body["Name"])
        async with self._lock:
            rule = self.rules.get(name)
            if rule is None:
                return {}
            if rule["Targets"]:
                raise validation("Rule can't be deleted since it has targets.")
            await self.record.commit([Delete(RULE, name)])
            self.rules.pop(name, None)
        return {}

    async def enable_rule(self, body: dict[str, Any]) -> dict[str, Any]:
        """Enabled again, a rule fires from now on (what fell due while disabled is not run)."""
        rule = self._rule(body)
        schedule = schedule_expr.parse(rule["ScheduleExpression"])

        def enabled(live: dict[str, Any]) -> dict[str, Any]:
            nxt = schedule_expr.next_firing(schedule, self.clock(), live["_anchor"])
            return {"State": "ENABLED", "_next": nxt}

        await self._update(rule["Name"], enabled)
        return {}

    async def disable_rule(self, body: dict[str, Any]) -> dict[str, Any]:
        await self._update(self._rule(body)["Name"], lambda _: {"State": "DISABLED"})
        return {}

    async def _update(self, name: str, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Change the live rule under the lock: a firing that saved its next firing meanwhile
        is never overwritten with the rule as it was read before (it would fire again)."""
        async with self._lock:
            live = self.rules.get(name)
            if live is None:
                raise not_found(name)
            await self._save({**live, **change(live)})

    # ------------------------------------------------------------ targets

    async def put_targets(self, body: dict[str, Any]) -> dict[str, Any]:
        rule = self._rule(body, "Rule")
        new = [self._target(i, t) for i, t in enumerate(body["Targets"])]
        ids = [t["Id"] for t in new]
        if len(set(ids)) != len(ids):
            raise validation("Targets: each target Id must be unique in one request")

        def with_new(live: dict[str, Any]) -> dict[str, Any]:
            kept = [t for t in live["Targets"] if t["Id"] not in ids]
            if len(kept) + len(new) > MAX_TARGETS:
                raise ApiError(
                    "LimitExceededException",
                    f"The requested resource exceeds the maximum number allowed ({MAX_TARGETS} "
                    "targets per rule).",
                )
            return {"Targets": kept + new}

        await self._update(rule["Name"], with_new)
        return {"FailedEntryCount": 0, "FailedEntries": []}

    def _target(self, index: int, target: dict[str, Any]) -> dict[str, Any]:
        where = f"Targets[{index}]"
        for member, why in _TARGET_REFUSED.items():
            if member in target:
                raise validation(f"{where}.{member}: {why}")
        arn = str(target["Arn"])
        prefix = f"arn:aws:ecs:{self.arns.region}:{self.arns.account}:cluster/"
        if not arn.startswith(prefix) or not re.fullmatch(
            r"[A-Za-z0-9_-]{1,255}", arn[len(prefix) :]
        ):
            raise validation(f"{where}.Arn: Dockyard's targets are ECS clusters ({prefix}NAME)")
        ecs = target.get("EcsParameters")
        if not isinstance(ecs, dict):
            raise validation(f"{where}.EcsParameters is required: Dockyard's targets run tasks")
        for member, why in _ECS_REFUSED.items():
            if member in ecs:
                raise validation(f"{where}.EcsParameters.{member}: {why}")
        if ecs.get("LaunchType", "EC2") != "EC2":
            raise validation(
                f"{where}.EcsParameters.LaunchType: Dockyard runs the EC2 launch type only"
            )
        if not 1 <= ecs.get("TaskCount", 1) <= 10:
            raise validation(f"{where}.EcsParameters.TaskCount: RunTask starts 1 to 10 tasks")
        self._run_body(where, {**target, "Arn": arn})  # refused now, not at its firing
        return target

    def _run_body(self, where: str, target: dict[str, Any]) -> dict[str, Any]:
        """The RunTask request a target makes (checked against ECS's model)."""
        ecs = target["EcsParameters"]
        run = {_ECS_TO_RUNTASK[k]: v for k, v in ecs.items() if k in _ECS_TO_RUNTASK}
        run["cluster"] = target["Arn"].rpartition("/")[2]
        if "tags" in run:  # EventBridge's Tag is {Key, Value}; ECS's {key, value}
            run["tags"] = [{"key": t.get("Key"), "value": t.get("Value")} for t in run["tags"]]
        if "Input" in target:
            try:
                overrides = json.loads(target["Input"])
            except ValueError:
                raise validation(f"{where}.Input: not JSON (ECS task overrides)") from None
            if not isinstance(overrides, dict):
                raise validation(f"{where}.Input: a JSON object of ECS task overrides")
            run["overrides"] = overrides
        problems = request_problems("RunTask", run, ECS)
        if problems:
            raise validation(f"{where}: as RunTask: " + "; ".join(problems[:3]))
        return run

    async def list_targets(self, body: dict[str, Any]) -> dict[str, Any]:
        rule = self._rule(body, "Rule")
        page, token = paginate(
            rule["Targets"], body.get("NextToken"), body.get("Limit"), key=lambda t: t["Id"]
        )
        # botocore's model gives TargetList a minimum of 1: no targets, no member
        return {**({"Targets": page} if page else {}), **({"NextToken": token} if token else {})}

    async def remove_targets(self, body: dict[str, Any]) -> dict[str, Any]:
        rule = self._rule(body, "Rule")
        ids = set(body["Ids"])
        held = {t["Id"] for t in rule["Targets"]}
        failed = [
            {
                "TargetId": i,
                "ErrorCode": "ResourceNotFoundException",
                "ErrorMessage": f"Rule {rule['Name']} has no target {i}",
            }
            for i in sorted(ids - held)
        ]
        await self._update(
            rule["Name"],
            lambda live: {"Targets": [t for t in live["Targets"] if t["Id"] not in ids]},
        )
        return {"FailedEntryCount": len(failed), "FailedEntries": failed}

    # ------------------------------------------------------------ Dockyard's own view

    async def describe_schedules(self, body: dict[str, Any]) -> dict[str, Any]:
        """Every rule with its next and last firing (`dockyard schedules list`)."""
        if set(body) - {"cluster"}:
            raise validation(f"DescribeSchedules takes no {sorted(set(body) - {'cluster'})}")
        return {
            "schedules": [
                {
                    "name": r["Name"],
                    "scheduleExpression": r["ScheduleExpression"],
                    "state": r["State"],
                    "nextFiring": r["_next"] if r["State"] == "ENABLED" else None,
                    "lastFiring": r.get("_last"),
                    "targets": [t["Arn"].rpartition("/")[2] for t in r["Targets"]],
                }
                for r in sorted(self.rules.values(), key=lambda r: r["Name"])
            ]
        }

    # ------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Fire what came due every `period` seconds until cancelled; a failure is logged.
        For `settle` seconds after the start a rule whose cluster has an agent still away
        waits (`_settled`): a firing that came due while no controller ran would otherwise
        find the agents reconnecting, and place nothing."""
        self._started = time.monotonic()
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("scheduled rules pass failed")
            await asyncio.sleep(self.period)

    async def tick(self) -> None:
        """Fire every enabled rule whose next firing is due (once, however late)."""
        async with self._firing:
            now = self.clock()
            for name in sorted(self.rules):
                rule = self.rules.get(name)
                if rule and rule["State"] == "ENABLED" and rule["_next"] and rule["_next"] <= now:
                    if self._settled(rule):
                        await self._fire(rule, now)

    def _settled(self, rule: dict[str, Any]) -> bool:
        """Whether every ACTIVE instance of the rule's clusters is connected, or the time
        given to agents to reconnect after the start is over."""
        if time.monotonic() >= self._started + self.settle:
            return True
        clusters = {t["Arn"].rpartition("/")[2] for t in rule["Targets"]}
        return all(
            i.connected
            for i in self.record.cluster.instances.values()
            if i.cluster in clusters and i.status == "ACTIVE"
        )

    async def _fire(self, rule: dict[str, Any], now: float) -> None:
        due = float(rule["_next"])
        results = [await self._run_target(rule, t, due) for t in rule["Targets"]]
        nxt = schedule_expr.next_firing(
            schedule_expr.parse(rule["ScheduleExpression"]), now, rule["_anchor"]
        )
        ops: list[Any] = [
            self._event(rule, t, r) for t, r in zip(rule["Targets"], results, strict=True)
        ]
        async with self._lock:
            live = self.rules.get(rule["Name"])
            if live is None:  # deleted meanwhile: the event stays, the rule does not return
                await self.record.commit(ops)
                return
            await self._save({**live, "_last": due, "_next": nxt}, ops)

    async def _run_target(
        self, rule: dict[str, Any], target: dict[str, Any], due: float
    ) -> dict[str, Any]:
        if self._call is None:
            raise RuntimeError("ScheduledRules.bind was not called")
        body = self._run_body("", target)
        body["startedBy"] = f"events-rule/{rule['Name']}"[:MAX_STARTED_BY]
        body["clientToken"] = firing_token(rule["Arn"], due, target["Id"])
        try:
            return await self._call("RunTask", body)
        except ApiError as exc:
            return {"tasks": [], "failures": [{"reason": f"{exc.name}: {exc.message}"}]}

    def _event(
        self, rule: dict[str, Any], target: dict[str, Any], result: dict[str, Any]
    ) -> EventRow:
        cluster = target["Arn"].rpartition("/")[2]
        arns = [t["taskArn"] for t in result.get("tasks", [])]
        reasons = sorted(
            {
                " ".join(str(f[k]) for k in ("reason", "detail") if f.get(k))
                for f in result.get("failures", [])
            }
        )
        said = f"started {len(arns)} task(s)" if arns else "started no task"
        if reasons:
            said += f" ({'; '.join(reasons)})"
        return self.events.record(
            cluster,
            "schedule",
            f"events-rule/{rule['Name']}",
            f"scheduled rule {rule['Name']} fired (target {target['Id']}): {said}",
            {"rule": rule["Name"], "target": target["Id"], "tasks": arns, "failures": reasons},
        )
