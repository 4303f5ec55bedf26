"""An in-process controller with security on, run on its own event loop in a thread.

Tests drive it over real gRPC/HTTP from the test thread, and check invariants inside it
(`ClusterState.validate()`) through `on_loop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from controller.ops import clusters
from controller.server import Controller, ControllerConfig
from dockyard import auth
from dockyard.client import Client
from dockyard.v1 import agent_pb2, agent_pb2_grpc

T = TypeVar("T")
TARGET = "AmazonEC2ContainerServiceV20141113."


@dataclass
class SecureController:
    data_dir: Path
    open_loopback: bool = False
    tls: bool = False
    disconnect_grace: float = 10.0
    ctl: Controller | None = None
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        config = ControllerConfig(
            self.data_dir,
            listen="127.0.0.1:0",
            http="127.0.0.1:0",
            heartbeat_period=30,  # raw test agents do not heartbeat
            auth=True,
            open_loopback_agents=self.open_loopback,
            tls=self.tls,
            disconnect_grace=self.disconnect_grace,
        )
        self.ctl = Controller(config)
        self.on_loop(self.ctl.start)
        # `default`, as the first agent to join would make it (these tests' agents are raw)
        self.on_loop(functools.partial(clusters.ensure_default, self.ctl.service))

    def stop(self) -> None:
        if self.ctl is not None:
            self.on_loop(self.ctl.stop)
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self.thread:
            self.thread.join(10)
        self.loop.close()

    def on_loop(self, fn: Callable[[], Coroutine[Any, Any, T]], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(fn(), self.loop).result(timeout)

    def validate(self) -> None:
        async def check() -> None:
            assert self.ctl is not None
            self.ctl.state.validate()

        self.on_loop(check)

    @property
    def address(self) -> str:
        assert self.ctl is not None
        return f"127.0.0.1:{self.ctl.grpc_port}"

    @property
    def http(self) -> str:
        assert self.ctl is not None
        return f"http://127.0.0.1:{self.ctl.http_port}/"

    def admin(self) -> auth.Credentials:
        creds = auth.parse_credentials((self.data_dir / "admin-credentials").read_text())
        assert creds is not None
        return creds

    def client(self, creds: auth.Credentials | None = None) -> Client:
        ca = (self.data_dir / "ca.crt").read_bytes() if self.tls else None
        return Client(self.address, timeout=10, credentials=creds or self.admin(), ca_cert=ca)

    def ecs(
        self, operation: str, body: Any, creds: auth.Credentials | None = None, sign: bool = True
    ) -> requests.Response:
        """POST one ECS JSON 1.1 request, SigV4-signed as botocore signs it."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {
            "X-Amz-Target": TARGET + operation,
            "Content-Type": "application/x-amz-json-1.1",
        }
        req = AWSRequest(method="POST", url=self.http, data=data, headers=headers)
        if sign:
            c = creds or self.admin()
            key = BotoCredentials(c.access_key_id, c.secret_access_key)
            SigV4Auth(key, "ecs", "us-east-1").add_auth(req)
        return requests.post(self.http, data=data, headers=dict(req.headers.items()), timeout=10)


def state_dir_secret(instance_id: str) -> str:
    """The secret a test agent keeps "in its state dir" (stable per id, as a real one is)."""
    return hashlib.sha256(f"state-dir:{instance_id}".encode()).hexdigest()


@contextlib.contextmanager
def running(data_dir: Path, **settings: Any) -> Iterator[SecureController]:
    """A started SecureController (`settings`: its fields), stopped even if the test fails."""
    controller = SecureController(data_dir, **settings)
    try:
        controller.start()
        yield controller
    finally:
        controller.stop()


def agent_argv(
    sc: SecureController, state_dir: Path, join: dict[str, str], hostname: str, tls: bool = True
) -> list[str]:
    """`dockyard agent` joining `sc` with a token (`join`: CreateJoinToken's answer)."""
    argv = [sys.executable, "-m", "dockyard.cli.main", "agent", "--controller", sc.address]
    argv += ["--state-dir", str(state_dir), "--hostname", hostname]
    argv += ["--tls", "always", "--ca-hash", join["caHash"]] if tls else ["--tls", "never"]
    return [*argv, "--join-token", join["token"], "--credentials-listen", "127.0.0.1:0"]


def register_msg(
    instance_id: str, token: str = "", secret: str | None = None, **kw: Any
) -> agent_pb2.AgentMessage:
    """A Register as an agent sends it; `secret` defaults to the agent's own."""
    total = agent_pb2.Resources(cpu=4096, memory_mib=8192)
    reg = agent_pb2.Register(
        instance_id=instance_id,
        hostname=instance_id,
        join_token=token,
        total=total,
        instance_secret=state_dir_secret(instance_id) if secret is None else secret,
        **kw,
    )
    return agent_pb2.AgentMessage(register=reg)


class RawAgent:
    """The agent protocol spoken by hand: send messages, read what the controller says."""

    def __init__(self, address: str, tls: grpc.ChannelCredentials | None = None) -> None:
        options = [("grpc.ssl_target_name_override", "dockyard-controller")]
        self.channel = (
            grpc.secure_channel(address, tls, options=options)
            if tls
            else grpc.insecure_channel(address)
        )
        self.outbox: list[agent_pb2.AgentMessage | None] = []
        self._cv = threading.Condition()
        self.replies: Iterator[agent_pb2.ControllerMessage] = iter(())

    def _requests(self) -> Iterator[agent_pb2.AgentMessage]:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: bool(self.outbox))
                msg = self.outbox.pop(0)
            if msg is None:
                return
            yield msg

    def connect(self, first: agent_pb2.AgentMessage) -> RawAgent:
        self.send(first)
        stub = agent_pb2_grpc.AgentServiceStub(self.channel)
        self.replies = stub.Connect(self._requests(), timeout=30)
        return self

    def send(self, msg: agent_pb2.AgentMessage | None) -> None:
        with self._cv:
            self.outbox.append(msg)
            self._cv.notify()

    def next(self, kind: str | None = None) -> agent_pb2.ControllerMessage:
        """The next reply (of `kind`, skipping heartbeat acks and others)."""
        for msg in self.replies:
            if kind is None or msg.WhichOneof("body") == kind:
                return msg
        raise AssertionError(f"stream ended before a {kind or 'reply'}")

    def close(self) -> None:
        self.send(None)
        self.channel.close()
