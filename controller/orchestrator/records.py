"""The ECS services of the state of record: each by ARN, its lock, and what is stored.

Built once at startup, before the service layer and the orchestrator, and handed to both
(no attaching afterwards): the service layer counts a cluster's services and tags them, the
service operations create and update them, the orchestrator plans them. The dict itself is
the state's (`ClusterState.services`), so a Service is found where every other kind is.
"""

from __future__ import annotations

import asyncio
from typing import Any

from controller.orchestrator.model import Service, grace_from_tags, service_from_doc, to_doc
from controller.store import Op, Put, Store
from dockyard.arns import ArnFactory


class ServiceRecords:
    def __init__(self, store: Store, arns: ArnFactory, services: dict[str, Service]) -> None:
        self.store = store
        self.arns = arns
        self.services = services  # by ARN: the state's own dict
        self._locks: dict[str, asyncio.Lock] = {}  # per service ARN: see lock_for
        self._saved: dict[str, dict[str, Any]] = {}  # the last stored doc, by ARN

    async def load(self) -> None:
        for doc in await self.store.load("service"):
            svc = service_from_doc(doc)
            self.services[svc.arn] = svc
            self._saved[svc.arn] = doc

    def find(self, cluster: str, name: str) -> Service | None:
        return self.services.get(self.arns.service(cluster, name))

    def active_count(self, cluster: str) -> int:
        return sum(s.cluster == cluster and s.status != "INACTIVE" for s in self.services.values())

    def lock_for(self, arn: str) -> asyncio.Lock:
        """Serialises one service's plan-and-apply with API writes to that service. Writes
        to other services never wait for a pass (one global lock made an UpdateService wait
        seconds behind a pass that was starting thousands of another service's tasks)."""
        return self._locks.setdefault(arn, asyncio.Lock())

    async def save(self, svc: Service, *with_ops: Op) -> None:
        """Commit the service if it changed, in one transaction with `with_ops` (its event):
        each commit waits for the store's next group commit, so one is half the latency."""
        doc = to_doc(svc)
        changed = doc != self._saved.get(svc.arn)
        ops = [Put("service", svc.arn, svc.cluster, doc)] if changed else []
        if ops or with_ops:
            await self.store.write([*ops, *with_ops])
        if changed:
            self._saved[svc.arn] = doc

    async def set_tags(self, arn: str, tags: list[dict[str, str]]) -> None:
        """Tag/UntagResource on a service; its disconnect-grace tag takes effect at once."""
        grace = grace_from_tags(tags)  # refuses a bad value before anything changes
        async with self.lock_for(arn):
            svc = self.services[arn]
            svc.tags, svc.grace = tags, grace
            await self.save(svc)
