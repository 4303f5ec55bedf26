"""`dockyard exec TASK [--container NAME] [-i] [-t] -- CMD ARGS...` (issue 20).

Runs a command in a task's container through the controller and the task's agent: no SSH and
no Docker access on the host. stdout and stderr come back as the command writes them; with
`-i` stdin goes to the command (its end closes the command's stdin); with `-t` the command
gets a terminal of this terminal's size, resized with it (SIGWINCH), and with `-i -t` on a
terminal this one is put in raw mode, so Ctrl-C, Ctrl-D and the like reach the command as
keys. Without a terminal a Ctrl-C (SIGINT), SIGTERM or SIGHUP is passed on to the command;
the third Ctrl-C leaves without waiting. The exit code is the command's; 255 when the session
could not start or was lost (the message says why), as ssh does.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import signal
import sys
import termios
import threading
import tty
from collections.abc import Iterator
from types import FrameType

from dockyard.cli.common import COMMON, Ctx, SubParsers, bind, explained, resolve_task
from dockyard.errors import ApiError, invalid
from dockyard.v1 import api_pb2

SESSION_FAILED = 255
READ_SIZE = 32 << 10
_END = api_pb2.ExecFrame()  # the sentinel that ends the frames (never sent)
FORWARDED = {signal.SIGINT: "INT", signal.SIGTERM: "TERM", signal.SIGHUP: "HUP"}
GIVE_UP_AFTER = 3  # Ctrl-Cs: the third leaves without waiting for the command


def _exec_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--container", metavar="NAME", default="", help="needed with several")
    p.add_argument("-i", "--interactive", action="store_true", help="pass stdin on")
    p.add_argument("-t", "--tty", action="store_true", help="give the command a terminal")


# The words after TASK: its flags (and the global ones) up to `--`, then the command.
_AFTER_TASK = argparse.ArgumentParser(prog="dockyard exec", parents=[COMMON], add_help=False)
_AFTER_TASK.add_argument("task", metavar="TASK")
_exec_flags(_AFTER_TASK)


def register(sub: SubParsers) -> None:
    p = sub.add_parser(
        "exec",
        help="run a command in a task's container",
        description="Run a command in a running task's container (the task must have been "
        "started with enableExecuteCommand; operator or admin access keys). The exit code "
        "is the command's, 255 if the session failed. Example: dockyard exec 3f2a -i -t -- sh",
        usage="dockyard exec TASK [--container NAME] [-i] [-t] [global flags] -- CMD [ARGS...]",
        parents=[COMMON],
    )
    _exec_flags(p)
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="TASK [flags] -- CMD [ARGS...]")
    p.set_defaults(handler=lambda args: bind(run_exec)(_split(args)))


def _split(args: argparse.Namespace) -> argparse.Namespace:
    """TASK and its flags from the command: argparse alone would hand the command every
    word after TASK, flags included (the usage puts them after TASK, as docker's does)."""
    if "--" not in args.rest:
        raise invalid("CMD", "put -- before the command: dockyard exec TASK [-i] [-t] -- CMD")
    cut = args.rest.index("--")
    _AFTER_TASK.parse_args(args.rest[:cut], namespace=args)  # flags given before TASK stay
    args.command = args.rest[cut + 1 :]
    return args


def run_exec(ctx: Ctx, args: argparse.Namespace) -> int:
    cmd = args.command
    if not cmd:
        raise invalid("CMD", "give the command after --, e.g. dockyard exec TASK -i -t -- sh")
    rows, cols = terminal_size() if args.tty else (0, 0)
    opening = api_pb2.ExecOpen(
        cluster=ctx.cluster,
        task=resolve_task(ctx, args.task),
        container=args.container,
        command=cmd,
        interactive=args.interactive,
        tty=args.tty,
        rows=rows,
        cols=cols,
    )
    session = _Session(args.interactive, args.tty)
    try:
        with session.attached():
            return session.run(ctx, api_pb2.ExecFrame(open=opening))
    except ApiError as err:
        err = explained(err, ctx.client)
        print(f"dockyard exec: {err.name}: {err.message}", file=sys.stderr)
        return SESSION_FAILED


def terminal_size() -> tuple[int, int]:
    """(rows, cols) of the terminal on stdin or stdout, else $LINES x $COLUMNS or 24 x 80."""
    for stream in (sys.stdin, sys.stdout):
        with contextlib.suppress(OSError, ValueError):
            size = os.get_terminal_size(stream.fileno())
            return size.lines, size.columns
    env = os.environ
    return int(env.get("LINES", "24") or 24), int(env.get("COLUMNS", "80") or 80)


class _Session:
    """The local end: stdin, signals and the terminal in, stdout and stderr out."""

    def __init__(self, interactive: bool, tty_wanted: bool) -> None:
        self.interactive = interactive
        self.tty = tty_wanted
        self.frames: queue.Queue[api_pb2.ExecFrame] = queue.Queue()
        self.interrupts = 0
        self.raw = tty_wanted and interactive and sys.stdin.isatty()

    def run(self, ctx: Ctx, first: api_pb2.ExecFrame) -> int:
        try:
            for reply in ctx.client.exec(first, self._rest()):
                if reply.started and self.interactive:
                    threading.Thread(target=self._read_stdin, daemon=True).start()
                if reply.data:
                    out = sys.stderr if reply.stream == 2 else sys.stdout
                    out.buffer.write(reply.data)
                    out.buffer.flush()
                if reply.exited:
                    return reply.exit_code
        finally:
            self.frames.put(_END)
        raise ApiError("ConnectionError", "the session ended without the command's exit code")

    def _rest(self) -> Iterator[api_pb2.ExecFrame]:
        while (frame := self.frames.get()) is not _END:
            yield frame

    def _read_stdin(self) -> None:
        fd = sys.stdin.fileno()
        while True:
            try:
                data = os.read(fd, READ_SIZE)
            except OSError:
                data = b""
            if not data:
                self.frames.put(api_pb2.ExecFrame(stdin_eof=True))
                return
            self.frames.put(api_pb2.ExecFrame(stdin=data))

    @contextlib.contextmanager
    def attached(self) -> Iterator[None]:
        """Raw mode (-i -t on a terminal) and the signal handlers, undone on the way out."""
        saved = termios.tcgetattr(sys.stdin.fileno()) if self.raw else None
        previous = {s: signal.getsignal(s) for s in (*FORWARDED, signal.SIGWINCH)}
        for s in FORWARDED:
            signal.signal(s, self._forward)
        if self.tty:
            signal.signal(signal.SIGWINCH, self._resized)
        try:
            if saved is not None:
                tty.setraw(sys.stdin.fileno())
            yield
        finally:
            if saved is not None:
                termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGINT:
            self.interrupts += 1
            if self.interrupts >= GIVE_UP_AFTER:
                raise KeyboardInterrupt
        self.frames.put(api_pb2.ExecFrame(signal=FORWARDED[signal.Signals(signum)]))

    def _resized(self, _signum: int, _frame: FrameType | None) -> None:
        rows, cols = terminal_size()
        self.frames.put(api_pb2.ExecFrame(rows=rows, cols=cols))
