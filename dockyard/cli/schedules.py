"""Scheduled tasks (issue 22): `dockyard schedules list`, EventBridge's scheduled rules with
their next and last firing times. Rules are made with EventBridge's API (`aws events
put-rule`, boto3's `events` client), which the controller serves."""

from __future__ import annotations

import argparse

from dockyard.cli import output as out
from dockyard.cli.common import Ctx, SubParsers, command, group

HEADERS = ("rule", "schedule", "state", "next firing", "last firing", "clusters")


def register(sub: SubParsers) -> None:
    verbs = group(sub, "schedules", "EventBridge scheduled rules that run tasks")
    command(verbs, "list", schedules_list, "list scheduled rules and their next firing times")


def schedules_list(ctx: Ctx, args: argparse.Namespace) -> int:
    reply = ctx.client.call("DescribeSchedules", {})
    if ctx.json:
        out.print_json(reply)
        return 0
    rows = [
        [
            s["name"],
            s["scheduleExpression"],
            s["state"],
            out.local_time(s.get("nextFiring")) or "-",
            out.local_time(s.get("lastFiring")) or "-",
            ",".join(s["targets"]) or "-",
        ]
        for s in reply["schedules"]
    ]
    out.print_table(HEADERS, rows)
    return 0
