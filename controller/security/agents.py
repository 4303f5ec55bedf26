"""Admission of agents: the join token at registration, revoked instances, and cutting off.

`AgentGate` is the AgentService servicer the controller serves: it checks the first
message of each Connect stream and hands the stream to the Dispatcher only if the agent may
join. A refused agent gets a fatal Refusal it logs as an actionable line; the controller
records a `security` event naming the token id, the claimed instance id and the peer.
Revoking an instance (RevokeInstance, or DeregisterContainerInstance) closes its stream at
once and refuses it from then on.

A join token admits a *new* instance and never makes its bearer an existing one (Nomad
refuses a node id whose secret differs; ECS assigns the instance ARN at registration):
- over TLS, Enroll with a token gets a certificate for an id the controller assigns; only
  the instance's own valid certificate (renewal over mutual TLS) gets one for its id;
- in plaintext (loopback), the agent's first registration binds its id to the secret kept
  in its state dir; registering as that id again takes the secret, not a token.
An agent that lost its state dir therefore joins as a new instance, and the old one is a
lost host (DISCONNECTED, its service tasks replaced after the grace).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import DecodeError

from controller import dispatcher as dispatch
from controller.model import now
from controller.security.pki import CertificateAuthority, CsrRejected, cert_pem
from controller.security.tokens import JoinToken, JoinTokens, TokenRefused, token_id
from controller.store_api import Put
from dockyard.v1 import agent_pb2, agent_pb2_grpc

if TYPE_CHECKING:
    from controller.ops.core import Core

log = logging.getLogger(__name__)

REVOKED_KIND = "revokedinstance"
SECRET_KIND = "instancesecret"
SECRET_LENGTH = (32, 256)  # characters of Register.instance_secret
INSTANCE_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
BAD = grpc.StatusCode.INVALID_ARGUMENT


@dataclass
class TlsSettings:
    ca: CertificateAuthority
    connect_address: str  # ":port" (the agent's controller host) or host:port, mutual TLS
    lifetime: datetime.timedelta


class EnrollRefused(Exception):
    def __init__(self, message: str, code: grpc.StatusCode = grpc.StatusCode.PERMISSION_DENIED):
        super().__init__(message)
        self.code = code


FIRST_MESSAGE_TIMEOUT_S = 30
LOOPBACK_PEERS = ("ipv4:127.", "ipv6:[::1]", "unix:")


@dataclass
class Revoked:
    instance_id: str
    cluster: str
    revoked_at: float
    reason: str


@dataclass
class BoundSecret:
    """A plaintext instance's proof of identity: the SHA-256 of the secret in its state dir."""

    instance_id: str
    cluster: str
    digest: str
    bound_at: float


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def refusal(code: str, message: str) -> agent_pb2.ControllerMessage:
    return agent_pb2.ControllerMessage(
        refusal=agent_pb2.Refusal(code=code, message=message, fatal=True)
    )


class AgentGate(agent_pb2_grpc.AgentServiceServicer):
    def __init__(
        self,
        service: Core,
        dispatcher: dispatch.Dispatcher,
        tokens: JoinTokens,
        require_token: bool = True,
        open_loopback: bool = False,
    ) -> None:
        self.service = service
        self.dispatcher = dispatcher
        self.tokens = tokens
        self.require_token = require_token
        self.open_loopback = open_loopback  # dev/simulators: loopback agents need no token
        self.revoked = service.record.revoked  # by instance id (the state of record's)
        self.secrets = service.record.instance_secrets  # by instance id (plaintext agents)
        self.tls: TlsSettings | None = None  # set when the controller serves TLS

    # ------------------------------------------------------------ enrollment

    async def Enroll(self, request: agent_pb2.EnrollRequest, context: Any) -> agent_pb2.EnrollReply:
        """A client certificate for a CSR: with a join token, or renewing with the current cert."""
        try:
            return await self._enroll(request, context.peer() or "", _cert_cn(context))
        except EnrollRefused as err:
            await context.abort(err.code, str(err))
            raise  # abort raises; this keeps type checkers content

    async def _enroll(
        self, req: agent_pb2.EnrollRequest, peer: str, cert_cn: str | None
    ) -> agent_pb2.EnrollReply:
        if self.tls is None:
            raise EnrollRefused("this controller does not serve TLS: connect in plaintext")
        if req.instance_id and not INSTANCE_ID_RE.match(req.instance_id):
            raise EnrollRefused("instance_id: 1-64 letters, digits, '.', '_' or '-'", BAD)
        claim = agent_pb2.Register(
            instance_id=req.instance_id, cluster=req.cluster, join_token=req.join_token
        )
        if req.instance_id in self.revoked:
            await self._refused(claim, peer, "INSTANCE_REVOKED", "enrollment of a revoked instance")
            raise EnrollRefused(f"instance {req.instance_id} was revoked")
        renewal = bool(req.instance_id) and cert_cn == req.instance_id
        if renewal:
            instance_id = req.instance_id  # its own valid certificate proves the id
        else:
            instance_id = await self._enroll_new(claim, peer)
        try:  # a new instance's name is ours to give, whatever its CSR asked for
            cert = self.tls.ca.sign_csr(
                req.csr_pem, instance_id, self.tls.lifetime, check_cn=renewal
            )
        except CsrRejected as err:
            raise EnrollRefused(str(err), BAD) from None
        log.info(
            "issued a certificate to %s (%s) until %s", instance_id, peer, cert.not_valid_after_utc
        )
        return agent_pb2.EnrollReply(
            certificate_pem=cert_pem(cert),
            ca_pem=self.tls.ca.pem,
            connect_address=self.tls.connect_address,
            not_after=cert.not_valid_after_utc.timestamp(),
            instance_id=instance_id,
        )

    async def _enroll_new(self, claim: agent_pb2.Register, peer: str) -> str:
        """The id of a new instance admitted by its join token; refused for an existing id."""
        if claim.instance_id and self._known(claim.instance_id):
            why = self._not_yours(claim.instance_id)
            await self._refused(claim, peer, "IDENTITY_REFUSED", why)
            raise EnrollRefused(
                f"{why}: renew with that instance's own certificate (mutual TLS), or join "
                "as a new instance with an empty instance_id"
            )
        if self.require_token:
            try:
                token = await self._token(claim, peer)
            except TokenRefused as err:
                raise EnrollRefused(
                    f"join token refused: {err}; create one with `dockyard tokens create`"
                ) from None
            await self.tokens.used(token)
        return self._new_instance_id()

    def _new_instance_id(self) -> str:
        """A fresh id no instance has had (the format agents used to make for themselves)."""
        while True:
            instance_id = f"i-{secrets.token_hex(9)[:17]}"
            if not self._known(instance_id):
                return instance_id

    def _known(self, instance_id: str) -> bool:
        """Whether `instance_id` names an instance (in any cluster), now or once."""
        if instance_id in self.revoked or instance_id in self.secrets:
            return True
        return any(iid == instance_id for _, iid in self.service.state.instance_ids)

    @staticmethod
    def _not_yours(instance_id: str) -> str:
        return (
            f"instance {instance_id} already exists and a join token admits only a new "
            "instance, never an existing one"
        )

    def load(self) -> None:
        """Take revoked instances and instance secrets from the state of record's loader."""
        for doc in self.service.record.docs(REVOKED_KIND):
            self.revoked[doc["instance_id"]] = Revoked(**doc)
        for doc in self.service.record.docs(SECRET_KIND):
            self.secrets[doc["instance_id"]] = BoundSecret(**doc)

    # ------------------------------------------------------------ the stream

    async def Connect(
        self, request_iterator: AsyncIterator[agent_pb2.AgentMessage], context: Any
    ) -> AsyncIterator[agent_pb2.ControllerMessage]:
        try:
            first = await asyncio.wait_for(anext(request_iterator), FIRST_MESSAGE_TIMEOUT_S)
        except (StopAsyncIteration, TimeoutError):
            return
        except DecodeError as err:  # not an AgentMessage at all: say so, log the peer
            log.warning("malformed first message from %s: %s", context.peer(), err)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed AgentMessage: {err}")
            return
        if first.WhichOneof("body") == "register":
            refused = await self.admit(first.register, context.peer() or "", _cert_cn(context))
            if refused is not None:
                yield refused
                return

        async for msg in self.dispatcher.Connect(request_iterator, context, first):
            yield msg

    async def admit(
        self, reg: agent_pb2.Register, peer: str, cert_cn: str | None = None
    ) -> agent_pb2.ControllerMessage | None:
        """None if the registering agent may join; else the fatal Refusal to send it."""
        if not INSTANCE_ID_RE.match(reg.instance_id) or len(reg.cluster) > 255:
            return refusal(
                "BAD_MESSAGE",
                "register.instance_id: 1-64 letters, digits, '.', '_' or '-'; "
                "register.cluster: at most 255 characters",
            )
        gone = self.revoked.get(reg.instance_id)
        if gone is not None:
            why = f"instance {reg.instance_id} was revoked ({gone.reason})"
            await self._refused(reg, peer, "INSTANCE_REVOKED", why)
            return refusal(
                "INSTANCE_REVOKED", f"{why}: remove the agent's state dir and join again"
            )
        if cert_cn is not None:  # mutual TLS: the certificate is the identity
            if cert_cn == reg.instance_id:
                return None
            why = f"certificate is for instance {cert_cn}, not {reg.instance_id[:64]}"
            await self._refused(reg, peer, "UNAUTHORIZED", why)
            return refusal("UNAUTHORIZED", f"{why}: an agent may register only as itself")
        if self.tls is not None:
            why = "connect with the client certificate from Enroll (mutual TLS)"
            await self._refused(reg, peer, "UNAUTHORIZED", why)
            return refusal("UNAUTHORIZED", f"no client certificate: {why}")
        if not self.require_token or (self.open_loopback and peer.startswith(LOOPBACK_PEERS)):
            return None
        try:
            token = await self._token(reg, peer)
        except TokenRefused as err:
            return refusal(
                "JOIN_TOKEN_REFUSED",
                f"join token refused: {err}; create one with `dockyard tokens create` and "
                "start the agent with --join-token (or DOCKYARD_JOIN_TOKEN)",
            )
        return await self._prove_plaintext(reg, peer, token)

    async def _token(self, claim: agent_pb2.Register, peer: str) -> JoinToken:
        """The presented join token if it admits an agent now; TokenRefused (with the
        refusal recorded as a security event) if not."""
        try:
            return self.tokens.check(claim.join_token)
        except TokenRefused as err:
            await self._refused(claim, peer, "JOIN_TOKEN_REFUSED", str(err))
            raise

    async def _prove_plaintext(
        self, reg: agent_pb2.Register, peer: str, token: JoinToken
    ) -> agent_pb2.ControllerMessage | None:
        """A plaintext agent with a valid token: a new id binds its secret, an existing id
        must present the secret it bound (the token alone never makes you that instance)."""
        bound = self.secrets.get(reg.instance_id)
        if bound is not None:
            if hmac.compare_digest(bound.digest, _digest(reg.instance_secret)):
                return None
            why = self._not_yours(reg.instance_id)
            await self._refused(reg, peer, "IDENTITY_REFUSED", why)
            return refusal(
                "IDENTITY_REFUSED",
                f"{why}: an agent that lost its state dir joins as a new instance "
                "(move the state dir away and start it again)",
            )
        low, high = SECRET_LENGTH
        if not low <= len(reg.instance_secret) <= high:
            why = f"register.instance_secret: {low}-{high} characters from the agent's state dir"
            await self._refused(reg, peer, "BAD_MESSAGE", why)
            return refusal("BAD_MESSAGE", f"{why} (an agent older than the controller?)")
        existed = self._known(reg.instance_id)
        if existed and self._live(reg.instance_id):  # joined before secrets: not while it runs
            why = self._not_yours(reg.instance_id)
            await self._refused(reg, peer, "IDENTITY_REFUSED", why)
            return refusal("IDENTITY_REFUSED", f"{why}: it is connected")
        await self._bind(reg)
        if not existed:
            await self.tokens.used(token)
        return None

    def _live(self, instance_id: str) -> bool:
        state = self.service.state
        arns = [arn for (_, iid), arn in state.instance_ids.items() if iid == instance_id]
        return any(state.instances[arn].connected for arn in arns if arn in state.instances)

    async def _bind(self, reg: agent_pb2.Register) -> None:
        """Bind the instance id to its secret: at its first registration, or (an instance
        that joined before controllers kept secrets) its first one since, while it is not
        connected - trust on first use, the one window a token holder could race it in."""
        bound = BoundSecret(
            reg.instance_id, self._cluster(reg), _digest(reg.instance_secret), now()
        )
        self.secrets[reg.instance_id] = bound  # at once: a concurrent claim must match it
        await self.service.commit(
            [Put(SECRET_KIND, bound.instance_id, bound.cluster, asdict(bound))]
        )

    def _cluster(self, reg: agent_pb2.Register) -> str:
        name = reg.cluster or "default"
        return name if name in self.service.state.clusters else "default"

    async def _refused(self, reg: agent_pb2.Register, peer: str, code: str, why: str) -> None:
        """Log and record a refused attempt: the claimed id, the token id and the peer."""
        iid, host = reg.instance_id[:64], reg.hostname[:64]
        tid = token_id(reg.join_token) or "none"
        log.warning("refused agent %s (%s) from %s, join token %s: %s", iid, host, peer, tid, why)
        message = f"agent {iid or '(new)'} ({host}) from {peer}, join token {tid}, refused: {why}"
        detail = {"code": code, "claimedInstanceId": iid, "tokenId": tid, "peer": peer}
        await self.service.commit(
            [self.service.event(self._cluster(reg), "security", iid, message, detail)]
        )

    # ------------------------------------------------------------ revocation

    def cut_off(self, instance_arn: str, why: str) -> bool:
        """Close the instance's stream now (a fatal Refusal, then the end of the stream)."""
        session = self.dispatcher.sessions.get(instance_arn)
        if session is None or session.closed:
            return False
        session.outbox.put_nowait(refusal("INSTANCE_REVOKED", why))
        session.outbox.put_nowait(dispatch._CLOSE)
        return True

    async def revoke(self, cluster: str, instance_id: str, reason: str) -> Revoked:
        entry = Revoked(instance_id, cluster, now(), reason)
        self.revoked[instance_id] = entry
        await self.service.commit([Put(REVOKED_KIND, instance_id, cluster, asdict(entry))])
        return entry

    def after_deregister(self, body: dict[str, Any], out: dict[str, Any]) -> None:
        """DeregisterContainerInstance's after-step: cut the instance's stream at once."""
        arn = out.get("containerInstance", {}).get("containerInstanceArn", "")
        if arn:
            self.cut_off(arn, "instance deregistered")


def peer_is_loopback(context: grpc.aio.ServicerContext) -> bool:
    return (context.peer() or "").startswith(LOOPBACK_PEERS)


def _cert_cn(context: Any) -> str | None:
    """The verified client certificate's CN (mutual TLS), or None without one."""
    try:
        values = (context.auth_context() or {}).get("x509_common_name") or []
    except Exception:  # no transport security on this connection
        return None
    return values[0].decode() if values else None
