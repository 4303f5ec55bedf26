"""Heartbeats only on a quiet stream (dockyard.heartbeat): the real agent session against an
in-process controller over real gRPC. A stream busy both ways carries no heartbeats and
the controller keeps the agent connected on its other messages; once it goes quiet, the
heartbeats come back at the period."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from agent.session import Handlers, Session
from controller.server import Controller, ControllerConfig
from dockyard.heartbeat import heartbeat_due_in
from dockyard.v1 import agent_pb2

PERIOD = 0.4


def test_a_heartbeat_is_due_once_either_direction_was_quiet_for_a_period() -> None:
    assert heartbeat_due_in(last_sent=10.0, last_heard=10.0, period=1.0, now=10.5) == 0.5
    assert heartbeat_due_in(last_sent=9.0, last_heard=10.25, period=1.0, now=10.5) == 0.0
    assert heartbeat_due_in(last_sent=10.25, last_heard=9.0, period=1.0, now=10.5) == 0.0
    assert heartbeat_due_in(last_sent=10.25, last_heard=10.0, period=1.0, now=10.5) == 0.5


class CountingSession(Session):
    """The real session; it only counts what the agent sends, by kind."""

    sent: list[tuple[float, str]]

    def send(self, msg: agent_pb2.AgentMessage) -> bool:
        ok = super().send(msg)
        if ok:
            self.sent.append((time.monotonic(), msg.WhichOneof("body") or ""))
        return ok

    def heartbeats_between(self, t0: float, t1: float) -> int:
        return sum(kind == "heartbeat" and t0 <= t < t1 for t, kind in self.sent)


def _handlers() -> Handlers:
    async def register() -> agent_pb2.Register:
        return agent_pb2.Register(
            instance_id="i-heartbeats",
            hostname="hb",
            total=agent_pb2.Resources(cpu=1024, memory_mib=1024),
        )

    async def registered(_: agent_pb2.Registered) -> None:
        return None

    async def desired(_: agent_pb2.DesiredState) -> bool:
        return True

    return Handlers(
        register=register,
        registered=registered,
        desired=desired,
        log_request=lambda _: None,
        log_cancel=lambda _: None,
        heartbeat=lambda: agent_pb2.Heartbeat(docker_healthy=True),
    )


async def test_busy_streams_skip_heartbeats_and_quiet_ones_send_them(tmp_path: Path) -> None:
    ctl = Controller(
        ControllerConfig(
            data_dir=tmp_path,
            listen="127.0.0.1:0",
            http="127.0.0.1:0",
            heartbeat_period=PERIOD,
        )
    )
    await ctl.start()
    session = CountingSession(f"127.0.0.1:{ctl.grpc_port}", _handlers())
    session.sent = []
    runner = asyncio.create_task(session.run_forever())
    try:
        async with asyncio.timeout(10):  # registered: the controller holds its session
            await session.connected.wait()
        (arn,) = ctl.dispatcher.sessions
        epoch = ctl.state.instances[arn].epoch

        # busy both ways: a resync every quarter period, each answered by the full state
        t0 = time.monotonic()
        while time.monotonic() - t0 < 8 * PERIOD:
            session.send(agent_pb2.AgentMessage(resync=agent_pb2.ResyncRequest()))
            await asyncio.sleep(PERIOD / 4)
        t1 = time.monotonic()
        # quiet: only heartbeats keep the session
        await asyncio.sleep(8 * PERIOD)
        t2 = time.monotonic()

        assert session.heartbeats_between(t0 + PERIOD, t1) == 0
        assert session.heartbeats_between(t1 + PERIOD, t2) >= 5
        inst = ctl.state.instances[arn]
        assert inst.connected and inst.epoch == epoch  # never disconnected, never re-registered
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await ctl.stop()
