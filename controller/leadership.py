"""Leader election with fencing, on etcd: one controller decides, and only while it holds
a live lease.

Every controller grants itself a lease (TTL a few seconds) and keeps it alive; it registers
under `{prefix}/members/{identity}` and campaigns for `{prefix}/leader` with a transaction
"create the key on my lease if nobody holds it". The winner's fencing token is the key's
create revision: `compare()` is the etcd condition "the leader key still exists at that
revision", which the etcd store puts on every write, so a leader whose lease expired (it
was paused, SIGSTOPped, or cut off from etcd) commits nothing once a successor exists, and
no successor can exist before its lease expired.

The lease is renewed from a thread of its own (a new leader's event loop may be busy for
seconds building a large state). A leader also stops deciding on its own before its lease
can lapse at etcd: it counts its lease as valid only until (when its last acknowledged keep-
alive was sent) + TTL - MARGIN, by its monotonic clock; past that `is_leader` is false even
if it could not hear from etcd, and it campaigns again with a fresh lease. Losers watch the
leader key and campaign again the moment it is deleted (lease expiry or resignation), so a
takeover takes about one TTL after a leader dies without resigning, and next to nothing
after a clean stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
from aetcd import rpc

from controller import etcd_client as ec

log = logging.getLogger(__name__)

DEFAULT_TTL = 3  # seconds; etcd's floor is 1.5x its election timeout (1.5 s by default)
MARGIN = 0.5  # seconds before the lease could expire at etcd that a leader stops deciding
# Keep-alives every TTL/6: when etcd loses its own leader (an election of 0.5-1 s, no
# renewal possible meanwhile) the lease still counts as valid for TTL - MARGIN - TTL/6 = 2 s.
RENEWALS_PER_TTL = 6
# A keep-alive unanswered in this time is sent again (a member forwarding it to a dead etcd
# leader never answers it), so the first one after etcd's election lands at once.
ATTEMPT_TIMEOUT = 0.5
RETRY_PAUSE = 0.05  # seconds between keep-alives while etcd does not answer one


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
        self.on_vacant: Callable[[], None] | None = None  # the leader key was just deleted
        self.info = b""  # the member key's value: where this controller is reached (JSON)
        self.lease_id = 0
        self.create_revision = 0  # the fencing token while leading (0: not leading)
        self._valid_until = 0.0  # monotonic: our lease is surely alive at etcd until then
        self._leading = False
        self.elected = asyncio.Event()
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._keepalive: _KeepAlive | None = None

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
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._keepalive:
            self._keepalive.stopped.set()
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
                        if self.on_vacant:
                            self.on_vacant()
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
            self._keepalive.stopped.set()
        if self.lease_id:  # a lease we gave up on: free what it holds now, if etcd hears us
            with contextlib.suppress(grpc.aio.AioRpcError):
                await self.client.revoke(self.lease_id)
        sent = time.monotonic()
        self.lease_id = await self.client.grant(self.ttl)
        self._valid_until = sent + self.ttl - MARGIN
        await self.client.txn([], [ec.put(self.member_key, self.info, self.lease_id)], [])
        loop = asyncio.get_running_loop()
        lease_id = self.lease_id
        self._keepalive = _KeepAlive(
            self.client.url,
            lease_id,
            self.ttl,
            self._valid_until,
            on_valid=lambda until: self._extend(lease_id, until),
            on_expired=lambda: loop.call_soon_threadsafe(self._expire, lease_id),
        )
        self._keepalive.start()

    def _extend(self, lease_id: int, until: float) -> None:
        """(the keep-alive thread) etcd renewed the lease: valid until `until`."""
        if lease_id == self.lease_id and until > self._valid_until:
            self._valid_until = until

    def _expire(self, lease_id: int) -> None:
        """Our lease is (or may be) gone at etcd: stop leading, campaign with a new one."""
        if lease_id != self.lease_id:
            return  # an older lease's thread, replaced already
        self._valid_until = 0.0
        if self._leading:
            log.warning("%s: lease lost; no longer the leader", self.identity)
            self._lose()
        elif self._task and not self._task.done():
            self._lost.set()


class _KeepAlive(threading.Thread):
    """Refreshes one lease every TTL/6 from its own thread and gRPC channel, so that an
    event loop busy for seconds (a new leader building a large state) does not let the
    lease lapse; a stopped process (SIGSTOP) stops this thread too, as it must. Past the
    lease's validity without a renewal, it reports the lease lost and ends."""

    def __init__(
        self,
        url: ec.EtcdUrl,
        lease_id: int,
        ttl: int,
        valid_until: float,
        on_valid: Callable[[float], None],
        on_expired: Callable[[], object],
    ) -> None:
        super().__init__(name=f"etcd-lease-{lease_id:x}", daemon=True)
        self.url, self.lease_id, self.ttl = url, lease_id, ttl
        self.valid_until = valid_until
        self.on_valid, self.on_expired = on_valid, on_expired
        self.stopped = threading.Event()

    def run(self) -> None:
        creds = self.url.credentials()
        target = self.url.target()
        channel = grpc.secure_channel(target, creds) if creds else grpc.insecure_channel(target)
        stub = rpc.LeaseStub(channel)
        try:
            while not self.stopped.is_set():
                renewed = self._renew(stub)
                if renewed is None:
                    break
                # renewed: again in TTL/6; failed (a member gone, etcd electing a leader):
                # again at once, so the first answer after etcd's election still lands
                pause = self.ttl / RENEWALS_PER_TTL if renewed else RETRY_PAUSE
                wait = min(pause, max(self.valid_until - time.monotonic(), 0))
                if self.stopped.wait(wait):
                    break
                if time.monotonic() >= self.valid_until:
                    self.on_expired()
                    break
        finally:
            channel.close()

    def _renew(self, stub: Any) -> bool | None:
        """One keep-alive: True renewed, False failed (try again), None once etcd says the
        lease is gone. The call waits no longer than the lease has left, nor ATTEMPT_TIMEOUT."""
        sent = time.monotonic()
        request = rpc.LeaseKeepAliveRequest(ID=self.lease_id)
        timeout = max(min(ATTEMPT_TIMEOUT, self.valid_until - sent), RETRY_PAUSE)
        try:
            replies = stub.LeaseKeepAlive(iter([request]), timeout=timeout)
            reply = next(iter(replies))
        except (grpc.RpcError, StopIteration) as err:
            log.warning("lease %x: keep-alive failed: %s", self.lease_id, err)
            return False
        if reply.TTL <= 0:
            log.warning("lease %x expired at etcd", self.lease_id)
            self.on_expired()
            return None
        self.valid_until = sent + reply.TTL - MARGIN
        self.on_valid(self.valid_until)
        return True
