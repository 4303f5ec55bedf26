"""The agent's side of the stream: register, heartbeat, receive desired state, send status.

Reconnects forever with jittered exponential backoff (SwarmKit: min(100 ms + 2 x previous,
cap), randomised), so a controller restart is a short pause, never a storm. A controller
silent for three heartbeat periods (a partition) ends the session like a closed stream.
Heartbeats go only when the stream has been quiet for a period (dockyard.heartbeat).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from tenacity import AsyncRetrying, retry_if_exception_type, wait_random_exponential

from dockyard import endpoints
from dockyard.heartbeat import MISSED_PERIODS, controller_silent, heartbeat_due_in
from dockyard.v1 import agent_pb2, agent_pb2_grpc

log = logging.getLogger("dockyard.agent.session")

BACKOFF_CAP_S = 5.0
CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
]
_END = object()


class SessionLost(Exception):
    """The session ended before it was established; retried with backoff."""


@dataclass
class Handlers:
    """What the runtime does with the controller's messages."""

    register: Callable[[], Awaitable[agent_pb2.Register]]
    registered: Callable[[agent_pb2.Registered], Awaitable[None]]
    desired: Callable[[agent_pb2.DesiredState], Awaitable[bool]]  # False: ask for a resync
    log_request: Callable[[agent_pb2.LogRequest], None]
    log_cancel: Callable[[int], None]
    heartbeat: Callable[[], agent_pb2.Heartbeat]
    # issue 20 (exec); the defaults serve simulated agents, which run no commands
    exec_start: Callable[[agent_pb2.ExecStart], None] = lambda _: None
    exec_input: Callable[[agent_pb2.ExecInput], None] = lambda _: None
    disconnected: Callable[[], None] = lambda: None  # the stream is gone
    dns: Callable[[agent_pb2.DnsSnapshot], object] = lambda _: None  # issue 21: names to answer
    # issue 22: the controller's answer to a task's task-protection call (agent/protection.py)
    protection_reply: Callable[[agent_pb2.TaskProtectionReply], None] = lambda _: None


class Session:
    def __init__(
        self,
        controller: str,
        handlers: Handlers,
        channel_factory: Callable[[list[Any], str], Awaitable[grpc.aio.Channel]] | None = None,
    ) -> None:
        self.controller = controller
        self.channel_factory = channel_factory  # mutual TLS (agent.enroll); else plaintext
        self.handlers = handlers
        self.period = 1.0
        self.connected = asyncio.Event()
        self._outbox: asyncio.Queue[object] | None = None
        self._last_heard = 0.0
        self._leader_hint = ""  # where a standby said the leader is: the next dial
        self._last_sent = 0.0
        self._seq = 0
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._hung_up = False  # we cancelled the call ourselves (silence, fatal refusal)

    def send(self, msg: agent_pb2.AgentMessage) -> bool:
        """Queue a message for the controller; False while disconnected (caller keeps it)."""
        if self._outbox is None or not self.connected.is_set():
            return False
        self._outbox.put_nowait(msg)
        self._last_sent = time.monotonic()
        return True

    async def run_forever(self) -> None:
        while True:
            # each outage gets a fresh backoff; the first try is jittered too, so agents of
            # a restarted controller do not all arrive in the same instant
            await asyncio.sleep(random.uniform(0, 0.3))
            async for attempt in AsyncRetrying(
                wait=wait_random_exponential(
                    multiplier=0.2, max=endpoints.backoff_cap(self.controller, BACKOFF_CAP_S)
                ),
                retry=retry_if_exception_type(SessionLost),
            ):
                with attempt:
                    await self._run_once()

    async def _run_once(self) -> None:
        established = False
        self._outbox = asyncio.Queue()
        async with await self._channel() as ch:
            stub = agent_pb2_grpc.AgentServiceStub(ch)
            self._outbox.put_nowait(agent_pb2.AgentMessage(register=await self.handlers.register()))
            call = stub.Connect(self._requests(self._outbox))
            self._hung_up = False
            watchdog = asyncio.create_task(self._watchdog(call))
            try:
                async for msg in call:
                    self._last_heard = time.monotonic()
                    if msg.WhichOneof("body") == "registered":
                        established = True
                    await self._handle(msg, call)
            except grpc.aio.AioRpcError as err:
                log.warning("controller stream ended: %s %s", err.code().name, err.details())
                self._leader_hint = endpoints.leader_hint(err.trailing_metadata())
            except asyncio.CancelledError:
                # grpc.aio raises CancelledError from a call *we* cancelled: that is a
                # disconnect to recover from; anything else is the agent shutting down
                if not self._hung_up:
                    raise
            finally:
                self.connected.clear()
                self.handlers.disconnected()
                watchdog.cancel()
                self._outbox.put_nowait(_END)
                call.cancel()
        if not established:
            raise SessionLost()
        log.warning("disconnected from controller %s; reconnecting", self.controller)

    async def _channel(self) -> grpc.aio.Channel:
        # a standby named the leader: go there now, once (if it fails, the list again)
        hint, self._leader_hint = self._leader_hint, ""
        if self.channel_factory is None:
            target = hint or endpoints.grpc_target(self.controller)  # several: the first up
            options = endpoints.channel_options(self.controller, CHANNEL_OPTIONS)
            return grpc.aio.insecure_channel(target, options=options)
        try:
            return await self.channel_factory(CHANNEL_OPTIONS, hint)
        except Exception as err:  # enrollment: controller down or token refused; retried
            if isinstance(err, SystemExit):
                raise
            log.warning("cannot open a TLS session: %s", err)
            raise SessionLost() from None

    async def _requests(
        self, outbox: asyncio.Queue[object]
    ) -> AsyncIterator[agent_pb2.AgentMessage]:
        while True:
            msg = await outbox.get()
            if msg is _END:
                return
            yield msg  # type: ignore[misc]

    async def _handle(self, msg: agent_pb2.ControllerMessage, call: grpc.aio.Call) -> None:
        kind = msg.WhichOneof("body")
        if kind == "registered":
            self.period = max(0.1, msg.registered.heartbeat_period_ms / 1000)
            await self.handlers.registered(msg.registered)
            self.connected.set()
            self._heartbeat_task = asyncio.create_task(self._heartbeats(call))
        elif kind == "desired":
            if not await self.handlers.desired(msg.desired):
                self.send(agent_pb2.AgentMessage(resync=agent_pb2.ResyncRequest()))
        elif kind == "heartbeat_ack":
            if msg.heartbeat_ack.heartbeat_period_ms:
                self.period = max(0.1, msg.heartbeat_ack.heartbeat_period_ms / 1000)
        elif kind == "log_request":
            self.handlers.log_request(msg.log_request)
        elif kind == "log_cancel":
            self.handlers.log_cancel(msg.log_cancel.request_id)
        elif kind == "exec_start":
            self.handlers.exec_start(msg.exec_start)
        elif kind == "exec_input":
            self.handlers.exec_input(msg.exec_input)
        elif kind == "dns":
            self.handlers.dns(msg.dns)  # kept after a disconnect: answers outlive the stream
        elif kind == "protection_reply":
            self.handlers.protection_reply(msg.protection_reply)
        elif kind == "refusal":
            r = msg.refusal
            log.warning("controller refused: %s %s", r.code, r.message)
            if r.fatal:
                self._hang_up(call)

    async def _heartbeats(self, call: grpc.aio.Call) -> None:
        """A heartbeat once either direction has been quiet for a period, and at once when
        Docker's health changed since the last one (the controller stops placing there)."""
        told_docker: bool | None = None
        while not call.done() and self.connected.is_set():
            hb = self.handlers.heartbeat()
            now = time.monotonic()
            wait = heartbeat_due_in(self._last_sent, self._last_heard, self.period, now)
            if wait == 0 or hb.docker_healthy != told_docker:
                self._seq += 1
                hb.seq = self._seq
                self.send(agent_pb2.AgentMessage(heartbeat=hb))
                told_docker, wait = hb.docker_healthy, self.period
            await asyncio.sleep(wait)

    async def _watchdog(self, call: grpc.aio.Call) -> None:
        """End a session whose controller went silent (a partition keeps TCP half-open)."""
        self._last_heard = time.monotonic()
        while not call.done():
            await asyncio.sleep(self.period / 2)
            if controller_silent(self._last_heard, self.period, time.monotonic()):
                log.warning("controller silent for %d periods", MISSED_PERIODS)
                self._hang_up(call)
                return

    def _hang_up(self, call: grpc.aio.Call) -> None:
        self._hung_up = True
        with contextlib.suppress(Exception):
            call.cancel()
