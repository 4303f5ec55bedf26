"""Roles and secrets (Dockyard's own): CreateRole, ListRoles, DeleteRole, PutSecret,
ListSecrets, DeleteSecret.

Plain functions of the operations' context: what a role or a secret is, and the task
credentials a role issues (fetched, cached, bound to tasks, refreshed), are
`controller/roles.py`'s `RoleService` (`ctx.roles`), which these functions write through.
Keys and values are write-only: no operation returns them; the store keeps them sealed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from controller.model import now
from controller.ops.context import OpContext, OpFn
from controller.roles import (
    MAX_SECRET_BYTES,
    SECRET_NAME_RE,
    CredentialError,
    Secret,
    body_text,
    fetch,
    parse_role,
)
from controller.store_api import Delete
from dockyard.errors import invalid


async def create_role(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    """A role is created only once its source has given credentials (a wrong key is refused
    here, not when a task needs it)."""
    roles = ctx.roles
    role = parse_role(body, ctx.arns.account)
    if role.arn in roles.roles or any(r.name == role.name for r in roles.roles.values()):
        raise invalid("roleName", f"a role named {role.name} already exists: delete it first")
    try:
        issued = await asyncio.to_thread(fetch, role)
    except CredentialError as err:
        raise invalid("source", f"cannot obtain credentials: {err}") from None
    roles.roles[role.arn] = role
    roles.cache[role.arn] = issued
    await ctx.commit(
        [
            roles.sealed("role", role.arn, role.__dict__),
            ctx.event("", "role", role.arn, f"role created ({role.source})"),
        ]
    )
    return {"role": role.view()}


async def list_roles(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    roles = sorted(ctx.roles.roles.values(), key=lambda r: r.name)
    return {"roles": [r.view() for r in roles]}


async def delete_role(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    """Refused while running tasks use the role (their credentials would stop refreshing)."""
    ref = body_text(body, "roleName") or body_text(body, "roleArn")
    role = ctx.roles.role(ref) if ref else None
    if role is None:
        raise invalid("roleName", f"no role {ref!r} (dockyard roles list)")
    users = [t.arn for t, arn in ctx.roles.active_task_roles() if arn == role.arn]
    if users:
        raise invalid("roleName", f"{len(users)} running tasks use {role.name}: stop them first")
    del ctx.roles.roles[role.arn]
    await ctx.commit(
        [Delete("role", role.arn), ctx.event("", "role", role.arn, "role deleted")]
    )  # the change feed tells RoleService to forget its credentials
    return {"role": role.view()}


async def put_secret(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    name = body_text(body, "name", required=True)
    if not SECRET_NAME_RE.match(name):
        raise invalid("name", "1-512 letters, digits and /_+=.@-")
    value = body.get("value")
    if not isinstance(value, str) or not value:
        raise invalid("value", "is required: a non-empty string")
    if len(value.encode()) > MAX_SECRET_BYTES:
        raise invalid("value", f"at most {MAX_SECRET_BYTES} bytes")
    secrets = ctx.roles.secrets
    old = secrets.get(name)
    arn = f"arn:aws:secretsmanager:{ctx.arns.region}:{ctx.arns.account}:secret:{name}"
    sec = Secret(name, arn, value, created_at=old.created_at if old else now())
    secrets[name] = sec
    await ctx.commit(
        [
            ctx.roles.sealed("secret", name, sec.__dict__),
            ctx.event("", "secret", arn, "secret updated" if old else "secret put"),
        ]
    )
    return {"secret": sec.view()}


async def list_secrets(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    return {"secrets": [s.view() for _, s in sorted(ctx.roles.secrets.items())]}


async def delete_secret(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    name = body_text(body, "name", required=True)
    sec = ctx.roles.secrets.pop(name, None)
    if sec is None:
        raise invalid("name", f"no secret {name!r} (dockyard secrets list)")
    await ctx.commit([Delete("secret", name), ctx.event("", "secret", sec.arn, "secret deleted")])
    return {"secret": sec.view()}


HANDLERS: dict[str, OpFn] = {
    "CreateRole": create_role,
    "ListRoles": list_roles,
    "DeleteRole": delete_role,
    "PutSecret": put_secret,
    "ListSecrets": list_secrets,
    "DeleteSecret": delete_secret,
}
