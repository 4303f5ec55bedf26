"""Exec sessions on the agent (issue 20): a command in a task's container, for `dockyard exec`.

The controller sends ExecStart / ExecInput over the agent's stream; the agent runs the command
with Docker's exec API (aiodocker) and sends ExecOutput back, keyed by session id. Output
waits while more than WINDOW bytes are unacknowledged (the controller acknowledges what the
CLI took), so a fast command cannot flood the agent's stream or the controller's memory.

Docker's exec API cannot signal or kill an exec, and ending its attach connection does not
end the process. The agent therefore signals the command through its host pid (exec inspect's
`Pid`; the engine runs on the agent's host), and kills the command's whole process tree when
a session ends early: the CLI went away, the controller's stream dropped, or the agent
restarted (the running execs are kept in the state dir, `execs.json`, and reaped at start).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.docker_driver import DockerDriver, DriverError
from dockyard.v1 import agent_pb2

log = logging.getLogger("dockyard.agent.exec")

WINDOW = 1 << 20  # output bytes in flight before the agent stops reading the command
CHUNK = 32 << 10  # at most this much output per message
LEDGER = "execs.json"
SIGNALS = {"INT": signal.SIGINT, "TERM": signal.SIGTERM, "HUP": signal.SIGHUP}
SIGNALS["QUIT"] = signal.SIGQUIT

Send = Callable[[agent_pb2.AgentMessage], bool]
FindContainer = Callable[[str, str], Awaitable[str | None]]  # (task ARN, name) -> docker id


@dataclass(eq=False)
class ExecRun:
    """One session: the Docker exec, its attach stream and the output window."""

    start: agent_pb2.ExecStart
    exec_id: str = ""
    pid: int = 0
    stream: Any = None  # aiodocker's exec Stream
    sent: int = 0
    acked: int = 0
    credit: asyncio.Event = field(default_factory=asyncio.Event)
    inputs: asyncio.Queue[agent_pb2.ExecInput] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None


class ExecSessions:
    def __init__(
        self, driver: DockerDriver, send: Send, find: FindContainer, state_dir: Path
    ) -> None:
        self.driver = driver
        self.send = send
        self.find = find
        self.ledger = state_dir / LEDGER
        self.runs: dict[int, ExecRun] = {}

    # ------------------------------------------------------------ from the controller

    def start(self, msg: agent_pb2.ExecStart) -> None:
        if msg.session_id in self.runs:
            return
        run = ExecRun(start=msg)
        self.runs[msg.session_id] = run
        run.task = asyncio.create_task(self._run(run))

    def input(self, msg: agent_pb2.ExecInput) -> None:
        run = self.runs.get(msg.session_id)
        if run is None:
            return
        if msg.ack_bytes:
            run.acked += msg.ack_bytes
            if run.sent - run.acked < WINDOW:
                run.credit.set()
        if msg.cancel:
            self._cancel(run, "the controller ended the session")
        elif msg.data or msg.stdin_eof or msg.rows or msg.signal:
            run.inputs.put_nowait(msg)  # applied in order once the command runs

    def drop_all(self) -> None:
        """The controller's stream is gone: end every session (the CLIs' calls ended too)."""
        for run in list(self.runs.values()):
            self._cancel(run, "the controller's stream dropped")

    def _cancel(self, run: ExecRun, why: str) -> None:
        log.info("exec session %d ends early: %s", run.start.session_id, why)
        if run.task is not None:
            run.task.cancel()

    # ------------------------------------------------------------ one session

    async def _run(self, run: ExecRun) -> None:
        sid = run.start.session_id
        writer: asyncio.Task[None] | None = None
        try:
            await self._open(run)
            self._out(sid, started=True)
            writer = asyncio.create_task(self._write(run))
            await self._pump(run)
            code = await self._exit_code(run)
            self._out(sid, exited=True, exit_code=code)
        except DriverError as err:
            self._out(sid, exited=True, error=str(err))
        except asyncio.CancelledError:
            pass  # ended early: the process is killed below
        except Exception as err:  # never a stack trace on the wire; one line in the log
            log.exception("exec session %d failed", sid)
            self._out(sid, exited=True, error=f"exec failed on the agent: {err}")
        finally:
            if writer is not None:
                writer.cancel()
            self.runs.pop(sid, None)
            await self._finish(run)

    async def _open(self, run: ExecRun) -> None:
        s = run.start
        docker_id = await self.find(s.task_arn, s.container)
        if docker_id is None:
            raise DriverError(f"container {s.container} of the task is not running on this host")
        run.exec_id, run.stream = await self.driver.exec_start(
            docker_id, list(s.command), s.stdin, s.tty, (s.rows, s.cols)
        )
        self._remember(run.exec_id, add=True)
        if s.tty and s.rows and s.cols:  # at once: engines before API 1.42 cannot earlier
            try:
                await self.driver.exec_resize(run.exec_id, s.rows, s.cols, tries=10)
            except DriverError as err:  # e.g. the command is over already
                log.info("exec session %d: terminal not resized: %s", s.session_id, err)
        run.pid = await self.driver.exec_pid(run.exec_id)
        run.credit.set()

    async def _write(self, run: ExecRun) -> None:
        while True:
            await self._apply(run, await run.inputs.get())

    async def _pump(self, run: ExecRun) -> None:
        """The command's output to the controller, within the window, until it closes."""
        sid = run.start.session_id
        while True:
            msg = await run.stream.read_out()
            if msg is None:
                return
            data = bytes(msg.data)
            for i in range(0, len(data), CHUNK):
                await run.credit.wait()
                part = data[i : i + CHUNK]
                if not self._out(sid, stream=msg.stream, data=part):
                    raise asyncio.CancelledError()  # the stream is down: end it
                run.sent += len(part)
                if run.sent - run.acked >= WINDOW:
                    run.credit.clear()

    async def _apply(self, run: ExecRun, msg: agent_pb2.ExecInput) -> None:
        try:
            if msg.data:
                await run.stream.write_in(msg.data)
            if msg.stdin_eof:
                await self.driver.exec_close_stdin(run.stream)
            if msg.rows and msg.cols and run.start.tty:
                await self.driver.exec_resize(run.exec_id, msg.rows, msg.cols)
            if msg.signal:
                self._signal(run, msg.signal)
        except (DriverError, RuntimeError, OSError) as err:
            log.info("exec session %d: input not applied: %s", run.start.session_id, err)

    def _signal(self, run: ExecRun, name: str) -> None:
        sig = SIGNALS.get(name)
        if sig is None or run.pid <= 0:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if run.start.tty:  # the terminal's foreground job, as a Ctrl-C typed there
                os.killpg(os.getpgid(run.pid), sig)
            else:
                os.kill(run.pid, sig)

    async def _exit_code(self, run: ExecRun) -> int:
        """Docker sets the exit code a moment after the stream closes: wait for it."""
        for _ in range(50):
            info = await self.driver.exec_inspect(run.exec_id)
            if not info.get("Running") and info.get("ExitCode") is not None:
                return int(info["ExitCode"])
            await asyncio.sleep(0.05)
        return 255

    async def _finish(self, run: ExecRun) -> None:
        """Close the attach stream; kill whatever of the command still runs."""
        if run.stream is not None:
            with contextlib.suppress(Exception):
                await run.stream.close()
        if run.exec_id:
            await self._reap(run.exec_id)
            self._remember(run.exec_id, add=False)

    async def _reap(self, exec_id: str) -> None:
        try:
            info = await self.driver.exec_inspect(exec_id)
        except DriverError:
            return  # the container is gone, and its processes with it
        if info.get("Running") and info.get("Pid"):
            killed = kill_tree(int(info["Pid"]))
            log.info("exec %s: killed %d leftover process(es)", exec_id[:12], killed)

    def _out(self, sid: int, **kw: Any) -> bool:
        return self.send(
            agent_pb2.AgentMessage(exec_output=agent_pb2.ExecOutput(session_id=sid, **kw))
        )

    # ------------------------------------------------------------ leftovers of a restart

    def _remember(self, exec_id: str, add: bool) -> None:
        """Keep the running execs' ids in the state dir (an agent restart reaps them)."""
        ids = set(self._saved())
        if add:
            ids.add(exec_id)
        else:
            ids.discard(exec_id)
        tmp = self.ledger.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(sorted(ids)))
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.ledger)
        except OSError as err:
            log.warning("cannot save exec sessions in %s: %s", self.ledger, err)

    def _saved(self) -> list[str]:
        try:
            data = json.loads(self.ledger.read_text())
        except (OSError, ValueError):
            return []
        return [str(x) for x in data] if isinstance(data, list) else []

    async def reap_leftovers(self) -> None:
        """At start: kill the commands of sessions a previous agent process left running."""
        for exec_id in self._saved():
            await self._reap(exec_id)
            self._remember(exec_id, add=False)


def kill_tree(pid: int) -> int:
    """SIGKILL `pid` and its descendants (from /proc); how many were signalled."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            ppid = _ppid(int(entry))
            if ppid is not None:
                children.setdefault(ppid, []).append(int(entry))
    todo, tree = [pid], []
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children.get(p, [])
    killed = 0
    for p in tree:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, signal.SIGKILL)
            killed += 1
    return killed


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses
    fields = stat[stat.rfind(b")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 else None
