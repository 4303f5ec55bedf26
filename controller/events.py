"""The event log: every task, instance and service change as a human line, newest last.

Events are numbered, written to the store in the same batches as the changes they describe,
kept in a ring for quick replay, and fanned out to watchers (`dockyard events -f`).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from controller.store_api import EventRow

RING = 20_000


@dataclass
class Watch:
    cluster: str
    subject: str
    queue: asyncio.Queue[EventRow]


class EventLog:
    def __init__(self, last_seq: int = 0) -> None:
        self.seq = last_seq
        self.recent: deque[EventRow] = deque(maxlen=RING)
        self._watches: list[Watch] = []

    def record(
        self,
        cluster: str,
        kind: str,
        subject: str,
        message: str,
        detail: dict[str, Any] | None = None,
    ) -> EventRow:
        """Make the next event; the caller writes it to the store with its change."""
        self.seq += 1
        row = EventRow(self.seq, time.time(), cluster, kind, subject, message, detail or {})
        self.recent.append(row)
        for w in self._watches:
            if (not w.cluster or w.cluster == cluster) and (not w.subject or w.subject == subject):
                if w.queue.qsize() < 10_000:  # a stuck watcher loses events, not memory
                    w.queue.put_nowait(row)
        return row

    async def follow(self, cluster: str, subject: str) -> AsyncIterator[EventRow]:
        w = Watch(cluster, subject, asyncio.Queue())
        self._watches.append(w)
        try:
            while True:
                yield await w.queue.get()
        finally:
            self._watches.remove(w)
