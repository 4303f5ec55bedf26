"""`dockyard exec` sessions (issue 20): the CLI's Exec stream joined to the task's agent.

The CLI opens `ClusterApi.Exec` (signed, checked by the operator role in
controller.security.apiauth); the first frame names the task, container and command, checked
by `controller.ops.exec_command.exec_target` (enableExecuteCommand, RUNNING). The session then
runs over the agent's existing stream (multiplexed by session id, as logs are: no second
connection from the agent, and its mutual TLS covers it): frames from the CLI become
ExecInput, the agent's ExecOutput become replies, acknowledged once the CLI's stream took
them (the agent's output window).

Every session is audited in the event log of its task: one event when it starts and one when
it ends, with the key id, container, command, start, end and exit code (`dockyard events`).
A session ends with a clear message when its agent disconnects; when the CLI goes away the
agent is told to kill the command.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import time
from collections.abc import AsyncIterator
from typing import Any

from controller.dispatcher import Dispatcher, Session
from controller.ops.core import Core
from controller.ops.exec_command import ExecTarget, exec_target
from dockyard.errors import ApiError
from dockyard.v1 import agent_pb2, api_pb2

log = logging.getLogger(__name__)

SIGNALS = frozenset({"INT", "TERM", "HUP", "QUIT"})
MAX_STDIN_FRAME = 1 << 20


class ExecBroker:
    def __init__(self, service: Core, dispatcher: Dispatcher) -> None:
        self.service = service
        self.dispatcher = dispatcher
        self._audits: set[asyncio.Task[None]] = set()  # end events that outlive a cancel

    async def run(
        self, key_id: str, frames: AsyncIterator[api_pb2.ExecFrame]
    ) -> AsyncIterator[api_pb2.ExecReply]:
        """One session: the replies for the CLI, from its frames. ApiError when refused."""
        first = await anext(frames, None)
        if first is None or not first.HasField("open"):
            raise ApiError("InvalidParameterException", "open: the first frame must open a session")
        o = first.open
        target = exec_target(self.service, o.cluster, o.task, o.container, list(o.command))
        start = agent_pb2.ExecStart(
            task_arn=target.task.arn,
            container=target.container,
            command=target.command,
            stdin=o.interactive,
            tty=o.tty,
            rows=o.rows,
            cols=o.cols,
        )
        session, queue = self.dispatcher.exec_open(target.task, start)
        sid = start.session_id
        audit = Audit(key_id or "(auth off)", target, sid, time.time())
        await self._record(audit.started())
        pump = asyncio.create_task(self._forward(session, sid, frames))
        try:
            async for reply in self._replies(session, sid, queue, audit):
                yield reply
        finally:
            pump.cancel()
            self.dispatcher.exec_close(session, sid)
            if audit.ended is None:  # the CLI went away, or the session was refused
                audit.end(None, audit.error or "the client ended the session")
            self._later(self._record(audit.finished()))

    async def _replies(
        self,
        session: Session,
        sid: int,
        queue: asyncio.Queue[agent_pb2.ExecOutput],
        audit: Audit,
    ) -> AsyncIterator[api_pb2.ExecReply]:
        while True:
            out = await queue.get()
            if out.error:
                audit.end(None, out.error)
                raise ApiError("ClientException", f"exec session ended: {out.error}")
            if out.started:
                yield api_pb2.ExecReply(
                    started=True, container=audit.target.container, session=str(sid)
                )
            if out.data:
                yield api_pb2.ExecReply(stream=out.stream, data=out.data)
                ack = agent_pb2.ExecInput(session_id=sid, ack_bytes=len(out.data))
                self.dispatcher.exec_send(session, ack)
            if out.exited:
                audit.end(out.exit_code, "")
                yield api_pb2.ExecReply(exited=True, exit_code=out.exit_code)
                return

    async def _forward(
        self, session: Session, sid: int, frames: AsyncIterator[api_pb2.ExecFrame]
    ) -> None:
        """The CLI's stdin, resizes and signals, in order, to the agent."""
        async for f in frames:
            if len(f.stdin) > MAX_STDIN_FRAME or (f.signal and f.signal not in SIGNALS):
                continue  # refused quietly here: the CLI never sends these
            msg = agent_pb2.ExecInput(
                session_id=sid,
                data=f.stdin,
                stdin_eof=f.stdin_eof,
                rows=f.rows,
                cols=f.cols,
                signal=f.signal,
            )
            self.dispatcher.exec_send(session, msg)

    async def _record(self, event: tuple[str, str, str, dict[str, Any]]) -> None:
        cluster, subject, message, detail = event
        await self.service.commit([self.service.event(cluster, "task", subject, message, detail)])

    def _later(self, work: Any) -> None:
        """Commit the end event even when the handler is being cancelled."""
        task = asyncio.ensure_future(work)
        self._audits.add(task)
        task.add_done_callback(self._audits.discard)


class Audit:
    """What the event log keeps of a session."""

    def __init__(self, key_id: str, target: ExecTarget, sid: int, at: float) -> None:
        self.key_id = key_id
        self.target = target
        self.sid = sid
        self.started_at = at
        self.ended: float | None = None
        self.exit_code: int | None = None
        self.error = ""

    def end(self, exit_code: int | None, error: str) -> None:
        self.ended, self.exit_code, self.error = time.time(), exit_code, error

    def detail(self) -> dict[str, Any]:
        return {
            "exec": True,
            "session": str(self.sid),
            "accessKeyId": self.key_id,
            "task": self.target.task.arn,
            "container": self.target.container,
            "command": self.target.command,
            "startedAt": self.started_at,
            "endedAt": self.ended,
            "exitCode": self.exit_code,
            "error": self.error,
        }

    def _line(self) -> str:
        return f"{self.target.container}: {shlex.join(self.target.command)} (key {self.key_id})"

    def started(self) -> tuple[str, str, str, dict[str, Any]]:
        t = self.target.task
        return t.cluster, t.arn, f"exec session {self.sid} started in {self._line()}", self.detail()

    def finished(self) -> tuple[str, str, str, dict[str, Any]]:
        t = self.target.task
        how = f"exit code {self.exit_code}" if self.exit_code is not None else self.error
        took = (self.ended or time.time()) - self.started_at
        message = f"exec session {self.sid} ended in {self._line()}: {how} after {took:.1f} s"
        return t.cluster, t.arn, message, self.detail()
