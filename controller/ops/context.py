"""The narrow context the per-resource operation modules work over, built once at startup.

What an operation may touch: the state of record, the store (through `commit`), the event
log, ARNs, and the services' records. Nothing is attached afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controller.events import EventLog
    from controller.orchestrator.records import ServiceRecords
    from controller.state import ClusterState
    from controller.store import Op, Store
    from dockyard.arns import ArnFactory


@dataclass(frozen=True)
class OpsContext:
    store: Store
    state: ClusterState
    events: EventLog
    arns: ArnFactory
    services: ServiceRecords

    async def commit(self, ops: list[Op]) -> None:
        """Write `ops` in one transaction; returns once they are durable."""
        await self.store.write(ops)

    @property
    def event(self) -> Callable[..., Op]:
        """An event row (cluster, kind, subject, message, detail) for the same commit."""
        return self.events.record
