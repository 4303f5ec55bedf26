"""A thin asyncio client for etcd v3: the few calls the etcd store and leadership need.

Which client, and why: **aetcd** (PyPI, 1.0.0, maintained, asyncio on grpc.aio) for its
generated etcd v3 stubs (`aetcd.rpc`: KV, Watch, Lease, Maintenance). Its pins (grpcio >1.66,
<2; protobuf >4, <8) accept this project's grpcio 1.85 and protobuf 7, so nothing has to
be generated or vendored here. Its high-level `aetcd.Client` is not used: it dials one
`host:port` over plaintext, while a controller must reach every member of an etcd cluster
(`etcd://a:2379,b:2379,c:2379`, failing over when one dies) and may need TLS client
certificates. So this module owns the grpc.aio channel (one target listing every member,
gRPC's round-robin over them, TLS when asked) and calls the stubs itself. `python-etcd3`
(`etcd3`) was not an option: it is synchronous and unmaintained, and pins protobuf 3.

URL: `etcd://HOST:PORT[,HOST:PORT...][/][?prefix=/dockyard&cacert=F&cert=F&key=F]`
(`etcds://` or a cacert means TLS; cert and key give the client certificate).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
from aetcd import rpc

DEFAULT_PREFIX = "/dockyard"
CALL_TIMEOUT = 10.0  # seconds: a call etcd cannot answer (no quorum) fails, never hangs
# grpc's defaults cap a message at 4 MiB; a whole prefix read or a large batch exceeds it
MAX_MESSAGE = 64 * 1024 * 1024


class EtcdUrlError(ValueError):
    """An `etcd://` URL this client cannot use; the message names the part and why."""


@dataclass(frozen=True)
class EtcdUrl:
    endpoints: tuple[tuple[str, int], ...]
    prefix: str = DEFAULT_PREFIX
    cacert: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> EtcdUrl:
        parts = urlsplit(url)
        if parts.scheme not in ("etcd", "etcds"):
            raise EtcdUrlError(f"{url!r}: an etcd store URL starts with etcd:// or etcds://")
        if parts.path not in ("", "/"):
            raise EtcdUrlError(f"{url!r}: give the key prefix as ?prefix=/name, not a path")
        endpoints = tuple(_endpoint(url, e) for e in parts.netloc.split(",") if e)
        if not endpoints:
            raise EtcdUrlError(f"{url!r}: no etcd endpoint (etcd://HOST:2379,HOST:2379)")
        query = parse_qs(parts.query, keep_blank_values=True)
        unknown = set(query) - {"prefix", "cacert", "cert", "key"}
        if unknown:
            raise EtcdUrlError(f"{url!r}: unknown option(s) {', '.join(sorted(unknown))}")
        prefix = query.get("prefix", [DEFAULT_PREFIX])[-1].rstrip("/")
        if not prefix.startswith("/") or len(prefix) < 2:
            raise EtcdUrlError(f"{url!r}: prefix must start with / and name something")
        files = {k: Path(v[-1]) for k, v in query.items() if k in ("cacert", "cert", "key")}
        if ("cert" in files) != ("key" in files):
            raise EtcdUrlError(f"{url!r}: a client certificate needs both cert= and key=")
        return cls(
            endpoints,
            prefix,
            files.get("cacert"),
            files.get("cert"),
            files.get("key"),
            tls=parts.scheme == "etcds" or bool(files),
        )

    def target(self) -> str:
        """One gRPC target naming every member (resolved to addresses now)."""
        addrs = [f"{_resolve(h)}:{p}" for h, p in self.endpoints]
        return "ipv4:" + ",".join(addrs)

    def credentials(self) -> grpc.ChannelCredentials | None:
        if not self.tls:
            return None
        read = lambda p: p.read_bytes() if p else None  # noqa: E731
        return grpc.ssl_channel_credentials(read(self.cacert), read(self.key), read(self.cert))


def _endpoint(url: str, text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise EtcdUrlError(f"{url!r}: endpoint {text!r} is not HOST:PORT")
    return host, int(port)


def _resolve(host: str) -> str:
    """An IPv4 address for host (gRPC's ipv4: target lists addresses, not names)."""
    return str(socket.getaddrinfo(host, None, socket.AF_INET)[0][4][0])


def prefix_end(key: bytes) -> bytes:
    """The range end covering every key that starts with `key` (etcd's convention)."""
    return key[:-1] + bytes([key[-1] + 1])


class EtcdClient:
    """Calls on one channel to every member; each fails after CALL_TIMEOUT."""

    def __init__(self, url: EtcdUrl) -> None:
        self.url = url
        options = [
            ("grpc.lb_policy_name", "round_robin"),
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 2000),
            ("grpc.keepalive_time_ms", 5000),
            ("grpc.keepalive_timeout_ms", 3000),
        ]
        creds = url.credentials()
        target = url.target()
        self.channel = (
            grpc.aio.secure_channel(target, creds, options)
            if creds
            else grpc.aio.insecure_channel(target, options)
        )
        self.kv = rpc.KVStub(self.channel)
        self.lease = rpc.LeaseStub(self.channel)
        self.watcher = rpc.WatchStub(self.channel)
        self.maintenance = rpc.MaintenanceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    async def range_prefix(
        self, prefix: bytes, revision: int = 0, serializable: bool = False
    ) -> Any:
        """Every key under prefix (one RangeResponse: kvs, header.revision); `serializable`:
        as the member answering holds it, which it can without a quorum."""
        request = rpc.RangeRequest(
            key=prefix, range_end=prefix_end(prefix), revision=revision, serializable=serializable
        )
        return await self.kv.Range(request, timeout=CALL_TIMEOUT)

    async def get(self, key: bytes) -> Any:
        """The key's KeyValue, or None."""
        response = await self.kv.Range(rpc.RangeRequest(key=key), timeout=CALL_TIMEOUT)
        return response.kvs[0] if response.kvs else None

    async def txn(
        self,
        compare: list[Any],
        success: list[Any],
        failure: list[Any],
        wait_s: float = CALL_TIMEOUT,
    ) -> Any:
        request = rpc.TxnRequest(compare=compare, success=success, failure=failure)
        return await self.kv.Txn(request, timeout=wait_s)  # gRPC deadline, per call

    async def grant(self, ttl: int) -> int:
        response = await self.lease.LeaseGrant(rpc.LeaseGrantRequest(TTL=ttl), timeout=CALL_TIMEOUT)
        if response.error:
            raise RuntimeError(f"etcd refused a lease: {response.error}")
        return int(response.ID)

    async def revoke(self, lease_id: int) -> None:
        await self.lease.LeaseRevoke(rpc.LeaseRevokeRequest(ID=lease_id), timeout=CALL_TIMEOUT)

    async def status(self) -> Any:
        return await self.maintenance.Status(rpc.StatusRequest(), timeout=CALL_TIMEOUT)

    async def watch(
        self,
        key: bytes,
        range_end: bytes,
        start_revision: int,
    ) -> AsyncGenerator[Any, None]:
        """WatchResponses for [key, range_end) from start_revision, until cancelled or the
        stream fails (the caller resumes from its last revision + 1). A response without
        events (a progress notice) proves nothing: etcd 3.4 may send one before the events
        of a watch still catching up (etcd issue #15220)."""
        create = rpc.WatchCreateRequest(
            key=key, range_end=range_end, start_revision=start_revision, progress_notify=True
        )
        call = self.watcher.Watch()
        try:
            await call.write(rpc.WatchRequest(create_request=create))
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:
                    return
                if response.canceled:
                    raise WatchCanceled(response.compact_revision, response.cancel_reason)
                yield response
        finally:
            call.cancel()


class WatchCanceled(Exception):
    """etcd cancelled a watch (its start revision was compacted: resync from a fresh read)."""

    def __init__(self, compact_revision: int, reason: str) -> None:
        super().__init__(f"etcd cancelled the watch: {reason or 'compacted'}")
        self.compact_revision = compact_revision


def put(key: bytes, value: bytes, lease: int = 0) -> Any:
    return rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value, lease=lease))


def delete(key: bytes) -> Any:
    return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key))


def get(key: bytes) -> Any:
    return rpc.RequestOp(request_range=rpc.RangeRequest(key=key))


def created_at(key: bytes, revision: int) -> Any:
    """Compare: `key` exists with this create revision (0: `key` does not exist)."""
    return rpc.Compare(
        key=key,
        target=rpc.Compare.CREATE,
        result=rpc.Compare.EQUAL,
        create_revision=revision,
    )


def is_delete(event: Any) -> bool:
    return bool(event.type == rpc.Event.DELETE)


async def sleep_or(event: asyncio.Event, seconds: float) -> bool:
    """Wait `seconds` or until `event` is set; True if it was set."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        return False
    return True
