"""Admission of agents: the join token at registration, revoked instances, and cutting off.

`AgentGate` is the AgentService servicer the controller serves: it checks the first
message of each Connect stream and hands the stream to the Dispatcher only if the agent may
join. A refused agent gets a fatal Refusal it logs as an actionable line; the controller
records an event. Revoking an instance (RevokeInstance, or DeregisterContainerInstance)
closes its stream at once and refuses it from then on.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import DecodeError

from controller import dispatcher as dispatch
from controller.model import now
from controller.security.pki import CertificateAuthority, CsrRejected, cert_pem
from controller.security.tokens import JoinTokens, TokenRefused
from controller.store import Put
from dockyard.errors import ApiError, invalid
from dockyard.v1 import agent_pb2, agent_pb2_grpc

if TYPE_CHECKING:
    from controller.service import ClusterService

log = logging.getLogger(__name__)

REVOKED_KIND = "revokedinstance"
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


def refusal(code: str, message: str) -> agent_pb2.ControllerMessage:
    return agent_pb2.ControllerMessage(
        refusal=agent_pb2.Refusal(code=code, message=message, fatal=True)
    )


class AgentGate(agent_pb2_grpc.AgentServiceServicer):
    def __init__(
        self,
        service: ClusterService,
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
        self.revoked: dict[str, Revoked] = {}  # by instance id
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
        if not INSTANCE_ID_RE.match(req.instance_id):
            raise EnrollRefused("instance_id: 1-64 letters, digits, '.', '_' or '-'", BAD)
        reg = agent_pb2.Register(instance_id=req.instance_id, cluster=req.cluster)
        if req.instance_id in self.revoked:
            await self._refused(reg, peer, "INSTANCE_REVOKED", "enrollment of a revoked instance")
            raise EnrollRefused(f"instance {req.instance_id} was revoked")
        if cert_cn != req.instance_id and self.require_token:
            try:
                await self.tokens.used(self.tokens.check(req.join_token))
            except TokenRefused as err:
                await self._refused(reg, peer, "JOIN_TOKEN_REFUSED", str(err))
                raise EnrollRefused(
                    f"join token refused: {err}; create one with `dockyard tokens create`"
                ) from None
        try:
            cert = self.tls.ca.sign_csr(req.csr_pem, req.instance_id, self.tls.lifetime)
        except CsrRejected as err:
            raise EnrollRefused(str(err), BAD) from None
        log.info(
            "issued a certificate to %s (%s) until %s",
            req.instance_id,
            peer,
            cert.not_valid_after_utc,
        )
        return agent_pb2.EnrollReply(
            certificate_pem=cert_pem(cert),
            ca_pem=self.tls.ca.pem,
            connect_address=self.tls.connect_address,
            not_after=cert.not_valid_after_utc.timestamp(),
        )

    async def load(self) -> None:
        for doc in await self.service.store.load(REVOKED_KIND):
            self.revoked[doc["instance_id"]] = Revoked(**doc)

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
            token = self.tokens.check(reg.join_token)
        except TokenRefused as err:
            await self._refused(reg, peer, "JOIN_TOKEN_REFUSED", str(err))
            return refusal(
                "JOIN_TOKEN_REFUSED",
                f"join token refused: {err}; create one with `dockyard tokens create` and "
                "start the agent with --join-token (or DOCKYARD_JOIN_TOKEN)",
            )
        if (
            self.dispatcher.service.state.instance_by_id(self._cluster(reg), reg.instance_id)
            is None
        ):
            await self.tokens.used(token)
        return None

    def _cluster(self, reg: agent_pb2.Register) -> str:
        name = reg.cluster or "default"
        return name if name in self.service.state.clusters else "default"

    async def _refused(self, reg: agent_pb2.Register, peer: str, code: str, why: str) -> None:
        iid = reg.instance_id[:64]
        log.warning("refused agent %s (%s) from %s: %s", iid, reg.hostname[:64], peer, why)
        message = f"agent {iid} ({reg.hostname[:64]}) from {peer} refused: {why}"
        await self.service.commit(
            [self.service.event(self._cluster(reg), "security", iid, message, {"code": code})]
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

    async def op_RevokeInstance(self, body: dict[str, Any]) -> dict[str, Any]:
        ref = body.get("containerInstance")
        if not isinstance(ref, str) or not ref or len(ref) > 1600:
            raise invalid("containerInstance", "required: the instance's ARN or id")
        cluster = self.service.cluster(body.get("cluster") or None)
        inst = self.service.state.instance_by_id(cluster.name, ref.rsplit("/", 1)[-1])
        if inst is None:
            raise ApiError(
                "ClientException", f"no container instance {ref[:128]!r} in {cluster.name}"
            )
        reason = body.get("reason") or "revoked by an operator"
        if not isinstance(reason, str) or len(reason) > 256:
            raise invalid("reason", "a string of at most 256 characters")
        entry = await self.revoke(cluster.name, inst.id, reason)
        closed = self.cut_off(inst.arn, f"instance revoked: {reason}")
        await self.service.commit(
            [self.service.event(cluster.name, "security", inst.arn, f"instance revoked: {reason}")]
        )
        return {
            "containerInstanceArn": inst.arn,
            "revokedAt": entry.revoked_at,
            "streamClosed": closed,
        }

    def wrap_deregister(self) -> None:
        """DeregisterContainerInstance also cuts the instance's stream at once."""
        original = self.service._ops["DeregisterContainerInstance"]

        async def deregister(body: dict[str, Any]) -> dict[str, Any]:
            out = await original(body)
            arn = out.get("containerInstance", {}).get("containerInstanceArn", "")
            if arn:
                self.cut_off(arn, "instance deregistered")
            return out

        self.service.add_operations({"DeregisterContainerInstance": deregister})


def peer_is_loopback(context: grpc.aio.ServicerContext) -> bool:
    return (context.peer() or "").startswith(LOOPBACK_PEERS)


def _cert_cn(context: Any) -> str | None:
    """The verified client certificate's CN (mutual TLS), or None without one."""
    try:
        values = (context.auth_context() or {}).get("x509_common_name") or []
    except Exception:  # no transport security on this connection
        return None
    return values[0].decode() if values else None
