"""Service commands: `services list|create|update|delete|describe|events|wait-steady`,
speaking ECS's CreateService/UpdateService/DeleteService/DescribeServices/ListServices shapes."""

from __future__ import annotations

import argparse
from typing import Any

from dockyard.cli import output as out
from dockyard.cli.common import Ctx, SubParsers, command, describe_all, group, list_all, poll
from dockyard.cli.tasks import add_placement_flags, placement_constraints, placement_strategies
from dockyard.errors import ApiError, invalid

SERVICE_HEADERS = (
    "service",
    "status",
    "definition",
    "desired",
    "running",
    "pending",
    "scheduling",
    "deployments",
    "created",
)
DEPLOYMENT_HEADERS = (
    "deployment",
    "status",
    "definition",
    "desired",
    "running",
    "pending",
    "failed",
    "rollout",
    "updated",
)
DESCRIBE_SERVICES_BATCH = 10  # ECS's limit per DescribeServices call
DESCRIBE_EVENTS = 10


def register(sub: SubParsers) -> None:
    verbs = group(sub, "services", "create, update, watch and delete services")
    command(verbs, "list", services_list, "list services with their counts")
    _register_create(verbs)
    p = command(verbs, "update", services_update, "change definition or count, or redeploy")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--task-definition", metavar="TD", help="family, family:revision or ARN")
    p.add_argument("--desired-count", type=int, metavar="N")
    p.add_argument("--force-new-deployment", action="store_true", help="replace every task")
    add_exec_flag(p)
    _add_deployment_flags(p)
    p = command(verbs, "delete", services_delete, "delete a service (scale it to 0 first)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--force", action="store_true", help="delete even if desiredCount > 0")
    p = command(verbs, "describe", services_describe, "a service, its deployments and events")
    p.add_argument("name", metavar="NAME")
    p = command(verbs, "events", services_events, "a service's events, newest first")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="only the N newest")
    p = command(
        verbs,
        "wait-steady",
        services_wait_steady,
        "wait until one COMPLETED deployment runs desiredCount tasks",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait (600)")


def _register_create(verbs: SubParsers) -> None:
    p = command(verbs, "create", services_create, "create a service")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--task-definition", metavar="TD", required=True)
    add_exec_flag(p)
    p.add_argument("--desired-count", type=int, metavar="N", help="required for REPLICA")
    p.add_argument("--scheduling-strategy", choices=("REPLICA", "DAEMON"), default="REPLICA")
    _add_deployment_flags(p)
    add_placement_flags(p)


def _add_deployment_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--min-healthy-percent", type=int, metavar="PCT", help="ECS default 100")
    p.add_argument("--max-percent", type=int, metavar="PCT", help="ECS default 200")
    p.add_argument(
        "--circuit-breaker", action="store_true", help="fail a rollout whose tasks keep failing"
    )
    p.add_argument("--rollback", action="store_true", help="with --circuit-breaker: roll back")


def _deployment_configuration(args: argparse.Namespace) -> dict[str, Any]:
    conf: dict[str, Any] = {}
    if args.min_healthy_percent is not None:
        conf["minimumHealthyPercent"] = args.min_healthy_percent
    if args.max_percent is not None:
        conf["maximumPercent"] = args.max_percent
    if args.rollback and not args.circuit_breaker:
        raise invalid("--rollback", "needs --circuit-breaker")
    if args.circuit_breaker:
        conf["deploymentCircuitBreaker"] = {"enable": True, "rollback": args.rollback}
    return conf


# ---------------------------------------------------------------- rendering


def service_row(s: dict[str, Any]) -> list[Any]:
    deployments = s.get("deployments", [])
    rollout = _primary(deployments).get("rolloutState")
    return [
        s.get("serviceName"),
        s.get("status"),
        out.taskdef_name(s.get("taskDefinition")),
        s.get("desiredCount"),
        s.get("runningCount"),
        s.get("pendingCount"),
        s.get("schedulingStrategy"),
        f"{len(deployments)}" + (f" ({rollout})" if rollout else ""),
        out.age(s.get("createdAt")),
    ]


def _primary(deployments: list[dict[str, Any]]) -> dict[str, Any]:
    return next((d for d in deployments if d.get("status") == "PRIMARY"), {})


def deployment_row(d: dict[str, Any]) -> list[Any]:
    return [
        d.get("id"),
        d.get("status"),
        out.taskdef_name(d.get("taskDefinition")),
        d.get("desiredCount"),
        d.get("runningCount"),
        d.get("pendingCount"),
        d.get("failedTasks"),
        d.get("rolloutState"),
        out.age(d.get("updatedAt") or d.get("createdAt")),
    ]


def print_events(events: list[dict[str, Any]]) -> None:
    out.print_table(
        ("time", "age", "message"),
        [
            [out.local_time(e.get("createdAt")), out.age(e.get("createdAt")), e.get("message")]
            for e in events
        ],
    )


def print_service_detail(s: dict[str, Any]) -> None:
    conf = s.get("deploymentConfiguration", {})
    breaker = conf.get("deploymentCircuitBreaker") or {}
    print(
        out.key_values(
            [
                ("service", s.get("serviceName")),
                ("arn", s.get("serviceArn")),
                ("status", s.get("status")),
                ("definition", out.taskdef_name(s.get("taskDefinition"))),
                ("scheduling", s.get("schedulingStrategy")),
                (
                    "desired / running / pending",
                    f"{s.get('desiredCount')} / {s.get('runningCount')} / {s.get('pendingCount')}",
                ),
                (
                    "min healthy / max percent",
                    f"{conf.get('minimumHealthyPercent')} / {conf.get('maximumPercent')}",
                ),
                ("circuit breaker", _breaker(breaker)),
                ("constraints", _constraints(s.get("placementConstraints", []))),
                ("strategy", _strategies(s.get("placementStrategy", []))),
                (
                    "created",
                    f"{out.local_time(s.get('createdAt'))} ({out.age(s.get('createdAt'))})",
                ),
            ]
        )
    )
    print()
    out.print_table(DEPLOYMENT_HEADERS, [deployment_row(d) for d in s.get("deployments", [])])
    print()
    print_events(s.get("events", [])[:DESCRIBE_EVENTS])


def _breaker(b: dict[str, Any]) -> str:
    if not b.get("enable"):
        return "off"
    return "on, with rollback" if b.get("rollback") else "on"


def _constraints(cs: list[dict[str, Any]]) -> str:
    return ", ".join(
        f"memberOf({c.get('expression')})" if c.get("type") == "memberOf" else str(c.get("type"))
        for c in cs
    )


def _strategies(ss: list[dict[str, Any]]) -> str:
    return ", ".join(f"{s['type']}:{s['field']}" if s.get("field") else s["type"] for s in ss)


def _show(ctx: Ctx, reply: dict[str, Any]) -> int:
    if ctx.json:
        out.print_json(reply)
    else:
        out.print_table(SERVICE_HEADERS, [service_row(reply["service"])])
    return 0


# ---------------------------------------------------------------- commands


def describe_service(ctx: Ctx, name: str) -> dict[str, Any]:
    reply = ctx.call("DescribeServices", {"services": [name]})
    if not reply.get("services"):
        reason = (reply.get("failures") or [{}])[0].get("reason", "MISSING")
        raise ApiError("ServiceNotFoundException", f"service {name}: {reason}")
    return reply["services"][0]  # type: ignore[no-any-return]


def services_list(ctx: Ctx, args: argparse.Namespace) -> int:
    arns = list_all(ctx, "ListServices", "serviceArns")
    reply = describe_all(
        ctx, "DescribeServices", "services", "services", arns, DESCRIBE_SERVICES_BATCH
    )
    if ctx.json:
        out.print_json(reply)
    else:
        out.print_table(SERVICE_HEADERS, [service_row(s) for s in reply["services"]])
    return 0


def services_create(ctx: Ctx, args: argparse.Namespace) -> int:
    if args.scheduling_strategy == "REPLICA" and args.desired_count is None:
        raise invalid("--desired-count", "is required for a REPLICA service")
    body: dict[str, Any] = {
        "serviceName": args.name,
        "taskDefinition": args.task_definition,
        "schedulingStrategy": args.scheduling_strategy,
    }
    optional = {
        "desiredCount": args.desired_count,
        "deploymentConfiguration": _deployment_configuration(args),
        "placementConstraints": placement_constraints(args.constraint),
        "placementStrategy": placement_strategies(args.strategy),
        "enableExecuteCommand": args.enable_execute_command,
    }
    body.update({k: v for k, v in optional.items() if v not in (None, {}, [])})
    return _show(ctx, ctx.call("CreateService", body))


def services_update(ctx: Ctx, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"service": args.name}
    optional = {
        "taskDefinition": args.task_definition,
        "desiredCount": args.desired_count,
        "deploymentConfiguration": _deployment_configuration(args),
        "forceNewDeployment": args.force_new_deployment or None,
        "enableExecuteCommand": args.enable_execute_command,
    }
    body.update({k: v for k, v in optional.items() if v not in (None, {})})
    if len(body) == 1:
        raise invalid(
            "update",
            "nothing to change: give --task-definition, --desired-count, "
            "--force-new-deployment, --[no-]enable-execute-command or a deployment flag",
        )
    return _show(ctx, ctx.call("UpdateService", body))


def services_delete(ctx: Ctx, args: argparse.Namespace) -> int:
    body = {"service": args.name, **({"force": True} if args.force else {})}
    return _show(ctx, ctx.call("DeleteService", body))


def services_describe(ctx: Ctx, args: argparse.Namespace) -> int:
    reply = ctx.call("DescribeServices", {"services": [args.name]})
    if ctx.json:
        out.print_json(reply)
    else:
        for i, s in enumerate(reply.get("services", [])):
            if i:
                print()
            print_service_detail(s)
    for f in reply.get("failures", []):
        out.error(f"service {out.short(f.get('arn'))}: {f.get('reason')}")
    return 1 if reply.get("failures") else 0


def services_events(ctx: Ctx, args: argparse.Namespace) -> int:
    events = describe_service(ctx, args.name).get("events", [])
    if args.limit > 0:
        events = events[: args.limit]
    if ctx.json:
        out.print_json({"events": events})
    else:
        print_events(events)
    return 0


def steady(s: dict[str, Any]) -> bool:
    """ECS's services_stable, plus a COMPLETED rollout when the deployment reports one."""
    deployments = s.get("deployments", [])
    return (
        len(deployments) == 1
        and deployments[0].get("rolloutState", "COMPLETED") == "COMPLETED"
        and s.get("runningCount") == s.get("desiredCount")
    )


def services_wait_steady(ctx: Ctx, args: argparse.Namespace) -> int:
    last: list[str] = []

    def check() -> dict[str, Any] | None:
        s = describe_service(ctx, args.name)
        d = s.get("deployments", [])
        line = (
            f"{s.get('runningCount')}/{s.get('desiredCount')} running, "
            f"{s.get('pendingCount')} pending, {len(d)} deployment(s)"
            + (
                f", primary {_primary(d)['rolloutState']}"
                if _primary(d).get("rolloutState")
                else ""
            )
        )
        if not ctx.json and line not in last[-1:]:
            out.error(f"{args.name}: {line}")
            last.append(line)
        return s if steady(s) else None

    s = poll(check, args.timeout, f"service {args.name} to reach a steady state")
    if ctx.json:
        out.print_json({"services": [s], "failures": []})
    else:
        out.print_table(SERVICE_HEADERS, [service_row(s)])
    return 0


def add_exec_flag(p: argparse.ArgumentParser) -> None:
    """ECS's enableExecuteCommand for the service's tasks (new ones, on update)."""
    p.add_argument(
        "--enable-execute-command",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="allow `dockyard exec` in the service's tasks (started from now on)",
    )
