"""The Store interface: what a state-store backend must do (SQLite today, etcd next).

The controller keeps its state of record in memory and commits every change to a Store as a
batch of records (`controller.records`: `Put`, `Delete`, `EventRow`). Nothing outside a
backend's module knows which backend it is: operations, the state and its loader use only
this interface, and `controller.store_factory.open_store` picks the backend from the
`--store` setting (`sqlite`, the default: `controller.store.SqliteStore`).

A backend promises:
- **Durable acknowledgement.** `write(ops)` returns an awaitable that resolves only once
  every op of the batch is committed (it survives a crash of this process), and raises if
  the commit failed. A failed batch writes nothing: its ops are all stored or none is.
  Batches are applied in the order `write` was called; within a batch, the last op on a
  (kind, key) wins. A backend may group several callers' batches into one commit (SQLite's
  group commit does); a failure then fails each of them, and none is stored.
- **Documents come back as written.** `load_rows(kind)` returns every object of a kind as
  `(key, cluster, document)`, the document being the JSON a `Put` wrote (`Put.document()`).
- **Events** are appended in the same batches as the changes they describe (an `EventRow`
  in `write`'s ops), so an event is stored if and only if its change is. `load_events`
  reads them back by sequence number, `last_event_seq` tells where numbering resumes.
- **Revisions and watch** (for replicated backends). `revision` counts committed batches:
  it grows by at least one per commit and never goes back. `watch(callback)` calls
  `callback(revision, ops)` on the event loop after each commit, in commit order, with
  the ops that commit stored. A replicated backend (etcd) must also deliver batches that
  another controller committed (a follower applies them to its hot copy) and may start
  from a past revision; SQLite has one writer per data dir, so its revision is a counter
  of this process's commits and its watch delivers only what this process wrote.
- **Scrub.** `scrub()` rewrites the storage so that no earlier version of a value (a
  secret sealed under a retired key, say) remains readable in its files (SQLite: VACUUM
  and an emptied WAL; etcd: compaction and defragmentation).
- **Erase.** `erase()` removes every object and event in one commit (`dockyard restore
  --force` empties a store before restoring into it; a failed restore empties it again).
- **Locking.** `open()` takes the data dir's shared lock (several controllers of one
  replicated store may share it); `open(exclusive=True)`, for offline maintenance such as
  re-sealing secrets, raises `StoreBusy` while any controller has it. `close()` releases
  everything and is safe to call after a failed or partial `open()`.

To add a backend: a class with these methods in its own module (the only one that may
import its client library; see the import-linter contract in pyproject.toml), a branch in
`controller.store_factory.open_store`, and the contract tests in tests/test_store_api.py
run against it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from controller.records import Delete, EventRow, Op, Put

__all__ = ["Delete", "EventRow", "Op", "Put", "Store", "StoreBusy", "Unwatch", "Watcher"]

Watcher = Callable[[int, list[Op]], None]
"""Called with (revision, ops) after each committed batch; must only note work and return."""
Unwatch = Callable[[], None]


class StoreBusy(Exception):
    """The data dir is in use by another process in a way that excludes this one."""


@runtime_checkable
class Store(Protocol):
    """A state-store backend. Every method runs on the controller's event loop."""

    @property
    def data_dir(self) -> Path:
        """This controller's local directory (its lock; the database, for SQLite)."""
        ...

    @property
    def location(self) -> str:
        """Where the state is, for operators' messages ("the database in /var/lib/...")."""
        ...

    @property
    def revision(self) -> int:
        """The revision of the last committed batch (0: nothing committed yet)."""
        ...

    async def open(self, exclusive: bool = False) -> None:
        """Connect and lock (`exclusive`: offline maintenance; raises StoreBusy if in use)."""
        ...

    async def close(self) -> None:
        """Stop writing, disconnect, release the lock; safe after a failed open."""
        ...

    async def load(self, kind: str) -> list[dict[str, Any]]:
        """The document of every object of `kind`."""
        ...

    async def load_rows(self, kind: str) -> list[tuple[str, str, dict[str, Any]]]:
        """(key, cluster, document) of every object of `kind`."""
        ...

    def write(self, ops: list[Op]) -> Awaitable[None]:
        """Commit `ops` (Put, Delete, EventRow) atomically; resolves once durable."""
        ...

    async def load_events(
        self, subject: str = "", cluster: str = "", after: int = 0, limit: int = 1000
    ) -> list[EventRow]:
        """Events with seq > `after` (of a subject and/or cluster when given), oldest first,
        the newest `limit` of them."""
        ...

    async def last_event_seq(self) -> int:
        """The highest event seq stored (0: none)."""
        ...

    async def scrub(self) -> None:
        """Leave no earlier version of any value readable in the storage."""
        ...

    async def erase(self) -> None:
        """Remove every object and every event, in one commit (restore's clean slate)."""
        ...

    def watch(self, callback: Watcher) -> Unwatch:
        """Call `callback(revision, ops)` after each commit; returns the unsubscribe. May be
        called before `open()` (the state of record watches from its construction)."""
        ...
