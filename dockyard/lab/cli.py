"""`dockyard lab ...` (up, down, status, env, chaos verbs, hosts joining and leaving) and
`dockyard verify`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from dockyard import endpoints
from dockyard.client import controller_address
from dockyard.errors import ApiError
from dockyard.lab import control, verify
from dockyard.lab.lab import Lab
from dockyard.lab.state import DEFAULT_DIR, STATE_FILE, LabError
from dockyard.shellenv import EnvError, exports, from_data_dir, public_copy

HOST_VERBS: dict[str, tuple[str, str]] = {
    "kill-agent": ("kill_agent", "SIGKILL the host's agent (its containers keep running)"),
    "start-agent": ("start_agent", "start the host's agent again (same instance identity)"),
    "stop-docker": ("stop_docker", "stop the host's dockerd (it stops its containers)"),
    "start-docker": ("start_docker", "start the host's dockerd again"),
    "partition": (
        "partition",
        "cut the host off from the controller and the other hosts; it keeps running",
    ),
    "heal": ("heal", "reconnect a partitioned host"),
}
LAB_VERBS: dict[str, tuple[str, str]] = {
    "kill-controller": ("kill_controller", "SIGKILL the controller (NAME: with several, which)"),
    "start-controller": (
        "start_controller",
        "start the controller again, same data dir (NAME: with several, which; a standby)",
    ),
}
NODE_VERBS: dict[str, tuple[str, str]] = {
    "kill-etcd": ("kill_etcd", "SIGKILL a controller node's etcd member"),
    "start-etcd": ("start_etcd", "start a controller node's etcd member again"),
}


def _lab_dir() -> str:
    return os.environ.get("DOCKYARD_LAB_DIR", DEFAULT_DIR)


def _add_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dir",
        default=_lab_dir(),
        help="lab directory: state, daemons' data and logs "
        "(default $DOCKYARD_LAB_DIR or %(default)s)",
    )


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    lab = sub.add_parser(
        "lab",
        help="a multi-host lab on this machine, and chaos verbs",
        description="Turn this Linux machine into several Docker hosts "
        "(a network namespace and a dockerd each) with a registry, the "
        "controller and one agent per host. Needs root.",
    )
    verbs = lab.add_subparsers(dest="lab_command", metavar="VERB")
    lab.set_defaults(handler=lambda _a: (lab.print_help(), 2)[1])

    up = verbs.add_parser("up", help="bring a lab up from nothing")
    up.add_argument("--hosts", type=int, default=3, help="number of hosts (default 3)")
    _add_dir(up)
    up.add_argument(
        "--index",
        type=int,
        default=0,
        help="lab number for side-by-side labs: subnet 10.77.INDEX.0/24, "
        "bridge dykINDEX (default 0)",
    )
    up.add_argument("--cluster", default="default", help="cluster the agents join")
    up.add_argument(
        "--controllers",
        type=int,
        default=1,
        help="1 (default): one controller on SQLite in the root namespace; 3 or more: that "
        "many controller nodes (c1, c2, ...), each an etcd member and a controller, one "
        "leading (plaintext: --tls never for now)",
    )
    up.add_argument("--heartbeat-period", type=float, help="passed to the controller")
    up.add_argument("--disconnect-grace", type=float, help="passed to the controller")
    up.add_argument(
        "--no-control-plane",
        action="store_true",
        help="only hosts, registry and images: no controller, no agents",
    )
    up.add_argument("--output", choices=["table", "json"], default="table")
    up.set_defaults(handler=_up)

    down = verbs.add_parser("down", help="remove everything the lab made (idempotent)")
    _add_dir(down)
    down.add_argument(
        "--index", type=int, default=0, help="lab number, used only when DIR has no state file"
    )
    down.set_defaults(handler=_down)

    status = verbs.add_parser("status", help="hosts, daemons and endpoints")
    _add_dir(status)
    status.add_argument("--output", choices=["table", "json"], default="table")
    status.set_defaults(handler=_status)

    env = verbs.add_parser(
        "env",
        help='print the exports for a shell: eval "$(sudo dockyard lab env)"',
        description="Print DOCKYARD_CONTROLLER, the CA, the admin key, and "
        "AWS_ENDPOINT_URL_ECS with AWS keys, region and CA bundle: after one eval, "
        "`dockyard ...` and plain `aws ecs ...` / boto3 talk to the lab.",
    )
    _add_dir(env)
    env.set_defaults(handler=_env)

    _register_host_verbs(verbs)
    for verb, (method, text) in HOST_VERBS.items():
        p = verbs.add_parser(verb, help=text)
        p.add_argument(
            "host", metavar="HOST", help="host name, e.g. h1 (or a controller node, e.g. c1)"
        )
        _add_dir(p)
        p.set_defaults(handler=_verb(method, with_host=True))
    for verb, (method, text) in LAB_VERBS.items():
        p = verbs.add_parser(verb, help=text)
        p.add_argument("host", metavar="NAME", nargs="?", help="controller node, e.g. c1")
        _add_dir(p)
        p.set_defaults(handler=_verb(method, with_host=True))
    for verb, (method, text) in NODE_VERBS.items():
        p = verbs.add_parser(verb, help=text)
        p.add_argument("host", metavar="NAME", help="controller node, e.g. c1")
        _add_dir(p)
        p.set_defaults(handler=_verb(method, with_host=True))

    v = sub.add_parser(
        "verify",
        help="audit a cluster: controller's view vs. Docker's",
        description="Compare the tasks the controller knows with the "
        "containers each host's Docker runs: orphans, missing tasks and "
        "services with too many copies. Exit 0 clean, 1 on violations, 2 "
        "when some host or check could not be done.",
    )
    v.add_argument("--cluster", default="default")
    v.add_argument(
        "--controller",
        help="gRPC address (default: the lab's, else $DOCKYARD_CONTROLLER or 127.0.0.1:7070)",
    )
    v.add_argument(
        "--docker",
        action="append",
        default=[],
        metavar="HOST=URL",
        help="a Docker engine to audit, e.g. web1=tcp://10.0.0.5:2375 "
        "(repeatable; default: the lab's hosts)",
    )
    v.add_argument("--lab-dir", default=_lab_dir(), help="lab whose hosts to audit")
    v.add_argument("--output", choices=["table", "json"], default="table")
    v.set_defaults(handler=_verify)


def _register_host_verbs(verbs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """add-host, remove-host and resize-group: hosts joining and leaving a running lab."""
    add = verbs.add_parser(
        "add-host",
        help="add a host (namespace, its own dockerd, an agent joined); prints its name",
    )
    add.add_argument(
        "--attribute",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an attribute of the host's agent, e.g. dockyard.capacity-provider=NAME (repeatable)",
    )
    _add_dir(add)
    add.set_defaults(handler=_add_host)
    rm = verbs.add_parser(
        "remove-host",
        help="stop a host's agent and dockerd, delete its namespace, deregister it",
    )
    rm.add_argument("host", metavar="HOST", help="host name, e.g. h4")
    _add_dir(rm)
    rm.set_defaults(handler=_remove_host)
    resize = verbs.add_parser(
        "resize-group",
        help="add or remove hosts of a capacity provider's host group (a group-size command)",
        description="Add hosts with the attribute dockyard.capacity-provider=GROUP, or remove "
        "such hosts without tasks (those in $DOCKYARD_REMOVE_HOSTS first), until the group "
        "has DESIRED. Exit 1, naming them, when hosts that still run tasks keep it bigger. "
        "Use it as a capacity provider's --group-size-command "
        "'dockyard lab resize-group GROUP {desired} --dir DIR'.",
    )
    resize.add_argument("group", metavar="GROUP", help="the capacity provider's name")
    resize.add_argument("desired", metavar="DESIRED", type=int, help="hosts the group should have")
    _add_dir(resize)
    resize.set_defaults(handler=_resize_group)


def _attributes(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise LabError(f"--attribute: want KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def _add_host(args: argparse.Namespace) -> int:
    try:
        host = Lab.open(args.dir).add_host(_attributes(args.attribute))
    except (LabError, ApiError) as err:
        return _fail(err)
    print(host.name)
    return 0


def _remove_host(args: argparse.Namespace) -> int:
    try:
        warnings = Lab.open(args.dir).remove_host(args.host)
    except LabError as err:
        return _fail(err)
    for line in warnings:
        print(f"lab: {line}", file=sys.stderr)
    return 0


def _resize_group(args: argparse.Namespace) -> int:
    first = os.environ.get("DOCKYARD_REMOVE_HOSTS", "").split()
    try:
        added, removed = Lab.open(args.dir).resize_group(args.group, args.desired, first)
    except (LabError, ApiError) as err:
        return _fail(err)
    done = ", ".join([*(f"added {h}" for h in added), *(f"removed {h}" for h in removed)])
    print(f"group {args.group}: {args.desired} hosts ({done or 'unchanged'})")
    return 0


def _fail(err: Exception, code: int = 1) -> int:
    print(f"lab: {err}", file=sys.stderr)
    return code


def _up(args: argparse.Namespace) -> int:
    try:
        lab = Lab.up(
            hosts=args.hosts,
            lab_dir=args.dir,
            index=args.index,
            cluster=args.cluster,
            control_plane=not args.no_control_plane,
            heartbeat_period=args.heartbeat_period,
            disconnect_grace=args.disconnect_grace,
            controllers=args.controllers,
        )
    except LabError as err:
        if os.path.exists(
            os.path.join(os.path.abspath(args.dir), STATE_FILE)
        ) and "already exists" not in str(err):
            err = LabError(
                f"{err}\nlogs: {args.dir}/logs; clean up with `dockyard lab down --dir {args.dir}`"
            )
        return _fail(err)
    _print_status(lab.status(), args.output)
    if args.output == "table":
        print(
            f'\nready. For this shell (dockyard, aws ecs, boto3): eval "$(sudo dockyard lab '
            f'env --dir {lab.dir})"'
        )
    return 0


def _down(args: argparse.Namespace) -> int:
    left = Lab.down(args.dir, args.index)
    if left:
        print("lab: could not remove: " + ", ".join(left), file=sys.stderr)
        return 1
    print(f"lab in {os.path.abspath(args.dir)} removed")
    return 0


def _status(args: argparse.Namespace) -> int:
    try:
        return _print_status(Lab.open(args.dir).status(), args.output)
    except LabError as err:
        return _fail(err)


def _env(args: argparse.Namespace) -> int:
    try:
        lab = Lab.open(args.dir)
    except LabError as err:
        return _fail(err)
    state = lab.state
    tls = not state.nodes  # several controllers: plaintext for now (dockyard/lab/ha.py)
    try:
        target = from_data_dir(
            state.path("controller"),
            default=endpoints.Endpoints(
                lab.controller_address, lab.controller_http, "us-east-1", tls=tls
            ),
            ca_cert=public_copy(state.path("controller", endpoints.CA_FILE), Path(lab.dir))
            if tls
            else None,
        )
    except (EnvError, OSError) as err:
        return _fail(err)
    # the lab's own addresses: the controller listens on the bridge
    target = replace(target, controller=lab.controller_address, ecs_url=lab.controller_http)
    sys.stdout.write(exports(target, extra=[("DOCKYARD_LAB_DIR", lab.dir)]))
    return 0


def _verb(method: str, with_host: bool) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        try:
            lab = Lab.open(args.dir)
            getattr(lab, method)(*([args.host] if with_host else []))
        except LabError as err:
            return _fail(err)
        return 0

    return handler


def _print_status(status: dict[str, Any], output: str) -> int:
    if output == "json":
        print(json.dumps(status, indent=2))
        return 0
    ctl = status["controller"]
    print(
        f"lab {status['dir']} ({status['phase']}): bridge {status['bridge']} "
        f"{status['subnet']}, registry {status['registry']}"
    )
    print(f"controller: grpc {ctl['grpc']}  http {ctl['http']}  {ctl['state']}")
    _print_controllers(status.get("controllers") or [])
    head = (
        "HOST",
        "ADDRESS",
        "ZONE",
        "NETNS",
        "DOCKER",
        "AGENT",
        "CONNECTED",
        "NETWORK",
        "DOCKER_HOST",
    )
    rows = [head] + [
        (
            h["name"],
            h["address"],
            h["zone"],
            h["netns"],
            h["docker"],
            h["agent"],
            {True: "yes", False: "no", None: "-"}[h["connected"]],
            "partitioned" if h["partitioned"] else "ok",
            h["dockerHost"],
        )
        for h in status["hosts"]
    ]
    _table(rows)
    if status.get("timings"):
        print(
            "up timings (s since start): "
            + ", ".join(f"{k} {v}" for k, v in status["timings"].items())
        )
    return 0


def _print_controllers(nodes: list[dict[str, Any]]) -> None:
    """With several controllers: each node, its etcd member, and who leads."""
    if not nodes:
        return
    head = ("CONTROLLER", "ADDRESS", "NETNS", "PROCESS", "ETCD", "ROLE", "NETWORK")
    rows = [head] + [
        (
            n["name"],
            n["address"],
            n["netns"],
            n["controller"],
            n["etcd"],
            "leader" if n["leader"] else ("standby" if n["controller"] == "running" else "-"),
            "partitioned" if n["partitioned"] else "ok",
        )
        for n in nodes
    ]
    _table(rows)


def _table(rows: list[tuple[Any, ...]]) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _docker_hosts(args: argparse.Namespace) -> tuple[dict[str, str], str | None]:
    hosts, lab_ctl = {}, None
    for item in args.docker:
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            raise LabError(f"--docker: want HOST=URL, got {item!r}")
        hosts[name] = url
    if not hosts:
        lab = Lab.open(args.lab_dir)
        hosts = {h.name: h.docker_host for h in lab.hosts}
        lab_ctl = lab.controller_address
    return hosts, lab_ctl


def _verify(args: argparse.Namespace) -> int:
    try:
        hosts, lab_ctl = _docker_hosts(args)
        address = args.controller or lab_ctl or controller_address()
        creds, ca = None, None
        if lab_ctl and address == lab_ctl:  # the lab's own controller: its admin key and CA
            state = Lab.open(args.lab_dir).state
            creds, ca = control.admin_credentials(state), control.ca_cert(state)
        report = verify.collect(address, args.cluster, hosts, credentials=creds, ca_cert=ca)
    except LabError as err:
        print(f"verify: {err}", file=sys.stderr)
        return 2
    except ApiError as err:
        print(f"verify: {err.name}: {err.message}", file=sys.stderr)
        return 2
    if args.output == "json":
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.render())
    return report.exit_code
