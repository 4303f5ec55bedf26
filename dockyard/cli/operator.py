"""The operator's commands: clusters and task definitions here; tasks, instances and
services in their own modules, registered from here in help order."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dockyard.cli import capacity, exec_cmd, instances, schedules, services, streams, tasks, top
from dockyard.cli import output as out
from dockyard.cli.common import Ctx, SubParsers, command, group, list_all
from dockyard.errors import invalid

# Fields `describe-task-definition` returns that RegisterTaskDefinition does not take:
# dropped so that a described definition can be registered again as it is.
READ_ONLY_TASKDEF_FIELDS = (
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "registeredBy",
    "deregisteredAt",
    "deleteRequestedAt",
)


def register(sub: SubParsers) -> None:
    _register_clusters(sub)
    _register_taskdefs(sub)
    tasks.register(sub)
    streams.register(sub)
    exec_cmd.register(sub)
    instances.register(sub)
    services.register(sub)
    top.register(sub)
    capacity.register(sub)  # issue 22
    schedules.register(sub)  # issue 22: EventBridge scheduled rules


# ---------------------------------------------------------------- clusters


def _register_clusters(sub: SubParsers) -> None:
    verbs = group(sub, "clusters", "list, create, delete and describe clusters")
    command(verbs, "list", clusters_list, "list clusters with their instance and task counts")
    p = command(verbs, "create", clusters_create, "create a cluster")
    p.add_argument("name", metavar="NAME")
    p = command(verbs, "delete", clusters_delete, "delete a cluster (no instances or services)")
    p.add_argument("name", metavar="NAME")
    p = command(verbs, "describe", clusters_describe, "describe a cluster (default --cluster)")
    p.add_argument("name", metavar="NAME", nargs="?")


def _cluster_rows(clusters: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            c["clusterName"],
            c["status"],
            c.get("registeredContainerInstancesCount", 0),
            c.get("runningTasksCount", 0),
            c.get("pendingTasksCount", 0),
            c.get("activeServicesCount", 0),
        ]
        for c in clusters
    ]


CLUSTER_HEADERS = ("name", "status", "instances", "running", "pending", "services")


def _show_clusters(ctx: Ctx, reply: dict[str, Any], key: str = "clusters") -> int:
    if ctx.json:
        out.print_json(reply)
        return 0
    items = reply[key] if isinstance(reply[key], list) else [reply[key]]
    out.print_table(CLUSTER_HEADERS, _cluster_rows(items))
    return 0


def clusters_list(ctx: Ctx, args: argparse.Namespace) -> int:
    arns = list_all(ctx, "ListClusters", "clusterArns")
    reply = ctx.client.call("DescribeClusters", {"clusters": arns}) if arns else {"clusters": []}
    return _show_clusters(ctx, reply)


def clusters_create(ctx: Ctx, args: argparse.Namespace) -> int:
    return _show_clusters(
        ctx, ctx.client.call("CreateCluster", {"clusterName": args.name}), "cluster"
    )


def clusters_delete(ctx: Ctx, args: argparse.Namespace) -> int:
    return _show_clusters(ctx, ctx.client.call("DeleteCluster", {"cluster": args.name}), "cluster")


def clusters_describe(ctx: Ctx, args: argparse.Namespace) -> int:
    name = args.name or ctx.cluster
    reply = ctx.client.call("DescribeClusters", {"clusters": [name]})
    for f in reply.get("failures", []):
        out.error(f"{f.get('arn', name)}: {f.get('reason')}")
    if not reply.get("clusters"):
        return 1
    if ctx.json:
        out.print_json(reply)
        return 0
    c = reply["clusters"][0]
    print(out.key_values([("cluster", c["clusterName"]), ("arn", c["clusterArn"])]))
    print()
    out.print_table(CLUSTER_HEADERS, _cluster_rows([c]))
    return 0


# ---------------------------------------------------------------- task definitions


def _register_taskdefs(sub: SubParsers) -> None:
    verbs = group(sub, "task-definitions", "register, list, describe and deregister definitions")
    p = command(
        verbs,
        "register",
        taskdefs_register,
        "register a task definition from an ECS JSON file",
        "Register a task definition from a JSON file in the format "
        "`aws ecs register-task-definition --cli-input-json` takes (the output of "
        "`describe` is accepted too). `-` reads standard input.",
    )
    p.add_argument("file", metavar="FILE.json")
    p = command(verbs, "list", taskdefs_list, "list task definitions (family:revision)")
    p.add_argument("--family-prefix", help="only this family (the full name, as in ECS)")
    p.add_argument(
        "--status", choices=("ACTIVE", "INACTIVE"), default="ACTIVE", help="default ACTIVE"
    )
    p = command(verbs, "describe", taskdefs_describe, "show a definition and its containers")
    p.add_argument("taskdef", metavar="FAMILY[:REV]")
    p = command(verbs, "deregister", taskdefs_deregister, "mark a revision INACTIVE")
    p.add_argument("taskdef", metavar="FAMILY:REV")


def read_json_file(path: str, field: str = "FILE") -> Any:
    """A JSON document from a file (or `-`); bad files are refused with the line and column."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise invalid(field, f"cannot read {path}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise invalid(field, f"{path} is not UTF-8 text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise invalid(
            field, f"{path} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
        ) from None


def load_taskdef(path: str) -> dict[str, Any]:
    doc = read_json_file(path)
    if isinstance(doc, dict) and isinstance(doc.get("taskDefinition"), dict):
        doc = doc["taskDefinition"]  # `describe-task-definition` output
    if not isinstance(doc, dict):
        raise invalid("FILE", f"{path} must hold a JSON object (a task definition)")
    return {k: v for k, v in doc.items() if k not in READ_ONLY_TASKDEF_FIELDS}


def _container_rows(td: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for c in td.get("containerDefinitions", []):
        maps = [
            f"{pm.get('hostPort') or 'dyn'}->{pm.get('containerPort')}/{pm.get('protocol', 'tcp')}"
            for pm in c.get("portMappings", [])
        ]
        rows.append(
            [
                c.get("name"),
                c.get("image"),
                c.get("cpu") or None,
                c.get("memory"),
                c.get("memoryReservation"),
                c.get("essential", True),
                ", ".join(maps),
                " ".join(c.get("command") or []),
            ]
        )
    return rows


def show_taskdef(ctx: Ctx, reply: dict[str, Any]) -> int:
    if ctx.json:
        out.print_json(reply)
        return 0
    td = reply["taskDefinition"]
    print(
        out.key_values(
            [
                ("task definition", f"{td.get('family')}:{td.get('revision')}"),
                ("arn", td.get("taskDefinitionArn")),
                ("status", td.get("status")),
                ("network mode", td.get("networkMode")),
                ("cpu", td.get("cpu")),
                ("memory", td.get("memory")),
                ("registered", out.local_time(td.get("registeredAt"))),
            ]
        )
    )
    print()
    out.print_table(
        ("container", "image", "cpu", "memory", "reservation", "essential", "ports", "command"),
        _container_rows(td),
    )
    return 0


def taskdefs_register(ctx: Ctx, args: argparse.Namespace) -> int:
    doc = load_taskdef(args.file)
    return show_taskdef(ctx, ctx.client.call("RegisterTaskDefinition", doc))


def taskdefs_list(ctx: Ctx, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"status": args.status}
    if args.family_prefix:
        body["familyPrefix"] = args.family_prefix
    arns = list_all(ctx, "ListTaskDefinitions", "taskDefinitionArns", body)
    if ctx.json:
        out.print_json({"taskDefinitionArns": arns})
        return 0
    names = [out.taskdef_name(a) for a in arns]
    out.print_table(
        ("task definition", "family", "revision", "status"),
        [[n, n.rpartition(":")[0], n.rpartition(":")[2], args.status] for n in names],
    )
    return 0


def taskdefs_describe(ctx: Ctx, args: argparse.Namespace) -> int:
    reply = ctx.client.call("DescribeTaskDefinition", {"taskDefinition": args.taskdef})
    return show_taskdef(ctx, reply)


def taskdefs_deregister(ctx: Ctx, args: argparse.Namespace) -> int:
    if ":" not in args.taskdef.rsplit("/", 1)[-1]:
        raise invalid("FAMILY:REV", f"give the revision to deregister, e.g. {args.taskdef}:1")
    reply = ctx.client.call("DeregisterTaskDefinition", {"taskDefinition": args.taskdef})
    return show_taskdef(ctx, reply)
