"""Leader election with fencing, on etcd: one controller decides, and only while it holds
a live lease.

Every controller grants itself a lease (TTL a few seconds) and keeps it alive; it registers
under `{prefix}/members/{identity}` and campaigns for `{prefix}/leader` with a transaction
"create the key on my lease if nobody holds it". The winner's fencing token is the key's
create revision: `compare()` is the etcd condition "the leader key still exists at that
revision", which the etcd store puts on every write, so a leader whose lease expired (it
was paused, SIGSTOPped, or cut off from etcd) commits nothing once a successor exists, and
no successor can exist before its lease expired.

A leader also stops deciding on its own before that can happen: it counts its lease as
valid only until (when its last acknowledged keep-alive was sent) + TTL - MARGIN, by its
monotonic clock; past that `is_leader` is false even if it could not hear from etcd, and
it campaigns again with a fresh lease. Losers watch the leader key and campaign again the
moment it is deleted (lease expiry or resignation), so a takeover takes about one TTL
after a leader dies without resigning, and next to nothing after a clean stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc
from aetcd import rpc

from controller import etcd_client as ec

log = logging.getLogger(__name__)

DEFAULT_TTL = 3  # seconds; etcd's floor is 1.5x its election timeout (1.5 s by default)
MARGIN = 0.5  # seconds before the lease could expire at etcd that a leader stops deciding


class Leadership:
    """Campaigns for leadership of `prefix` as `identity`, until `stop()`."""

    def __init__(
        self,
        client: ec.EtcdClient,
        prefix: str,
        identity: str,
        ttl: int = DEFAULT_TTL,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.client = client
        self.identity = identity
        self.ttl = ttl
        self.key = prefix.encode() + b"/leader"
        self.member_key = prefix.encode() + b"/members/" + identity.encode()
        self.on_change = on_change
        self.lease_id = 0
        self.create_revision = 0  # the fencing token while leading (0: not leading)
        self._valid_until = 0.0  # monotonic: our lease is surely alive at etcd until then
        self._leading = False
        self.elected = asyncio.Event()
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._keepalive: asyncio.Task[None] | None = None

    # -- what the store and the controller ask ----------------------------------------

    @property
    def is_leader(self) -> bool:
        return self._leading and time.monotonic() < self._valid_until

    def compare(self) -> Any:
        """The condition on every write of this leader: the key still at our revision."""
        return ec.created_at(self.key, self.create_revision)

    def deposed(self) -> None:
        """etcd refused a fenced write: someone else leads (or nobody); stop deciding."""
        if self._leading:
            log.warning("%s: etcd refused a fenced write; no longer the leader", self.identity)
            self._lose()

    async def leader(self) -> str | None:
        """The identity of the current leader, as etcd has it (None: no leader)."""
        kv = await self.client.get(self.key)
        return kv.value.decode() if kv is not None else None

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._campaign_forever(), name="leadership")

    async def stop(self, resign: bool = True) -> None:
        """Stop campaigning; `resign` revokes the lease so a successor need not wait."""
        for task in (self._task, self._keepalive):
            if task:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        was_leading = self._leading
        self._leading, self.create_revision = False, 0
        if resign and self.lease_id:
            with contextlib.suppress(grpc.aio.AioRpcError):
                await self.client.revoke(self.lease_id)
        if was_leading and self.on_change:
            self.on_change(False)

    # -- campaigning ------------------------------------------------------------------

    async def _campaign_forever(self) -> None:
        while True:
            try:
                await self._campaign_once()
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as err:
                log.warning("%s: campaign interrupted: %s", self.identity, err.details())
                if "lease not found" in (err.details() or ""):
                    self._valid_until = 0.0  # it expired at etcd: campaign with a new one
                await asyncio.sleep(0.5)

    async def _campaign_once(self) -> None:
        if not self._lease_alive():
            await self._new_lease()
        response = await self.client.txn(
            [ec.created_at(self.key, 0)],
            [ec.put(self.key, self.identity.encode(), self.lease_id)],
            [ec.get(self.key)],
        )
        if response.succeeded:
            self._win(response.header.revision)
            await self._lost.wait()
            return
        holder = response.responses[0].response_range.kvs
        if holder and holder[0].lease == self.lease_id:  # ours from before: take it back
            self._win(holder[0].create_revision)
            await self._lost.wait()
            return
        await self._wait_vacant(response.header.revision + 1)

    async def _wait_vacant(self, from_revision: int) -> None:
        """Until the leader key is deleted, or our own lease is about to expire."""
        watch = self.client.watch(self.key, b"", from_revision)
        deadline = self._valid_until - time.monotonic()
        try:
            async with asyncio.timeout(max(deadline, 0.1)):
                async for reply in watch:
                    if any(ec.is_delete(e) for e in reply.events):
                        return
        except TimeoutError:
            return  # our lease needs a look before campaigning again
        finally:
            await watch.aclose()

    def _win(self, create_revision: int) -> None:
        self.create_revision = create_revision
        self._leading = True
        self._lost.clear()
        self.elected.set()
        log.info("%s: elected leader (fencing revision %d)", self.identity, create_revision)
        if self.on_change:
            self.on_change(True)

    def _lose(self) -> None:
        self._leading, self.create_revision = False, 0
        self._valid_until = 0.0  # a fresh lease before campaigning again
        self.elected.clear()
        self._lost.set()
        if self.on_change:
            self.on_change(False)

    # -- the lease --------------------------------------------------------------------

    def _lease_alive(self) -> bool:
        return self.lease_id != 0 and time.monotonic() < self._valid_until

    async def _new_lease(self) -> None:
        if self._keepalive:
            self._keepalive.cancel()
            await asyncio.gather(self._keepalive, return_exceptions=True)
        if self.lease_id:  # a lease we gave up on: free what it holds now, if etcd hears us
            with contextlib.suppress(grpc.aio.AioRpcError):
                await self.client.revoke(self.lease_id)
        sent = time.monotonic()
        self.lease_id = await self.client.grant(self.ttl)
        self._valid_until = sent + self.ttl - MARGIN
        await self.client.txn([], [ec.put(self.member_key, b"", self.lease_id)], [])
        self._keepalive = asyncio.create_task(self._keep_alive(self.lease_id), name="lease")

    async def _keep_alive(self, lease_id: int) -> None:
        """Refresh the lease every TTL/3; past its validity, a leader stops leading."""
        call = None
        while True:
            sent = time.monotonic()
            try:
                if call is None:
                    call = self.client.lease.LeaseKeepAlive()
                await call.write(rpc.LeaseKeepAliveRequest(ID=lease_id))
                reply = await asyncio.wait_for(call.read(), self.ttl / 3)
                if reply is grpc.aio.EOF:
                    raise ConnectionError("keep-alive stream closed")
                if reply.TTL <= 0:
                    log.warning("%s: lease %x expired at etcd", self.identity, lease_id)
                    self._expire()
                    return
                self._valid_until = sent + reply.TTL - MARGIN
            except asyncio.CancelledError:
                if call is not None:
                    call.cancel()
                raise
            except (grpc.aio.AioRpcError, TimeoutError, ConnectionError) as err:
                log.warning("%s: lease keep-alive failed: %s", self.identity, err)
                if call is not None:
                    call.cancel()
                call = None
            wait = min(self.ttl / 3, max(self._valid_until - time.monotonic(), 0))
            await asyncio.sleep(wait)
            if time.monotonic() >= self._valid_until:
                self._expire()
                return

    def _expire(self) -> None:
        """Our lease is (or may be) gone at etcd: stop leading, campaign with a new one."""
        self._valid_until = 0.0
        if self._leading:
            log.warning("%s: lease lost; no longer the leader", self.identity)
            self._lose()
        elif self._task and not self._task.done():
            self._lost.set()
