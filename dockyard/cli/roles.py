"""`dockyard roles` and `dockyard secrets`: task/execution roles and the secrets tasks read.

Keys and secret values go in (from a file, the environment or stdin, never as flags that
land in shell history and `ps`) and never come back out: list shows names, ARNs, sources.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from dockyard.cli import output as out
from dockyard.cli.common import Ctx, SubParsers, command, group
from dockyard.errors import invalid

KEY_FIELDS = {  # credentials file / environment name -> API field
    "AWS_ACCESS_KEY_ID": "accessKeyId",
    "AWS_SECRET_ACCESS_KEY": "secretAccessKey",
    "AWS_SESSION_TOKEN": "sessionToken",
}


def register(sub: SubParsers) -> None:
    roles = group(sub, "roles", "task and execution roles: create, list, delete")
    p = command(roles, "create", roles_create, "register a role and its credential source")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--arn", help="role ARN (default arn:aws:iam::ACCOUNT:role/NAME)")
    p.add_argument("--source", default="static", choices=["static", "sts-assume-role", "process"])
    p.add_argument(
        "--keys-file",
        help="file of AWS_ACCESS_KEY_ID=..., AWS_SECRET_ACCESS_KEY=..., AWS_SESSION_TOKEN=... "
        "lines (static keys, or the base credential of sts-assume-role)",
    )
    p.add_argument(
        "--keys-from-env",
        action="store_true",
        help="read those keys from this shell's AWS_* environment variables",
    )
    p.add_argument("--endpoint-url", help="STS endpoint (sts-assume-role)")
    p.add_argument("--external-id", help="ExternalId for AssumeRole")
    p.add_argument("--duration", type=int, help="AssumeRole DurationSeconds (default 3600)")
    p.add_argument("--region", help="STS region (default us-east-1)")
    p.add_argument("--command", help="credential_process command line (process source)")
    command(roles, "list", roles_list, "list roles (never their keys)")
    p = command(roles, "delete", roles_delete, "delete a role no running task uses")
    p.add_argument("name", metavar="NAME_OR_ARN")

    secrets = group(sub, "secrets", "secrets for secrets[].valueFrom and repositoryCredentials")
    p = command(secrets, "put", secrets_put, "create or replace a secret")
    p.add_argument("name", metavar="NAME")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-file", help="read the value from this file")
    src.add_argument("--from-env", metavar="VAR", help="read the value from this variable")
    src.add_argument("--stdin", action="store_true", help="read the value from stdin")
    command(secrets, "list", secrets_list, "list secrets (never their values)")
    p = command(secrets, "delete", secrets_delete, "delete a secret")
    p.add_argument("name", metavar="NAME")


def read_keys(path: str | None, from_env: bool) -> dict[str, str]:
    """AWS keys from a KEY=VALUE file or the environment -> CreateRole fields."""
    raw: dict[str, str] = {}
    if path:
        try:
            text = Path(path).read_text()
        except OSError as err:
            raise invalid("--keys-file", f"cannot read {path}: {err.strerror}") from None
        for line in text.splitlines():
            key, sep, value = line.strip().removeprefix("export ").partition("=")
            if sep and key.strip() in KEY_FIELDS:
                raw[key.strip()] = value.strip().strip("'\"")
    if from_env:
        raw.update({k: os.environ[k] for k in KEY_FIELDS if os.environ.get(k)})
    return {KEY_FIELDS[k]: v for k, v in raw.items()}


def roles_create(ctx: Ctx, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"roleName": args.name, "source": args.source}
    if args.source != "process":
        keys = read_keys(args.keys_file, args.keys_from_env)
        if not keys:
            raise invalid("--keys-file", f"{args.source} needs --keys-file or --keys-from-env")
        body.update(keys)
    optional = {
        "roleArn": args.arn,
        "endpointUrl": args.endpoint_url,
        "externalId": args.external_id,
        "durationSeconds": args.duration,
        "region": args.region,
        "command": args.command,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    return _show_roles(ctx, [ctx.client.call("CreateRole", body)["role"]])


def _show_roles(ctx: Ctx, roles: list[dict[str, Any]]) -> int:
    if ctx.json:
        out.print_json({"roles": roles})
        return 0
    rows = [
        [
            r["roleName"],
            r["roleArn"],
            r["source"],
            r.get("endpointUrl", "-"),
            out.age(r["createdAt"]),
        ]
        for r in roles
    ]
    out.print_table(("name", "arn", "source", "endpoint", "age"), rows)
    return 0


def roles_list(ctx: Ctx, args: argparse.Namespace) -> int:
    return _show_roles(ctx, ctx.client.call("ListRoles", {})["roles"])


def roles_delete(ctx: Ctx, args: argparse.Namespace) -> int:
    field = "roleArn" if args.name.startswith("arn:") else "roleName"
    return _show_roles(ctx, [ctx.client.call("DeleteRole", {field: args.name})["role"]])


def secrets_put(ctx: Ctx, args: argparse.Namespace) -> int:
    if args.from_file:
        try:
            value = Path(args.from_file).read_text()
        except OSError as err:
            raise invalid("--from-file", f"cannot read {args.from_file}: {err.strerror}") from None
    elif args.from_env:
        value = os.environ.get(args.from_env, "")
        if not value:
            raise invalid("--from-env", f"${args.from_env} is not set or empty")
    else:
        value = sys.stdin.read()
    value = value.removesuffix("\n")
    secret = ctx.client.call("PutSecret", {"name": args.name, "value": value})["secret"]
    return _show_secrets(ctx, [secret])


def _show_secrets(ctx: Ctx, secrets: list[dict[str, Any]]) -> int:
    if ctx.json:
        out.print_json({"secrets": secrets})
        return 0
    rows = [[s["name"], s["arn"], out.age(s["updatedAt"])] for s in secrets]
    out.print_table(("name", "arn", "updated"), rows)
    return 0


def secrets_list(ctx: Ctx, args: argparse.Namespace) -> int:
    return _show_secrets(ctx, ctx.client.call("ListSecrets", {})["secrets"])


def secrets_delete(ctx: Ctx, args: argparse.Namespace) -> int:
    return _show_secrets(ctx, [ctx.client.call("DeleteSecret", {"name": args.name})["secret"]])
