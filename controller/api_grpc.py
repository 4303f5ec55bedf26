"""The native cluster API over gRPC: ECS-shaped JSON bodies, answered by the operations chain.

Errors become gRPC status codes with the ECS exception name in the `dockyard-error-type`
trailing metadata (see dockyard.client), never a stack trace.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from controller.dispatcher import Dispatcher
from controller.events import EventLog
from controller.exec_sessions import ExecBroker
from controller.failures import log_failure
from controller.ops.chain import OperationChain
from controller.ops.core import Core
from controller.request_limits import MAX_NATIVE_BODY, parse_json_object
from controller.store_api import EventRow
from dockyard import auth
from dockyard.client import ERROR_TYPE_KEY
from dockyard.errors import ApiError, invalid
from dockyard.v1 import agent_pb2, api_pb2, api_pb2_grpc

log = logging.getLogger(__name__)


_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
}


async def abort(
    context: grpc.aio.ServicerContext, err: ApiError, *metadata: tuple[str, str]
) -> None:
    """End a native call with `err`: its gRPC code, its name in the trailers (where the
    client reads the exception type), and any other trailers of the caller's."""
    code = (
        grpc.StatusCode.NOT_FOUND
        if err.name.endswith("NotFoundException")
        else _STATUS.get(err.status, grpc.StatusCode.INVALID_ARGUMENT)
    )
    context.set_trailing_metadata((*metadata, (ERROR_TYPE_KEY, err.name)))
    await context.abort(code, err.message)


def parse_body(body: str) -> dict[str, Any]:
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
        self.execs = ExecBroker(service, dispatcher)  # `dockyard exec` (issue 20)

    async def invoke(
        self, operation: str, request: api_pb2.JsonRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.JsonReply:
        try:
            result = await self.api.call(operation, parse_body(request.body))
        except ApiError as err:
            await abort(context, err)
        except Exception as exc:
            log_failure(log, operation, exc)
            await abort(
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
            await abort(context, err)
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
            async for chunk in task_logs(
                self.service,
                self.dispatcher,
                LogQuery(
                    request.cluster, request.task, request.container, request.follow, request.tail
                ),
            ):
                yield api_pb2.LogLine(container=chunk.container, data=chunk.data)
        except ApiError as err:
            await abort(context, err)

    async def Exec(
        self, request_iterator: AsyncIterator[api_pb2.ExecFrame], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[api_pb2.ExecReply]:
        """A command in a task's container (controller.exec_sessions); the caller's key
        was checked by the API's interceptor (operator or admin role)."""
        key_id = dict(context.invocation_metadata() or ()).get(auth.KEY_ID_MD, "")
        try:
            async for reply in self.execs.run(str(key_id), request_iterator):
                yield reply
        except ApiError as err:
            await abort(context, err)


@dataclass(frozen=True)
class LogQuery:
    cluster: str  # empty: the default cluster
    task: str
    container: str = ""  # empty: every container of the task
    follow: bool = False
    tail: int = 0  # 0: all


async def task_logs(
    service: Core, dispatcher: Dispatcher, query: LogQuery
) -> AsyncIterator[agent_pb2.LogChunk]:
    """A task's logs from its agent (`dockyard logs` and the web console): the task and
    container are checked here, ApiError naming the field when they are not there."""
    cluster = service.cluster(query.cluster or None)
    task = service.task(cluster, query.task)
    names = [c.name for c in task.containers]
    if query.container and query.container not in names:
        raise invalid(
            "container", f"task has no container {query.container!r}; it has {', '.join(names)}"
        )
    async for chunk in dispatcher.logs(task, query.container, query.follow, query.tail):
        yield chunk


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
