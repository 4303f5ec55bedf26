"""The `etcd://` state store backend: the controller's state of record in etcd, replicated.

Same promises as the SQLite store (see `controller.store_api` / `controller.store`): every
`write(ops)` resolves once its batch is committed, a batch is all-or-nothing, events are
stored with the changes they describe. Layout under the URL's prefix (default /dockyard):

    {prefix}/data/o/{kind}/{key}   {"cluster": ..., "doc": {...}}   one object
    {prefix}/data/e/{seq:020d}     [seq, at, cluster, kind, subject, message, detail]
    {prefix}/data/catch-up         empty: catch_up's marker, no state (see there)
    {prefix}/leader                the elected controller (controller.leadership)
    {prefix}/members/{id}          every running controller, on its lease

Every commit is one etcd transaction: several callers' batches grouped, up to `max_txn_ops`
operations (`?max_txn_ops=`, default 1024). etcd refuses a transaction over its
`--max-txn-ops` (128 by default) or `--max-request-bytes` (1.5 MiB) before applying any of
it; the store then halves its limit and commits the group again in two (each caller's batch
stays whole: a single batch over etcd's limit fails, with etcd's reason). Give etcd room
(`--max-txn-ops 10000 --max-request-bytes 33554432`): group commit is the throughput.
With a fence (`fence_with(leadership)`), each transaction is conditioned on the leader key
still existing at the create revision this controller won it at: a deposed leader (its
lease expired while it was paused, partitioned or SIGSTOPped) commits nothing, and its
writes fail with `NotLeader`.

A hot copy: the store keeps every object's stored JSON in memory, loaded once at open and
kept current by its own commits and by a watch on `{prefix}/data/` (what another
controller commits). A standby's `load()` after it wins the election reads memory, not
etcd; `watch(callback)` hands each committed batch, whoever wrote it, to the in-memory
state (`callback(revision, ops)`, in revision order, each revision once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit, urlunsplit

import grpc
import orjson
from aetcd import rpc
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay

from controller import etcd_client as ec
from controller.records import Delete, EventRow, Op, Put, dumps
from controller.store_api import StoreBusy
from dockyard.errors import ApiError

log = logging.getLogger(__name__)

DEFAULT_MAX_TXN_OPS = 1024  # halved at run time while etcd refuses (its default is 128)
# a write etcd has not confirmed in this time is sent again (etcd's own request timeout, about
# 6 s, is what a proposal lost with a dead etcd leader waits for)
ATTEMPT_TIMEOUT = 2.0
RESEND = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNKNOWN)
Watcher = Callable[[int, list[Op]], None]


class StoreRefused(ApiError):
    """A write the store did not acknowledge. An ApiError, so that every API answers it
    with the reason, as AWS's common `ServiceUnavailable` (503, which botocore retries),
    not as an internal error."""

    def __init__(self, message: str) -> None:
        super().__init__("ServiceUnavailable", message, 503)


class TxnTooLarge(StoreRefused):
    """etcd refused a transaction for its size (nothing of it was applied)."""


class NotLeader(StoreRefused):
    """This controller lost its leadership: the store refused the write (nothing stored)."""


class StoreUnavailable(StoreRefused):
    """etcd did not confirm a write in time (unreachable, or no quorum). The write is not
    acknowledged, but its outcome is unknown: a member that took the proposal commits it
    when the quorum returns (what etcd's own clients report as "request timed out")."""


class Fence(Protocol):
    """What a leader gives the store to condition its writes on (controller.leadership)."""

    @property
    def is_leader(self) -> bool: ...

    def compare(self) -> Any:
        """The etcd Compare that holds only while this controller leads."""
        ...

    def deposed(self) -> None:
        """etcd refused a fenced write: leadership is gone."""
        ...


def parse_store_url(spec: str) -> tuple[ec.EtcdUrl, int]:
    """The etcd URL and the transaction size limit (`?max_txn_ops=`) of a --store value."""
    parts = urlsplit(spec)
    query = parse_qs(parts.query, keep_blank_values=True)
    limit = query.pop("max_txn_ops", [str(DEFAULT_MAX_TXN_OPS)])[-1]
    if not limit.isdigit() or int(limit) < 1:
        raise ec.EtcdUrlError(f"{spec!r}: max_txn_ops must be a positive number")
    rest = "&".join(f"{k}={v[-1]}" for k, v in query.items())
    return ec.EtcdUrl.parse(urlunsplit(parts._replace(query=rest))), int(limit)


class EtcdStore:
    """The state store on etcd (see the module docstring)."""

    def __init__(self, spec: str, data_dir: Path) -> None:
        self.url, self.max_txn_ops = parse_store_url(spec)
        self._data_dir = Path(data_dir)
        # what main's sealing names in its messages (store.path.parent: the data dir); the
        # Store protocol's data_dir/location replace it
        self.path = self._data_dir / "etcd"
        root = self.url.prefix.encode()
        self.leader_key = root + b"/leader"
        self.members_prefix = root + b"/members/"
        self._data = root + b"/data/"
        self._objects = root + b"/data/o/"
        self._events = root + b"/data/e/"
        self._marker = root + b"/data/catch-up"  # neither under o/ nor e/: never state
        self.client: ec.EtcdClient | None = None
        self.fence: Fence | None = None
        # kind -> key -> the stored value ({"cluster", "doc"} JSON): the hot copy, parsed
        # only when loaded
        self._mirror: dict[str, dict[str, bytes]] = {}
        self._revision = 0
        self._last_seq = 0
        self._watchers: list[Watcher] = []
        self._queue: asyncio.Queue[tuple[list[Op], asyncio.Future[None]]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        # the highest revision the watch handed to memory (applied, or skipped as applied
        # already): within one watch stream etcd sends events in revision order
        self._delivered = 0
        self._advanced = asyncio.Event()  # _delivered or a full read moved on
        self._writer: asyncio.Task[None] | None = None
        self._refusal: StoreRefused | None = None  # set: every write fails with it
        self._committing = False
        self._held: list[list[Any]] = []  # watched revisions held during our own commit

    # -- the Store interface ----------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def location(self) -> str:
        hosts = ",".join(f"{h}:{p}" for h, p in self.url.endpoints)
        return f"etcd at {hosts} under {self.url.prefix}"

    @property
    def revision(self) -> int:
        return self._revision

    async def open(self, exclusive: bool = False) -> None:
        """Connect, refuse `exclusive` while a controller runs on this prefix, read the
        whole state once into memory, then follow it with a watch. Opening an open store
        does nothing (controller.ha opens it before the controller starts)."""
        if self.client is not None:
            return
        self._data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.client = ec.EtcdClient(self.url)
        try:
            if exclusive:
                await self._refuse_if_running()
                await self._load_all()
            else:
                await self._load_all_or_stale()
        except grpc.aio.AioRpcError as err:
            await self.client.close()
            self.client = None  # not open: a later open() reads it all again
            raise StoreUnavailable(f"{self.location}: {err.details() or err.code()}") from err
        self._writer = asyncio.create_task(self._write_loop(), name="etcd-writer")
        self._tasks.append(self._writer)
        self._tasks.append(asyncio.create_task(self._follow(), name="etcd-watch"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.client:
            await self.client.close()
            self.client = None

    async def load(self, kind: str) -> list[dict[str, Any]]:
        return [orjson.loads(raw)["doc"] for raw in self._mirror.get(kind, {}).values()]

    async def load_rows(self, kind: str) -> list[tuple[str, str, dict[str, Any]]]:
        rows = [(key, orjson.loads(raw)) for key, raw in self._mirror.get(kind, {}).items()]
        return [(key, stored["cluster"], stored["doc"]) for key, stored in rows]

    async def load_events(
        self, subject: str = "", cluster: str = "", after: int = 0, limit: int = 1000
    ) -> list[EventRow]:
        """Events after `after`, oldest first, the newest `limit`. With a subject or cluster
        filter, etcd cannot index them: every later event is read and filtered here."""
        assert self.client
        request = rpc.RangeRequest(
            key=self._event_key(after + 1), range_end=ec.prefix_end(self._events)
        )
        if not subject and not cluster:
            request.sort_order = rpc.RangeRequest.DESCEND
            request.sort_target = rpc.RangeRequest.KEY
            request.limit = limit
        response = await self.client.kv.Range(request, timeout=ec.CALL_TIMEOUT)
        rows = sorted((_event(kv.value) for kv in response.kvs), key=lambda e: e.seq)
        rows = [
            e
            for e in rows
            if (not subject or e.subject == subject) and (not cluster or e.cluster == cluster)
        ]
        return rows[-limit:]

    async def last_event_seq(self) -> int:
        return self._last_seq

    def write(self, ops: list[Op]) -> Awaitable[None]:
        """Queue ops; the future resolves once etcd committed them (fails with the error:
        NotLeader when fenced out, StoreUnavailable when etcd did not answer)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._refusal is not None:
            fut.set_exception(self._refusal)
        elif not ops:
            fut.set_result(None)
        else:
            self._queue.put_nowait((ops, fut))
        return fut

    def refuse_writes(self, err: StoreRefused) -> None:
        """From now on every write fails with `err`, those queued and the one in flight
        too (its outcome unknown to etcd's client, but not acknowledged): what a controller
        that lost its leadership does before it stops, so its callers get the reason."""
        self._refusal = err
        if self._writer is not None:
            self._writer.cancel()

    async def scrub(self) -> None:
        """Compact etcd's history up to now and defragment the member answering, so that no
        earlier version of a value stays readable through etcd (other members defragment
        on their own schedule: `etcdctl defrag --cluster` does them all)."""
        assert self.client
        status = await self.client.status()
        await self.client.kv.Compact(
            rpc.CompactionRequest(revision=status.header.revision, physical=True),
            timeout=ec.CALL_TIMEOUT,
        )
        await self.client.maintenance.Defragment(rpc.DefragmentRequest(), timeout=60)

    async def erase(self) -> None:
        """Delete the whole data prefix in one transaction (fenced when leading), then read
        it back: an empty state, event numbering from 0 again. For restore, with nothing
        else writing (its watchers are not told of the deleted objects)."""
        assert self.client
        fence = self.fence
        compare = [fence.compare()] if fence is not None else []
        wipe = rpc.RequestOp(
            request_delete_range=rpc.DeleteRangeRequest(
                key=self._data, range_end=ec.prefix_end(self._data)
            )
        )
        response = await self.client.txn(compare, [wipe], [])
        if not response.succeeded:
            raise NotLeader("this controller's leadership is gone: etcd refused the erase")
        await self._load_all()

    def watch(self, callback: Watcher) -> Callable[[], None]:
        self._watchers.append(callback)
        return lambda: self._watchers.remove(callback)

    async def catch_up(self, revision: int, seconds: float = 5.0) -> None:
        """Return once memory holds every change etcd committed up to `revision` (a new
        leader calls it with its election revision before loading: the old leader's last
        commits may still be on their way through the watch).

        Not from a watch progress notice: etcd 3.4 may send one before the events of a watch
        that is still catching up (etcd issue #15220). Instead a marker put under the data
        prefix (no state: any controller may write it, nothing reads it), and a wait until
        the watch delivered the marker's revision: events come in revision order, so every
        earlier one is in memory then. If that fails (no quorum: the put is refused) or
        takes over `seconds`, read everything again instead (which fails the same way)."""
        if max(self._delivered, self._revision) >= revision:
            return
        assert self.client
        try:
            async with asyncio.timeout(seconds):
                marked = await self.client.txn([], [ec.put(self._marker, b"")], [])
                target = max(revision, marked.header.revision)
                while max(self._delivered, self._revision) < target:
                    self._advanced.clear()
                    await self._advanced.wait()
            return
        except TimeoutError:
            log.warning("the etcd watch did not catch up in %.0fs: reading it all", seconds)
        except grpc.aio.AioRpcError as err:
            log.warning("etcd refused catch_up's marker (%s): reading it all", err.details())
        await self._load_all()

    # -- fencing ------------------------------------------------------------------------

    def fence_with(self, fence: Fence | None) -> None:
        """Condition every later commit on `fence` (a won leadership); None: unfenced."""
        self.fence = fence

    # -- reading and following ----------------------------------------------------------

    async def _refuse_if_running(self) -> None:
        assert self.client
        running = await self.client.range_prefix(self.members_prefix)
        leader = await self.client.get(self.leader_key)
        if running.kvs or leader is not None:
            raise StoreBusy(f"{self.location} is in use by a running controller: stop it first")

    async def _load_all_or_stale(self) -> None:
        """The whole state; without an etcd quorum, as a surviving member holds it (a
        controller restarted then stands by and answers reads from it, marked stale: see
        controller.stale_reads; before it may lead, `catch_up` brings it up to the election's
        revision, and its watch goes on from the revision loaded)."""
        try:
            await self._load_all()
        except grpc.aio.AioRpcError as err:
            if err.code() not in RESEND:
                raise
            log.warning("etcd has no quorum (%s): loading a member's copy", err.details())
            await self._load_all(serializable=True)

    async def _load_all(self, serializable: bool = False) -> None:
        """The whole state at one revision; the last event seq at that same revision."""
        assert self.client
        objects = await self.client.range_prefix(self._objects, serializable=serializable)
        revision = objects.header.revision
        last = await self.client.kv.Range(
            rpc.RangeRequest(
                key=self._events,
                range_end=ec.prefix_end(self._events),
                revision=revision,
                sort_order=rpc.RangeRequest.DESCEND,
                sort_target=rpc.RangeRequest.KEY,
                limit=1,
                keys_only=True,
                serializable=serializable,
            ),
            timeout=ec.CALL_TIMEOUT,
        )
        self._mirror = {}
        for kv in objects.kvs:
            self._mirror_put(kv.key, kv.value)
        self._last_seq = int(last.kvs[0].key[len(self._events) :]) if last.kvs else 0
        self._revision = revision
        self._advanced.set()

    async def _follow(self) -> None:
        """Apply what etcd commits under the data prefix, from the loaded revision on;
        resume after a dropped stream, reload when the history we need was compacted."""
        assert self.client
        while True:
            try:
                async for response in self.client.watch(
                    self._data, ec.prefix_end(self._data), self._revision + 1
                ):
                    self._apply_watched(response)
            except asyncio.CancelledError:
                raise
            except ec.WatchCanceled as err:
                log.warning("%s; reloading the state from etcd", err)
                await self._reload()
            except Exception as err:  # the stream broke: resume where we were
                log.warning("etcd watch interrupted (%s); resuming", err)
                await asyncio.sleep(0.5)

    async def _reload(self) -> None:
        try:
            await self._load_all()
        except grpc.aio.AioRpcError as err:
            log.warning("reloading from etcd failed: %s", err.details())
            await asyncio.sleep(1)

    def _apply_watched(self, response: Any) -> None:
        """Group the events by revision (one transaction each) and apply the new ones."""
        batch: list[Any] = []
        for event in response.events:
            if batch and batch[-1].kv.mod_revision != event.kv.mod_revision:
                self._apply_revision(batch)
                batch = []
            batch.append(event)
        if batch:
            self._apply_revision(batch)

    def _apply_revision(self, events: list[Any], force: bool = False) -> None:
        """Apply one revision's events (skipped if applied already). During our own commit
        they are held: the watch may report our revision before etcd's reply names it, and
        our watchers must get our ops (the objects written), once."""
        if self._committing and not force:
            self._held.append(events)
            return
        revision = events[0].kv.mod_revision
        self._delivered = max(self._delivered, revision)
        self._advanced.set()
        events = [event for event in events if event.kv.key != self._marker]
        if revision <= self._revision or not events:
            return  # our own commit (applied when etcd acknowledged it), or only a marker
        ops: list[Op] = []
        for event in events:
            key = event.kv.key
            if key.startswith(self._events):
                if not ec.is_delete(event):
                    row = _event(event.kv.value)
                    if row.seq > self._last_seq:  # not a write sent again (see _send)
                        self._last_seq = row.seq
                        ops.append(row)
            elif ec.is_delete(event):
                ops.append(self._mirror_delete(key))
            else:
                kind, obj_key = self._mirror_put(key, event.kv.value)
                stored = orjson.loads(event.kv.value)
                ops.append(Put(kind, obj_key, stored["cluster"], stored["doc"]))
        self._committed(revision, ops)

    def _kind_key(self, key: bytes) -> tuple[str, str]:
        kind, _, obj_key = key[len(self._objects) :].decode().partition("/")
        return kind, obj_key

    def _mirror_put(self, key: bytes, value: bytes) -> tuple[str, str]:
        """Keep an object's value as etcd holds it (parsed on load); its (kind, key)."""
        kind, obj_key = self._kind_key(key)
        self._mirror.setdefault(kind, {})[obj_key] = value
        return kind, obj_key

    def _mirror_delete(self, key: bytes) -> Delete:
        kind, obj_key = self._kind_key(key)
        self._mirror.get(kind, {}).pop(obj_key, None)
        return Delete(kind, obj_key)

    def _committed(self, revision: int, ops: list[Op]) -> None:
        self._revision = revision
        for callback in list(self._watchers):
            try:
                callback(revision, ops)
            except Exception:  # a watcher's bug must not fail what etcd committed
                log.exception("store watcher failed")

    # -- writing ------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        batch: list[tuple[list[Op], asyncio.Future[None]]] = []
        try:
            await self._write_batches(batch)
        finally:  # cancelled (closed, or refusing): nobody waits forever
            err = self._refusal or StoreUnavailable(f"{self.location}: the store was closed")
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._fail(batch, err)

    async def _write_batches(self, batch: list[tuple[list[Op], asyncio.Future[None]]]) -> None:
        """Commit groups of queued batches. `batch` holds the group in flight and after it
        the one batch that did not fit (it starts the next group), so that a cancellation
        fails them all."""
        while True:
            if not batch:
                batch.append(await self._queue.get())
            size, group = len(batch[0][0]), 1
            while not self._queue.empty():
                item = self._queue.get_nowait()
                batch.append(item)
                if size + len(item[0]) > self.max_txn_ops:
                    break
                size, group = size + len(item[0]), group + 1
            await self._commit_group(batch[:group])
            del batch[:group]

    async def _commit_group(self, batch: list[tuple[list[Op], asyncio.Future[None]]]) -> None:
        try:
            await self._commit([op for ops, _ in batch for op in ops])
        except TxnTooLarge as err:
            if len(batch) > 1:  # smaller groups: each caller's batch stays one transaction
                size = sum(len(ops) for ops, _ in batch)
                self.max_txn_ops = max(1, min(self.max_txn_ops, size) // 2)
                log.warning("%s; grouping at most %d operations now", err, self.max_txn_ops)
                half = len(batch) // 2
                await self._commit_group(batch[:half])
                await self._commit_group(batch[half:])
                return
            self._fail(batch, err)
            return
        except Exception as err:  # a failed commit fails every write in the group
            if not isinstance(err, NotLeader | StoreUnavailable):
                log.exception("etcd commit failed")
            self._fail(batch, err)
            return
        for _, fut in batch:
            if not fut.done():
                fut.set_result(None)

    @staticmethod
    def _fail(batch: list[tuple[list[Op], asyncio.Future[None]]], err: Exception) -> None:
        for _, fut in batch:
            if not fut.done():
                fut.set_exception(err)

    async def _commit(self, ops: list[Op]) -> None:
        """One etcd transaction for the group (fenced when leading), then the hot copy."""
        assert self.client
        fence = self.fence
        if fence is not None and not fence.is_leader:
            raise NotLeader("this controller is not the leader: write refused")
        latest: dict[bytes, tuple[Put | Delete, bytes]] = {}  # the last op per key wins
        events: dict[bytes, bytes] = {}
        for op in ops:
            if isinstance(op, Put):
                key = self._object_key(op.kind, op.key)
                doc = op.encoded()
                value = f'{{"cluster":{dumps(op.cluster)},"doc":{doc}}}'.encode()
                latest.pop(key, None)
                latest[key] = (op, value)
            elif isinstance(op, Delete):
                key = self._object_key(op.kind, op.key)
                latest.pop(key, None)
                latest[key] = (op, b"")
            else:
                events[self._event_key(op.seq)] = _event_value(op)
        success = [
            ec.put(key, value) if isinstance(op, Put) else ec.delete(key)
            for key, (op, value) in latest.items()
        ]
        success += [ec.put(key, value) for key, value in events.items()]
        compare = [fence.compare()] if fence is not None else []
        response = await self._send(compare, success, fence)
        if not response.succeeded:
            self._release_held()
            if fence is not None:
                fence.deposed()
            raise NotLeader("this controller's leadership is gone: etcd refused the write")
        revision = response.header.revision
        self._release_held(before=revision)  # another writer's earlier commits first
        self._apply_own(revision, latest, ops)  # ours, with the very ops the callers wrote
        self._release_held()

    async def _send(self, compare: list[Any], success: list[Any], fence: Fence | None) -> Any:
        """The transaction, sent again while etcd does not confirm it (its leader died or is
        being elected: a proposal on its way to a dead leader is lost, and etcd answers only
        after its request timeout) for about CALL_TIMEOUT in all, while we lead.

        Sending it again is safe: the writes are whole values and event rows by number, and
        this writer sends nothing else in between (one group at a time, fenced), so if the
        lost attempt was applied after all, the second leaves the very same state."""
        resend = AsyncRetrying(
            retry=retry_if_exception(lambda e: _resendable(e) and _leads(fence)),
            stop=stop_after_delay(ec.CALL_TIMEOUT),
            before_sleep=lambda _: log.warning("etcd did not confirm a write: sending it again"),
            reraise=True,
        )
        try:
            async for attempt in resend:
                with attempt:
                    return await self._attempt(compare, success)
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.INVALID_ARGUMENT and _too_large(err.details()):
                raise TxnTooLarge(
                    f"etcd refused a transaction of {len(success)} operations: {err.details()}"
                ) from err
            raise StoreUnavailable(
                f"{self.location} did not confirm the write ({err.details() or err.code()}): "
                "it is not acknowledged; etcd may still apply it once its quorum is back, and "
                "the watch then brings it into memory"
            ) from err
        raise AssertionError("unreachable: tenacity returns or raises")

    async def _attempt(self, compare: list[Any], success: list[Any]) -> Any:
        assert self.client
        self._committing = True  # the watch holds what it sees until we know our revision
        try:
            return await self.client.txn(compare, success, [], wait_s=ATTEMPT_TIMEOUT)
        except BaseException:
            self._release_held()
            raise

    def _release_held(self, before: int | None = None) -> None:
        """Apply the revisions the watch held during a commit (those below `before`)."""
        if before is None:
            self._committing = False
        held, self._held = self._held, []
        for events in held:
            if before is not None and events[0].kv.mod_revision >= before:
                self._held.append(events)
            else:
                self._apply_revision(events, force=True)

    def _apply_own(
        self, revision: int, latest: dict[bytes, tuple[Put | Delete, bytes]], ops: list[Op]
    ) -> None:
        if revision <= self._revision:
            return  # the watch delivered this revision first
        for key, (op, value) in latest.items():
            if isinstance(op, Put):
                self._mirror_put(key, value)
            else:
                self._mirror_delete(key)
        seqs = [op.seq for op in ops if isinstance(op, EventRow)]
        if seqs:
            self._last_seq = max(self._last_seq, *seqs)
        self._committed(revision, ops)

    def _object_key(self, kind: str, key: str) -> bytes:
        if "/" in kind or not kind:
            raise ValueError(f"kind {kind!r}: a store kind is a plain name")
        return self._objects + f"{kind}/{key}".encode()

    def _event_key(self, seq: int) -> bytes:
        return self._events + f"{seq:020d}".encode()


def _resendable(err: BaseException) -> bool:
    """etcd did not answer, or answered that it could not confirm (no leader, timed out)."""
    return isinstance(err, grpc.aio.AioRpcError) and err.code() in RESEND


def _leads(fence: Fence | None) -> bool:
    return fence is None or fence.is_leader


def _too_large(details: str | None) -> bool:
    text = details or ""
    return "too many operations in txn request" in text or "request is too large" in text


def _event_value(op: EventRow) -> bytes:
    """An event as stored; refused (the whole batch with it) when a field is missing or of
    the wrong type, as SQLite's NOT NULL columns refuse it in the other backend."""
    texts = (op.cluster, op.kind, op.subject, op.message)
    if (
        not isinstance(op.seq, int)
        or not isinstance(op.at, int | float)
        or not all(isinstance(t, str) for t in texts)
        or not isinstance(op.detail, dict)
    ):
        raise ValueError(f"event {op.seq!r}: seq, at, texts and detail must all be set")
    row = [op.seq, op.at, *texts, op.detail]
    return dumps(row).encode()


def _event(value: bytes) -> EventRow:
    seq, at, cluster, kind, subject, message, detail = orjson.loads(value)
    return EventRow(seq, at, cluster, kind, subject, message, detail)
