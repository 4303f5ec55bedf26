"""The ECS-compatible HTTP endpoint: ECS's JSON 1.1 protocol in front of the service layer.

boto3 and `aws ecs` talk to it unchanged: `POST /` with
`X-Amz-Target: AmazonEC2ContainerServiceV20141113.<Operation>`, ECS JSON both ways, errors
as `{"__type": "<ExceptionName>", "message": ...}`. This layer only translates: the
operations chain (controller.ops.chain) checks every request against botocore's ECS model
before a handler sees it, so handlers get well-typed bodies, and nothing a client sends can
crash the handler.
The same endpoint serves Cloud Map (issue 21): `Route53AutoNaming_v20170314.<Op>` targets
in JSON 1.1, and Smithy RPC v2 CBOR at `/service/<prefix>/operation/<Op>` (what boto3 sends
to Cloud Map; controller/cbor_wire.py), both reaching the table's `servicediscovery:<Op>`.
SigV4 signatures are checked by controller/security/apiauth.py when keys are on.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from controller import cbor_wire
from controller.ecs_shapes import (
    TARGET_PREFIX,
    ResponseShapeError,
    check_response,
    dump_json,
    operation_model,
    strip_nulls,
)
from controller.failures import log_failure
from controller.http_timeouts import body_deadline
from controller.ops.table import OPERATIONS, SD, operation_for, wire_target
from controller.request_limits import parse_json_object
from dockyard.errors import ApiError

__all__ = ["EcsMetrics", "check_response", "make_app", "metrics_for", "metrics_handler_for"]

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/x-amz-json-1.1"
_ACCEPTED_TYPES = ("application/x-amz-json-1.1", "application/x-amz-json-1.0", "application/json")
UNKNOWN = "unknown"  # metrics label for requests naming no ECS operation (keeps labels bounded)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Operations(Protocol):
    """What the endpoint needs: the operations chain (controller.ops.chain)."""

    async def call(
        self, operation: str, body: dict[str, Any], *, native: bool = True
    ) -> dict[str, Any]: ...


class EcsMetrics:
    """Requests, errors and latency per operation, in a registry the controller exports."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "dockyard_ecs_requests",
            "ECS API requests by operation",
            ["operation"],
            registry=self.registry,
        )
        self.errors = Counter(
            "dockyard_ecs_errors",
            "ECS API error responses by operation and exception name",
            ["operation", "exception"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "dockyard_ecs_request_duration_seconds",
            "ECS API request latency by operation",
            ["operation"],
            registry=self.registry,
        )

    def observe(self, operation: str, seconds: float, error: str | None) -> None:
        self.requests.labels(operation).inc()
        self.latency.labels(operation).observe(seconds)
        if error is not None:
            self.errors.labels(operation, error).inc()


METRICS_KEY = web.AppKey("ecs_metrics", EcsMetrics)
_METRICS: dict[int, EcsMetrics] = {}  # one set per registry: apps sharing one share counters


def metrics_for(registry: CollectorRegistry) -> EcsMetrics:
    """The endpoint's metrics in `registry`, registered once however many apps use it."""
    if id(registry) not in _METRICS:
        _METRICS[id(registry)] = EcsMetrics(registry)
    return _METRICS[id(registry)]


SERVICE_KEY = web.AppKey("ecs_service", object)


def metrics_handler_for(registry: CollectorRegistry) -> Handler:
    """A `GET /metrics` handler exporting `registry` in Prometheus' text format."""

    async def handler(request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return handler


def make_app(
    service: Operations,
    *,
    metrics_handler: Handler | None = None,
    health_handler: Handler | None = None,
    registry: CollectorRegistry | None = None,
    check_responses: bool = False,
) -> web.Application:
    """The aiohttp application serving the ECS API over `service`.

    `registry`: where request metrics go (prometheus_client's global REGISTRY if None).
    `check_responses`: validate every response against the model and answer 500 on a
    mismatch - for tests, so a service bug shows as a failure instead of a client surprise.
    """
    app = web.Application(middlewares=[_clean_failures, body_deadline])
    metrics = metrics_for(registry if registry is not None else REGISTRY)
    app[SERVICE_KEY] = service
    app[METRICS_KEY] = metrics
    endpoint = _Endpoint(service, metrics, check_responses)
    app.router.add_post("/", endpoint.handle)
    # Smithy RPC v2 CBOR: boto3's protocol for Cloud Map (controller/cbor_wire.py)
    app.router.add_post("/service/{prefix}/operation/{op}", endpoint.handle)
    if health_handler is not None:
        app.router.add_get("/healthz", health_handler)
    if metrics_handler is not None:
        app.router.add_get("/metrics", metrics_handler)
    return app


class _Endpoint:
    def __init__(self, service: Operations, metrics: EcsMetrics, check: bool) -> None:
        self.service = service
        self.metrics = metrics
        self.check = check

    async def handle(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        label = UNKNOWN
        error: str | None = None
        cbor = request.path != "/"
        try:
            operation = _operation(
                wire_target(request.path, request.headers.get("X-Amz-Target", ""))
            )
            label = operation
            body = await _read_body(request, cbor)
            payload = await self._dispatch(operation, body, cbor)
            response = _reply(200, payload, request_id, cbor)
        except ApiError as exc:
            error = exc.name
            response = _error_reply(exc, request_id, cbor)
        except Exception as exc:
            error = "ServerException"
            log_failure(log, f"ECS {label} request {request_id}", exc)
            crash = ApiError("ServerException", f"internal error (request {request_id})", 500)
            response = _error_reply(crash, request_id, cbor)
        self.metrics.observe(label, time.perf_counter() - started, error)
        return response

    async def _dispatch(self, operation: str, body: dict[str, Any], cbor: bool) -> bytes:
        # the chain checks the body against the model in full (native=False) first
        result = await self.service.call(operation, body, native=False)
        if result is None:
            result = {}
        if not isinstance(result, dict):
            raise TypeError(f"{operation} returned {type(result).__name__}, not a dict")
        payload = dump_json(result)
        if self.check or cbor:
            op = OPERATIONS.get(operation)
            wire, api = (op.wire_name, op.api) if op else (operation, "ecs")
            try:
                parsed = check_response(wire, payload, api)
            except ResponseShapeError as exc:
                log.error("%s", exc)
                raise ApiError("ServerException", str(exc), 500) from None
            if cbor:
                model = operation_model(wire, api)
                return cbor_wire.encode(parsed, model.output_shape if model else None)
        return payload


def _operation(target: str) -> str:
    """The operation (its table name) an `X-Amz-Target` header names: ECS's, Cloud Map's
    (`servicediscovery:<Op>`), Application Auto Scaling's or EventBridge's."""
    name = operation_for(target)
    op = OPERATIONS.get(name)
    if op is not None:
        api, wire = op.api, op.wire_name
    else:  # a Cloud Map operation Dockyard does not serve is answered "not supported"
        api, wire = (SD, name[len(SD) + 1 :]) if name.startswith(SD + ":") else ("ecs", name)
    if not name or operation_model(wire, api) is None:
        shown = target[:100] if target else "(missing)"
        raise ApiError(
            "UnknownOperationException",
            f"X-Amz-Target {shown} is not {TARGET_PREFIX}.<an ECS operation> "
            "or Route53AutoNaming_v20170314.<a Cloud Map operation> "
            "or AnyScaleFrontendService.<an Application Auto Scaling operation> "
            "or AWSEvents.<an EventBridge rules operation>",
        )
    return name


async def _read_body(request: web.Request, cbor: bool = False) -> dict[str, Any]:
    """The request's JSON object (or CBOR map), nulls dropped; SerializationException if it
    is not one."""
    mime = request.content_type if request.headers.get("Content-Type") else ""
    if cbor:
        return strip_nulls(cbor_wire.decode(await _raw(request)))
    if mime and mime not in _ACCEPTED_TYPES:
        raise ApiError("SerializationException", f"Content-Type must be {CONTENT_TYPE}, not {mime}")
    return strip_nulls(parse_json_object(await _raw(request)))


async def _raw(request: web.Request) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError("ClientException", "request body is too large", 413) from None


@web.middleware
async def _clean_failures(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Any unexpected exception on any route (and in the middlewares inside this one)
    becomes a 500 ServerException and one log line, never aiohttp's traceback."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise  # aiohttp's own answers: 404, 405, 413...
    except Exception as exc:
        request_id = str(uuid.uuid4())
        log_failure(log, f"{request.method} {request.path[:100]} (request {request_id})", exc)
        crash = ApiError("ServerException", f"internal error (request {request_id})", 500)
        return _error_reply(crash, request_id)


def _reply(status: int, payload: bytes, request_id: str, cbor: bool = False) -> web.Response:
    kind = {"Content-Type": cbor_wire.CONTENT_TYPE, **cbor_wire.PROTOCOL_HEADER} if cbor else {}
    return web.Response(
        status=status,
        body=payload,
        headers={"Content-Type": CONTENT_TYPE, "x-amzn-RequestId": request_id, **kind},
    )


def _error_reply(exc: ApiError, request_id: str, cbor: bool = False) -> web.Response:
    status = exc.status if 400 <= exc.status <= 599 else 400
    if cbor:
        return _reply(status, cbor_wire.encode_error(exc.name, exc.message), request_id, cbor)
    payload = json.dumps({"__type": exc.name, "message": exc.message}).encode()
    return _reply(status, payload, request_id)
