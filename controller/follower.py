"""What a standby controller serves while another leads: it answers, it decides nothing.

On the controller's own ports (gRPC, the agents' mutual-TLS port, HTTP), with the cluster's
one CA (read from the store's hot copy, never written):

- an agent's stream (AgentService/Connect) is refused UNAVAILABLE with the leader's agent
  address in the `dockyard-leader` trailing metadata: the agent dials it next, at once;
- every other gRPC call (the native API, Enroll) is relayed as is (bytes and metadata, so
  API signatures still verify) to the leader, and its answer or error relayed back;
- every HTTP request (the ECS endpoint and the other AWS-compatible APIs, signed with
  SigV4) is relayed to the leader's HTTP endpoint with its Host header, so the signature
  verifies there; `/healthz` answers here, saying this is a standby and who leads.

So `aws --endpoint-url` and the CLI work pointed at any controller; writes are never made
here. When this controller is elected it stops these listeners and the controller proper
takes the same ports. Where the leader is comes from etcd (the leader key and the members'
addresses, controller.ha_members), looked up again whenever it may have changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import grpc
from aiohttp import web

from controller import ha_members
from controller.etcd_client import EtcdClient
from controller.http_timeouts import runner_options
from controller.security import add_tls_ports, cluster_ca, https_context, keys, sealing
from controller.security.pki import CertificateAuthority
from controller.stale_reads import (
    NO_QUORUM,
    STALE_HEADER,
    STALE_SINCE_HEADER,
    STANDBY,
    QuorumWatch,
    StaleReader,
)
from controller.store_etcd import EtcdStore
from dockyard.auth import SERVER_NAME
from dockyard.endpoints import LEADER_HINT

if TYPE_CHECKING:
    from controller.leadership import Leadership
    from controller.server import ControllerConfig

log = logging.getLogger(__name__)

CONNECT = "/dockyard.v1.AgentService/Connect"
STREAMS = ("/dockyard.v1.ClusterApi/WatchEvents", "/dockyard.v1.ClusterApi/Logs")
LEADER_TTL_S = 1.0  # how long a looked-up leader is trusted before asking etcd again
# An agent that asks a standby during an election waits this long for the winner's address
# (one etcd lookup every LEADER_POLL_S, shared by every waiting agent), so it reconnects the
# moment a leader is elected instead of after its own backoff.
REDIRECT_WAIT_S = 2.0  # under the agents' own silence limit (3 heartbeat periods)
LEADER_POLL_S = 0.1
CA_POLL_S = 0.5
RELAY_TIMEOUT_S = 60.0
# hop-by-hop headers (RFC 9110 7.6.1) and those the relay recomputes
HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
}


class NoLeader(Exception):
    """No controller leads right now (an election is under way)."""


class Follower:
    """A standby's listeners: refuse agent streams with the leader's address, relay calls."""

    def __init__(
        self, config: ControllerConfig, store: EtcdStore, client: EtcdClient, lead: Leadership
    ) -> None:
        self.config = config
        self.store = store
        self.client = client
        self.leadership = lead
        self.prefix = lead.key.decode().rpartition("/")[0]
        self.ca: CertificateAuthority | None = None
        self._leader: tuple[float, ha_members.Member] | None = None
        self._lookup: asyncio.Future[ha_members.Member] | None = None  # shared by callers
        lead.on_vacant = self.forget_leader  # the old leader's address is wrong from now on
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._grpc: grpc.aio.Server | None = None
        self._http: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        # without an etcd quorum there is no leader: reads answered here, stale
        self.quorum = QuorumWatch(client, lead.key)
        self.stale = StaleReader(config, store, self.quorum)
        self.quorum.on_back = self.stale.close  # relaying again: the copy is not needed
        self._probe: asyncio.Task[None] | None = None

    # -- life cycle -------------------------------------------------------------------

    async def run(self) -> None:
        """Listen (over TLS once the store holds the cluster CA), until cancelled."""
        self.store.fence_with(STANDBY)  # a standby commits nothing (ha fences it when elected)
        self._probe = asyncio.create_task(self.quorum.run(), name="etcd-quorum")
        try:
            self.ca = await self._wait_for_identity()
            await self._start_grpc()
            await self._start_http()
            log.info("standby answering on %s (relaying to the leader)", self.config.listen)
            await asyncio.Event().wait()
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Close the listeners (the elected controller takes their ports) and the relays."""
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)
        self.stale.close()
        grpc_server, self._grpc = self._grpc, None
        if grpc_server is not None:
            await grpc_server.stop(grace=0)  # elected: what it relays went to a dead leader
        http, self._http = self._http, None
        if http is not None:
            await http.cleanup()
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            await channel.close()

    async def _wait_for_identity(self) -> CertificateAuthority | None:
        """Once the first leader sealed the store (and stored the CA, with TLS): the cluster
        CA, with `ca.crt` and the first start's admin-credentials written to the data dir."""
        tls = self.config.tls or self.config.http_tls
        data_dir = Path(self.config.data_dir)
        while True:
            sealer = await sealing.open_sealed(self.store, self.config.key_file)
            ca = await cluster_ca.stored(self.store, sealer) if sealer else None
            if sealer is not None and (ca is not None or not tls):
                rows = await self.store.load_rows(keys.KIND)
                keys.publish_admin(data_dir, keys.stored_keys(sealer, rows))
                if ca is not None:
                    cluster_ca.publish(ca, data_dir)
                return ca if tls else None
            await asyncio.sleep(CA_POLL_S)

    async def _start_grpc(self) -> None:
        from controller.server import GRPC_OPTIONS

        server = grpc.aio.server(options=GRPC_OPTIONS)
        server.add_generic_rpc_handlers((_Relay(self),))
        cfg = self.config
        if self.ca is not None and cfg.tls:
            add_tls_ports(server, self.ca, cfg.listen, cfg.agent_listen, cfg.advertise)
        elif not server.add_insecure_port(cfg.listen):
            raise SystemExit(f"cannot listen on {cfg.listen} (gRPC)")
        await server.start()
        self._grpc = server

    async def _start_http(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_route("*", "/{tail:.*}", self._relay_http)
        runner = web.AppRunner(app, access_log=None, **runner_options())
        await runner.setup()
        host, _, port = self.config.http.rpartition(":")
        tls = None
        if self.ca is not None and self.config.http_tls:
            tls = https_context(self.ca, self.config.http, self.config.advertise, None)
        await web.TCPSite(runner, host or "0.0.0.0", int(port), ssl_context=tls).start()
        self._http = runner

    # -- where the leader is ----------------------------------------------------------

    async def leader(self) -> ha_members.Member:
        """The leader's addresses (looked up in etcd at most every LEADER_TTL_S, one lookup
        at a time whoever asks)."""
        now = time.monotonic()
        if self._leader is not None and now - self._leader[0] < LEADER_TTL_S:
            return self._leader[1]
        if self._lookup is None or self._lookup.done():
            self._lookup = asyncio.ensure_future(self._look_up(now))
            self._lookup.add_done_callback(_retrieved)  # its NoLeader may find no waiter
        return await asyncio.shield(self._lookup)

    async def wait_leader(self, within: float) -> ha_members.Member:
        """The leader, waiting up to `within` seconds while an election is under way."""
        deadline = time.monotonic() + within
        while True:
            try:
                return await self.leader()
            except NoLeader:
                if time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(LEADER_POLL_S)

    async def _look_up(self, now: float) -> ha_members.Member:
        identity = await self.leadership.leader()
        found = await ha_members.members(self.client, self.prefix) if identity else {}
        member = found.get(identity or "")
        if member is None:
            self._leader = None
            raise NoLeader("no controller leads at the moment (an election is under way)")
        self._leader = (now, member)
        return member

    def forget_leader(self) -> None:
        self._leader = None

    def channel(self, address: str) -> grpc.aio.Channel:
        """A channel to the leader's API, over TLS trusting the one cluster CA."""
        channel = self._channels.get(address)
        if channel is None:
            if self.ca is not None and self.config.tls:
                creds = grpc.ssl_channel_credentials(self.ca.pem)
                options = [("grpc.ssl_target_name_override", SERVER_NAME)]
                channel = grpc.aio.secure_channel(address, creds, options=options)
            else:
                channel = grpc.aio.insecure_channel(address)
            self._channels[address] = channel
        return channel

    # -- HTTP -------------------------------------------------------------------------

    async def _healthz(self, _: web.Request) -> web.Response:
        if not self.quorum.ok:
            return web.json_response(
                {"status": "standby", "leader": "", "stale": True, "staleSince": self.quorum.since},
                headers={STALE_HEADER: "true", STALE_SINCE_HEADER: self.quorum.since},
            )
        try:
            leader = (await self.leader()).http
        except (NoLeader, grpc.aio.AioRpcError):
            leader = ""
        return web.json_response({"status": "standby", "leader": leader})

    async def _relay_http(self, request: web.Request) -> web.Response:
        """The request, relayed to the leader's HTTP endpoint; its answer, relayed back.
        Without an etcd quorum (no leader): an ECS read answered here, stale."""
        if not self.quorum.ok:
            if request.method == "POST" and (
                request.path == "/" or request.path.startswith("/service/")
            ):
                return await self.stale.http(request)
            return _unavailable(NO_QUORUM)
        try:
            leader = await self.leader()
        except (NoLeader, grpc.aio.AioRpcError) as err:
            return _unavailable(str(err) if isinstance(err, NoLeader) else "etcd unreachable")
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        try:
            async with self._client().request(
                request.method,
                leader.http + request.path_qs,
                headers=headers,
                data=body,
                ssl=self._client_ssl(),
            ) as resp:
                payload = await resp.read()
                out = {k: v for k, v in resp.headers.items() if k.lower() not in HOP}
                return web.Response(status=resp.status, body=payload, headers=out)
        except (aiohttp.ClientError, TimeoutError) as err:
            self.forget_leader()
            return _unavailable(f"the leader at {leader.http} did not answer: {err}")

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=RELAY_TIMEOUT_S)
            self._session = aiohttp.ClientSession(timeout=timeout, auto_decompress=False)
        return self._session

    def _client_ssl(self) -> ssl.SSLContext | bool:
        """Trust the one cluster CA; the name is not checked: the leader is found by
        etcd, and only a controller of this cluster holds a certificate of its CA."""
        if self.ca is None:
            return True
        ctx = ssl.create_default_context(cadata=self.ca.pem.decode())
        ctx.check_hostname = False
        return ctx


def _retrieved(lookup: asyncio.Future[ha_members.Member]) -> None:
    if not lookup.cancelled():
        lookup.exception()


def _unavailable(message: str) -> web.Response:
    """503 (botocore retries it) in the ECS error shape."""
    body = json.dumps({"__type": "ServiceUnavailableException", "message": message})
    return web.Response(status=503, body=body.encode(), content_type="application/x-amz-json-1.1")


class _Relay(grpc.GenericRpcHandler):
    """Every gRPC method of a standby: agent streams redirected, the rest relayed."""

    def __init__(self, follower: Follower) -> None:
        self.follower = follower

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = details.method
        if method == CONNECT:
            return grpc.stream_stream_rpc_method_handler(self._redirect)
        if method in STREAMS:
            return grpc.unary_stream_rpc_method_handler(self._relay_stream(method))
        return grpc.unary_unary_rpc_method_handler(self._relay_unary(method))

    async def _leader(self, context: Any, wait: float = 0.0) -> ha_members.Member:
        try:
            return await self.follower.wait_leader(wait)
        except NoLeader as err:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(err))
            raise
        except grpc.aio.AioRpcError as err:
            why = f"this standby cannot reach etcd to find the leader: {err.details()}"
            await context.abort(grpc.StatusCode.UNAVAILABLE, why)
            raise

    async def _redirect(self, requests: AsyncIterator[bytes], context: Any) -> None:
        """An agent's stream: not here. Tell it where the leader is (during an election: as
        soon as there is one); it goes there next."""
        leader = await self._leader(context, wait=REDIRECT_WAIT_S)
        context.set_trailing_metadata(((LEADER_HINT, leader.agent),))
        await context.abort(
            grpc.StatusCode.UNAVAILABLE,
            f"this controller is a standby: the leader is at {leader.agent}",
        )

    def _relay_unary(self, method: str) -> Any:
        async def relay(request: bytes, context: Any) -> bytes:
            if not self.follower.quorum.ok:  # no leader anywhere: answered here, stale
                return await self.follower.stale.unary(method, request, context)
            leader = await self._leader(context)
            call = self.follower.channel(leader.grpc).unary_unary(method)
            try:
                reply: bytes = await call(
                    request, metadata=_metadata(context), timeout=_timeout(context)
                )
            except grpc.aio.AioRpcError as err:
                await _relay_error(self.follower, err, context)
                raise
            return reply

        return relay

    def _relay_stream(self, method: str) -> Any:
        async def relay(request: bytes, context: Any) -> AsyncIterator[bytes]:
            if not self.follower.quorum.ok:  # events and logs are not in memory: say why
                await context.abort(grpc.StatusCode.UNAVAILABLE, NO_QUORUM)
            leader = await self._leader(context)
            call = self.follower.channel(leader.grpc).unary_stream(method)
            stream = call(request, metadata=_metadata(context), timeout=_timeout(context))
            try:
                async for item in stream:
                    yield item
            except grpc.aio.AioRpcError as err:
                await _relay_error(self.follower, err, context)
            finally:
                stream.cancel()

        return relay


def _metadata(context: Any) -> tuple[tuple[str, str | bytes], ...]:
    """The caller's metadata (its signature included), without gRPC's own headers."""
    return tuple(
        (k, v)
        for k, v in (context.invocation_metadata() or ())
        if not k.startswith((":", "grpc-")) and k not in ("user-agent", "content-type", "te")
    )


def _timeout(context: Any) -> float:
    remaining = context.time_remaining()
    return min(remaining, RELAY_TIMEOUT_S) if remaining is not None else RELAY_TIMEOUT_S


async def _relay_error(follower: Follower, err: grpc.aio.AioRpcError, context: Any) -> None:
    if err.code() == grpc.StatusCode.UNAVAILABLE:
        follower.forget_leader()  # it may have died: look again next time
    with contextlib.suppress(Exception):
        context.set_trailing_metadata(tuple(err.trailing_metadata() or ()))
    await context.abort(err.code(), err.details() or "")
