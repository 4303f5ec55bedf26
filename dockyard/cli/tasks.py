"""Task commands: `run`, `stop`, `tasks list|describe`."""

from __future__ import annotations

import argparse
import re
import shlex
from typing import Any

from dockyard.cli import output as out
from dockyard.cli.common import (
    Ctx,
    SubParsers,
    command,
    describe_all,
    group,
    list_all,
    pairs,
    poll,
    resolve_instance,
    resolve_task,
)
from dockyard.errors import TASKDEF_NOT_FOUND, ApiError, invalid

TASK_HEADERS = ("task", "definition", "status", "desired", "instance", "health", "started", "ports")
STRATEGY_FIELDS = {"binpack": True, "spread": True, "random": False}


def register(sub: SubParsers) -> None:
    _register_run(sub)
    p = command(sub, "stop", stop, "stop a task (SIGTERM, then SIGKILL after stopTimeout)")
    p.add_argument("task", metavar="TASK", help="task id (or a unique prefix) or ARN")
    p.add_argument("--reason", help="stoppedReason to record")
    p.add_argument("--wait", action="store_true", help="wait until STOPPED and show the result")
    p.add_argument("--timeout", type=float, default=300, help="seconds --wait waits (300)")

    verbs = group(sub, "tasks", "list and describe tasks")
    p = command(verbs, "list", tasks_list, "list tasks of the cluster")
    p.add_argument("--desired-status", choices=("RUNNING", "PENDING", "STOPPED"), default="RUNNING")
    p.add_argument("--family", help="only tasks of this family")
    p.add_argument("--service", help="only tasks of this service")
    p.add_argument("--instance", metavar="ID", help="only tasks on this container instance")
    p.add_argument("--started-by", help="only tasks started by this")
    p = command(verbs, "describe", tasks_describe, "show tasks with their containers")
    p.add_argument("tasks", metavar="TASK", nargs="+")


def _register_run(sub: SubParsers) -> None:
    p = command(
        sub,
        "run",
        run,
        "run tasks from a task definition",
        "Run COUNT tasks (RunTask). Placement failures go to stderr; the exit code is 1 "
        "when no task was placed (or, with --wait, when a task stopped).",
    )
    p.add_argument("taskdef", metavar="TASKDEF", help="family, family:revision or ARN")
    p.add_argument("--count", type=int, default=1, help="1 to 10 tasks (default 1)")
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment override for every container (repeatable)",
    )
    p.add_argument("--command", help="command override, split like a shell would")
    p.add_argument(
        "--container", metavar="NAME", help="container --command applies to (if several)"
    )
    add_placement_flags(p)
    p.add_argument("--group", help="task group (default family:NAME)")
    p.add_argument("--started-by", help="startedBy tag for the tasks")
    p.add_argument(
        "--enable-execute-command",
        action="store_true",
        help="allow `dockyard exec` in the tasks (ECS's enableExecuteCommand)",
    )
    p.add_argument("--wait", action="store_true", help="wait until RUNNING or STOPPED")
    p.add_argument("--timeout", type=float, default=300, help="seconds --wait waits (300)")


def add_placement_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--constraint",
        action="append",
        default=[],
        metavar="C",
        help="'distinctInstance' or 'memberOf(EXPRESSION)' (repeatable)",
    )
    p.add_argument(
        "--strategy",
        action="append",
        default=[],
        metavar="S",
        help="binpack:cpu|memory, spread:instanceId|host|attribute:NAME, random "
        "(repeatable, applied in order)",
    )


# ---------------------------------------------------------------- placement flags


def placement_constraints(items: list[str]) -> list[dict[str, str]]:
    out_list = []
    for text in items:
        text = text.strip()
        m = re.fullmatch(r"memberOf\s*\((.*)\)", text, re.S)
        if text == "distinctInstance":
            out_list.append({"type": "distinctInstance"})
        elif m and m.group(1).strip():
            out_list.append({"type": "memberOf", "expression": m.group(1).strip()})
        else:
            raise invalid(
                "--constraint", f"wants 'distinctInstance' or 'memberOf(EXPRESSION)', got {text!r}"
            )
    return out_list


def placement_strategies(items: list[str]) -> list[dict[str, str]]:
    out_list = []
    for text in items:
        kind, _, field = text.strip().partition(":")
        if kind not in STRATEGY_FIELDS or bool(field) != STRATEGY_FIELDS[kind]:
            raise invalid(
                "--strategy",
                f"wants binpack:FIELD, spread:FIELD or random, got {text!r}",
            )
        out_list.append({"type": kind, "field": field} if field else {"type": kind})
    return out_list


# ---------------------------------------------------------------- rendering


def task_row(t: dict[str, Any]) -> list[Any]:
    bindings = [b for c in t.get("containers", []) for b in c.get("networkBindings", [])]
    return [
        out.short_task(t["taskArn"]),
        out.taskdef_name(t.get("taskDefinitionArn")),
        t.get("lastStatus"),
        t.get("desiredStatus"),
        out.short(t.get("containerInstanceArn")),
        t.get("healthStatus"),
        out.age(t.get("startedAt")),
        out.ports(bindings),
    ]


def print_tasks(tasks: list[dict[str, Any]]) -> None:
    out.print_table(TASK_HEADERS, [task_row(t) for t in tasks])


def print_task_detail(t: dict[str, Any]) -> None:
    def when(key: str) -> str:
        at = t.get(key)
        return f"{out.local_time(at)} ({out.age(at)})" if at else ""

    print(
        out.key_values(
            [
                ("task", out.short(t["taskArn"])),
                ("arn", t["taskArn"]),
                ("definition", out.taskdef_name(t.get("taskDefinitionArn"))),
                ("instance", out.short(t.get("containerInstanceArn"))),
                ("status", f"{t.get('lastStatus')} (desired {t.get('desiredStatus')})"),
                ("health", t.get("healthStatus")),
                ("group", t.get("group")),
                ("started by", t.get("startedBy")),
                ("cpu / memory", f"{t.get('cpu')} / {t.get('memory')} MiB"),
                ("created", when("createdAt")),
                ("started", when("startedAt")),
                ("stopping", when("stoppingAt")),
                ("stopped", when("stoppedAt")),
                ("stop code", t.get("stopCode")),
                ("stopped reason", t.get("stoppedReason")),
            ]
        )
    )
    print()
    out.print_table(
        ("container", "image", "status", "exit code", "reason", "health", "ports", "docker id"),
        [
            [
                c.get("name"),
                c.get("image"),
                c.get("lastStatus"),
                c.get("exitCode"),
                c.get("reason"),
                c.get("healthStatus"),
                out.ports(c.get("networkBindings", [])),
                (c.get("runtimeId") or "")[:12],
            ]
            for c in t.get("containers", [])
        ],
    )


def report_failures(failures: list[dict[str, Any]], what: str = "not placed") -> None:
    for f in failures:
        subject = f" {out.short(f['arn'])}" if f.get("arn") else ""
        detail = f": {f['detail']}" if f.get("detail") else ""
        out.error(f"{what}{subject}: {f.get('reason')}{detail}")


# ---------------------------------------------------------------- run / stop


def wait_tasks(
    ctx: Ctx, arns: list[str], done: tuple[str, ...], timeout: float
) -> list[dict[str, Any]]:
    """Poll DescribeTasks until every task's lastStatus is one of `done`."""

    def check() -> list[dict[str, Any]] | None:
        found = describe_all(ctx, "DescribeTasks", "tasks", "tasks", arns)["tasks"]
        ok = len(found) == len(arns) and all(t["lastStatus"] in done for t in found)
        return found if ok else None

    return poll(check, timeout, f"{len(arns)} task(s) to be {' or '.join(done)}")


def _overrides(ctx: Ctx, args: argparse.Namespace) -> dict[str, Any]:
    env = [{"name": k, "value": v} for k, v in pairs(args.env, "--env")]
    if not env and args.command is None:
        return {}
    td = ctx.client.call("DescribeTaskDefinition", {"taskDefinition": args.taskdef})
    names = [c["name"] for c in td["taskDefinition"]["containerDefinitions"]]
    target = args.container or (names[0] if len(names) == 1 else None)
    if args.command is not None and target not in names:
        raise invalid(
            "--container",
            f"name the container for --command; the definition has {', '.join(names)}",
        )
    try:
        argv = shlex.split(args.command) if args.command is not None else None
    except ValueError as err:
        raise invalid("--command", str(err)) from None
    overrides = []
    for name in names:
        o: dict[str, Any] = {"name": name}
        if env:
            o["environment"] = env
        if argv is not None and name == target:
            o["command"] = argv
        overrides.append(o)
    return {"containerOverrides": overrides}


def _run_task(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    """RunTask; ECS's answer for an unknown definition names none, so the CLI adds which."""
    try:
        return ctx.call("RunTask", body)
    except ApiError as err:
        if err.message != TASKDEF_NOT_FOUND:
            raise
        ref = body["taskDefinition"]
        raise ApiError(
            err.name, f"{TASKDEF_NOT_FOUND} {ref!r} (see dockyard task-definitions list)"
        ) from None


def run(ctx: Ctx, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"taskDefinition": args.taskdef, "count": args.count}
    optional = {
        "overrides": _overrides(ctx, args),
        "placementConstraints": placement_constraints(args.constraint),
        "placementStrategy": placement_strategies(args.strategy),
        "group": args.group,
        "startedBy": args.started_by,
        "enableExecuteCommand": args.enable_execute_command,
    }
    body.update({k: v for k, v in optional.items() if v})
    reply = _run_task(ctx, body)
    arns = [t["taskArn"] for t in reply["tasks"]]
    if args.wait and arns:
        reply = {**reply, "tasks": wait_tasks(ctx, arns, ("RUNNING", "STOPPED"), args.timeout)}
    if ctx.json:
        out.print_json(reply)
    elif arns:
        print_tasks(reply["tasks"])
    report_failures(reply.get("failures", []))
    stopped = [t for t in reply["tasks"] if t["lastStatus"] == "STOPPED"]
    for t in stopped:
        out.error(f"task {out.short_task(t['taskArn'])} stopped: {_why(t)}")
    return 1 if not arns or stopped else 0


def _why(t: dict[str, Any]) -> str:
    parts = [t.get("stopCode"), t.get("stoppedReason")]
    for c in t.get("containers", []):
        if c.get("exitCode") is not None or c.get("reason"):
            parts.append(f"{c['name']} exit {c.get('exitCode', '-')} {c.get('reason', '')}")
    return "; ".join(p.strip() for p in parts if p)


def stop(ctx: Ctx, args: argparse.Namespace) -> int:
    body = {"task": resolve_task(ctx, args.task)}
    if args.reason:
        body["reason"] = args.reason
    reply = ctx.call("StopTask", body)
    if args.wait:
        reply = {"task": wait_tasks(ctx, [reply["task"]["taskArn"]], ("STOPPED",), args.timeout)[0]}
    if ctx.json:
        out.print_json(reply)
    elif args.wait:
        print_task_detail(reply["task"])
    else:
        print_tasks([reply["task"]])
    return 0


# ---------------------------------------------------------------- tasks list / describe


def tasks_list(ctx: Ctx, args: argparse.Namespace) -> int:
    body = {
        "desiredStatus": args.desired_status,
        "family": args.family,
        "serviceName": args.service,
        "startedBy": args.started_by,
        "containerInstance": resolve_instance(ctx, args.instance) if args.instance else None,
    }
    arns = list_all(ctx, "ListTasks", "taskArns", {k: v for k, v in body.items() if v})
    reply = describe_all(ctx, "DescribeTasks", "tasks", "tasks", arns)
    reply["tasks"].sort(key=lambda t: (t.get("createdAt") or 0, t["taskArn"]))
    if ctx.json:
        out.print_json(reply)
    else:
        print_tasks(reply["tasks"])
    return 0


def tasks_describe(ctx: Ctx, args: argparse.Namespace) -> int:
    refs = [resolve_task(ctx, r) for r in args.tasks]
    reply = describe_all(ctx, "DescribeTasks", "tasks", "tasks", refs)
    if ctx.json:
        out.print_json(reply)
    else:
        for i, t in enumerate(reply["tasks"]):
            if i:
                print()
            print_task_detail(t)
    report_failures(reply["failures"], "task")
    return 1 if reply["failures"] else 0
