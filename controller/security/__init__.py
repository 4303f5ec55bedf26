"""The controller's security: join tokens, access keys, API signatures, agent admission.

`Security.install(dispatcher)` loads tokens, keys and revocations; their Dockyard-only
operations (tokens, keys, RevokeInstance) are controller/ops/security.py's functions of
these parts, and `after_steps()` gives the agent gate's step after
DeregisterContainerInstance, for the operations chain. It also provides the gRPC
interceptor, the AgentService servicer and the ECS endpoint's middleware. With
`auth=False` (`dockyard controller --auth off`, for development) every caller and agent is
let in, as before this module existed.
"""

from __future__ import annotations

import datetime
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from aiohttp import web

from controller.security import cluster_ca
from controller.security.agents import AgentGate, TlsSettings
from controller.security.apiauth import ApiKeyInterceptor, sigv4_middleware
from controller.security.keys import AccessKeys
from controller.security.names import certificate_names
from controller.security.pki import CertificateAuthority
from controller.security.sealing import Sealer
from controller.security.tokens import JoinTokens

if TYPE_CHECKING:
    from controller.dispatcher import Dispatcher
    from controller.ops.chain import AfterStep
    from controller.ops.core import Core

__all__ = ["Security", "SecurityConfig", "tls_wanted"]


def tls_wanted(mode: str, listen: str) -> bool:
    """--tls always|never|auto; auto: TLS unless the listen address is loopback."""
    if mode in ("always", "never"):
        return mode == "always"
    host = listen.rpartition(":")[0].strip("[]")
    return host not in ("127.0.0.1", "::1", "localhost")


@dataclass
class SecurityConfig:
    auth: bool = True  # API signatures and join tokens
    open_loopback_agents: bool = False  # loopback agents join without a token (simulators)
    data_dir: Path | None = None
    tls: bool = False  # serve TLS (API + Enroll) and a mutual-TLS port for agent streams
    agent_listen: str = ""  # the mutual-TLS port; default: the listen host, port + 1
    cert_lifetime_s: float = 7 * 86400
    advertise: tuple[str, ...] = ()  # more names/addresses clients use: certificate SANs
    shared_store: bool = False  # several controllers share the store (etcd): one identity
    extra: dict[str, Any] = field(default_factory=dict)


class Security:
    def __init__(self, service: Core, config: SecurityConfig, sealer: Sealer) -> None:
        self.service = service
        self.config = config
        self.sealer = sealer  # access keys' secrets are stored sealed
        self.tokens = JoinTokens(service)
        self.keys = AccessKeys(service)
        self.gate: AgentGate | None = None
        self.ca: CertificateAuthority | None = None
        self.agent_port = 0

    async def install(self, dispatcher: Dispatcher) -> None:
        """Load the security state and add its operations; call after the dispatcher exists."""
        self.tokens.load()
        await self.keys.load(self.config.data_dir, self.sealer, self.config.shared_store)
        self.gate = AgentGate(
            self.service,
            dispatcher,
            self.tokens,
            require_token=self.config.auth,
            open_loopback=self.config.open_loopback_agents,
        )
        self.gate.load()
        if self.config.data_dir is not None:
            self.ca = await cluster_ca.load(
                self.service, self.sealer, self.config.data_dir, self.config.shared_store
            )
            self.tokens.ca_hash = self.ca.fingerprint

    def after_steps(self) -> dict[str, list[AfterStep]]:
        """What follows an operation's success: a deregistered instance's stream is cut."""
        assert self.gate is not None, "install() first"
        return {"DeregisterContainerInstance": [self.gate.after_deregister]}

    def add_ports(self, server: grpc.aio.Server, listen: str) -> int:
        """Listen on `listen` (TLS or plaintext) and, with TLS, on the mutual-TLS agent port.

        grpcio cannot ask for an optional client certificate, so one port cannot serve both
        enrollment (no certificate yet) and mutual TLS: `listen` is server-authenticated
        TLS (the API and Enroll), the agent port requires a certificate from our CA.
        """
        if not self.config.tls:
            return server.add_insecure_port(listen)
        assert self.ca is not None and self.gate is not None, "install() with a data dir first"
        main, self.agent_port = add_tls_ports(
            server, self.ca, listen, self.config.agent_listen, self.config.advertise
        )
        self.gate.tls = TlsSettings(
            self.ca, f":{self.agent_port}", datetime.timedelta(seconds=self.config.cert_lifetime_s)
        )
        return main

    def http_ssl_context(self, http: str) -> ssl.SSLContext:
        """The ECS endpoint's TLS: a certificate from the cluster CA for the --http host and
        every --advertise-address, so `aws --ca-bundle ca.crt` and boto3 `verify=` accept it."""
        assert self.ca is not None, "install() with a data dir first"
        return https_context(self.ca, http, self.config.advertise, self.config.data_dir)

    def interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        return [ApiKeyInterceptor(self.keys, auth_on=self.config.auth)]

    def agent_servicer(self) -> AgentGate:
        assert self.gate is not None, "install() first"
        return self.gate

    def protect_http(self, app: web.Application) -> None:
        """Require SigV4 on the ECS endpoint (POST /); /healthz and /metrics stay open."""
        if self.config.auth:
            app.middlewares.append(sigv4_middleware(self.keys))


def agent_listen_of(listen: str, agent_listen: str = "") -> str:
    """The mutual-TLS agent port's address: --agent-listen, default the listen port + 1."""
    host, _, port = listen.rpartition(":")
    return agent_listen or f"{host}:{int(port) + 1 if int(port) else 0}"


def add_tls_ports(
    server: grpc.aio.Server,
    ca: CertificateAuthority,
    listen: str,
    agent_listen: str,
    advertise: tuple[str, ...],
) -> tuple[int, int]:
    """Listen on `listen` (server-authenticated TLS: the API and Enroll) and on the agent
    port (mutual TLS with certificates of `ca`); their ports. grpcio cannot ask for an
    optional client certificate, so one port cannot serve both enrollment (no certificate
    yet) and mutual TLS."""
    key, chain = ca.server_pair(certificate_names(listen, advertise))
    main = server.add_secure_port(listen, grpc.ssl_server_credentials([(key, chain)]))
    agents = agent_listen_of(listen, agent_listen)
    mutual = grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=ca.pem, require_client_auth=True
    )
    agent_port = server.add_secure_port(agents, mutual)
    if not main or not agent_port:
        raise SystemExit(f"cannot listen on {listen} / {agents} (gRPC, TLS)")
    return main, agent_port


def https_context(
    ca: CertificateAuthority, http: str, advertise: tuple[str, ...], tmp_dir: Path | None
) -> ssl.SSLContext:
    """The ECS endpoint's TLS: a certificate from the cluster CA for the --http host and
    every --advertise-address, so `aws --ca-bundle ca.crt` and boto3 `verify=` accept it."""
    key, chain = ca.server_pair(certificate_names(http, advertise))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # ssl loads a key only from a file: a private temp file, removed once loaded
    fd, path = tempfile.mkstemp(prefix=".http-tls-", dir=tmp_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(key + chain)
        ctx.load_cert_chain(path)
    finally:
        os.unlink(path)
    return ctx
