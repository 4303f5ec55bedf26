"""Who may call the APIs: signature checks (native HMAC, ECS SigV4) and the role rules.

`readonly` keys may call Describe*/List* (except the security listings), WatchEvents and
Logs; `operator` keys that too, and run commands in tasks (the Exec stream, ECS's
ExecuteCommand: issue 20); `admin` keys may call everything. Failures use ECS's exception names:
UnrecognizedClientException (unknown key), InvalidSignatureException (bad or stale
signature), AccessDeniedException (unsigned, or the role may not call the operation).
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

import grpc
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from controller.failures import log_failure
from controller.ops.table import OPERATE, OPERATIONS, READ, WRITE, operation_for, wire_target
from controller.security.keys import AccessKey, AccessKeys
from dockyard import auth
from dockyard.client import ERROR_TYPE_KEY
from dockyard.errors import ApiError

log = logging.getLogger(__name__)

READ_STREAMS = frozenset({"WatchEvents", "Logs"})
OPERATE_STREAMS = frozenset({"Exec"})  # `dockyard exec` (issue 20)
ALLOWED = {"readonly": {READ}, "operator": {READ, OPERATE}}  # admin: everything
AGENT_SERVICE = "/dockyard.v1.AgentService/"
SIGV4_SKEW_S = 15 * 60  # SigV4's window
_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request,\s*"
    r"SignedHeaders=([a-z0-9;\-]+),\s*Signature=([0-9a-f]{64})$"
)


def denied(message: str) -> ApiError:
    return ApiError("AccessDeniedException", message, 403)


def authorize(key: AccessKey, operation: str) -> None:
    """Raise AccessDeniedException unless the key's role may call `operation`."""
    if key.role == "admin":
        return
    if access_of(operation) in ALLOWED.get(key.role, set()):
        return
    raise denied(f"access key {key.access_key_id} ({key.role}) may not call {operation}")


def access_of(operation: str) -> str:
    """What calling `operation` takes: its access in the one table (ADMIN: security ops);
    a stream's, or for an operation Dockyard lacks, READ for a read (the caller then
    hears "not supported"), else WRITE."""
    op = OPERATIONS.get(operation)
    if op is not None:
        return op.access
    if operation in OPERATE_STREAMS:
        return OPERATE
    if operation.startswith(("Describe", "List")) or operation in READ_STREAMS:
        return READ
    return WRITE


# ---------------------------------------------------------------- native gRPC API


def verify_native(
    keys: AccessKeys, method: str, metadata: Mapping[str, str], body: bytes
) -> AccessKey:
    """The key that signed this native call, or ApiError."""
    key_id = metadata.get(auth.KEY_ID_MD, "")
    if not key_id:
        raise denied(
            "the request is not signed: set DOCKYARD_ACCESS_KEY_ID/DOCKYARD_SECRET_ACCESS_KEY "
            "or ~/.dockyard/credentials (the controller wrote <data-dir>/admin-credentials)"
        )
    key = keys.get(key_id)
    if key is None:
        raise ApiError("UnrecognizedClientException", f"unknown access key {key_id[:32]}", 403)
    stamp = metadata.get(auth.TIMESTAMP_MD, "")
    try:
        skew = abs(time.time() - float(stamp))
    except ValueError:
        raise ApiError("InvalidSignatureException", "bad dockyard-timestamp", 403) from None
    if skew > auth.MAX_SKEW_S:
        raise ApiError(
            "InvalidSignatureException", f"signature expired (clock skew {skew:.0f} s)", 403
        )
    expected = auth.signature(key.secret_access_key, method, stamp, body)
    if not hmac.compare_digest(expected, metadata.get(auth.SIGNATURE_MD, "")):
        raise ApiError("InvalidSignatureException", "the request signature does not match", 403)
    return key


_GRPC_CODES = {
    "AccessDeniedException": grpc.StatusCode.PERMISSION_DENIED,
    "UnrecognizedClientException": grpc.StatusCode.UNAUTHENTICATED,
    "InvalidSignatureException": grpc.StatusCode.UNAUTHENTICATED,
    "InvalidParameterException": grpc.StatusCode.INVALID_ARGUMENT,
    "SerializationException": grpc.StatusCode.INVALID_ARGUMENT,
}


async def _internal(context: Any, operation: str, exc: Exception) -> None:
    """gRPC INTERNAL with a clean message and one log line: an unexpected exception must not
    reach grpc's default handler (UNKNOWN carrying the exception's text)."""
    log_failure(log, operation, exc)
    context.set_trailing_metadata(((ERROR_TYPE_KEY, "ServerException"),))
    await context.abort(
        grpc.StatusCode.INTERNAL, f"{operation} failed: internal error (see controller log)"
    )


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    """Checks every ClusterApi call's signature and role (unless auth is off); the agent
    service passes through. Input limits are the operations chain's (controller.validation)."""

    def __init__(self, keys: AccessKeys, auth_on: bool = True) -> None:
        self.keys = keys
        self.auth_on = auth_on

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method = details.method  # type: ignore[attr-defined]
        if handler is None or method.startswith(AGENT_SERVICE):
            return handler
        operation = method.rsplit("/", 1)[-1]
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, operation, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(method, operation, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                self._bidi(method, operation, handler.stream_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    async def _check(self, method: str, operation: str, request: Any, context: Any) -> bool:
        metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        try:
            if self.auth_on:
                key = verify_native(self.keys, method, metadata, request.SerializeToString())
                authorize(key, operation)
        except ApiError as err:
            log.warning(
                "refused %s: %s %s (peer %s)", operation, err.name, err.message, context.peer()
            )
            context.set_trailing_metadata(((ERROR_TYPE_KEY, err.name),))
            await context.abort(
                _GRPC_CODES.get(err.name, grpc.StatusCode.PERMISSION_DENIED), err.message
            )
            return False
        return True

    def _unary(self, method: str, operation: str, inner: Any) -> Any:
        async def call(request: Any, context: Any) -> Any:
            try:
                await self._check(method, operation, request, context)
                return await inner(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _internal(context, operation, exc)

        return call

    def _stream(self, method: str, operation: str, inner: Any) -> Any:
        async def call(request: Any, context: Any) -> Any:
            try:
                await self._check(method, operation, request, context)
                async for item in inner(request, context):
                    yield item
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _internal(context, operation, exc)

        return call

    def _bidi(self, method: str, operation: str, inner: Any) -> Any:
        """A bidirectional call (Exec): the signature covers its first frame, which the
        client sends at once; the handler gets that frame again, then the rest."""

        async def call(requests: Any, context: Any) -> Any:
            try:
                first = await anext(aiter(requests), None)
                if first is None:
                    return
                await self._check(method, operation, first, context)
                async for item in inner(_prepend(first, requests), context):
                    yield item
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _internal(context, operation, exc)

        return call


async def _prepend(first: Any, rest: Any) -> Any:
    yield first
    async for item in rest:
        yield item


# ---------------------------------------------------------------- ECS HTTP API (SigV4)


def _sigv4_expected(
    request: web.Request,
    body: bytes,
    secret: str,
    key_id: str,
    region: str,
    service: str,
    signed: list[str],
) -> str:
    """The signature botocore would compute for this request with `secret`."""
    headers = {name: request.headers.get(name, "") for name in signed}
    url = f"http://{request.headers.get('Host', request.host)}{quote(request.path, safe='/~')}"
    if request.query_string:
        url += f"?{request.query_string}"
    aws = AWSRequest(method=request.method, url=url, data=body, headers=headers)
    aws.context["timestamp"] = request.headers.get("X-Amz-Date", "")
    signer = SigV4Auth(BotoCredentials(key_id, secret), service, region)
    signer._modify_request_before_signing(aws)
    canonical = signer.canonical_request(aws)
    return signer.signature(signer.string_to_sign(aws, canonical), aws)


def verify_sigv4(keys: AccessKeys, request: web.Request, body: bytes) -> AccessKey:
    header = request.headers.get("Authorization", "")
    if not header:
        raise ApiError(
            "AccessDeniedException",
            "the request is not signed (SigV4 with an access key from `dockyard keys create`)",
            403,
        )
    match = _AUTH_RE.match(header.strip())
    if match is None:
        raise ApiError("IncompleteSignatureException", "malformed Authorization header", 403)
    key_id, day, region, service, signed_text, sig = match.groups()
    key = keys.get(key_id)
    if key is None:
        raise ApiError(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
            403,
        )
    stamp = request.headers.get("X-Amz-Date", "")
    try:
        at = time.mktime(time.strptime(stamp, "%Y%m%dT%H%M%SZ")) - time.timezone
    except ValueError:
        raise ApiError(
            "IncompleteSignatureException", "X-Amz-Date missing or malformed", 403
        ) from None
    if abs(time.time() - at) > SIGV4_SKEW_S or not stamp.startswith(day):
        raise ApiError("InvalidSignatureException", "Signature expired or not yet valid", 403)
    signed = signed_text.split(";")
    expected = _sigv4_expected(
        request, body, key.secret_access_key, key_id, region, service, signed
    )
    if not hmac.compare_digest(expected, sig):
        raise ApiError(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided.",
            403,
        )
    return key


def sigv4_middleware(keys: AccessKeys) -> Any:
    """aiohttp middleware: POST / (the ECS API) must be signed by a key allowed the operation."""

    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        target = wire_target(request.path, request.headers.get("X-Amz-Target", ""))
        if request.method != "POST" or (request.path != "/" and not target):
            return await handler(request)
        operation = operation_for(target)
        try:
            body = await request.read()
            authorize(verify_sigv4(keys, request, body), operation)
        except ApiError as err:
            log.warning("refused ECS %s: %s %s", operation[:64], err.name, err.message)
            return web.json_response(
                {"__type": err.name, "message": err.message},
                status=err.status,
                content_type="application/x-amz-json-1.1",
            )
        except web.HTTPRequestEntityTooLarge:
            return web.json_response(
                {"__type": "ClientException", "message": "request body is too large"},
                status=413,
                content_type="application/x-amz-json-1.1",
            )
        return await handler(request)

    return check
