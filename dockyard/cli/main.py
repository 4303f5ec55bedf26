"""Entry point of the `dockyard` command.

Each command group lives in its own module with `register(subparsers)`; a handler takes
the parsed args and returns an exit code. ApiError is printed as `Name: message` (no
stack trace) and exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# gRPC core's own INFO lines (a failed TLS handshake) would print before the CLI's message
# saying what to do; set before grpc is first imported. GRPC_VERBOSITY=INFO shows them.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from dockyard import __version__
from dockyard.errors import ApiError

# Modules that contribute subcommands, in help order. Missing optional ones are skipped
# only while they are being written; every module listed here must exist on main.
COMMAND_MODULES = [
    "dockyard.cli.daemons",  # controller, agent
    "dockyard.cli.operator",  # clusters, task-definitions, run, stop, tasks, instances, ...
    "dockyard.cli.roles",  # roles, secrets
    "dockyard.cli.security",  # tokens, keys, revoke instance
    "dockyard.cli.backup",  # backup, restore: the whole state to a file and back
    "dockyard.cli.env",  # env: exports for a shell (CLI, aws, boto3)
    "dockyard.lab.cli",  # lab up/down/status/chaos verbs, verify
    "dockyard.sim.cli",  # sim: simulated agents for scale tests
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dockyard",
        description="Dockyard: an ECS-style container orchestrator. "
        "Run `dockyard COMMAND --help` for a command's flags.",
    )
    parser.add_argument("--version", action="version", version=f"dockyard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if not err.name or not name.startswith(err.name):
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except ApiError as err:
        print(f"{err.name}: {err.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
