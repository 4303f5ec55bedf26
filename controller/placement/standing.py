"""Placement that keeps its work between calls, for a cluster's live views.

A RunTask of 10 tasks at 10,000 instances spent ~10 ms rebuilding the feasible set and the
ranking tree, only to take 10 instances from them. A standing decision keeps both for one
(views, demand, constraints, strategies) and, before each call, re-checks just the instances
whose views changed since the last one (the views' ChangeLog, written by ClusterState), so a
call costs O(changed + count log n) instead of O(n).

The fresh `place()` still decides where a tree cannot stand: snapshots that are not live,
short lists, several demand shapes at once, a binpack-led batch (its plan packs the whole
batch) and chains whose leaf scores move with other instances (a spread(attribute) that
follows another strategy). Both paths share the filters, the tree and the commit, so they
decide the same way; tests/test_placement_standing.py checks that they agree.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from .constraints import compile_rules
from .engine import DEFAULT_EPHEMERAL_RANGE, Result, place, take
from .feasible import Call
from .model import Constraint, LiveViews, Strategy, TaskDemand
from .rank import Buckets, Node, build_tree, split_chain, volatile_leaves
from .strategies import BINPACK, DEFAULT_TASK_STRATEGIES, validate_strategies

MIN_INSTANCES = 256  # below this a fresh decision is as cheap as keeping one


class StandingPlacer:
    """`place()` with standing trees for live views, an LRU of at most `size` of them."""

    def __init__(
        self,
        rng: random.Random,
        ephemeral: tuple[int, int] = DEFAULT_EPHEMERAL_RANGE,
        size: int = 32,
        min_instances: int = MIN_INSTANCES,
    ) -> None:
        self.rng = rng
        self.ephemeral = ephemeral
        self.size = size
        self.min_instances = min_instances
        self._trees: OrderedDict[tuple[Any, ...], _Standing] = OrderedDict()
        self.rebuilds = 0  # trees built (for tests and metrics)

    def place(
        self,
        demands: Sequence[TaskDemand],
        instances: Sequence[Any],
        constraints: Sequence[Constraint],
        strategies: Sequence[Strategy],
    ) -> list[Result]:
        chain = validate_strategies(strategies) if strategies else list(DEFAULT_TASK_STRATEGIES)
        if not self._can_stand(demands, instances, constraints, chain):
            return place(demands, instances, constraints, strategies, self.rng, self.ephemeral)
        assert isinstance(instances, LiveViews)
        demand = demands[0]
        key = (
            id(instances),
            demand.shape(),
            tuple((c.type, c.expression) for c in constraints),
            tuple((s.type, s.field) for s in chain),
        )
        tree = self._trees.get(key)
        if tree is None or tree.views is not instances or not tree.catch_up():
            tree = self._build(key, instances, demand, constraints, chain)
        self._trees.move_to_end(key)
        return tree.decide(len(demands))

    def _can_stand(
        self,
        demands: Sequence[TaskDemand],
        instances: Sequence[Any],
        constraints: Sequence[Constraint],
        chain: list[Strategy],
    ) -> bool:
        if not isinstance(instances, LiveViews) or len(instances) < self.min_instances:
            return False
        if not demands:
            return False
        if any(d.shape() != demands[0].shape() for d in demands[1:]):
            return False
        batch_plan = chain[0].type == BINPACK and len(demands) > 1
        if batch_plan and not compile_rules(constraints).dynamic:
            return False
        return not volatile_leaves(split_chain(chain)[1])

    def _build(
        self,
        key: tuple[Any, ...],
        views: LiveViews,
        demand: TaskDemand,
        constraints: Sequence[Constraint],
        chain: list[Strategy],
    ) -> _Standing:
        self.rebuilds += 1
        call = Call(views, compile_rules(constraints), self.rng, self.ephemeral)
        tree = self._trees[key] = _Standing(views, call, demand, chain)
        while len(self._trees) > self.size:
            self._trees.popitem(last=False)
        return tree


class _Standing:
    """One standing tree: its call (deltas empty between decisions), the cursor into the
    views' change log, and each instance's task count as the spread buckets last saw it."""

    def __init__(
        self, views: LiveViews, call: Call, demand: TaskDemand, chain: list[Strategy]
    ) -> None:
        self.views = views
        self.call = call
        self.demand = demand
        self.cursor = views.changes.cursor
        self.root: Node = build_tree(call, demand, call.feasible(demand), chain, None)
        self.seen = [call.group_count(i, demand.group) for i in range(len(views))]
        self.dirty: set[int] = set()

    def catch_up(self) -> bool:
        """Re-rank every instance that changed since the last decision; False when the
        change log no longer reaches back that far (the caller rebuilds)."""
        changed = self.views.changes.since(self.cursor)
        if changed is None:
            return False
        self.cursor = self.views.changes.cursor
        position = self.views.position
        dirty = self.dirty
        dirty.update(position[a] for a in changed if a in position)
        call, demand = self.call, self.demand
        for i in dirty:
            self._recount(i)
            self.root.sync(i, call.reject(i, demand) is None)
        dirty.clear()
        if isinstance(self.root, Buckets):
            self.root.reheap()
        return True

    def _recount(self, i: int) -> None:
        """Fold instance i's task count change into the spread buckets' counts."""
        now = self.call.group_count(i, self.demand.group)
        diff = now - self.seen[i]
        if diff:
            self.seen[i] = now
            value_of = self.views[i].attributes.get
            for (_, attr), counts in self.call.spread_counts.items():
                counts[value_of(attr)] += diff

    def decide(self, count: int) -> list[Result]:
        """Place `count` copies of the demand, then forget the call's own deltas: the state
        claims what was placed and the change log brings it back at the next catch_up."""
        call = self.call
        out = take(call, self.root, self.demand, count)
        for i, delta in call.deltas.items():
            value_of = self.views[i].attributes.get
            for (_, attr), counts in call.spread_counts.items():
                counts[value_of(attr)] -= delta.tasks
            self.dirty.add(i)  # re-ranked next time, whether or not the caller claimed it
        call.deltas.clear()
        return out
