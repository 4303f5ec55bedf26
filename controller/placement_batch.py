"""Placement requests of one event-loop turn decided together (SwarmKit's scheduler tick).

Concurrent RunTask calls each used to run the whole feasibility scan. Requests that arrive in
the same loop turn and ask for the same thing (same instance list, demand shape, constraints
and strategies) now become one `place()` call, and each request gets its slice of the
results. Each request's `claim` callback runs (creating its tasks, claiming resources) before
the next group is placed, so no decision ever races another. Decisions over a cluster's live
views keep their feasibility and ranking work between batches (placement/standing.py).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from controller import placement
from controller.placement.model import Constraint, InstanceView, Strategy, TaskDemand
from controller.placement.standing import StandingPlacer

T = TypeVar("T")
Result = placement.Placement | placement.Failure


@dataclass
class _Request(Generic[T]):
    demand: TaskDemand
    count: int
    instances: Sequence[InstanceView]
    constraints: Sequence[Constraint]
    strategies: Sequence[Strategy]
    claim: Callable[[list[Result]], T]
    future: asyncio.Future[T]

    def key(self) -> tuple[Any, ...]:
        return (
            id(self.instances),
            self.demand.shape(),
            tuple((c.type, c.expression) for c in self.constraints),
            tuple((s.type, s.field) for s in self.strategies),
        )


class PlacementBatcher:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.placer = StandingPlacer(rng)
        self._pending: list[_Request[Any]] = []
        self.batches = 0  # decisions made (for metrics and tests)

    def submit(
        self,
        demand: TaskDemand,
        count: int,
        instances: Sequence[InstanceView],
        constraints: Sequence[Constraint],
        strategies: Sequence[Strategy],
        claim: Callable[[list[Result]], T],
    ) -> asyncio.Future[T]:
        """Queue a request; the future resolves to claim(results) within this loop turn."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._run)
        self._pending.append(
            _Request(demand, count, instances, constraints, strategies, claim, fut)
        )
        return fut

    def _run(self) -> None:
        pending, self._pending = self._pending, []
        groups: dict[tuple[Any, ...], list[_Request[Any]]] = {}
        for req in pending:
            groups.setdefault(req.key(), []).append(req)
        for reqs in groups.values():
            self._decide(reqs)

    def _decide(self, reqs: list[_Request[Any]]) -> None:
        first = reqs[0]
        self.batches += 1
        try:
            results = self.placer.place(
                [first.demand] * sum(r.count for r in reqs),
                first.instances,
                first.constraints,
                first.strategies,
            )
        except Exception as err:
            for r in reqs:
                r.future.set_exception(err)
            return
        start = 0
        for r in reqs:
            part, start = results[start : start + r.count], start + r.count
            try:
                r.future.set_result(r.claim(part))
            except Exception as err:
                r.future.set_exception(err)
