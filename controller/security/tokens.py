"""Join tokens (Swarm's model): an agent presents one to join; stored hashed, shown once.

A token is `DYJ1.<id>.<secret>`: the id names it in lists and revocations, the secret is
only ever kept as its SHA-256. Tokens may expire (`ttlSeconds`) and are revoked by id; a
revoked token stays listed as REVOKED so a refused agent's error can say so.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from controller.model import now
from controller.store_api import Put
from dockyard.errors import ApiError

if TYPE_CHECKING:
    from controller.ops.core import Core

KIND = "jointoken"
PREFIX = "DYJ1"
TOKEN_RE = re.compile(r"^DYJ1\.([0-9a-f]{12})\.([0-9a-f]{40})$")
MAX_TOKENS = 1000


@dataclass
class JoinToken:
    id: str
    digest: str  # SHA-256 of the secret, hex
    description: str = ""
    created_at: float = 0.0
    expires_at: float = 0.0  # 0: never
    revoked_at: float = 0.0
    uses: int = 0

    def status(self, at: float) -> str:
        if self.revoked_at:
            return "REVOKED"
        if self.expires_at and at >= self.expires_at:
            return "EXPIRED"
        return "ACTIVE"

    def view(self, at: float) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tokenId": self.id,
            "status": self.status(at),
            "description": self.description,
            "createdAt": self.created_at,
            "uses": self.uses,
        }
        if self.expires_at:
            out["expiresAt"] = self.expires_at
        if self.revoked_at:
            out["revokedAt"] = self.revoked_at
        return out


def token_id(presented: str) -> str:
    """The id part of a presented token (known or not), for refusal events; "" if none."""
    match = TOKEN_RE.match(presented.strip())
    return match.group(1) if match else ""


class TokenRefused(Exception):
    """Why a presented token does not admit its agent (the agent is told this text)."""


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class JoinTokens:
    def __init__(self, service: Core) -> None:
        self.service = service
        self.tokens = service.record.join_tokens  # the state of record holds them
        self.ca_hash = ""  # the CA agents pin (`--ca-hash`), shown with new tokens
        # several controllers (etcd): every one's API address, the leader's first, shown with
        # new tokens so the join command lists them all (controller/ha.py keeps it current)
        self.controllers: list[str] = []

    def load(self) -> None:
        """Take the join tokens the state of record's loader read at startup."""
        for doc in self.service.record.docs(KIND):
            self.tokens[doc["id"]] = JoinToken(**doc)

    def _put(self, token: JoinToken) -> Put:
        return Put(KIND, token.id, "", asdict(token))

    def check(self, presented: str) -> JoinToken:
        """The token `presented` names if it admits an agent now; TokenRefused says why not."""
        if not presented:
            raise TokenRefused("no join token presented")
        match = TOKEN_RE.match(presented.strip())
        if match is None:
            raise TokenRefused("malformed join token (expected DYJ1.<id>.<secret>)")
        token = self.tokens.get(match.group(1))
        if token is None or not hmac.compare_digest(token.digest, _digest(match.group(2))):
            raise TokenRefused("unknown join token")
        status = token.status(now())
        if status != "ACTIVE":
            raise TokenRefused(f"join token {token.id} is {status.lower()}")
        return token

    async def used(self, token: JoinToken) -> None:
        token.uses += 1
        await self.service.commit([self._put(token)])

    async def create(self, description: str = "", ttl: float = 0) -> tuple[JoinToken, str]:
        active = [t for t in self.tokens.values() if t.status(now()) == "ACTIVE"]
        if len(active) >= MAX_TOKENS:
            raise ApiError("LimitExceededException", f"at most {MAX_TOKENS} active join tokens")
        tid, secret = secrets.token_hex(6), secrets.token_hex(20)
        at = now()
        token = JoinToken(tid, _digest(secret), description, at, at + ttl if ttl else 0.0)
        self.tokens[tid] = token
        await self.service.commit([self._put(token)])
        return token, f"{PREFIX}.{tid}.{secret}"

    async def revoke(self, ref: str) -> JoinToken:
        match = TOKEN_RE.match(ref)
        tid = match.group(1) if match else ref
        token = self.tokens.get(tid)
        if token is None:
            raise ApiError("ClientException", f"no join token {tid[:64]!r}")
        if not token.revoked_at:
            token.revoked_at = now()
            await self.service.commit([self._put(token)])
        return token
