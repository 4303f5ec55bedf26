"""Streaming commands: `events [TASK] [-f]` and `logs TASK [-f]` (Ctrl-C exits 130)."""

from __future__ import annotations

import argparse
import json
import sys

from dockyard.cli import output as out
from dockyard.cli.common import Ctx, SubParsers, command, resolve_task
from dockyard.errors import invalid


def register(sub: SubParsers) -> None:
    p = command(
        sub,
        "events",
        events,
        "show task and instance events, newest last",
        "Show the cluster's events (task lifecycle, instances, services) with local "
        "timestamps, newest last. With --output json, one JSON object per line.",
    )
    p.add_argument("task", metavar="TASK", nargs="?", help="only this task's events")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new events")

    p = command(sub, "logs", logs, "print a task's container output")
    p.add_argument("task", metavar="TASK")
    p.add_argument("--container", metavar="NAME", help="only this container")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new output")
    p.add_argument("--tail", type=int, default=0, metavar="N", help="only the last N lines")


def _subject(kind: str, subject: str) -> str:
    if kind == "task":
        return f"task {out.short_task(subject)}"
    if kind == "taskdef":
        return f"taskdef {out.taskdef_name(subject)}"
    return f"{kind} {out.short(subject)}" if subject else kind


def events(ctx: Ctx, args: argparse.Namespace) -> int:
    task = resolve_task(ctx, args.task) if args.task else ""
    for ev in ctx.client.watch_events(ctx.cluster, task, args.follow):
        if ctx.json:
            doc = {
                "seq": ev.seq,
                "at": ev.at,
                "cluster": ev.cluster,
                "kind": ev.kind,
                "subject": ev.subject,
                "message": ev.message,
                "detail": json.loads(ev.detail_json or "{}"),
            }
            print(json.dumps(doc), flush=True)
        else:
            stamp = out.local_time(ev.at, millis=True)
            print(f"{stamp}  {_subject(ev.kind, ev.subject)}  {ev.message}", flush=True)
    return 0


class _Prefixer:
    """Writes log bytes; with several containers each whole line gets `name | `."""

    def __init__(self, prefix: bool) -> None:
        sys.stdout.flush()
        self.stream = sys.stdout.buffer
        self.prefix = prefix
        self.partial: dict[str, bytes] = {}

    def write(self, container: str, data: bytes) -> None:
        if not self.prefix:
            self.stream.write(data)
        else:
            *lines, rest = (self.partial.pop(container, b"") + data).split(b"\n")
            for line in lines:
                self.stream.write(container.encode() + b" | " + line + b"\n")
            if rest:
                self.partial[container] = rest
        self.stream.flush()

    def close(self) -> None:
        for container, rest in self.partial.items():
            self.stream.write(container.encode() + b" | " + rest + b"\n")
        self.partial.clear()
        self.stream.flush()


def logs(ctx: Ctx, args: argparse.Namespace) -> int:
    arn = resolve_task(ctx, args.task)
    if args.tail < 0:
        raise invalid("--tail", "must be 0 (everything) or more")
    found = ctx.call("DescribeTasks", {"tasks": [arn]})
    if not found["tasks"]:
        raise invalid("TASK", f"task {args.task} was not found in cluster {ctx.cluster}")
    several = len(found["tasks"][0].get("containers", [])) > 1 and not args.container
    sink = _Prefixer(several)
    try:
        for line in ctx.client.logs(arn, ctx.cluster, args.container or "", args.follow, args.tail):
            sink.write(line.container, line.data)
    finally:
        sink.close()
    return 0
