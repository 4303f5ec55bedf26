"""Many simulated agents in one process: one event loop, streams multiplexed on a few channels.

One HTTP/2 connection per `streams_per_channel` agents: a channel per agent costs a socket,
a keepalive timer and a handshake each (a 10,000-agent storm would be 10,000 TCP+HTTP/2
handshakes), while a few hundred streams per connection are cheap for both ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sys
import time

import grpc

from dockyard import endpoints
from dockyard.sim.agent import Counters, SimAgent
from dockyard.sim.model import SimConfig

log = logging.getLogger("dockyard.sim")

CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.use_local_subchannel_pool", 1),  # one connection per channel object, not shared
]


class Fleet:
    def __init__(self, cfg: SimConfig) -> None:
        cfg.check()
        self.cfg = cfg
        self.counters = Counters()
        self.channels: list[grpc.aio.Channel] = []
        self.redirects: dict[str, grpc.aio.Channel] = {}  # leaders standbys named, by address
        self.agents: list[SimAgent] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Open the channels and start every agent at once (a registration storm)."""
        rng = random.Random(f"{self.cfg.seed}:{self.cfg.first_index}")
        for n in range(self.cfg.agents):
            if n % self.cfg.streams_per_channel == 0:
                self.channels.append(
                    grpc.aio.insecure_channel(
                        endpoints.grpc_target(self.cfg.controller),
                        options=endpoints.channel_options(self.cfg.controller, CHANNEL_OPTIONS),
                    )
                )
            agent = SimAgent(
                self.cfg,
                self.cfg.first_index + n,
                self.channels[-1],
                self.counters,
                random.Random(rng.getrandbits(64)),
                self.channel_to,
            )
            self.agents.append(agent)
            self._tasks.append(asyncio.create_task(agent.run_forever()))

    def channel_to(self, address: str) -> grpc.aio.Channel:
        """One shared channel per address a standby sent agents to (the leader)."""
        channel = self.redirects.get(address)
        if channel is None:
            options = endpoints.channel_options(self.cfg.controller, CHANNEL_OPTIONS)
            channel = self.redirects[address] = grpc.aio.insecure_channel(address, options=options)
        return channel

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for ch in [*self.channels, *self.redirects.values()]:
            await ch.close()

    def summary(self) -> str:
        c = self.counters
        running = sum(1 for a in self.agents for t in a.tasks.values() if t.status == "RUNNING")
        return (
            f"connected {c.connected}/{self.cfg.agents} sessions {c.sessions} "
            f"tasks running {running} started {c.started} failed {c.failed} "
            f"heartbeats {c.heartbeats} status-batches {c.status_batches} "
            f"resyncs {c.resyncs} refusals {c.refusals}"
        )


async def run_fleet(cfg: SimConfig, report_every: float, duration: float = 0.0) -> None:
    """Run until cancelled (or for `duration` seconds), printing a summary line now and then."""
    fleet = Fleet(cfg)
    await fleet.start()
    t0 = time.monotonic()
    try:
        while not duration or time.monotonic() - t0 < duration:
            await asyncio.sleep(report_every or 3600)
            if report_every:
                print(f"[sim {cfg.first_index}+{cfg.agents}] {fleet.summary()}", flush=True)
    finally:
        with contextlib.suppress(Exception):
            await fleet.stop()
        print(f"[sim {cfg.first_index}+{cfg.agents}] stopped: {fleet.summary()}", file=sys.stderr)
