"""An in-memory Store (controller/store_api.py), for unit tests of the interface's users.

It keeps its contents per data dir in a module-level dict, so a "restarted" store on the same
dir sees what an earlier one committed, as a real backend would. It is a fake: no file, no
lock across processes; it exists to show that the state and the operations work against any
backend that keeps the interface's promises (tests/test_store_api.py checks it keeps them).
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from controller.records import Delete, EventRow, Op, Put
from controller.store_api import Unwatch, Watcher


@dataclass
class _Contents:
    objects: dict[tuple[str, str], tuple[str, dict[str, Any]]] = field(default_factory=dict)
    events: dict[int, EventRow] = field(default_factory=dict)
    revision: int = 0


_DIRS: dict[Path, _Contents] = {}


class MemoryStore:
    def __init__(self, data_dir: Path) -> None:
        self._dir = Path(data_dir)
        self._watchers: list[Watcher] = []
        self.loads: list[str] = []  # kinds read, in order: what the tests count

    @property
    def data_dir(self) -> Path:
        return self._dir

    @property
    def location(self) -> str:
        return f"the in-memory store of {self._dir}"

    @property
    def revision(self) -> int:
        return self._contents.revision

    @property
    def _contents(self) -> _Contents:
        return _DIRS.setdefault(self._dir, _Contents())

    async def open(self, exclusive: bool = False) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)

    async def close(self) -> None:
        self._watchers.clear()

    async def load(self, kind: str) -> list[dict[str, Any]]:
        return [doc for _, _, doc in await self.load_rows(kind)]

    async def load_rows(self, kind: str) -> list[tuple[str, str, dict[str, Any]]]:
        self.loads.append(kind)
        return [
            (key, cluster, copy.deepcopy(doc))
            for (k, key), (cluster, doc) in self._contents.objects.items()
            if k == kind
        ]

    def write(self, ops: list[Op]) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            staged = self._staged(ops)
        except (TypeError, ValueError) as err:  # nothing of a failed batch is kept
            fut.set_exception(err)
            return fut
        self._contents.objects, self._contents.events = staged
        if ops:
            self._contents.revision += 1
            for callback in list(self._watchers):
                callback(self._contents.revision, ops)
        fut.set_result(None)
        return fut

    def _staged(self, ops: list[Op]) -> tuple[dict[Any, Any], dict[int, EventRow]]:
        """The contents after `ops`, built aside (documents copied through JSON, as stored)."""
        objects, events = dict(self._contents.objects), dict(self._contents.events)
        for op in ops:
            if isinstance(op, Put):
                objects[(op.kind, op.key)] = (op.cluster, _json(op.encoded()))
            elif isinstance(op, Delete):
                objects.pop((op.kind, op.key), None)
            else:
                if not isinstance(op.at, float | int):
                    raise TypeError(f"event {op.seq}: no time")
                events[op.seq] = copy.deepcopy(op)
        return objects, events

    async def load_events(
        self, subject: str = "", cluster: str = "", after: int = 0, limit: int = 1000
    ) -> list[EventRow]:
        rows = [
            e
            for seq, e in sorted(self._contents.events.items())
            if seq > after
            and (not subject or e.subject == subject)
            and (not cluster or e.cluster == cluster)
        ]
        return rows[-limit:]

    async def last_event_seq(self) -> int:
        return max(self._contents.events, default=0)

    async def erase(self) -> None:
        self._contents.objects, self._contents.events = {}, {}
        self._contents.revision += 1

    async def scrub(self) -> None:
        """Nothing old is kept: documents are replaced, not versioned."""

    def watch(self, callback: Watcher) -> Unwatch:
        self._watchers.append(callback)
        return lambda: self._watchers.remove(callback)


def _json(text: str) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(text)
    return doc
