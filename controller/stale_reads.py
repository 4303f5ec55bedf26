"""What a standby answers while etcd has no quorum: reads from memory, marked stale; no writes.

Without a quorum nobody can lead (a leader's lease lapses and it exits, controller.ha), so
there is no leader to relay to. A standby still holds the whole state in memory (the etcd
store's hot copy, as of the last revision it saw), so it answers every read-only operation
(`controller/ops/table.py`: READ) itself, and refuses every other one at once with the
reason, instead of a relay that waits for etcd's timeouts.

How a stale answer is marked, so that AWS clients still parse it:

- ECS HTTP endpoint: response headers `x-dockyard-stale: true`,
  `x-dockyard-stale-since: <RFC 3339 UTC>` (the last time this controller heard from an
  etcd with quorum; `unknown` if it never did since it started) and
  `x-dockyard-stale-revision: <etcd revision of the state in memory>`; botocore keeps them
  in `ResponseMetadata.HTTPHeaders`.
- native gRPC API: trailing metadata `dockyard-stale: <RFC 3339 UTC>`; the CLI prints a
  warning line on stderr.
- a refused write: HTTP 503 `ServerException` (gRPC UNAVAILABLE), message naming the cause.

The read path is a second Controller over the same store, prepared (state loaded, operations
bound) but never serving ports nor deciding; it is built at the first loss of quorum. The
store is fenced with `STANDBY` meanwhile, so nothing a standby runs can commit a write.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import grpc
from aiohttp import web
from prometheus_client import CollectorRegistry

from controller import etcd_client as ec
from controller.api_grpc import abort, parse_body
from controller.ecs_http import _Endpoint, metrics_for
from controller.ops.table import OPERATIONS
from controller.security.apiauth import authorize, sigv4_middleware, verify_native
from dockyard.client import STALE_KEY
from dockyard.errors import ApiError
from dockyard.v1 import api_pb2

if TYPE_CHECKING:
    from controller.server import Controller, ControllerConfig
    from controller.store_etcd import EtcdStore

log = logging.getLogger(__name__)

STALE_HEADER = "x-dockyard-stale"
STALE_SINCE_HEADER = "x-dockyard-stale-since"
STALE_REVISION_HEADER = "x-dockyard-stale-revision"
PROBE_PERIOD_S = 0.5  # how often a standby asks etcd whether it has a quorum
PROBE_TIMEOUT_S = 1.0  # a linearizable read unanswered in this time: no quorum
NO_QUORUM = (
    "etcd has no quorum (too few of its members are reachable): writes are refused until it "
    "has one again; reads are answered from this controller's memory, marked stale"
)
API_METHOD = "/dockyard.v1.ClusterApi/"


class _Standby:
    """The fence of a store no controller may write through: a standby's."""

    @property
    def is_leader(self) -> bool:
        return False

    def compare(self) -> Any:
        raise AssertionError("a standby never writes")

    def deposed(self) -> None:
        """Nothing to give up."""


STANDBY = _Standby()


def rfc3339(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class QuorumWatch:
    """Whether etcd answers a linearizable read (it has a quorum), asked every PROBE_PERIOD_S,
    and when it last did."""

    def __init__(self, client: ec.EtcdClient, key: bytes) -> None:
        self.client = client
        self.key = key
        self.ok = True
        self.last_seen: float | None = None  # wall clock
        self.on_back: Callable[[], None] | None = None  # etcd has a quorum again

    async def run(self) -> None:
        from aetcd import rpc

        while True:
            try:
                await self.client.kv.Range(rpc.RangeRequest(key=self.key), timeout=PROBE_TIMEOUT_S)
            except grpc.aio.AioRpcError as err:
                if self.ok:
                    log.warning("etcd has no quorum (%s): answering reads stale", err.code())
                self.ok = False
            else:
                back = not self.ok
                self.ok, self.last_seen = True, time.time()
                if back:
                    log.info("etcd has a quorum again: relaying to the leader")
                    if self.on_back is not None:
                        self.on_back()
            await asyncio.sleep(PROBE_PERIOD_S)

    @property
    def since(self) -> str:
        return rfc3339(self.last_seen) if self.last_seen is not None else "unknown"


def refusal() -> ApiError:
    return ApiError("ServerException", NO_QUORUM, 503)


class _ReadsOnly:
    """The reader's operations, READ ones only."""

    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl

    async def call(self, operation: str, body: dict[str, Any], *, native: bool = True) -> Any:
        op = OPERATIONS.get(operation)
        if op is None or not op.read_only:
            raise refusal()
        return await self.ctl.api.call(operation, body, native=native)


class StaleReader:
    """Answers reads from a standby's memory while etcd has no quorum (module docstring)."""

    def __init__(self, config: ControllerConfig, store: EtcdStore, quorum: QuorumWatch) -> None:
        self.config = config
        self.store = store
        self.quorum = quorum
        self._building: asyncio.Task[Controller] | None = None

    async def reader(self) -> Controller:
        """The prepared read-only controller (built once, shared by every caller)."""
        if self._building is None:
            self._building = asyncio.create_task(self._build())
        return await asyncio.shield(self._building)

    async def _build(self) -> Controller:
        from controller.server import Controller

        ctl = Controller(self.config, store=self.store)
        await ctl.prepare()
        return ctl

    def close(self) -> None:
        """Stop following the store and drop the copy (etcd has a quorum again, the
        controller proper takes over, or we stop); the next loss of quorum builds anew."""
        building, self._building = self._building, None
        if building is not None:  # callers may await it still: let it finish, then let go
            building.add_done_callback(_unwatch_built)

    # -- HTTP -------------------------------------------------------------------------

    async def http(self, request: web.Request) -> web.Response:
        """An ECS request answered here: a read from memory, anything else refused."""
        try:
            ctl = await self.reader()
        except Exception as err:  # no state to answer from: say why, as the ECS API does
            log.exception("stale reader unavailable")
            return self._marked(_json_error(refusal(), f"; no state in memory here ({err})"))
        endpoint = _Endpoint(_ReadsOnly(ctl), metrics_for(_REGISTRY), False)
        handler: Any = endpoint.handle
        if self.config.auth:
            check = sigv4_middleware(ctl.security.keys)
            response = await check(request, handler)
        else:
            response = await handler(request)
        return self._marked(response)

    def _marked(self, response: web.StreamResponse) -> web.Response:
        response.headers[STALE_HEADER] = "true"
        response.headers[STALE_SINCE_HEADER] = self.quorum.since
        response.headers[STALE_REVISION_HEADER] = str(self.store.revision)
        assert isinstance(response, web.Response)
        return response

    # -- native gRPC ------------------------------------------------------------------

    async def unary(self, method: str, request: bytes, context: Any) -> bytes:
        """A native API call answered here (signature checked as the leader would)."""
        context.set_trailing_metadata(((STALE_KEY, self.quorum.since),))
        operation = method.rsplit("/", 1)[-1]
        try:
            if not method.startswith(API_METHOD):
                raise refusal()
            ctl = await self.reader()
            parsed = api_pb2.JsonRequest.FromString(request)
            if self.config.auth:
                metadata = {
                    k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)
                }
                authorize(verify_native(ctl.security.keys, method, metadata, request), operation)
            body = parse_body(parsed.body) if parsed.body else {}
            result = await _ReadsOnly(ctl).call(operation, body)
        except ApiError as err:
            await abort(context, err, (STALE_KEY, self.quorum.since))
            raise
        reply: bytes = api_pb2.JsonReply(body=json.dumps(result or {})).SerializeToString()
        return reply


def _unwatch_built(building: asyncio.Task[Controller]) -> None:
    if not building.cancelled() and building.exception() is None:
        building.result().record._unwatch()


def _json_error(err: ApiError, more: str = "") -> web.Response:
    body = json.dumps({"__type": err.name, "message": err.message + more})
    return web.Response(
        status=err.status, body=body.encode(), content_type="application/x-amz-json-1.1"
    )


_REGISTRY = CollectorRegistry()  # a standby's stale answers stay out of the leader's metrics
