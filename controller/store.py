"""The embedded state store: SQLite (WAL), with group commit (the `sqlite` Store backend).

It implements `controller.store_api.Store` (read that for the promises); this is the only
module that imports sqlite3 or aiosqlite (an import-linter contract says so).

Every object is a JSON document under (kind, key). `write()` returns once the batch holding
the write is committed, so an API acknowledges only what is durable; one writer task drains
the queue and commits everything pending in one transaction, in one call to the writer's
own thread, each statement taking its rows as one JSON array (one GIL hand-over per
statement, not per row). Reads go through aiosqlite, on a second connection (WAL lets
readers and the writer proceed together).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import orjson

from controller.records import Delete, EventRow, Op, Put, dumps
from controller.store_api import StoreBusy, Unwatch, Watcher

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    cluster TEXT NOT NULL DEFAULT '',
    doc TEXT NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    cluster TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    message TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS events_subject ON events (subject, seq);
"""

MAX_BATCH = 5000
# batch statements over a JSON array of rows (see SqliteStore._commit)
PUT_ROWS = (
    "INSERT INTO objects (kind, key, cluster, doc) "
    "SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each(?) WHERE true "
    "ON CONFLICT (kind, key) DO UPDATE SET doc = excluded.doc, cluster = excluded.cluster"
)
DELETE_ROWS = (
    "DELETE FROM objects WHERE (kind, key) IN (SELECT value ->> 0, value ->> 1 FROM json_each(?))"
)
EVENT_ROWS = (
    "INSERT OR REPLACE INTO events (seq, at, cluster, kind, subject, message, detail) "
    "SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, "
    "value ->> 6 FROM json_each(?)"
)


LOCK_FILE = "dockyard.lock"


__all__ = ["Delete", "EventRow", "Op", "Put", "SqliteStore", "StoreBusy"]


class SqliteStore:
    """The `sqlite` backend: one database file in the data dir, one writer per data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "dockyard.db"
        self._revision = 0  # batches committed since open: one writer, so a local counter
        self._watchers: list[Watcher] = []
        self._db: aiosqlite.Connection | None = None
        self._writer_db: sqlite3.Connection | None = None
        self._writer_thread = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        self._queue: asyncio.Queue[tuple[list[Op], asyncio.Future[None]]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._lock_fd: int | None = None

    @property
    def data_dir(self) -> Path:
        return self.path.parent

    @property
    def location(self) -> str:
        return f"the database in {self.path.parent}"

    @property
    def revision(self) -> int:
        return self._revision

    def watch(self, callback: Watcher) -> Unwatch:
        """Call back after each commit of this process (the only writer of its data dir)."""
        self._watchers.append(callback)
        return lambda: self._watchers.remove(callback)

    async def open(self, exclusive: bool = False) -> None:
        """Open the store. Controllers share the data dir's lock; `exclusive` (offline
        maintenance such as re-sealing its secrets) refuses while any controller has it."""
        self._private_files()
        self._lock(exclusive)
        self._db = await aiosqlite.connect(self.path)
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._db.executescript(SCHEMA)
        await self._db.commit()
        self._writer_db = await self._in_writer(_connect_writer, self.path)
        self._writer = asyncio.create_task(self._write_loop(), name="store-writer")

    def _private_files(self) -> None:
        """The store holds role keys and secrets: data dir 0700, database files 0600."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.path.parent, 0o700)
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        for suffix in ("", "-wal", "-shm"):  # SQLite gives -wal/-shm the db file's mode
            path = self.path.with_name(self.path.name + suffix)
            if path.exists():
                os.chmod(path, 0o600)

    def _lock(self, exclusive: bool) -> None:
        path = self.path.with_name(LOCK_FILE)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreBusy(
                f"{self.path.parent} is in use: "
                + ("stop its controller first" if exclusive else "a maintenance command has it")
            ) from None
        self._lock_fd = fd

    async def close(self) -> None:
        if self._writer:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        if self._writer_db:
            await self._in_writer(self._writer_db.close)
            self._writer_db = None
        self._writer_thread.shutdown(wait=False)
        if self._db:
            await self._db.close()
            self._db = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None

    async def _in_writer(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn in the writer's thread: the writer connection is only ever used there."""
        return await asyncio.get_running_loop().run_in_executor(self._writer_thread, fn, *args)

    async def load(self, kind: str) -> list[dict[str, Any]]:
        assert self._db
        async with self._db.execute("SELECT doc FROM objects WHERE kind = ?", (kind,)) as cur:
            return [orjson.loads(row[0]) async for row in cur]

    async def load_rows(self, kind: str) -> list[tuple[str, str, dict[str, Any]]]:
        """(key, cluster, document) of every object of `kind`."""
        assert self._db
        sql = "SELECT key, cluster, doc FROM objects WHERE kind = ?"
        async with self._db.execute(sql, (kind,)) as cur:
            return [(row[0], row[1], orjson.loads(row[2])) async for row in cur]

    async def scrub(self) -> None:
        """Rewrite the database and empty its WAL, so that no page of old content (values
        just sealed, or sealed under a retired key) survives in either file."""
        assert self._writer_db
        await self._in_writer(_scrub, self._writer_db)

    async def erase(self) -> None:
        """Every object and event deleted in one transaction (restore's clean slate)."""
        assert self._writer_db
        statements = [("DELETE FROM objects WHERE ? IS NOT NULL", "[]")]
        statements.append(("DELETE FROM events WHERE ? IS NOT NULL", "[]"))
        await self._in_writer(_transaction, self._writer_db, statements)
        self._committed([])

    async def snapshot_to(self, dest_dir: Path) -> SqliteStore:
        """A consistent copy of the database (SQLite's online backup API, safe while a
        controller writes to it) as a new store in `dest_dir`, not yet opened."""
        copy = SqliteStore(dest_dir)
        await asyncio.to_thread(_backup_database, self.path, copy.path)
        return copy

    async def load_events(
        self, subject: str = "", cluster: str = "", after: int = 0, limit: int = 1000
    ) -> list[EventRow]:
        assert self._db
        sql = "SELECT * FROM events WHERE seq > ?"
        args: list[object] = [after]
        if subject:
            sql, args = sql + " AND subject = ?", [*args, subject]
        if cluster:
            sql, args = sql + " AND cluster = ?", [*args, cluster]
        sql += " ORDER BY seq DESC LIMIT ?"
        async with self._db.execute(sql, (*args, limit)) as cur:
            rows = [
                EventRow(r[0], r[1], r[2], r[3], r[4], r[5], orjson.loads(r[6])) async for r in cur
            ]
        return rows[::-1]

    async def last_event_seq(self) -> int:
        assert self._db
        async with self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    def write(self, ops: list[Op]) -> asyncio.Future[None]:
        """Queue ops; the future resolves once they are committed (or fails with the error)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not ops:
            fut.set_result(None)
        else:
            self._queue.put_nowait((ops, fut))
        return fut

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < MAX_BATCH:
                batch.append(self._queue.get_nowait())
            committed = [op for ops, _ in batch for op in ops]
            try:
                await self._commit(committed)
            except Exception as err:  # a failed commit fails every write in the batch
                log.exception("store commit failed")
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(err)
                continue
            self._committed(committed)
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)

    def _committed(self, ops: list[Op]) -> None:
        self._revision += 1
        for callback in list(self._watchers):
            try:
                callback(self._revision, ops)
            except Exception:  # a watcher's bug must not fail the writes that were committed
                log.exception("store watcher failed")

    async def _commit(self, ops: list[Op]) -> None:
        """One transaction for a batch, in one round trip to the writer's thread. Beside a
        busy event loop each round trip costs a loop turn and a GIL hand-over: executemany
        (a hand-over per row) took 11-45 s for a 4,000-row batch, a statement per call
        (aiosqlite's API) about 1 s per batch of 10,000 writes, one call per batch half that."""
        assert self._writer_db
        latest: dict[tuple[str, str], Put | Delete] = {}  # per key, only the last op counts
        events = []
        for op in ops:
            if isinstance(op, Put | Delete):
                latest.pop((op.kind, op.key), None)  # re-insert: keep the batch's order
                latest[(op.kind, op.key)] = op
            else:
                row = (op.seq, op.at, op.cluster, op.kind, op.subject, op.message)
                events.append((*row, dumps(op.detail)))
        puts = [
            (op.kind, op.key, op.cluster, op.encoded())
            for op in latest.values()
            if isinstance(op, Put)
        ]
        deletes = [(op.kind, op.key) for op in latest.values() if isinstance(op, Delete)]
        statements = [
            (sql, dumps(rows))
            for sql, rows in ((PUT_ROWS, puts), (DELETE_ROWS, deletes), (EVENT_ROWS, events))
            if rows
        ]
        await self._in_writer(_transaction, self._writer_db, statements)


def _connect_writer(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False)
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def _backup_database(source: Path, dest: Path) -> None:
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    src = sqlite3.connect(source)
    try:
        dst = sqlite3.connect(dest)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


def _scrub(db: sqlite3.Connection) -> None:
    _checkpoint(db)
    db.execute("VACUUM")
    _checkpoint(db)


def _checkpoint(db: sqlite3.Connection) -> None:
    """Copy the WAL into the database and truncate it to 0 bytes (fails if a reader blocks)."""
    busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy:
        raise sqlite3.OperationalError("WAL checkpoint blocked by a reader: WAL not emptied")


def _transaction(db: sqlite3.Connection, statements: list[tuple[str, str]]) -> None:
    """The statements in one transaction (runs in the writer's thread)."""
    with db:  # commits, or rolls back on error
        for sql, rows in statements:
            db.execute(sql, (rows,))
