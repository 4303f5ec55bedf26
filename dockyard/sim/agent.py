"""One simulated agent: the real agent protocol over a (shared) gRPC channel, no Docker.

Cheap enough to pack thousands per process: per agent one reader task and one writer task;
heartbeats, status batches and simulated container starts are loop timers, not tasks.
Heartbeats follow the real agent's rule (dockyard.heartbeat): only after a quiet period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from dockyard import endpoints
from dockyard.heartbeat import MISSED_PERIODS, controller_silent, heartbeat_due_in
from dockyard.sim import model
from dockyard.v1 import agent_pb2, agent_pb2_grpc

log = logging.getLogger("dockyard.sim")
RETRY_HINT = re.compile(r"retry in ([0-9.]+) s")
_END = object()


@dataclass
class Counters:
    """Fleet-wide counts, shared by the agents of one process (for the periodic report)."""

    connected: int = 0
    sessions: int = 0
    refusals: int = 0
    heartbeats: int = 0
    status_batches: int = 0
    resyncs: int = 0
    started: int = 0
    failed: int = 0


class SimAgent:
    def __init__(
        self,
        cfg: model.SimConfig,
        index: int,
        channel: grpc.aio.Channel,
        counters: Counters,
        rng: random.Random,
        channel_to: Callable[[str], grpc.aio.Channel] | None = None,
    ) -> None:
        self.cfg = cfg
        self.index = index
        self.stub = agent_pb2_grpc.AgentServiceStub(channel)
        self.channel_to = channel_to  # a channel to one address (where a standby sent us)
        self._redirect: agent_pb2_grpc.AgentServiceStub | None = None
        self.counters = counters
        self.rng = rng
        self.tasks: dict[str, model.SimTask] = {}
        self.version = 0
        self.period = 1.0
        self.instance_arn = ""
        self.connected = False
        self._outbox: asyncio.Queue[object] | None = None
        self._dirty: set[str] = set()
        self._flush: asyncio.TimerHandle | None = None
        self._beat: asyncio.TimerHandle | None = None
        self._seq = 0
        self._last_heard = 0.0
        self._last_sent = 0.0
        self._retry_after = 0.0  # the controller's hint when it refused us as BUSY
        self._call: grpc.aio.StreamStreamCall | None = None

    async def run_forever(self) -> None:
        backoff = 0.0
        while True:
            established = await self._session()
            if self._redirect is not None:  # a standby named the leader: go at once
                await asyncio.sleep(self.rng.uniform(0, 0.05))
                continue
            backoff = 0.0 if established else backoff
            cap = endpoints.backoff_cap(self.cfg.controller, self.cfg.backoff_cap)
            backoff = model.next_backoff(backoff, cap, self.rng)
            hint, self._retry_after = self._retry_after, 0.0
            await asyncio.sleep(max(backoff, hint * self.rng.uniform(1.0, 1.5)))

    # ------------------------------------------------------------------ the session

    async def _session(self) -> bool:
        stub, self._redirect = self._redirect or self.stub, None  # a redirect is used once
        call = stub.Connect()
        self._call = call
        outbox: asyncio.Queue[object] = asyncio.Queue()
        self._outbox = outbox
        writer = asyncio.create_task(self._write(call, outbox))
        outbox.put_nowait(
            agent_pb2.AgentMessage(register=model.register_message(self.cfg, self.index))
        )
        established = False
        try:
            while True:
                msg = await call.read()
                if msg is grpc.aio.EOF:
                    break
                self._last_heard = time.monotonic()
                established = self._handle(msg, call) or established
        except grpc.aio.AioRpcError as err:
            hint = endpoints.leader_hint(err.trailing_metadata())
            if hint and self.channel_to is not None and not established:
                self._redirect = agent_pb2_grpc.AgentServiceStub(self.channel_to(hint))
        except grpc.aio.UsageError:
            pass
        except asyncio.CancelledError:
            # our own call.cancel() (the controller fell silent, or refused us for good)
            # ends the read this way: reconnect. Only a cancel of this task ends the agent.
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        finally:
            self._end_session()
            outbox.put_nowait(_END)
            call.cancel()
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        return established

    def _end_session(self) -> None:
        if self.connected:
            self.connected = False
            self.counters.connected -= 1
        for handle in (self._beat, self._flush):
            if handle is not None:
                handle.cancel()
        self._beat = self._flush = None
        self._outbox = self._call = None

    async def _write(self, call: grpc.aio.StreamStreamCall, outbox: asyncio.Queue[object]) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError, grpc.aio.UsageError):
            while (msg := await outbox.get()) is not _END:
                await call.write(msg)  # type: ignore[arg-type]

    def _send(self, msg: agent_pb2.AgentMessage) -> None:
        if self._outbox is not None:
            self._outbox.put_nowait(msg)
            self._last_sent = time.monotonic()

    def _handle(self, msg: agent_pb2.ControllerMessage, call: grpc.aio.Call) -> bool:
        kind = msg.WhichOneof("body")
        if kind == "registered":
            self.instance_arn = msg.registered.instance_arn
            self._set_period(msg.registered.heartbeat_period_ms)
            self.connected = True
            self.counters.connected += 1
            self.counters.sessions += 1
            self._schedule_beat(self.period)
            return True
        if kind == "desired":
            self._desired(msg.desired)
        elif kind == "heartbeat_ack":
            self._set_period(msg.heartbeat_ack.heartbeat_period_ms)
        elif kind == "log_request":
            self._send(
                agent_pb2.AgentMessage(
                    log_chunk=agent_pb2.LogChunk(
                        request_id=msg.log_request.request_id, eof=True, error="simulated agent"
                    )
                )
            )
        elif kind == "refusal":
            self.counters.refusals += 1
            hint = RETRY_HINT.search(msg.refusal.message)
            if msg.refusal.code == "BUSY" and hint:
                self._retry_after = float(hint.group(1))
            if msg.refusal.fatal:
                call.cancel()
        return False

    def _set_period(self, period_ms: int) -> None:
        if self.cfg.heartbeat_period:
            self.period = self.cfg.heartbeat_period
        elif period_ms:
            self.period = max(0.1, period_ms / 1000)

    # ------------------------------------------------------------------ heartbeats

    def _schedule_beat(self, delay: float) -> None:
        self._beat = asyncio.get_running_loop().call_later(delay, self._heartbeat)

    def _heartbeat(self) -> None:
        now = time.monotonic()
        if controller_silent(self._last_heard, self.period, now):
            log.warning("agent %d: controller silent for %d periods", self.index, MISSED_PERIODS)
            if self._call is not None:
                self._call.cancel()
            return
        wait = heartbeat_due_in(self._last_sent, self._last_heard, self.period, now)
        if wait > 0:  # the stream was busy both ways: no heartbeat needed yet
            self._schedule_beat(wait)
            return
        self._seq += 1
        self.counters.heartbeats += 1
        self._send(
            agent_pb2.AgentMessage(
                heartbeat=agent_pb2.Heartbeat(
                    seq=self._seq, desired_version=self.version, docker_healthy=True
                )
            )
        )
        self._schedule_beat(self.period)

    # ------------------------------------------------------------------ desired state

    def _desired(self, ds: agent_pb2.DesiredState) -> None:
        if not ds.full and ds.base_version != self.version:
            self.counters.resyncs += 1
            self._send(
                agent_pb2.AgentMessage(resync=agent_pb2.ResyncRequest(have_version=self.version))
            )
            return
        self.version = ds.version
        if ds.full:
            wanted = {d.task_arn for d in ds.tasks}
            for arn in [a for a in self.tasks if a not in wanted]:
                del self.tasks[arn]
            self._dirty |= set(self.tasks)  # after a reconnect, tell everything again
        for arn in ds.forget:
            self.tasks.pop(arn, None)
            self._dirty.discard(arn)
        loop = asyncio.get_running_loop()
        for d in ds.tasks:
            step = model.apply_desired(self.tasks, d, self.cfg, self.rng)
            if step.report:
                self._dirty.add(d.task_arn)
            if step.start_after is not None:
                loop.call_later(step.start_after, self._started, d.task_arn)
        self._schedule_flush()

    def _started(self, arn: str) -> None:
        t = self.tasks.get(arn)
        if t is None or not model.finish_start(t, self.cfg, self.rng, time.time()):
            return
        if t.status == "RUNNING":
            self.counters.started += 1
        else:
            self.counters.failed += 1
        self._dirty.add(arn)
        self._schedule_flush()

    # ------------------------------------------------------------------ status batches

    def _schedule_flush(self) -> None:
        if self._dirty and self._flush is None and self.connected:
            loop = asyncio.get_running_loop()
            self._flush = loop.call_later(self.cfg.status_interval, self._send_statuses)

    def _send_statuses(self) -> None:
        self._flush = None
        now = time.time()
        batch = [model.task_status(self.tasks[a], now) for a in self._dirty if a in self.tasks]
        self._dirty.clear()
        if batch:
            self.counters.status_batches += 1
            self._send(agent_pb2.AgentMessage(status=agent_pb2.StatusBatch(tasks=batch)))
