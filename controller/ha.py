"""`dockyard controller --store etcd://...`: several controllers on one etcd, one leading.

Each controller opens the etcd store at once (its hot copy: the whole state in memory,
followed by a watch) and campaigns (controller.leadership). A standby decides nothing: it
keeps its copy current and answers on its ports (controller.follower: agents are sent to
the leader, API calls relayed to it). When it wins, it closes those, fences the store with
its leadership and starts the controller, whose state loads from that memory rather than
from etcd, on the same ports. Agents given every controller's address (`dockyard agent
--controller a:7070,b:7070`) are sent to whichever one leads.

A leader that loses its leadership (its lease expired, or etcd refused a fenced write)
stops the controller and exits with LOST_LEADERSHIP: the process supervisor (systemd's
Restart=always) starts it again, as a standby. That is the fail-stop Kubernetes' own
controllers use; nothing it decided after the loss was stored, since the store refuses
every write that is not fenced by a live leadership.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from typing import TYPE_CHECKING

from tenacity import AsyncRetrying, retry_if_exception_type, wait_random_exponential

from controller import ha_members
from controller.etcd_client import EtcdClient
from controller.follower import Follower
from controller.leadership import DEFAULT_TTL, Leadership
from controller.store_etcd import EtcdStore, NotLeader, StoreUnavailable

if TYPE_CHECKING:
    from controller.server import Controller, ControllerConfig

log = logging.getLogger(__name__)

LOST_LEADERSHIP = 75  # exit status (EX_TEMPFAIL): restart me, I will come back a standby
REFUSAL = (
    "this controller lost its leadership (its etcd lease lapsed: etcd has no quorum, or is "
    "unreachable from here) and stores nothing more: retry on the new leader"
)
REFUSAL_GRACE = 1.0  # seconds for refused calls to answer before the controller stops


def is_etcd(spec: str) -> bool:
    return spec.startswith(("etcd://", "etcds://"))


def identity(config: ControllerConfig) -> str:
    """How the others name this controller (and, later, where they forward to)."""
    host, _, port = config.listen.rpartition(":")
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = config.advertise[0] if config.advertise else socket.gethostname()
    return f"{host}:{port}"


def etcd_store_of(ctl: Controller, spec: str) -> EtcdStore:
    """The controller's store, which the factory made from the `etcd://` spec."""
    if not isinstance(ctl.store, EtcdStore):
        raise TypeError(f"--store {spec!r} did not give an etcd store")
    return ctl.store


async def serve(config: ControllerConfig, spec: str, ttl: int = DEFAULT_TTL) -> None:
    """Standby until elected, then the controller, until stopped or deposed."""
    from controller.server import Controller

    ctl = Controller(config)
    store = etcd_store_of(ctl, spec)
    await _open(store)
    client = EtcdClient(store.url)
    lost = asyncio.Event()
    stop = asyncio.Event()
    leadership = Leadership(client, store.url.prefix, identity(config), ttl)
    leadership.info = ha_members.encode(ha_members.describe(config))

    def changed(leading: bool) -> None:
        if not leading:
            lost.set()

    leadership.on_change = changed
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    leadership.start()
    started = False
    front = asyncio.create_task(Follower(config, store, client, leadership).run())
    sharing: asyncio.Task[None] | None = None  # while leading: every controller's addresses
    try:
        log.info("standby on %s as %s: waiting for leadership", store.location, leadership.identity)
        if await _first(leadership.elected, stop) is stop:
            return
        elected_at = time.monotonic()
        await _stop_task(front)  # its ports are the controller's now
        store.fence_with(leadership)
        await store.catch_up(leadership.create_revision)  # the old leader's last commits
        await ctl.start()  # its store is open already: it loads from the hot copy
        started = True
        sharing = asyncio.create_task(_share_every_controller(ctl, client, leadership))
        log.info(
            "leading (fencing revision %d); controller ready %.2fs after the election",
            leadership.create_revision,
            time.monotonic() - elected_at,
        )
        if await _first(lost, stop) is lost:
            log.error("leadership lost: stopping; restart this controller to stand by again")
            store.refuse_writes(NotLeader(REFUSAL))
            await asyncio.sleep(REFUSAL_GRACE)  # the refused calls answer their callers
            raise SystemExit(LOST_LEADERSHIP)
    finally:
        await _stop_task(front)
        if sharing is not None:
            await _stop_task(sharing)
        await leadership.stop(resign=not lost.is_set())
        if started:
            await ctl.stop()
        else:
            await store.close()
        await client.close()


async def _open(store: EtcdStore) -> None:
    """Open the store, waiting while etcd cannot answer (no quorum yet, electing a leader:
    "leader changed"): a controller started beside a recovering etcd stands by for it,
    rather than exiting on the first refusal."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(StoreUnavailable),
        wait=wait_random_exponential(multiplier=0.2, max=5),
        before_sleep=lambda state: log.warning(
            "etcd not ready (%s): trying again", state.outcome and state.outcome.exception()
        ),
    ):
        with attempt:
            await store.open()


MEMBERS_REFRESH_S = 0.5  # one small etcd range: a new standby is listed at once


async def _share_every_controller(
    ctl: Controller, client: EtcdClient, leadership: Leadership
) -> None:
    """Keep what the leader hands out listing every registered controller, its own first:
    the agents' connect address (Enroll's answer: every mutual-TLS port; a certificate of
    the one CA opens a stream on any of them, so an agent finds the next leader without
    enrolling again), and the join command of new tokens (every API address)."""
    prefix = leadership.key.decode().rpartition("/")[0]
    while True:
        with contextlib.suppress(Exception):  # etcd briefly unreachable: keep the last list
            found = await ha_members.members(client, prefix)
            gate = ctl.security.gate
            if found and gate is not None and gate.tls is not None:
                gate.tls.connect_address = ha_members.agent_targets(found, leadership.identity)
            if found:
                ctl.security.tokens.controllers = ha_members.api_targets(found, leadership.identity)
        await asyncio.sleep(MEMBERS_REFRESH_S)


async def _stop_task(task: asyncio.Task[None]) -> None:
    """Cancel `task` and wait until it has cleaned up (a failure is logged, not raised)."""
    task.cancel()
    for result in await asyncio.gather(task, return_exceptions=True):
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            log.warning("standby listeners ended: %r", result)


async def _first(*events: asyncio.Event) -> asyncio.Event | None:
    """Wait until one of the events is set; that event (None only if none ever is)."""
    waits = {asyncio.ensure_future(e.wait()): e for e in events}
    try:
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
    return next((waits[w] for w in done), None)
