"""`dockyard agent`: configuration from flags, then the agent runtime on uvloop."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from agent import host
from agent.dns_server import DnsUnavailable
from agent.engine_claim import EngineClaimed
from agent.image_cleanup import CleanupPolicy
from agent.runtime import Agent, AgentConfig


def config_from_args(args: argparse.Namespace) -> AgentConfig:
    return AgentConfig(
        controller=args.controller,
        state_dir=Path(args.state_dir),
        docker_host=args.docker_host,
        cluster=args.cluster,
        attributes=dict(args.attribute)
        | (
            {"dockyard.capacity-provider": args.capacity_provider}
            if getattr(args, "capacity_provider", "")
            else {}
        ),
        address=args.address,
        hostname=args.hostname,
        pull_behavior=args.pull_behavior,
        reserved_memory=args.reserved_memory,
        join_token=args.join_token,
        tls=getattr(args, "tls", "auto"),
        ca_hash=getattr(args, "ca_hash", ""),
        credentials_listen=args.credentials_listen,
        credentials_mode=args.credentials_mode,
        dns_listen=getattr(args, "dns_listen", "auto"),
        allow_shared_engine=getattr(args, "allow_shared_engine", False),
        allow_awslogs=getattr(args, "allow_awslogs", False),
        disable_privileged=getattr(args, "disable_privileged", False),
        disable_host_devices=getattr(args, "disable_host_devices", False),
        gpus_from=getattr(args, "gpus_from", ""),
        stats_source=getattr(args, "stats_source", "auto"),
        stats_interval_s=getattr(args, "stats_interval", 5.0),
        usage_report_s=getattr(args, "usage_report_interval", 15.0),
        image_cleanup=CleanupPolicy(
            args.image_cleanup_interval, args.image_min_age, args.images_per_cycle
        ),
    )


async def serve(config: AgentConfig) -> None:
    warning = host.ephemeral_warning()
    if warning:
        logging.getLogger("dockyard.agent").warning("%s", warning)
    agent = Agent(config)
    runner = asyncio.create_task(agent.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, runner.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    logging.getLogger("dockyard.agent").info("agent stopped; containers keep running")


def run(args: argparse.Namespace) -> int:
    import uvloop

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        uvloop.run(serve(config_from_args(args)))
    except (EngineClaimed, DnsUnavailable) as err:
        logging.getLogger("dockyard.agent").error("refusing to start: %s", err)
        print(f"dockyard agent: refusing to start: {err}", file=sys.stderr)
        return 2
    return 0
