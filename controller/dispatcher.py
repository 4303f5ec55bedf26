"""The dispatcher: one gRPC stream per agent, moving messages and nothing else.

SwarmKit's shape: a session per node with an epoch (a newer session fences the older one),
heartbeats with a period the controller sets, desired state sent as a full set on connect
and then as sequenced deltas, coalesced per event-loop turn. Decisions live in AgentLink.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any

import grpc

from controller import liveness
from controller.agent_link import AgentLink
from controller.desired import desired_task
from controller.feed import TASK_DESIRED, TASK_STOPPED, Change
from controller.model import Instance, Task
from controller.ops.context import OpContext
from controller.store_api import Op
from controller.usage import UsageHistory
from dockyard.errors import ApiError
from dockyard.v1 import agent_pb2, agent_pb2_grpc

log = logging.getLogger(__name__)

MISSED_HEARTBEATS = liveness.MISSED_HEARTBEATS
_CLOSE = object()


@dataclass
class Session:
    instance: Instance
    epoch: int
    last_seen: float
    period: float = 1.0  # the heartbeat period this agent was last told
    silence_limit: float = 3.0  # seconds without a message before the session is closed
    outbox: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    version: int = 0
    pending: dict[str, Task] = field(default_factory=dict)
    logs: dict[int, asyncio.Queue[agent_pb2.LogChunk]] = field(default_factory=dict)
    execs: dict[int, asyncio.Queue[agent_pb2.ExecOutput]] = field(default_factory=dict)
    closed: bool = False
    reader: asyncio.Task[None] | None = None  # reads the agent's messages
    ending: asyncio.Future[None] | None = None  # the commit of its close, once closed


class Dispatcher(agent_pb2_grpc.AgentServiceServicer):
    def __init__(
        self,
        service: OpContext,
        heartbeat_period: float = 1.0,
        heartbeat_budget: float = liveness.DEFAULT_HEARTBEAT_BUDGET,
    ) -> None:
        self.service = service
        self.link = AgentLink(service)
        self.usage = UsageHistory()  # agents' CPU and memory reports (issue 20)
        self.period = heartbeat_period  # the base period: small clusters use exactly this
        self.budget = heartbeat_budget
        self.sessions: dict[str, Session] = {}
        self.admission = liveness.Admission()
        self.departures = liveness.Departures()  # the services' scheduler yields to bursts
        self._register_slots = asyncio.Semaphore(self.admission.max_inflight)
        self._log_ids = itertools.count(1)
        self._flush_scheduled = False
        self._dirty: dict[str, Session] = {}  # sessions with pending deltas
        self._tasks: set[asyncio.Task[None]] = set()  # closes that must outlive their caller
        self.dns: agent_pb2.DnsSnapshot | None = None  # the last DnsSnapshot (issue 21)
        service.feed.subscribe((TASK_DESIRED, TASK_STOPPED), self._on_task_changes)

    # ------------------------------------------------------------------ the stream

    async def Connect(
        self,
        request_iterator: AsyncIterator[agent_pb2.AgentMessage],
        context: grpc.aio.ServicerContext,
        first: agent_pb2.AgentMessage | None = None,
    ) -> AsyncIterator[agent_pb2.ControllerMessage]:
        """One agent's stream. `first` is its first message when a gate in front (security)
        has already read it: passing it beats re-wrapping every later message."""
        if first is None:
            try:
                first = await asyncio.wait_for(anext(request_iterator), timeout=30)
            except (StopAsyncIteration, TimeoutError):
                return
        if first.WhichOneof("body") != "register":
            yield _refusal("BAD_MESSAGE", "the first message must be register", fatal=True)
            return
        if not self.admission.admit():
            hint = self.admission.retry_hint()
            yield _refusal("BUSY", f"controller busy registering agents: retry in {hint} s", True)
            return
        try:
            inst = await self._registered(first.register)
        except ApiError as err:
            yield _refusal("REGISTRATION_REFUSED", err.message, fatal=True)
            return
        session = self._open(inst)
        session.reader = asyncio.create_task(self._read(session, request_iterator))
        if context is not None:  # gRPC's word that the RPC is over, even if never resumed
            context.add_done_callback(lambda _: self._end(session))
        try:
            yield agent_pb2.ControllerMessage(
                registered=agent_pb2.Registered(
                    instance_arn=inst.arn,
                    epoch=session.epoch,
                    heartbeat_period_ms=int(session.period * 1000),
                )
            )
            yield self._full(session)
            if self.dns is not None:  # what its resolver answers (controller/discovery_dns.py)
                yield agent_pb2.ControllerMessage(dns=self.dns)
            while True:
                msg = await session.outbox.get()
                if msg is _CLOSE:
                    break
                yield msg  # type: ignore[misc]
        finally:
            # shielded: the handler is cancelled when the agent's stream drops, often just
            # as the reader saw it end; a cancellation here must not leave the session open
            try:
                await asyncio.shield(self._end(session))
            except ApiError as err:  # the store refuses it: this controller no longer leads
                log.info("stream of %s closed, not recorded: %s", inst.arn, err)

    async def _registered(self, reg: agent_pb2.Register) -> Instance:
        """Register; if the stream is cancelled meanwhile, the registration still completes
        and the instance is marked disconnected (no session will ever close it)."""
        registering = asyncio.ensure_future(self._register_epoch(reg))
        try:
            inst, _ = await asyncio.shield(registering)
        except asyncio.CancelledError:
            registering.add_done_callback(self._abandoned)
            raise
        return inst

    async def _register_epoch(self, reg: agent_pb2.Register) -> tuple[Instance, int]:
        """The instance and the epoch this registration gave it (a later one bumps it)."""
        inst = await self._register(reg)
        return inst, inst.epoch

    def _abandoned(self, registering: asyncio.Future[tuple[Instance, int]]) -> None:
        if registering.cancelled() or registering.exception() is not None:
            return
        inst, epoch = registering.result()
        self._background(self.link.disconnected(inst, epoch, "stream closed while registering"))

    def _background(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run `work` to its end even if its caller is cancelled (a reference is kept)."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _end(self, session: Session, why: str = "stream closed") -> asyncio.Future[None]:
        """End `session` now, in this call: stop its reader, close it, and return the
        commit of its close (the same future however often it is called).

        Synchronous on purpose: when thousands of streams drop at once, gRPC hands their
        ends to the loop one completion at a time, and a close that took a task and a few
        more loop turns per session (reader cancelled and awaited, then the close) made
        every session wait behind the turns of all the others."""
        if session.ending is None:
            if session.reader is not None and session.reader is not asyncio.current_task():
                session.reader.cancel()
            session.ending = self._close(session, why)
        return session.ending

    async def _register(self, reg: agent_pb2.Register) -> Instance:
        """Register through a bounded number of slots (admitted callers wait for one)."""
        try:
            await self._register_slots.acquire()
        finally:
            self.admission.waiting -= 1
        self.admission.inflight += 1
        try:
            return await self.link.register(reg)
        finally:
            self.admission.inflight -= 1
            self._register_slots.release()

    def heartbeat_period(self) -> float:
        """The period for the cluster's current size (liveness.heartbeat_period)."""
        return liveness.heartbeat_period(len(self.sessions), self.period, self.budget)

    def _open(self, inst: Instance) -> Session:
        old = self.sessions.get(inst.arn)
        if old is not None:  # fencing: the older stream of this instance ends now
            old.closed = True
            old.outbox.put_nowait(
                _refusal("FENCED", "a newer session of this instance registered", fatal=True)
            )
            old.outbox.put_nowait(_CLOSE)
        session = Session(instance=inst, epoch=inst.epoch, last_seen=time.monotonic())
        self.sessions[inst.arn] = session
        session.period = self.heartbeat_period()
        session.silence_limit = liveness.silence_limit(session.period, session.period)
        return session

    def _close(self, session: Session, why: str) -> asyncio.Future[None]:
        """Close the session and mark its instance DISCONNECTED in memory at once; the
        future is the store commit of that (group-committed with the other closes)."""
        session.closed = True
        session.outbox.put_nowait(_CLOSE)
        self._dirty.pop(session.instance.arn, None)
        for q in session.logs.values():
            q.put_nowait(agent_pb2.LogChunk(eof=True, error="agent disconnected"))
        for eq in session.execs.values():
            eq.put_nowait(agent_pb2.ExecOutput(exited=True, error=f"agent disconnected ({why})"))
        ops: list[Op] = []
        if self.sessions.get(session.instance.arn) is session:
            del self.sessions[session.instance.arn]
            self.departures.note(time.monotonic())
            ops = self.link.mark_disconnected(session.instance, session.epoch, why)
        committed = asyncio.ensure_future(self.service.store.write(ops))
        committed.add_done_callback(_retrieved)  # a failed commit is logged by the store
        return committed

    async def _read(
        self, session: Session, requests: AsyncIterator[agent_pb2.AgentMessage]
    ) -> None:
        try:
            async for msg in requests:
                if session.closed:
                    return
                session.last_seen = time.monotonic()
                await self._handle(session, msg)
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("agent stream of %s failed", session.instance.arn)
        finally:
            # the stream is over: close the session now, not when the handler next runs
            # (after a cancelled write gRPC never resumes it)
            self._end(session)

    async def _handle(self, session: Session, msg: agent_pb2.AgentMessage) -> None:
        kind = msg.WhichOneof("body")
        if kind == "heartbeat":
            period = self.heartbeat_period()
            session.silence_limit = liveness.silence_limit(session.period, period)
            session.period = period
            session.outbox.put_nowait(
                agent_pb2.ControllerMessage(
                    heartbeat_ack=agent_pb2.HeartbeatAck(
                        seq=msg.heartbeat.seq, heartbeat_period_ms=int(period * 1000)
                    )
                )
            )
            if session.instance.docker_healthy != msg.heartbeat.docker_healthy:
                await self.link.docker_health(session.instance, msg.heartbeat.docker_healthy)
        elif kind == "status":
            refused = await self.link.apply_reports(session.instance, list(msg.status.tasks))
            for r in refused[:10]:
                session.outbox.put_nowait(_refusal(r.code, r.message))
        elif kind == "resync":
            session.outbox.put_nowait(self._full(session))
        elif kind == "usage":
            foreign = self.usage.ingest(session.instance.arn, msg.usage, self.service.state.tasks)
            if foreign:
                why = f"usage of {len(foreign)} task(s) not on this instance, e.g. {foreign[0]}"
                session.outbox.put_nowait(_refusal("NOT_ASSIGNED", why))
        elif kind == "log_chunk":
            q = session.logs.get(msg.log_chunk.request_id)
            if q is not None:
                q.put_nowait(msg.log_chunk)
        elif kind == "exec_output":
            eq = session.execs.get(msg.exec_output.session_id)
            if eq is not None:
                eq.put_nowait(msg.exec_output)
        elif kind == "protection":  # issue 22: a task's own task-protection endpoint call
            session.outbox.put_nowait(await self._protection(session, msg.protection))
        else:
            session.outbox.put_nowait(_refusal("BAD_MESSAGE", f"unexpected message {kind}"))

    # ------------------------------------------------------------------ desired state

    async def _protection(
        self, session: Session, req: agent_pb2.TaskProtectionRequest
    ) -> agent_pb2.ControllerMessage:
        reply = await _protection_reply(self.service, session.instance.arn, req)
        return agent_pb2.ControllerMessage(protection_reply=reply)

    def _full(self, session: Session) -> agent_pb2.ControllerMessage:
        session.version += 1
        session.pending.clear()
        state = self.service.state
        tasks = [self._desired(t) for t in state.instance_tasks(session.instance.arn)]
        return agent_pb2.ControllerMessage(
            desired=agent_pb2.DesiredState(
                version=session.version, base_version=0, full=True, tasks=tasks
            )
        )

    def _desired(self, task: Task) -> agent_pb2.DesiredTask:
        td = self.service.state.taskdefs[task.family][task.revision]
        return desired_task(task, td, self.service.roles.extras(task, td))

    def _on_task_changes(self, changes: list[Change]) -> None:
        """The feed's task changes, as deltas for each instance's agent."""
        by_instance: dict[str, list[Task]] = {}
        for c in changes:
            by_instance.setdefault(c.new.instance_arn, []).append(c.new)
        for arn, tasks in by_instance.items():
            self.tasks_changed(arn, tasks)

    def tasks_changed(self, instance_arn: str, tasks: list[Task]) -> None:
        """Queue a delta for the instance's session; deltas coalesce per loop turn."""
        session = self.sessions.get(instance_arn)
        if session is None:
            return  # it gets the full set when it reconnects
        for t in tasks:
            session.pending[t.arn] = t
        self._dirty[instance_arn] = session
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def push_dns(self, snapshot: agent_pb2.DnsSnapshot) -> None:
        """Send the whole new DnsSnapshot to every connected agent (and keep it for the
        agents that register later)."""
        self.dns = snapshot
        msg = agent_pb2.ControllerMessage(dns=snapshot)
        for session in self.sessions.values():
            session.outbox.put_nowait(msg)

    def _flush(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, {}
        for session in dirty.values():
            if not session.pending or session.closed:
                continue
            on_instance = self.service.state.tasks_on.get(session.instance.arn, set())
            delta = agent_pb2.DesiredState(base_version=session.version, full=False)
            for arn, task in session.pending.items():
                if arn in on_instance:
                    delta.tasks.append(self._desired(task))
                else:
                    delta.forget.append(arn)
            session.pending.clear()
            session.version += 1
            delta.version = session.version
            session.outbox.put_nowait(agent_pb2.ControllerMessage(desired=delta))

    # ------------------------------------------------------------------ liveness

    async def watch_heartbeats(self) -> None:
        """Close sessions silent for MISSED_HEARTBEATS of their periods (a vanished host)."""
        interval = self.period / liveness.CHECKS_PER_PERIOD
        last = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            lag, last = now - last - interval, now
            if lag > liveness.STALL_S:  # time the loop was not listening is not silence
                for session in self.sessions.values():
                    session.last_seen += lag
                continue
            silent = [
                s
                for s in self.sessions.values()
                if now - s.last_seen > s.silence_limit and not s.closed
            ]
            for session in silent:  # all closed in this turn, committed together
                log.warning("%s missed %d heartbeats", session.instance.arn, MISSED_HEARTBEATS)
                self._end(session, f"missed {MISSED_HEARTBEATS} heartbeats")

    # ------------------------------------------------------------------ logs

    async def logs(
        self, task: Task, container: str, follow: bool, tail: int
    ) -> AsyncIterator[agent_pb2.LogChunk]:
        session = self.sessions.get(task.instance_arn)
        if session is None:
            raise ApiError("ClientException", "the task's instance is not connected")
        rid = next(self._log_ids)
        q: asyncio.Queue[agent_pb2.LogChunk] = asyncio.Queue()
        session.logs[rid] = q
        session.outbox.put_nowait(
            agent_pb2.ControllerMessage(
                log_request=agent_pb2.LogRequest(
                    request_id=rid, task_arn=task.arn, container=container, follow=follow, tail=tail
                )
            )
        )
        try:
            while True:
                chunk = await q.get()
                if chunk.error:
                    raise ApiError("ClientException", chunk.error)
                if chunk.data:
                    yield chunk
                if chunk.eof:
                    return
        finally:
            session.logs.pop(rid, None)
            if not session.closed:
                with contextlib.suppress(Exception):
                    session.outbox.put_nowait(
                        agent_pb2.ControllerMessage(log_cancel=agent_pb2.LogCancel(request_id=rid))
                    )

    # ------------------------------------------------------------------ exec (issue 20)

    def exec_open(
        self, task: Task, start: agent_pb2.ExecStart
    ) -> tuple[Session, asyncio.Queue[agent_pb2.ExecOutput]]:
        """Start a session on the task's agent: its stream session and the output queue
        (controller.exec_sessions moves the rest; exec_send, then exec_close)."""
        session = self.sessions.get(task.instance_arn)
        if session is None or session.closed:
            raise ApiError("ClientException", "the task's instance is not connected")
        start.session_id = next(self._log_ids)
        q: asyncio.Queue[agent_pb2.ExecOutput] = asyncio.Queue()
        session.execs[start.session_id] = q
        session.outbox.put_nowait(agent_pb2.ControllerMessage(exec_start=start))
        return session, q

    @staticmethod
    def exec_send(session: Session, msg: agent_pb2.ExecInput) -> None:
        if not session.closed:
            session.outbox.put_nowait(agent_pb2.ControllerMessage(exec_input=msg))

    def exec_close(self, session: Session, session_id: int) -> None:
        """The session is over here; the agent kills what is left of the command."""
        if session.execs.pop(session_id, None) is not None:
            self.exec_send(session, agent_pb2.ExecInput(session_id=session_id, cancel=True))


def _retrieved(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.exception()


async def _protection_reply(
    service: OpContext, instance_arn: str, req: agent_pb2.TaskProtectionRequest
) -> agent_pb2.TaskProtectionReply:
    """Apply (or read) a task's protection for its agent; errors go back in the reply."""
    reply = agent_pb2.TaskProtectionReply(request_id=req.request_id, task_arn=req.task_arn)
    minutes = req.expires_in_minutes if req.HasField("expires_in_minutes") else None
    try:
        doc = await service.task_protection.for_task(
            instance_arn, req.task_arn, req.update, req.protection_enabled, minutes
        )
    except ApiError as e:
        reply.error_code, reply.error_message = e.name, e.message
        return reply
    reply.protection_enabled = doc["protectionEnabled"]
    reply.expiration_date = doc.get("expirationDate", 0.0)
    return reply


def _refusal(code: str, message: str, fatal: bool = False) -> agent_pb2.ControllerMessage:
    return agent_pb2.ControllerMessage(
        refusal=agent_pb2.Refusal(code=code, message=message, fatal=fatal)
    )
