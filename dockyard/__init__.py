"""Dockyard: an ECS-style container orchestrator (shared code, CLI and generated wire stubs)."""

import os

__version__ = "0.1.0"

# Dockyard's processes fork only to exec (iptables, docker, credential_process). gRPC's fork
# handlers are for children that go on using gRPC, which grpc.aio does not support anyway;
# with them on, an agent whose stream was connecting while it ran iptables at start never
# registered (1 start in 12 here). gRPC's doc/fork_support.md: set this when every fork is
# followed by exec. Read when gRPC initialises, so it is set before anything imports grpc.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
