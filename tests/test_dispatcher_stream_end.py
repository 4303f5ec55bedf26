"""An agent's stream that drops marks its instance DISCONNECTED at once, wherever gRPC's
cancellation of the stream's handler lands (users and chaos tests rely on it; heartbeats
would notice only after three periods).

gRPC cancels a stream's handler when the agent goes away, often in the same loop turn as
the reader sees the stream end; the handler may be inside the session's cleanup, still
registering, or in gRPC's own write (after which gRPC never resumes the generator). The
test drives the real Dispatcher of an in-process controller the way gRPC's server does and
cancels its handler at each of those points in turn.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

from controller.dispatcher import Dispatcher
from dockyard.v1 import agent_pb2
from tests.security_support import SecureController, register_msg, running

REGISTERING_TURNS = 16  # loop turns a registration takes here, and some
ENDING_TURNS = 8  # loop turns from the stream's end to the session's close, and some


class Stream:
    """One agent stream as gRPC's server runs it: requests until `end()`, and a handler
    task consuming the servicer's generator with an await per message (gRPC's write)."""

    def __init__(self, dispatcher: Dispatcher, instance_id: str) -> None:
        self.instance_id = instance_id
        self._ended = asyncio.Event()
        self.registered = asyncio.Event()  # its session is open: Registered was sent
        self.replies = dispatcher.Connect(self._requests(), cast(Any, None))
        self.handler = asyncio.create_task(self._serve())

    async def _requests(self) -> AsyncIterator[agent_pb2.AgentMessage]:
        yield register_msg(self.instance_id)
        await self._ended.wait()

    async def _serve(self) -> None:
        async for _ in self.replies:  # self.replies keeps it referenced: never finalized
            self.registered.set()
            await asyncio.sleep(0)

    def end(self) -> None:
        self._ended.set()


async def _turns(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def _dropped_streams(sc: SecureController) -> list[str]:
    """Drop streams at every point; the ids of those left with a connected instance."""
    assert sc.ctl is not None
    dispatcher, state = sc.ctl.dispatcher, sc.ctl.state
    streams = []
    for turn in range(REGISTERING_TURNS):  # cancelled while registering
        s = Stream(dispatcher, f"i-registering-{turn}")
        await _turns(turn)
        s.end()
        s.handler.cancel()
        streams.append(s)
    for turn in range(ENDING_TURNS):  # cancelled just after the reader saw the end
        s = Stream(dispatcher, f"i-ending-{turn}")
        await asyncio.wait_for(s.registered.wait(), 10)
        s.end()
        await _turns(turn)
        s.handler.cancel()
        streams.append(s)
    await asyncio.gather(*(s.handler for s in streams), return_exceptions=True)

    def connected() -> list[str]:
        instances = [state.instance_by_id("default", s.instance_id) for s in streams]
        return [
            i.id
            for i in instances
            if i is not None and (i.connected or i.arn in dispatcher.sessions)
        ]

    for _ in range(200):  # 2 s: closing takes a few turns and a store commit
        if not connected():
            break
        await asyncio.sleep(0.01)
    return connected()


def test_a_stream_dropped_at_any_point_leaves_no_instance_connected(tmp_path: Path) -> None:
    with running(tmp_path / "controller", open_loopback=True) as sc:

        async def drop() -> list[str]:
            return await _dropped_streams(sc)

        assert sc.on_loop(drop) == []
        sc.validate()


def test_streams_dropped_together_are_disconnected_in_the_turn_their_end_is_seen(
    tmp_path: Path,
) -> None:
    """A mass failure (a rack, a switch, a killed simulator): gRPC hands the streams' ends
    to the loop one completion per loop turn once a few hundred are pending, so a close
    that needs more turns of its own (a task, the reader awaited) multiplied them: 5,000
    agents took 3.8-12.6 s to be seen gone, 10,000 over 30 s. Each close is now done in
    the call that sees the end, and a burst of them holds the services' scheduler back."""
    with running(tmp_path / "controller", open_loopback=True) as sc:

        async def drop() -> tuple[list[str], bool]:
            assert sc.ctl is not None
            dispatcher, state = sc.ctl.dispatcher, sc.ctl.state
            streams = [Stream(dispatcher, f"i-rack-{n}") for n in range(40)]
            await asyncio.gather(*(asyncio.wait_for(s.registered.wait(), 10) for s in streams))
            for s in streams:
                s.end()
            await _turns(2)  # the readers see their requests end, and close at once
            instances = [state.instance_by_id("default", s.instance_id) for s in streams]
            left = [i.id for i in instances if i is None or i.connected]
            bursting = dispatcher.departures.bursting(time.monotonic())
            for s in streams:
                s.handler.cancel()
            await asyncio.gather(*(s.handler for s in streams), return_exceptions=True)
            return left, bursting

        left, bursting = sc.on_loop(drop)
        assert left == [] and bursting
        sc.validate()
