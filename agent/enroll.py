"""The agent's side of TLS: pin the controller's CA, enroll for a client certificate, renew it.

Off loopback the controller serves TLS. The agent first fetches the CA from the TLS
handshake and accepts it only if its SubjectPublicKeyInfo hash equals `--ca-hash` (from
`dockyard tokens create`), so the join token goes to no impostor. It then sends a CSR with
the token (Enroll) and opens its stream over mutual TLS with the certificate it got. The
controller assigns the instance id at that first enrollment (a token admits a new instance,
never an existing one); the agent keeps it in identity.json. Key, certificate and CA live
in the state dir (key 0600); the certificate is renewed (Enroll over mutual TLS, no token)
once less than a third of its lifetime is left. An agent whose certificate expired cannot
prove who it was: it joins again as a new instance.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import os
import socket
import ssl
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent import identity
from agent.identity import Identity
from dockyard import endpoints
from dockyard.auth import SERVER_NAME
from dockyard.pki import cert_pem, key_pem, spki_hash
from dockyard.v1 import agent_pb2, agent_pb2_grpc

log = logging.getLogger("dockyard.agent.tls")

RENEW_FRACTION = 1 / 3  # renew when less than this share of the lifetime is left
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class EnrollError(Exception):
    """Enrollment failed for a reason worth retrying (controller down, token refused)."""


def tls_wanted(mode: str, controller: str) -> bool:
    """--tls always|never|auto; auto: TLS unless the controller address is loopback."""
    if mode in ("always", "never"):
        return mode == "always"
    hosts = [a.rpartition(":")[0].strip("[]") for a in endpoints.controller_list(controller)]
    return not all(host in LOOPBACK for host in hosts)


def fetch_ca(controller: str, ca_hash: str, timeout: float = 10.0) -> bytes:
    """The cluster CA from the TLS handshake of the first controller of the list that
    answers, if it matches `ca_hash` (every controller of a cluster serves the one CA)."""
    failures = []
    for address in endpoints.controller_list(controller):
        try:
            return _fetch_ca_from(address, ca_hash, timeout)
        except EnrollError as err:
            failures.append(str(err))
    raise EnrollError("; ".join(failures) or "no controller address")


def _fetch_ca_from(address: str, ca_hash: str, timeout: float) -> bytes:
    host, _, port = address.rpartition(":")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # verified by the pin below
    ctx.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=SERVER_NAME) as tls:
                chain = tls._sslobj.get_unverified_chain() or []  # type: ignore[attr-defined]
    except (OSError, ssl.SSLError) as err:
        raise EnrollError(f"cannot fetch the controller's CA from {address}: {err}") from None
    der = ssl._ssl.ENCODING_DER  # type: ignore[attr-defined]
    certs = [x509.load_der_x509_certificate(c.public_bytes(der)) for c in chain]
    for ca in certs:
        if spki_hash(ca) == ca_hash.strip().lower():
            try:
                certs[0].verify_directly_issued_by(ca)
            except Exception as err:
                msg = f"the controller's certificate is not from the pinned CA: {err}"
                raise SystemExit(msg) from None
            return cert_pem(ca)
    seen = ", ".join(spki_hash(c) for c in certs[1:]) or "none"
    raise SystemExit(
        f"the controller at {address} presents a CA ({seen}) that does not match --ca-hash "
        f"{ca_hash}: not sending the join token; check the hash `dockyard tokens create` printed"
    )


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class AgentTls:
    """Builds the agent's mutual-TLS channel, enrolling or renewing first when needed."""

    def __init__(
        self,
        controller: str,
        state_dir: Path,
        ident: Identity,
        cluster: str,
        join_token: str,
        ca_hash: str,
    ) -> None:
        self.controller = controller
        self.dir = Path(state_dir)
        self.identity = ident  # shared with the runtime: enrollment may assign a new id
        self.cluster = cluster
        self.join_token = join_token
        self.ca_hash = ca_hash
        self.ca_path, self.key_path = self.dir / "ca.crt", self.dir / "agent.key"
        self.cert_path, self.meta_path = self.dir / "agent.crt", self.dir / "tls.json"
        self._renewer: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ files

    def _key(self) -> ec.EllipticCurvePrivateKey:
        if self.key_path.exists():
            key = serialization.load_pem_private_key(self.key_path.read_bytes(), None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            return key
        key = ec.generate_private_key(ec.SECP256R1())
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_private(self.key_path, key_pem(key))
        return key

    def _cert(self) -> x509.Certificate | None:
        if not self.cert_path.exists():
            return None
        return x509.load_pem_x509_certificate(self.cert_path.read_bytes())

    @property
    def instance_id(self) -> str:
        return self.identity.instance_id

    def connect_address(self) -> str:
        """The gRPC target of the mutual-TLS stream: the controller's agent port, or (several
        controllers) every controller's, as the leader listed them at enrollment."""
        try:
            port = json.loads(self.meta_path.read_text())["connect_address"]
        except (OSError, ValueError, KeyError):
            return endpoints.grpc_target(self.controller)
        host = self.controller.rpartition(":")[0]
        return endpoints.grpc_target(f"{host}{port}" if str(port).startswith(":") else str(port))

    def renewal_due(self, now: datetime.datetime | None = None) -> bool:
        cert = self._cert()
        if cert is None:
            return True
        now = now or datetime.datetime.now(datetime.UTC)
        life = cert.not_valid_after_utc - cert.not_valid_before_utc
        return cert.not_valid_after_utc - now < life * RENEW_FRACTION

    # ------------------------------------------------------------ enrollment

    async def ensure(self) -> None:
        if not self.ca_path.exists():
            if not self.ca_hash:
                raise SystemExit(
                    "the controller serves TLS: start the agent with --ca-hash sha256:... "
                    "(printed by `dockyard tokens create`) to pin its CA"
                )
            pem = await asyncio.to_thread(fetch_ca, self.controller, self.ca_hash)
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.ca_path.write_bytes(pem)
        if self.renewal_due() or not self._renewing():  # due, or not ours: enroll (anew)
            await self.enroll()

    def _renewing(self) -> bool:
        """Whether we hold a valid certificate for our id: it alone proves who we are."""
        cert = self._cert()
        if cert is None or cert.not_valid_after_utc <= datetime.datetime.now(datetime.UTC):
            return False
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return bool(names) and names[0].value == self.instance_id

    async def enroll(self) -> None:
        """Renew over mutual TLS with our certificate; else join as a new instance (token)."""
        key = self._key()
        renewing = self._renewing()
        if not renewing and self._cert() is not None:
            log.warning(
                "the certificate of %s expired or does not match: joining as a new instance "
                "(the controller replaces %s's service tasks once its grace is over)",
                self.instance_id,
                self.instance_id,
            )
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .sign(key, hashes.SHA256())
        )
        request = agent_pb2.EnrollRequest(
            join_token="" if renewing else self.join_token,
            instance_id=self.instance_id if renewing else "",  # new: the controller assigns it
            cluster=self.cluster,
            csr_pem=csr.public_bytes(serialization.Encoding.PEM),
        )
        # renewal: over mutual TLS with the current certificate; else the token, TLS only
        address = self.connect_address() if renewing else endpoints.grpc_target(self.controller)
        ca = self.ca_path.read_bytes()
        creds = self.credentials() if renewing else grpc.ssl_channel_credentials(ca)
        async with grpc.aio.secure_channel(address, creds, options=self.options()) as ch:
            try:
                reply = await agent_pb2_grpc.AgentServiceStub(ch).Enroll(request, timeout=15)
            except grpc.aio.AioRpcError as err:
                raise EnrollError(f"enrollment refused: {err.details()}") from None
        self._adopt(reply)
        log.info("certificate for %s valid until %s", self.instance_id, reply.not_after)

    def _adopt(self, reply: agent_pb2.EnrollReply) -> None:
        """Keep the certificate, and the instance id it is for (assigned when we joined)."""
        assigned = reply.instance_id
        if not assigned:
            raise EnrollError("the controller assigned no instance id: upgrade the controller")
        if assigned != self.identity.instance_id:
            self.identity.instance_id, self.identity.instance_arn = assigned, ""
            identity.save(self.dir, self.identity)
            log.info("joined as new instance %s", assigned)
        _write_private(self.cert_path, reply.certificate_pem)
        self.meta_path.write_text(json.dumps({"connect_address": reply.connect_address}))

    async def renew_forever(self, check_s: float = 60.0) -> None:
        """Renew while a stream stays up (a handshake-time certificate is not re-checked)."""
        while True:
            cert = self._cert()
            life = (cert.not_valid_after_utc - cert.not_valid_before_utc) if cert else None
            period = min(check_s, life.total_seconds() / 10) if life else check_s
            await asyncio.sleep(max(1.0, period))
            if self.renewal_due():
                try:
                    await self.enroll()
                except EnrollError as err:
                    log.warning("certificate renewal failed (retrying): %s", err)

    # ------------------------------------------------------------ channels

    def options(self, extra: list[tuple[str, Any]] | None = None) -> list[tuple[str, Any]]:
        return [*(extra or []), ("grpc.ssl_target_name_override", SERVER_NAME)]

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            self.ca_path.read_bytes(), self.key_path.read_bytes(), self.cert_path.read_bytes()
        )

    async def channel(self, options: list[tuple[str, Any]], target: str = "") -> grpc.aio.Channel:
        """A mutual-TLS channel to the agent port (enrolls/renews first); `target`: the
        leader's agent port, as a standby named it, instead of the list."""
        await self.ensure()
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self.renew_forever())
        options = endpoints.channel_options(self.controller, options)  # several: fail over soon
        return grpc.aio.secure_channel(
            target or self.connect_address(), self.credentials(), options=self.options(options)
        )


def channel_factory(config: Any, ident: Identity) -> Any:
    """Session.channel_factory for an AgentConfig: None (plaintext) unless TLS is wanted."""
    if not tls_wanted(getattr(config, "tls", "auto"), config.controller):
        return None
    tls = AgentTls(
        config.controller,
        config.state_dir,
        ident,
        config.cluster,
        config.join_token,
        getattr(config, "ca_hash", ""),
    )
    return tls.channel
