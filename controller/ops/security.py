"""The security operations (Dockyard's own, admin keys only): CreateJoinToken, ListJoinTokens,
RevokeJoinToken, CreateAccessKey, ListAccessKeys, DeleteAccessKey, RevokeInstance.

Plain functions of a narrow context, `SecurityContext`: the `Core` and the three parts that
keep the security state, which stay in controller/security/ with what they do besides these
operations (tokens' issuing and checking: tokens.py; access keys and their sealing: keys.py;
agent admission, enrollment and stream cut-off: agents.py). `handlers(security)` binds them
once the controller's `Security` is installed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from controller.model import now
from controller.ops.chain import Handler
from controller.ops.core import Core
from controller.security.agents import AgentGate
from controller.security.keys import KEY_ID_RE, AccessKeys
from controller.security.keys import ROLES as KEY_ROLES
from controller.security.tokens import JoinTokens
from dockyard.errors import ApiError, invalid

if TYPE_CHECKING:
    from controller.security import Security

MAX_DESCRIPTION = 256  # a token's or a key's description
MAX_TTL_S = 10 * 365 * 86400  # a join token's ttlSeconds
MAX_REASON = 256  # RevokeInstance's reason


@dataclass(frozen=True)
class SecurityContext:
    """What the security operations are functions of."""

    core: Core  # commit, events, clusters and instances
    tokens: JoinTokens
    keys: AccessKeys
    gate: AgentGate


SecurityOp = Callable[[SecurityContext, dict[str, Any]], Awaitable[dict[str, Any]]]


# ---------------------------------------------------------------- join tokens


async def create_join_token(ctx: SecurityContext, body: dict[str, Any]) -> dict[str, Any]:
    """The token's text is in this answer only (the store keeps its digest)."""
    description = body.get("description", "")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise invalid("description", f"a string of at most {MAX_DESCRIPTION} characters")
    ttl = body.get("ttlSeconds", 0)
    if not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or not 0 <= ttl <= MAX_TTL_S:
        raise invalid("ttlSeconds", f"a number of seconds from 0 (never) to {MAX_TTL_S}")
    tokens = ctx.tokens
    token, text = await tokens.create(description, float(ttl))
    extra: dict[str, Any] = {"caHash": tokens.ca_hash} if tokens.ca_hash else {}
    if tokens.controllers:
        extra["controllers"] = list(tokens.controllers)
    return {"joinToken": {**token.view(now()), "token": text, **extra}}


async def list_join_tokens(ctx: SecurityContext, body: dict[str, Any]) -> dict[str, Any]:
    at = now()
    tokens = sorted(ctx.tokens.tokens.values(), key=lambda t: t.created_at)
    return {"joinTokens": [t.view(at) for t in tokens]}


async def revoke_join_token(ctx: SecurityContext, body: dict[str, Any]) -> dict[str, Any]:
    ref = body.get("tokenId")
    if not isinstance(ref, str) or not ref or len(ref) > 128:
        raise invalid("tokenId", "required: the id `dockyard tokens list` shows")
    return {"joinToken": (await ctx.tokens.revoke(ref)).view(now())}


# ---------------------------------------------------------------- access keys


async def create_access_key(ctx: SecurityContext, body: dict[str, Any]) -> dict[str, Any]:
    """The secret is in this answer only (the store keeps it sealed, to check signatures)."""
    role = body.get("role", "")
    if role not in KEY_ROLES:
        raise invalid("role", f"one of {', '.join(KEY_ROLES)}")
    description = body.get("description", "")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise invalid("description", f"a string of at most {MAX_DESCRIPTION} characters")
    key = await ctx.keys.create(role, description)
    return {"accessKey": {**key.view(), "secretAccessKey": key.secret_access_key}}


async def list_access_keys(ctx: SecurityContext, body: dict[str, Any]) -> dict[str, Any]:
    keys = sorted(ctx.keys.keys.values(), key=lambda k: k.created_at)
    return {"accessKeys": [k.view() for k in keys]}


async def delete_access_key(ctx: SecurityContext, body: dict[str, Any]) -> dict[str, Any]:
    """The last admin key stays: without it nobody could create another."""
    key_id = body.get("accessKeyId")
    if not isinstance(key_id, str) or not KEY_ID_RE.match(key_id):
        raise invalid("accessKeyId", "required: DYAK followed by 16 letters or digits")
    key = ctx.keys.get(key_id)
    if key is None:
        raise ApiError("ClientException", f"no access key {key_id}")
    admins = [k for k in ctx.keys.keys.values() if k.role == "admin"]
    if key.role == "admin" and len(admins) == 1:
        raise ApiError(
            "ClientException", "refusing to delete the last admin key: create another first"
        )
    await ctx.keys.delete(key_id)
    return {"accessKey": key.view()}


# ---------------------------------------------------------------- instances


async def revoke_instance(ctx: SecurityContext, body: dict[str, Any]) -> dict[str, Any]:
    """The instance's agent is refused from now on, and its open stream is cut at once."""
    ref = body.get("containerInstance")
    if not isinstance(ref, str) or not ref or len(ref) > 1600:
        raise invalid("containerInstance", "required: the instance's ARN or id")
    core = ctx.core
    cluster = core.cluster(body.get("cluster") or None)
    inst = core.state.instance_by_id(cluster.name, ref.rsplit("/", 1)[-1])
    if inst is None:
        raise ApiError("ClientException", f"no container instance {ref[:128]!r} in {cluster.name}")
    reason = body.get("reason") or "revoked by an operator"
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise invalid("reason", f"a string of at most {MAX_REASON} characters")
    entry = await ctx.gate.revoke(cluster.name, inst.id, reason)
    closed = ctx.gate.cut_off(inst.arn, f"instance revoked: {reason}")
    await core.commit(
        [core.event(cluster.name, "security", inst.arn, f"instance revoked: {reason}")]
    )
    return {"containerInstanceArn": inst.arn, "revokedAt": entry.revoked_at, "streamClosed": closed}


HANDLERS: dict[str, SecurityOp] = {
    "CreateJoinToken": create_join_token,
    "ListJoinTokens": list_join_tokens,
    "RevokeJoinToken": revoke_join_token,
    "CreateAccessKey": create_access_key,
    "ListAccessKeys": list_access_keys,
    "DeleteAccessKey": delete_access_key,
    "RevokeInstance": revoke_instance,
}


def handlers(security: Security) -> dict[str, Handler]:
    """The security operations, bound to the installed `Security`'s parts, for the one
    operations table (controller/ops/table.py)."""
    assert security.gate is not None, "Security.install() first"
    ctx = SecurityContext(security.service, security.tokens, security.keys, security.gate)
    return {name: partial(fn, ctx) for name, fn in HANDLERS.items()}
