"""Client for the native cluster API: ECS-shaped JSON bodies over gRPC.

The CLI, the lab, tests and `dockyard verify` use it; ApiError comes back with ECS's
exception name, exactly as the service layer raised it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import grpc

from dockyard import auth
from dockyard.errors import ApiError
from dockyard.v1 import api_pb2, api_pb2_grpc

DEFAULT_CONTROLLER = "127.0.0.1:7070"
API_METHOD = "/dockyard.v1.ClusterApi/"
ERROR_TYPE_KEY = "dockyard-error-type"
# set (to when the controller last heard from an etcd with quorum) on an answer from memory
# while etcd has no quorum (controller.stale_reads)
STALE_KEY = "dockyard-stale"


def controller_address(explicit: str | None = None) -> str:
    return explicit or os.environ.get("DOCKYARD_CONTROLLER") or DEFAULT_CONTROLLER


def _error_from_rpc(err: grpc.RpcError) -> ApiError:
    name = "ServerException"
    for key, value in err.trailing_metadata() or ():  # type: ignore[attr-defined]
        if key == ERROR_TYPE_KEY:
            name = str(value)
    code = err.code()  # type: ignore[attr-defined]
    if code == grpc.StatusCode.UNAVAILABLE and name == "ServerException":
        return ApiError("ConnectionError", f"controller unreachable: {err.details()}", 503)  # type: ignore[attr-defined]
    return ApiError(name, err.details() or str(code), 400)  # type: ignore[attr-defined]


def _stream(call: Any) -> Iterator[Any]:
    """Yield a server stream's messages; a stream left early (Ctrl-C, `break`) is cancelled.

    Without the cancel, an interrupted `logs -f` / `events -f` leaves a live call behind,
    and gRPC's shutdown at exit can wait on it: the command then hangs after Ctrl-C.
    """
    try:
        yield from call
    except grpc.RpcError as err:
        if err.code() != grpc.StatusCode.CANCELLED:
            raise _error_from_rpc(err) from None
    finally:
        call.cancel()


class Client:
    """Synchronous client (the CLI is synchronous; daemons use the async stubs)."""

    def __init__(
        self,
        address: str | None = None,
        timeout: float = 30.0,
        credentials: auth.Credentials | None = None,
        sign: bool = True,
        ca_cert: bytes | None = None,
    ) -> None:
        """`credentials`: default dockyard.auth.load_credentials(); sign=False sends none.
        `ca_cert`: the controller's CA (default: the file $DOCKYARD_CA_CERT names) for TLS."""
        self.address = controller_address(address)
        self.timeout = timeout
        self.credentials = (credentials or auth.load_credentials()) if sign else None
        ca_cert = ca_cert or auth.load_ca_cert()
        self.ca_cert = ca_cert or None
        if ca_cert:
            tls = grpc.ssl_channel_credentials(ca_cert)
            options = [("grpc.ssl_target_name_override", auth.SERVER_NAME)]
            self._channel = grpc.secure_channel(self.address, tls, options=options)
        else:
            self._channel = grpc.insecure_channel(self.address)
        self._stub = api_pb2_grpc.ClusterApiStub(self._channel)
        self.stale_since: str | None = None  # the last answer's staleness (STALE_KEY)
        self.on_stale: Callable[[str], None] | None = None  # e.g. the CLI's warning

    def _metadata(self, name: str, request: Any) -> tuple[tuple[str, str], ...] | None:
        if self.credentials is None:
            return None
        body = request.SerializeToString()
        return auth.signed_metadata(self.credentials, API_METHOD + name, body)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, operation: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Invoke an ECS-named operation, e.g. call("RunTask", {"taskDefinition": "web"})."""
        method = getattr(self._stub, operation, None)
        if method is None:
            raise ApiError("UnknownOperationException", f"unknown operation {operation}")
        try:
            request = api_pb2.JsonRequest(body=json.dumps(body or {}))
            metadata = self._metadata(operation, request)
            reply, call = method.with_call(request, timeout=self.timeout, metadata=metadata)
        except grpc.RpcError as err:
            self._note_stale(err.trailing_metadata())  # type: ignore[attr-defined]
            raise _error_from_rpc(err) from None
        self._note_stale(call.trailing_metadata())
        return json.loads(reply.body) if reply.body else {}

    def _note_stale(self, metadata: Any) -> None:
        """Remember (and report) whether the answer came from a controller's memory while
        etcd had no quorum."""
        self.stale_since = next((str(v) for k, v in metadata or () if k == STALE_KEY), None)
        if self.stale_since is not None and self.on_stale is not None:
            self.on_stale(self.stale_since)

    def watch_events(
        self, cluster: str = "", task: str = "", follow: bool = False
    ) -> Iterator[api_pb2.Event]:
        req = api_pb2.WatchEventsRequest(cluster=cluster, task=task, follow=follow)
        call = self._stub.WatchEvents(req, metadata=self._metadata("WatchEvents", req))
        yield from _stream(call)

    def logs(
        self,
        task: str,
        cluster: str = "",
        container: str = "",
        follow: bool = False,
        tail: int = 0,
    ) -> Iterator[api_pb2.LogLine]:
        req = api_pb2.LogsRequest(
            cluster=cluster, task=task, container=container, follow=follow, tail=tail
        )
        call = self._stub.Logs(
            req, timeout=None if follow else self.timeout, metadata=self._metadata("Logs", req)
        )
        yield from _stream(call)

    def exec(
        self, first: api_pb2.ExecFrame, rest: Iterable[api_pb2.ExecFrame]
    ) -> Iterator[api_pb2.ExecReply]:
        """A command in a task's container (issue 20): `first` opens the session (the
        signature covers it), `rest` carries stdin, resizes and signals."""

        def frames() -> Iterator[api_pb2.ExecFrame]:
            yield first
            yield from rest

        try:
            yield from self._stub.Exec(frames(), metadata=self._metadata("Exec", first))
        except grpc.RpcError as err:
            raise _error_from_rpc(err) from None
