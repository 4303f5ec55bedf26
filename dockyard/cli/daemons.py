"""`dockyard controller` and `dockyard agent`: the two daemons, started from the same install."""

from __future__ import annotations

import argparse
import os
import socket

from dockyard.client import DEFAULT_CONTROLLER


def _attribute(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--attribute wants key=value, got {text!r}")
    return key, value


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    c = sub.add_parser(
        "controller",
        help="run the controller (cluster state, placement, APIs)",
        description="Run the controller: gRPC for agents and the native API, HTTP for the "
        "ECS-compatible API, /metrics and /healthz; state in SQLite under --data-dir.",
    )
    c.add_argument(
        "--data-dir",
        default=os.environ.get("DOCKYARD_DATA_DIR", "/var/lib/dockyard/controller"),
        help="state directory (SQLite, WAL)",
    )
    c.add_argument(
        "--store",
        default=os.environ.get("DOCKYARD_STORE", "sqlite"),
        help="state store backend: sqlite (default: a database in --data-dir), or "
        "etcd://HOST:2379[,HOST:2379...][?prefix=/dockyard] for several controllers, "
        "one leading (the others stand by)",
    )
    c.add_argument(
        "--listen",
        default="0.0.0.0:7070",
        help="gRPC address for agents and the CLI (default %(default)s)",
    )
    c.add_argument(
        "--http",
        default="0.0.0.0:7080",
        help="HTTP address for the ECS API, /metrics, /healthz (default %(default)s)",
    )
    c.add_argument(
        "--heartbeat-period",
        type=float,
        default=1.0,
        help="seconds between agent heartbeats; an agent silent for 3 periods "
        "is DISCONNECTED (default %(default)s)",
    )
    c.add_argument(
        "--heartbeat-budget",
        type=float,
        default=1000.0,
        help="cluster-wide heartbeats per second: larger clusters get a longer period "
        "(agents / budget), smaller ones keep --heartbeat-period; 0 for no limit "
        "(default %(default)s)",
    )
    c.add_argument(
        "--disconnect-grace",
        type=float,
        default=10.0,
        help="seconds a DISCONNECTED instance gets to come back before its "
        "service tasks are replaced (default %(default)s)",
    )
    c.add_argument(
        "--region",
        default=os.environ.get("DOCKYARD_REGION", "us-east-1"),
        help="region used in ARNs (default %(default)s)",
    )
    c.add_argument(
        "--account",
        default=os.environ.get("DOCKYARD_ACCOUNT", "000000000000"),
        help="account id used in ARNs (default %(default)s)",
    )
    c.add_argument(
        "--auth",
        choices=["on", "off"],
        default=os.environ.get("DOCKYARD_AUTH", "on"),
        help="on: API calls must be signed with an access key and agents must present a "
        "join token; off: anyone may call and join (development only) (default %(default)s)",
    )
    c.add_argument(
        "--tls",
        choices=["auto", "always", "never"],
        default=os.environ.get("DOCKYARD_TLS", "auto"),
        help="auto: TLS (and mutual TLS for agents) on --listen, and HTTPS on --http, each "
        "unless its address is loopback (default %(default)s)",
    )
    c.add_argument(
        "--advertise-address",
        action="append",
        default=[],
        metavar="NAME",
        help="a DNS name or address clients use to reach this controller (repeatable): "
        "added to the TLS certificates; the first is what `dockyard env` prints",
    )
    c.add_argument(
        "--agent-listen",
        default="",
        help="mutual-TLS address for agent streams (default: the --listen host, port + 1)",
    )
    c.add_argument(
        "--secrets-key-file",
        default=os.environ.get("DOCKYARD_SECRETS_KEY_FILE", ""),
        help="key that seals secrets, role keys and access keys in the store; created 0600 "
        "on first start; keep it out of backups of the data dir (default: <data-dir>.key)",
    )
    c.add_argument(
        "--rotate-secrets-key",
        action="store_true",
        help="with the controller stopped: re-seal every stored secret under a new key, "
        "replace the key file with it, and exit",
    )
    c.add_argument(
        "--open-loopback-agents",
        action="store_true",
        help="agents connecting over loopback may join without a join token (simulators, "
        "single-user development hosts)",
    )
    c.add_argument(
        "--metrics-per-task",
        action="store_true",
        help="/metrics also exports each task's CPU and memory (one series per task: mind "
        "the cardinality); by default per service and per instance only",
    )
    c.add_argument(
        "--autoscaling-period",
        type=float,
        default=60.0,
        help="seconds between service auto scaling evaluations: the metric period of "
        "target tracking (CloudWatch's is 60)",
    )
    c.add_argument("--log-level", default="INFO")
    c.set_defaults(handler=_run_controller)

    a = sub.add_parser(
        "agent",
        help="run the agent on a Docker host",
        description="Run the agent: registers this Docker host with the controller and "
        "converges the local engine to the tasks the controller places here.",
    )
    a.add_argument(
        "--controller",
        default=os.environ.get("DOCKYARD_CONTROLLER", DEFAULT_CONTROLLER),
        help="controller gRPC address, or several (a:7070,b:7070: controllers on one etcd; "
        "the agent follows whichever leads) (default %(default)s)",
    )
    a.add_argument(
        "--state-dir",
        default=os.environ.get("DOCKYARD_STATE_DIR", "/var/lib/dockyard/agent"),
        help="keeps the instance identity: a restart is the same instance",
    )
    a.add_argument(
        "--docker-host",
        default=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"),
        help="Docker engine (default %(default)s)",
    )
    a.add_argument("--cluster", default="default", help="cluster to join (default %(default)s)")
    a.add_argument(
        "--attribute",
        action="append",
        type=_attribute,
        default=[],
        metavar="KEY=VALUE",
        help="operator attribute for placement (repeatable)",
    )
    a.add_argument(
        "--capacity-provider",
        default="",
        metavar="NAME",
        help="join this capacity provider's host group (issue 22): the attribute "
        "dockyard.capacity-provider=NAME",
    )
    a.add_argument(
        "--address",
        default="",
        help="address where this host's published ports answer (default: "
        "the address used to reach the controller)",
    )
    a.add_argument("--hostname", default=socket.gethostname(), help="name shown for this host")
    a.add_argument(
        "--pull-behavior",
        default="default",
        choices=["default", "always", "once", "prefer-cached"],
        help="ECS image pull behaviour (default: pull, fall back to cache)",
    )
    a.add_argument(
        "--reserved-memory",
        type=int,
        default=0,
        help="MiB kept back from tasks (ECS_RESERVED_MEMORY)",
    )
    a.add_argument(
        "--credentials-listen",
        default="127.0.0.1:51679",
        help="task credentials / metadata endpoint (default %(default)s)",
    )
    a.add_argument(
        "--dns-listen",
        default="auto",
        help="the DNS resolver for tasks of clusters with namespaces (issue 21): auto (the "
        "Docker bridge's gateway, port 53), off, or ADDR[:PORT] (default %(default)s)",
    )
    a.add_argument(
        "--credentials-mode",
        default=os.environ.get("DOCKYARD_CREDENTIALS_MODE", "auto"),
        choices=["auto", "iptables", "bridge"],
        help="how 169.254.170.2 reaches the endpoint: iptables DNAT, or a bridge network "
        "with a forwarder container (Docker Desktop); auto picks iptables when it can",
    )
    a.add_argument(
        "--allow-shared-engine",
        action="store_true",
        help="for tests and simulations only: run beside other agents started with this "
        "flag on the same Docker engine (they fight over 169.254.170.2); without it a "
        "second agent on an engine refuses to start",
    )
    a.add_argument(
        "--allow-awslogs",
        action="store_true",
        help="pass logConfiguration awslogs to Docker (the engine itself needs AWS "
        "credentials for CloudWatch Logs); without it such a task stops with the reason",
    )
    a.add_argument(
        "--disable-privileged",
        action="store_true",
        default=os.environ.get("ECS_DISABLE_PRIVILEGED", "").lower() == "true",
        help="refuse privileged containers; placement keeps such tasks off this instance "
        "(ECS_DISABLE_PRIVILEGED)",
    )
    a.add_argument(
        "--disable-host-devices",
        action="store_true",
        help="refuse containers with linuxParameters.devices; placement keeps such tasks "
        "off this instance",
    )
    a.add_argument(
        "--gpus-from",
        default=os.environ.get("DOCKYARD_GPUS_FROM", ""),
        metavar="FILE",
        help="for tests and simulations only: declare this host's GPUs (one id per line) "
        "instead of asking nvidia-smi; placement counts them, Docker cannot use them",
    )
    a.add_argument(
        "--stats-source",
        choices=("auto", "cgroup", "engine"),
        default="auto",
        help="where containers' CPU and memory are read: the cgroup files (auto: cheaper, "
        "measured) or the engine's stats API",
    )
    a.add_argument(
        "--stats-interval",
        type=float,
        default=5.0,
        help="seconds between samples of containers' CPU and memory (task metadata v4 "
        "/stats); 0 turns sampling and usage reports off (default %(default)s)",
    )
    a.add_argument(
        "--usage-report-interval",
        type=float,
        default=15.0,
        help="seconds between usage reports to the controller (default %(default)s)",
    )
    a.add_argument(
        "--image-cleanup-interval",
        type=float,
        default=1800.0,
        help="seconds between image cleanups; 0 disables (ECS_IMAGE_CLEANUP_INTERVAL)",
    )
    a.add_argument(
        "--image-min-age",
        type=float,
        default=3600.0,
        help="an image unused this long may be removed (ECS_IMAGE_MINIMUM_CLEANUP_AGE)",
    )
    a.add_argument(
        "--images-per-cycle",
        type=int,
        default=5,
        help="images removed per cleanup at most (ECS_NUM_IMAGES_DELETE_PER_CYCLE)",
    )
    a.add_argument(
        "--join-token",
        default=os.environ.get("DOCKYARD_JOIN_TOKEN", ""),
        help="token from `dockyard tokens create`, for the first registration",
    )
    a.add_argument(
        "--ca-hash",
        default=os.environ.get("DOCKYARD_CA_HASH", ""),
        help="sha256:... of the controller's CA (printed by `dockyard tokens create`): "
        "the agent trusts only that CA",
    )
    a.add_argument(
        "--tls",
        choices=["auto", "always", "never"],
        default=os.environ.get("DOCKYARD_AGENT_TLS", "auto"),
        help="auto: TLS + client certificate unless the controller is on loopback "
        "(default %(default)s)",
    )
    a.add_argument("--log-level", default="INFO")
    a.set_defaults(handler=_run_agent)


def _run_controller(args: argparse.Namespace) -> int:
    from controller.server import run

    return run(args)


def _run_agent(args: argparse.Namespace) -> int:
    from agent.main import run

    return run(args)
