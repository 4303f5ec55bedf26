"""The controller's security: join tokens, access keys, API signatures, agent admission.

`Security.install(controller)` is the one hook the controller calls: it loads tokens,
keys and revocations, adds the Dockyard-only operations (tokens, keys, RevokeInstance) to
the service layer, and provides the gRPC interceptor, the AgentService servicer and the
ECS endpoint's middleware. With `auth=False` (`dockyard controller --auth off`, for
development) every caller and agent is let in, as before this module existed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from aiohttp import web

from controller.security.agents import AgentGate
from controller.security.apiauth import ApiKeyInterceptor, sigv4_middleware
from controller.security.keys import AccessKeys
from controller.security.tokens import JoinTokens

if TYPE_CHECKING:
    from controller.dispatcher import Dispatcher
    from controller.service import ClusterService

__all__ = ["Security", "SecurityConfig"]


@dataclass
class SecurityConfig:
    auth: bool = True  # API signatures and join tokens
    open_loopback_agents: bool = False  # loopback agents join without a token (simulators)
    data_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Security:
    def __init__(self, service: ClusterService, config: SecurityConfig) -> None:
        self.service = service
        self.config = config
        self.tokens = JoinTokens(service)
        self.keys = AccessKeys(service)
        self.gate: AgentGate | None = None

    async def install(self, dispatcher: Dispatcher) -> None:
        """Load the security state and add its operations; call after the dispatcher exists."""
        await self.tokens.load()
        await self.keys.load(self.config.data_dir)
        self.gate = AgentGate(
            self.service,
            dispatcher,
            self.tokens,
            require_token=self.config.auth,
            open_loopback=self.config.open_loopback_agents,
        )
        await self.gate.load()
        ops: dict[str, Any] = {}
        for owner in (self.tokens, self.keys, self.gate):
            ops.update({n[3:]: getattr(owner, n) for n in dir(owner) if n.startswith("op_")})
        self.service.add_operations(ops)
        self.gate.wrap_deregister()

    def interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        return [ApiKeyInterceptor(self.keys)] if self.config.auth else []

    def agent_servicer(self) -> AgentGate:
        assert self.gate is not None, "install() first"
        return self.gate

    def protect_http(self, app: web.Application) -> None:
        """Require SigV4 on the ECS endpoint (POST /); /healthz and /metrics stay open."""
        if self.config.auth:
            app.middlewares.append(sigv4_middleware(self.keys))
