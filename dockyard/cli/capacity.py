"""Capacity provider commands (issue 22): `capacity-providers create|update|list|delete|use`.
A provider is a host group whose size the operator's `--group-size-command` changes
(`{desired}` is replaced by the size); agents join it with `dockyard agent
--capacity-provider NAME`."""

from __future__ import annotations

import argparse
from typing import Any

from dockyard.cli import output as out
from dockyard.cli.common import Ctx, SubParsers, command, group
from dockyard.errors import invalid

COMMAND_TAG = "dockyard:group-size-command"
HEADERS = ("name", "host group", "target %", "steps", "warm-up", "protection", "command")


def register(sub: SubParsers) -> None:
    verbs = group(sub, "capacity-providers", "host groups that managed scaling grows and shrinks")
    p = command(verbs, "create", cp_create, "create a capacity provider on a host group")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--group-size-command", required=True, metavar="'CMD {desired}'")
    p.add_argument("--host-group", help="the group's name (default: NAME-hosts)")
    _scaling_flags(p)
    p = command(verbs, "update", cp_update, "change a provider's managed scaling")
    p.add_argument("name", metavar="NAME")
    _scaling_flags(p)
    command(verbs, "list", cp_list, "list capacity providers")
    p = command(verbs, "delete", cp_delete, "delete a capacity provider")
    p.add_argument("name", metavar="NAME")
    p = command(verbs, "use", cp_use, "set the cluster's providers and default strategy")
    p.add_argument("names", metavar="NAME[:WEIGHT[:BASE]]", nargs="*")


def _scaling_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target-capacity", type=int, help="percent of the group to fill (1-100)")
    p.add_argument("--min-step", type=int, help="fewest hosts added at once")
    p.add_argument("--max-step", type=int, help="most hosts added at once")
    p.add_argument("--warmup", type=int, help="seconds before a new host counts")
    p.add_argument(
        "--termination-protection",
        choices=("ENABLED", "DISABLED"),
        help="ENABLED: never remove a host that runs tasks",
    )


def _group(args: argparse.Namespace) -> dict[str, Any]:
    scaling = {
        key: value
        for key, value in (
            ("targetCapacity", args.target_capacity),
            ("minimumScalingStepSize", args.min_step),
            ("maximumScalingStepSize", args.max_step),
            ("instanceWarmupPeriod", args.warmup),
        )
        if value is not None
    }
    out_group: dict[str, Any] = {"managedScaling": {"status": "ENABLED", **scaling}}
    if args.termination_protection:
        out_group["managedTerminationProtection"] = args.termination_protection
    return out_group


def _show(ctx: Ctx, providers: list[dict[str, Any]]) -> int:
    if ctx.json:
        out.print_json({"capacityProviders": providers})
        return 0
    rows = []
    for p in providers:
        asg = p["autoScalingGroupProvider"]
        ms = asg["managedScaling"]
        cmd = next((t["value"] for t in p.get("tags", []) if t["key"] == COMMAND_TAG), "")
        steps = f"{ms['minimumScalingStepSize']}-{ms['maximumScalingStepSize']}"
        rows.append(
            [
                p["name"],
                asg["autoScalingGroupArn"],
                ms["targetCapacity"],
                steps,
                ms["instanceWarmupPeriod"],
                asg["managedTerminationProtection"],
                cmd,
            ]
        )
    out.print_table(HEADERS, rows)
    return 0


def cp_create(ctx: Ctx, args: argparse.Namespace) -> int:
    if "{desired}" not in args.group_size_command:
        raise invalid("--group-size-command", "must contain {desired}, the group's new size")
    body = {
        "name": args.name,
        "autoScalingGroupProvider": {
            "autoScalingGroupArn": args.host_group or f"{args.name}-hosts",
            **_group(args),
        },
        "tags": [{"key": COMMAND_TAG, "value": args.group_size_command}],
    }
    return _show(ctx, [ctx.client.call("CreateCapacityProvider", body)["capacityProvider"]])


def cp_update(ctx: Ctx, args: argparse.Namespace) -> int:
    body = {"name": args.name, "autoScalingGroupProvider": _group(args)}
    reply = ctx.client.call("UpdateCapacityProvider", body)
    return _show(ctx, [reply["capacityProvider"]])


def cp_list(ctx: Ctx, args: argparse.Namespace) -> int:
    reply = ctx.client.call("DescribeCapacityProviders", {"include": ["TAGS"], "maxResults": 10})
    providers = list(reply["capacityProviders"])
    while reply.get("nextToken"):
        body = {"include": ["TAGS"], "nextToken": reply["nextToken"], "maxResults": 10}
        reply = ctx.client.call("DescribeCapacityProviders", body)
        providers += reply["capacityProviders"]
    return _show(ctx, providers)


def cp_delete(ctx: Ctx, args: argparse.Namespace) -> int:
    ctx.client.call("DeleteCapacityProvider", {"capacityProvider": args.name})
    print(f"deleted capacity provider {args.name}")
    return 0


def cp_use(ctx: Ctx, args: argparse.Namespace) -> int:
    """`use a:1:2 b:3`: providers a and b, a default strategy of weights (and a base)."""
    names, strategy = [], []
    for raw in args.names:
        name, *rest = raw.split(":")
        if len(rest) > 2 or not all(r.isdigit() for r in rest):
            raise invalid("NAME[:WEIGHT[:BASE]]", f"{raw!r}: weight and base are integers")
        names.append(name)
        if rest:
            item = {"capacityProvider": name, "weight": int(rest[0])}
            strategy.append(item | ({"base": int(rest[1])} if len(rest) == 2 else {}))
    body = {"capacityProviders": names, "defaultCapacityProviderStrategy": strategy}
    reply = ctx.call("PutClusterCapacityProviders", body)["cluster"]
    if ctx.json:
        out.print_json(reply)
    else:
        print(f"cluster {reply['clusterName']}: providers {' '.join(names) or '(none)'}")
    return 0
