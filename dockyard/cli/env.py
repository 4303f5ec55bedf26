"""`dockyard env`: print the exports that point a shell (the CLI, aws, boto3) at a cluster.

Without flags: the `make up` cluster. `--data-dir DIR`: the controller keeping its state in
DIR (run it as that directory's owner). `--controller` / `--endpoint-url` / `--ca-cert` /
`--credentials-file`: any controller, from its address and copies of its files; each of
these also overrides what a data dir says.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from dockyard import auth, endpoints
from dockyard.shellenv import EnvError, Target, exports, from_data_dir

QUICKSTART = endpoints.Endpoints("127.0.0.1:7070", "http://127.0.0.1:7080", "us-east-1", False)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "env",
        help='print the exports for a shell: eval "$(dockyard env)"',
        description="Print the shell exports (DOCKYARD_*, AWS_ENDPOINT_URL_ECS, AWS keys, "
        "region and CA bundle) after which `dockyard ...`, `aws ecs ...` and "
        "boto3.client('ecs') all talk to one cluster with no extra arguments. Default: "
        "the `make up` cluster.",
    )
    p.add_argument("--data-dir", type=Path, help="the controller's data dir")
    p.add_argument("--controller", metavar="HOST:PORT", help="the controller's gRPC address")
    p.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="the ECS API (default: https://HOST:7080 with --ca-cert, else http://HOST:7080)",
    )
    p.add_argument("--ca-cert", type=Path, help="a copy of the controller's ca.crt (TLS)")
    p.add_argument(
        "--credentials-file", type=Path, help="an access key in the AWS credentials format"
    )
    p.add_argument("--region", help="region of the controller's ARNs (default: its own)")
    p.set_defaults(handler=_env)


def _explicit(args: argparse.Namespace) -> Target:
    """A controller given by address and files only."""
    if not args.controller:
        raise EnvError("give --data-dir, or --controller HOST:PORT (with its files)")
    host = args.controller.rpartition(":")[0] or args.controller
    scheme = "https" if args.ca_cert else "http"
    return Target(
        args.controller,
        args.endpoint_url or f"{scheme}://{host}:7080",
        args.region or "us-east-1",
        args.ca_cert,
        auth.load_credentials(),  # what the CLI would sign with: make aws use the same
        grpc_tls=args.ca_cert is not None,
    )


def _target(args: argparse.Namespace) -> Target:
    if args.data_dir:
        t = from_data_dir(args.data_dir)
    elif args.controller:
        t = _explicit(args)
    else:
        from dockyard.quickstart import DATA

        t = from_data_dir(DATA / "controller", default=QUICKSTART)
    overrides = {
        "controller": args.controller,
        "ecs_url": args.endpoint_url,
        "region": args.region,
        "ca_cert": args.ca_cert,
    }
    t = replace(t, **{k: v for k, v in overrides.items() if v})
    if args.credentials_file:
        creds = auth.load_credentials(env={}, path=args.credentials_file)
        if creds is None:
            raise EnvError(f"no access key in {args.credentials_file}")
        t = replace(t, credentials=creds)
    return t


def _env(args: argparse.Namespace) -> int:
    try:
        target = _target(args)
        if target.ca_cert is not None and not target.ca_cert.is_file():
            raise EnvError(f"CA certificate {target.ca_cert} not found")
    except EnvError as err:
        print(f"env: {err}", file=sys.stderr)
        return 1
    sys.stdout.write(exports(target))
    return 0
