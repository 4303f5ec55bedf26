"""`dockyard tokens`, `dockyard keys` and `dockyard instances revoke`: who may join and call.

Join tokens and secret keys are printed once, when created; lists show ids only.
"""

from __future__ import annotations

import argparse

from dockyard.cli import output as out
from dockyard.cli.common import Ctx, SubParsers, command, group, resolve_instance


def register(sub: SubParsers) -> None:
    tokens = group(sub, "tokens", "join tokens agents present to join: create, list, revoke")
    p = command(tokens, "create", tokens_create, "create a join token; prints the join command")
    p.add_argument("--description", default="", help="what the token is for")
    p.add_argument("--ttl", type=float, default=0, help="seconds until it expires (0: never)")
    command(tokens, "list", tokens_list, "list join tokens (ids and status, never the secret)")
    p = command(tokens, "revoke", tokens_revoke, "revoke a join token (joined agents stay)")
    p.add_argument("token", metavar="TOKEN_ID")

    keys = group(sub, "keys", "API access keys (ECS SigV4, native API): create, list, delete")
    p = command(keys, "create", keys_create, "create an access key; prints its secret once")
    p.add_argument("--role", choices=["admin", "operator", "readonly"], required=True)
    p.add_argument("--description", default="")
    command(keys, "list", keys_list, "list access keys (never their secrets)")
    p = command(keys, "delete", keys_delete, "delete an access key")
    p.add_argument("key", metavar="ACCESS_KEY_ID")

    revoke = group(sub, "revoke", "cut off a container instance at once (stream and reconnects)")
    p = command(revoke, "instance", revoke_instance, "revoke an instance: its agent is refused")
    p.add_argument("instance", metavar="INSTANCE")
    p.add_argument("--reason", default="revoked by an operator")


def tokens_create(ctx: Ctx, args: argparse.Namespace) -> int:
    reply = ctx.call("CreateJoinToken", {"description": args.description, "ttlSeconds": args.ttl})
    token = reply["joinToken"]
    if ctx.json:
        out.print_json(reply)
        return 0
    controllers = ",".join(token.get("controllers") or [ctx.address])  # several: all of them
    join = f"dockyard agent --controller {controllers} --join-token {token['token']}"
    if token.get("caHash"):
        join += f" --ca-hash {token['caHash']}"
    print(f"join token {token['tokenId']} (shown once; revoke with `dockyard tokens revoke`):")
    print(f"  {join}")
    return 0


def tokens_list(ctx: Ctx, args: argparse.Namespace) -> int:
    reply = ctx.call("ListJoinTokens")
    if ctx.json:
        out.print_json(reply)
        return 0
    rows = [
        (t["tokenId"], t["status"], t["uses"], out.age(t["createdAt"]), t["description"])
        for t in reply["joinTokens"]
    ]
    out.print_table(["TOKEN ID", "STATUS", "USES", "AGE", "DESCRIPTION"], rows)
    return 0


def tokens_revoke(ctx: Ctx, args: argparse.Namespace) -> int:
    token = ctx.call("RevokeJoinToken", {"tokenId": args.token})["joinToken"]
    print(f"join token {token['tokenId']} {token['status'].lower()}")
    return 0


def keys_create(ctx: Ctx, args: argparse.Namespace) -> int:
    reply = ctx.call("CreateAccessKey", {"role": args.role, "description": args.description})
    if ctx.json:
        out.print_json(reply)
        return 0
    key = reply["accessKey"]
    print(f"# {key['role']} key (the secret is shown once): export these, or put them in")
    print("# ~/.dockyard/credentials as aws_access_key_id / aws_secret_access_key")
    print(f"DOCKYARD_ACCESS_KEY_ID={key['accessKeyId']}")
    print(f"DOCKYARD_SECRET_ACCESS_KEY={key['secretAccessKey']}")
    return 0


def keys_list(ctx: Ctx, args: argparse.Namespace) -> int:
    reply = ctx.call("ListAccessKeys")
    if ctx.json:
        out.print_json(reply)
        return 0
    rows = [
        (k["accessKeyId"], k["role"], out.age(k["createdAt"]), k["description"])
        for k in reply["accessKeys"]
    ]
    out.print_table(["ACCESS KEY ID", "ROLE", "AGE", "DESCRIPTION"], rows)
    return 0


def keys_delete(ctx: Ctx, args: argparse.Namespace) -> int:
    key = ctx.call("DeleteAccessKey", {"accessKeyId": args.key})["accessKey"]
    print(f"deleted access key {key['accessKeyId']} ({key['role']})")
    return 0


def revoke_instance(ctx: Ctx, args: argparse.Namespace) -> int:
    arn = resolve_instance(ctx, args.instance)
    reply = ctx.call("RevokeInstance", {"containerInstance": arn, "reason": args.reason})
    if ctx.json:
        out.print_json(reply)
        return 0
    closed = "its stream was closed" if reply["streamClosed"] else "it was not connected"
    print(f"revoked {reply['containerInstanceArn']} ({closed}); it can no longer join")
    return 0
