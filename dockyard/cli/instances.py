"""Container instance commands: `instances list|describe|drain|activate|deregister` and
`attributes put|list|delete`. Instances are named by id, id prefix, ARN or hostname."""

from __future__ import annotations

import argparse
from typing import Any

from dockyard.cli import output as out
from dockyard.cli.common import (
    Ctx,
    SubParsers,
    attribute,
    command,
    describe_all,
    group,
    list_all,
    pairs,
    resolve_instance,
)
from dockyard.cli.tasks import print_tasks

INSTANCE_HEADERS = (
    "instance",
    "hostname",
    "status",
    "connected",
    "cpu free/total",
    "mem free/total",
    "task ports",
    "tasks",
    "attributes",
)
# Attributes the agent sets itself; the table shows the operator's ones (zone, ...).
SYSTEM_PREFIXES = ("ecs.", "dockyard.")
ATTRIBUTES_PER_CALL = 10


def register(sub: SubParsers) -> None:
    verbs = group(sub, "instances", "list, describe, drain and deregister container instances")
    p = command(verbs, "list", instances_list, "list instances with resources and tasks")
    p.add_argument("--status", choices=("ACTIVE", "DRAINING"), help="only instances in this status")
    p.add_argument("--filter", metavar="EXPR", help="cluster query, e.g. 'attribute:zone == b'")
    p = command(verbs, "describe", instances_describe, "resources, attributes and tasks")
    p.add_argument("instance", metavar="ID")
    for verb, status, text in (
        ("drain", "DRAINING", "stop placing tasks on instances; services move theirs off"),
        ("activate", "ACTIVE", "make draining instances ACTIVE again"),
    ):
        p = command(verbs, verb, instances_state, text)
        p.add_argument("instances", metavar="ID", nargs="+")
        p.set_defaults(status=status)
    p = command(verbs, "deregister", instances_deregister, "remove an instance from the cluster")
    p.add_argument("instance", metavar="ID")
    p.add_argument("--force", action="store_true", help="even with tasks on it (they stop)")

    verbs = group(sub, "attributes", "put, list and delete instance attributes")
    p = command(verbs, "put", attributes_put, "set attributes on an instance")
    p.add_argument("instance", metavar="ID")
    p.add_argument("attributes", metavar="NAME=VALUE", nargs="+")
    p = command(verbs, "list", attributes_list, "list attributes of the cluster's instances")
    p.add_argument("--name", help="only this attribute")
    p.add_argument("--value", help="only attributes with this value (with --name)")
    p = command(verbs, "delete", attributes_delete, "remove attributes from an instance")
    p.add_argument("instance", metavar="ID")
    p.add_argument("names", metavar="NAME", nargs="+")


# ---------------------------------------------------------------- rendering


def _resource(resources: list[dict[str, Any]], name: str) -> Any:
    for r in resources:
        if r.get("name") == name:
            return (
                r.get("stringSetValue") if r.get("type") == "STRINGSET" else r.get("integerValue")
            )
    return None


def task_ports(ci: dict[str, Any]) -> list[str]:
    """Host ports taken by tasks: remaining PORTS (in use) minus the registered reserved ones."""
    out_list = []
    for name, suffix in (("PORTS", ""), ("PORTS_UDP", "/udp")):
        used = _resource(ci.get("remainingResources", []), name) or []
        reserved = set(_resource(ci.get("registeredResources", []), name) or [])
        ports = sorted((p for p in used if p not in reserved), key=int)
        out_list += [f"{p}{suffix}" for p in ports]
    return out_list


def _free_total(ci: dict[str, Any], name: str) -> str:
    free = _resource(ci.get("remainingResources", []), name)
    total = _resource(ci.get("registeredResources", []), name)
    return f"{'?' if free is None else free}/{total}"


def custom_attributes(ci: dict[str, Any]) -> str:
    return " ".join(
        f"{a['name']}={a.get('value', '')}"
        for a in ci.get("attributes", [])
        if not a["name"].startswith(SYSTEM_PREFIXES)
    )


def instance_row(ci: dict[str, Any]) -> list[Any]:
    pending = ci.get("pendingTasksCount", 0)
    return [
        out.short(ci["containerInstanceArn"]),
        attribute(ci, "dockyard.hostname"),
        ci.get("status"),
        ci.get("agentConnected"),
        _free_total(ci, "CPU"),
        _free_total(ci, "MEMORY"),
        out.short_list(task_ports(ci)),
        f"{ci.get('runningTasksCount', 0)}" + (f" (+{pending} pending)" if pending else ""),
        custom_attributes(ci),
    ]


def print_instances(instances: list[dict[str, Any]]) -> None:
    out.print_table(INSTANCE_HEADERS, [instance_row(ci) for ci in instances])


def _show(ctx: Ctx, reply: dict[str, Any], key: str = "containerInstances") -> int:
    if ctx.json:
        out.print_json(reply)
    else:
        items = reply[key] if isinstance(reply[key], list) else [reply[key]]
        print_instances(items)
    for f in reply.get("failures", []):
        out.error(f"instance {out.short(f.get('arn'))}: {f.get('reason')}")
    return 1 if reply.get("failures") else 0


# ---------------------------------------------------------------- instances


def instances_list(ctx: Ctx, args: argparse.Namespace) -> int:
    body = {k: v for k, v in (("status", args.status), ("filter", args.filter)) if v}
    arns = list_all(ctx, "ListContainerInstances", "containerInstanceArns", body)
    reply = describe_all(
        ctx, "DescribeContainerInstances", "containerInstances", "containerInstances", arns
    )
    return _show(ctx, reply)


def instances_describe(ctx: Ctx, args: argparse.Namespace) -> int:
    arn = resolve_instance(ctx, args.instance)
    reply = ctx.call("DescribeContainerInstances", {"containerInstances": [arn]})
    if ctx.json or not reply.get("containerInstances"):
        return _show(ctx, reply)
    ci = reply["containerInstances"][0]
    version = ci.get("versionInfo", {})
    print(
        out.key_values(
            [
                ("instance", out.short(ci["containerInstanceArn"])),
                ("arn", ci["containerInstanceArn"]),
                ("hostname", attribute(ci, "dockyard.hostname")),
                ("status", ci.get("status")),
                ("agent connected", ci.get("agentConnected")),
                ("agent version", version.get("agentVersion")),
                ("docker", version.get("dockerVersion", "").removeprefix("DockerVersion: ")),
                (
                    "registered",
                    f"{out.local_time(ci.get('registeredAt'))} ({out.age(ci.get('registeredAt'))})",
                ),
            ]
        )
    )
    print()
    rows = []
    for name in ("CPU", "MEMORY", "PORTS", "PORTS_UDP"):
        reg = _resource(ci.get("registeredResources", []), name)
        rem = _resource(ci.get("remainingResources", []), name)
        if isinstance(reg, list):
            rows.append([name, f"{len(reg)} reserved", f"{len(rem or [])} in use"])
        else:
            rows.append([name, reg, rem])
    out.print_table(("resource", "registered", "remaining"), rows)
    print()
    out.print_table(
        ("attribute", "value"), [[a["name"], a.get("value")] for a in ci.get("attributes", [])]
    )
    arns = list_all(ctx, "ListTasks", "taskArns", {"containerInstance": arn})
    if arns:
        print()
        print_tasks(describe_all(ctx, "DescribeTasks", "tasks", "tasks", arns)["tasks"])
    return 0


def instances_state(ctx: Ctx, args: argparse.Namespace) -> int:
    arns = [resolve_instance(ctx, ref) for ref in args.instances]
    reply = ctx.call(
        "UpdateContainerInstancesState", {"containerInstances": arns, "status": args.status}
    )
    return _show(ctx, reply)


def instances_deregister(ctx: Ctx, args: argparse.Namespace) -> int:
    body = {"containerInstance": resolve_instance(ctx, args.instance), "force": args.force}
    return _show(ctx, ctx.call("DeregisterContainerInstance", body), "containerInstance")


# ---------------------------------------------------------------- attributes


def _change_attributes(ctx: Ctx, operation: str, items: list[dict[str, str]]) -> int:
    """Put or Delete in batches of ECS's 10 per call."""
    done: list[dict[str, Any]] = []
    for i in range(0, len(items), ATTRIBUTES_PER_CALL):
        done += ctx.call(operation, {"attributes": items[i : i + ATTRIBUTES_PER_CALL]})[
            "attributes"
        ]
    return _show_attributes(ctx, {"attributes": done}, values=operation == "PutAttributes")


def _show_attributes(ctx: Ctx, reply: dict[str, Any], values: bool = True) -> int:
    if ctx.json:
        out.print_json(reply)
        return 0
    rows = [[out.short(a.get("targetId")), a["name"], a.get("value")] for a in reply["attributes"]]
    if values:
        out.print_table(("instance", "name", "value"), rows)
    else:
        out.print_table(("instance", "deleted"), [row[:2] for row in rows])
    return 0


def attributes_put(ctx: Ctx, args: argparse.Namespace) -> int:
    target = resolve_instance(ctx, args.instance)
    items = [
        {"name": k, "value": v, "targetType": "container-instance", "targetId": target}
        for k, v in pairs(args.attributes, "NAME=VALUE")
    ]
    return _change_attributes(ctx, "PutAttributes", items)


def attributes_delete(ctx: Ctx, args: argparse.Namespace) -> int:
    target = resolve_instance(ctx, args.instance)
    items = [
        {"name": n, "targetType": "container-instance", "targetId": target} for n in args.names
    ]
    return _change_attributes(ctx, "DeleteAttributes", items)


def attributes_list(ctx: Ctx, args: argparse.Namespace) -> int:
    body = {"targetType": "container-instance"}
    if args.name:
        body["attributeName"] = args.name
    if args.value:
        body["attributeValue"] = args.value
    return _show_attributes(
        ctx, {"attributes": list_all(ctx, "ListAttributes", "attributes", body)}
    )
