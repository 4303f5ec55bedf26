"""The native cluster API over gRPC: ECS-shaped JSON bodies, answered by the operations chain.

Errors become gRPC status codes with the ECS exception name in the `dockyard-error-type`
trailing metadata (see dockyard.client), never a stack trace.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from controller.dispatcher import Dispatcher
from controller.events import EventLog
from controller.failures import log_failure
from controller.ops.chain import OperationChain
from controller.ops.core import Core
from controller.request_limits import MAX_NATIVE_BODY, parse_json_object
from controller.store import EventRow
from dockyard.client import ERROR_TYPE_KEY
from dockyard.errors import ApiError, invalid
from dockyard.v1 import api_pb2, api_pb2_grpc

log = logging.getLogger(__name__)


_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
}


async def _abort(context: grpc.aio.ServicerContext, err: ApiError) -> None:
    code = (
        grpc.StatusCode.NOT_FOUND
        if err.name.endswith("NotFoundException")
        else _STATUS.get(err.status, grpc.StatusCode.INVALID_ARGUMENT)
    )
    context.set_trailing_metadata(((ERROR_TYPE_KEY, err.name),))
    await context.abort(code, err.message)


def _parse(body: str) -> dict[str, Any]:
    if len(body) > MAX_NATIVE_BODY:
        raise ApiError("ClientException", f"request body over {MAX_NATIVE_BODY} bytes")
    return parse_json_object(body)


class ApiServicer(api_pb2_grpc.ClusterApiServicer):
    def __init__(
        self,
        api: OperationChain,
        service: Core,
        events: EventLog,
        dispatcher: Dispatcher,
    ) -> None:
        self.api = api
        self.service = service
        self.events = events
        self.dispatcher = dispatcher

    async def invoke(
        self, operation: str, request: api_pb2.JsonRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.JsonReply:
        try:
            result = await self.api.call(operation, _parse(request.body))
        except ApiError as err:
            await _abort(context, err)
        except Exception as exc:
            log_failure(log, operation, exc)
            await _abort(
                context,
                ApiError(
                    "ServerException",
                    f"{operation} failed: internal error (see controller log)",
                    500,
                ),
            )
        return api_pb2.JsonReply(body=json.dumps(result))

    async def WatchEvents(
        self, request: api_pb2.WatchEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[api_pb2.Event]:
        try:
            cluster = self.service.cluster(request.cluster or None).name
            subject = ""
            if request.task:
                subject = self.service.task(self.service.cluster(cluster), request.task).arn
        except ApiError as err:
            await _abort(context, err)
            return
        follower = self.events.follow(cluster, subject) if request.follow else None
        past = await self.service.store.load_events(subject, cluster, request.since_seq)
        last = 0
        for row in past:
            last = row.seq
            yield _event(row)
        if follower is None:
            return
        async for row in follower:
            if row.seq > last:
                yield _event(row)

    async def Logs(
        self, request: api_pb2.LogsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[api_pb2.LogLine]:
        try:
            cluster = self.service.cluster(request.cluster or None)
            task = self.service.task(cluster, request.task)
            names = [c.name for c in task.containers]
            if request.container and request.container not in names:
                raise invalid(
                    "container",
                    f"task has no container {request.container!r}; it has {', '.join(names)}",
                )
            async for chunk in self.dispatcher.logs(
                task, request.container, request.follow, request.tail
            ):
                yield api_pb2.LogLine(container=chunk.container, data=chunk.data)
        except ApiError as err:
            await _abort(context, err)


def _event(row: EventRow) -> api_pb2.Event:
    return api_pb2.Event(
        seq=row.seq,
        at=row.at,
        cluster=row.cluster,
        kind=row.kind,
        subject=row.subject,
        message=row.message,
        detail_json=json.dumps(row.detail),
    )


def _unary(operation: str) -> Callable[..., Awaitable[api_pb2.JsonReply]]:
    async def handler(
        self: ApiServicer, request: api_pb2.JsonRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.JsonReply:
        return await self.invoke(operation, request, context)

    handler.__name__ = operation
    return handler


for _method in api_pb2.DESCRIPTOR.services_by_name["ClusterApi"].methods:
    if _method.input_type.name == "JsonRequest":
        setattr(ApiServicer, _method.name, _unary(_method.name))
