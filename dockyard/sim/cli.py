"""`dockyard sim`: simulated agents against a real controller, to size it before buying hosts.

`--processes K` splits the agents over K child processes (the same command, each with its
own `--first-index` range), since one Python process tops out at a few thousand streams'
worth of traffic on one core.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys

from dockyard.client import DEFAULT_CONTROLLER
from dockyard.sim.model import SimConfig


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "sim",
        help="run simulated agents (the real protocol, no Docker) against a controller",
        description="Simulated agents: register, heartbeat, take desired state and report "
        "task status like real agents, without Docker. Identities derive from --seed and "
        "the agent index, so a restarted simulator brings back the same instances.",
    )
    p.add_argument("--agents", type=int, default=100, help="how many (default %(default)s)")
    p.add_argument(
        "--controller",
        default=os.environ.get("DOCKYARD_CONTROLLER", DEFAULT_CONTROLLER),
        help="controller gRPC address (default %(default)s)",
    )
    p.add_argument("--cluster", default="default", help="cluster to join (default %(default)s)")
    p.add_argument(
        "--containers-per-agent",
        type=int,
        default=10,
        help="capacity of each simulated host, in tasks of 128 CPU units / 128 MiB "
        "(default %(default)s)",
    )
    p.add_argument(
        "--start-latency-ms",
        type=float,
        default=200.0,
        help="simulated pull+start time of a task, ±50%% (default %(default)s)",
    )
    p.add_argument(
        "--failure-rate",
        type=float,
        default=0.0,
        help="fraction of task starts whose essential container exits (default %(default)s)",
    )
    p.add_argument(
        "--exit-code", type=int, default=1, help="exit code of failed starts (default 1)"
    )
    p.add_argument(
        "--heartbeat-period",
        type=float,
        default=0.0,
        help="seconds between heartbeats, overriding the controller's period "
        "(default 0: obey the controller)",
    )
    p.add_argument(
        "--processes", type=int, default=1, help="child processes to spread the agents over"
    )
    p.add_argument(
        "--streams-per-channel",
        type=int,
        default=250,
        help="agent streams sharing one HTTP/2 connection (default %(default)s)",
    )
    p.add_argument(
        "--join-token",
        default=os.environ.get("DOCKYARD_JOIN_TOKEN", ""),
        help="join token from `dockyard tokens create` (a controller may let loopback "
        "agents join without one: --open-loopback-agents)",
    )
    p.add_argument("--seed", default="sim", help="identity seed (default %(default)s)")
    p.add_argument(
        "--attribute",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an attribute every simulated agent registers with, e.g. "
        "dockyard.capacity-provider=NAME to join a capacity provider (repeatable)",
    )
    p.add_argument(
        "--first-index", type=int, default=0, help="index of the first agent (default 0)"
    )
    p.add_argument(
        "--report-every",
        type=float,
        default=10.0,
        help="seconds between summary lines, 0 for none (default %(default)s)",
    )
    p.add_argument(
        "--duration", type=float, default=0.0, help="stop after this many seconds (0: never)"
    )
    p.set_defaults(handler=run)


def config_from_args(args: argparse.Namespace, agents: int, first: int) -> SimConfig:
    return SimConfig(
        controller=args.controller,
        agents=agents,
        first_index=first,
        cluster=args.cluster,
        seed=args.seed,
        containers_per_agent=args.containers_per_agent,
        start_latency_ms=args.start_latency_ms,
        failure_rate=args.failure_rate,
        exit_code=args.exit_code,
        heartbeat_period=args.heartbeat_period,
        streams_per_channel=args.streams_per_channel,
        join_token=args.join_token,
        attributes=tuple(_attribute(a) for a in args.attribute),
    )


def _attribute(raw: str) -> tuple[str, str]:
    name, sep, value = raw.partition("=")
    if not sep or not name:
        raise SystemExit(f"--attribute: {raw!r} is not NAME=VALUE")
    return name, value


def split(total: int, parts: int) -> list[tuple[int, int]]:
    """(count, offset) per part: `total` agents over `parts` processes, sizes differing by 1."""
    base, extra = divmod(total, parts)
    out, offset = [], 0
    for i in range(parts):
        n = base + (1 if i < extra else 0)
        if n:
            out.append((n, offset))
        offset += n
    return out


def run(args: argparse.Namespace) -> int:
    if args.processes < 1:
        print("--processes: must be at least 1", file=sys.stderr)
        return 2
    try:
        config_from_args(args, args.agents, args.first_index).check()
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    if args.processes > 1:
        return _run_children(args)
    import uvloop

    cfg = config_from_args(args, args.agents, args.first_index)
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(_serve(cfg, args.report_every, args.duration))
    return 0


async def _serve(cfg: SimConfig, report_every: float, duration: float) -> None:
    from dockyard.sim.fleet import run_fleet

    task = asyncio.create_task(run_fleet(cfg, report_every, duration))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _run_children(args: argparse.Namespace) -> int:
    """Re-run this command once per part; forward SIGTERM/SIGINT; wait for all."""
    base = [sys.executable, "-m", "dockyard.cli.main", "sim"]
    skip = {"--agents", "--first-index", "--processes", "--join-token"}  # token: by env
    rest: list[str] = []
    for key, value in vars(args).items():
        flag = "--" + key.replace("_", "-")
        if flag in skip or key in ("handler", "command"):
            continue
        if not isinstance(value, str | int | float):
            continue
        rest += [flag, str(value)]
    children = [
        subprocess.Popen(
            [*base, "--agents", str(n), "--first-index", str(args.first_index + off), *rest],
            env={**os.environ, "DOCKYARD_JOIN_TOKEN": args.join_token},
        )
        for n, off in split(args.agents, args.processes)
    ]

    def forward(sig: int, _frame: object) -> None:
        for c in children:
            with contextlib.suppress(ProcessLookupError):
                c.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [c.wait() for c in children]
    return max(codes, default=0)
