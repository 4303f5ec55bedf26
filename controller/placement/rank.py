"""Ranking: the order in which feasible instances take a demand's tasks (Nomad's rank.go).

Strategies are chained: the best instance is the lexicographic minimum of (strategy 1 score,
strategy 2 score, ..., random). binpack scores the remaining cpu/memory; spread scores the
number of tasks of the demand's group in the instance's bucket (instanceId and host: the
instance; attribute:NAME: all instances with that value, instances without the attribute
sharing one bucket of their own, so they stay usable - strategies are best effort).

Ranking is a tree: leading spread(attribute) strategies become bucket levels (a heap of buckets
keyed by count), the rest a heap of instances, with lazy revalidation - a pick only raises
other entries' scores, so a stale entry is an underestimate and is refreshed when it reaches
the top. Each pick costs O(log n), not a scan. Scores read the call's counts (feasible.Call),
so they follow the tasks the call has already placed.
"""

from __future__ import annotations

import heapq
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from .feasible import TIE_BITS, Call
from .model import InstanceView, Strategy, TaskDemand
from .strategies import ATTRIBUTE_PREFIX, BINPACK, RANDOM, SPREAD

_INDEX_BITS = 24  # instance index bits (16M instances)
_INDEX_MASK = (1 << _INDEX_BITS) - 1
_SCORE_SHIFT = TIE_BITS + _INDEX_BITS
_LOW_MASK = (1 << _SCORE_SHIFT) - 1
_COMPONENT_BITS = 40  # one strategy's score inside a packed chain score


class Node:
    def key(self) -> Any:
        """The best member's score (None when empty); stale entries are refreshed here."""
        raise NotImplementedError

    def pick(self) -> int:
        """The best member; call key() first."""
        raise NotImplementedError

    def update(self, i: int, still_feasible: bool) -> None:
        """Instance i (a member) was just given a task."""
        raise NotImplementedError

    def sync(self, i: int, feasible: bool) -> None:
        """Instance i (a member or not) changed outside the call: re-rank or drop it."""
        raise NotImplementedError


class _RandomLeaf(Node):
    """Members all tie on the chain: pick uniformly at random."""

    def __init__(self, members: list[int], rng: random.Random) -> None:
        self.members = members
        self.rng = rng
        self._pos: dict[int, int] | None = None  # member -> position, built on first sync

    def key(self) -> int | None:
        return 0 if self.members else None

    def pick(self) -> int:
        return self.members[self.rng.randrange(len(self.members))]

    def update(self, i: int, still_feasible: bool) -> None:
        if not still_feasible:
            self._remove(i)

    def sync(self, i: int, feasible: bool) -> None:
        pos = self._positions()
        if not feasible:
            self._remove(i)
        elif i not in pos:
            pos[i] = len(self.members)
            self.members.append(i)

    def _positions(self) -> dict[int, int]:
        if self._pos is None:
            self._pos = {i: n for n, i in enumerate(self.members)}
        return self._pos

    def _remove(self, i: int) -> None:
        """Swap-remove; the position map is built lazily (a single call rarely removes)."""
        pos, members = self._pos, self.members
        n = pos.pop(i, None) if pos is not None else (members.index(i) if i in members else None)
        if n is None:
            return
        last = members.pop()
        if n < len(members):
            members[n] = last
            if pos is not None:
                pos[last] = n


class _Leaf(Node):
    """A heap of packed ints `score | random tie-break | index`, lazily revalidated."""

    def __init__(
        self, entries: list[int], score: Callable[[int], int], rng: random.Random, volatile: bool
    ) -> None:
        heapq.heapify(entries)
        self.heap = entries
        self.score = score
        self.bits = rng.getrandbits
        self.volatile = volatile  # unpicked members' scores can rise (a later attribute spread)
        self.current: dict[int, int] = {}  # instance -> its one live entry, once re-scored
        self._compacted_size = len(entries)

    def key(self) -> int | None:
        heap, current = self.heap, self.current
        while heap:
            entry = heap[0]
            i = entry & _INDEX_MASK
            live = current.get(i)
            if live is not None and live != entry:
                heapq.heappop(heap)
                continue
            if self.volatile:
                score = self.score(i)
                if score != entry >> _SCORE_SHIFT:
                    fresh = (score << _SCORE_SHIFT) | (entry & _LOW_MASK)
                    current[i] = fresh
                    heapq.heapreplace(heap, fresh)
                    continue
            return entry >> _SCORE_SHIFT
        return None

    def pick(self) -> int:
        return self.heap[0] & _INDEX_MASK

    def update(self, i: int, still_feasible: bool) -> None:
        if still_feasible:
            entry = _entry(self.score(i), self.bits(TIE_BITS), i)
            self.current[i] = entry
            heapq.heappush(self.heap, entry)
        else:
            self.current[i] = -1

    def sync(self, i: int, feasible: bool) -> None:
        self.update(i, feasible)
        if len(self.heap) > 2 * self._compacted_size + 64:
            self._compact()

    def _compact(self) -> None:
        """Drop superseded entries, which a standing tree accumulates one per sync."""
        current = self.current
        live = [e for e in self.heap if current.get(e & _INDEX_MASK, e) == e]
        heapq.heapify(live)
        self.heap = live
        self.current = {i: e for i, e in current.items() if e != -1}
        self._compacted_size = len(live)


class Buckets(Node):
    """spread(attribute:NAME) as a level: a heap of buckets keyed by (tasks, best child score)."""

    def __init__(
        self,
        attr: str,
        children: dict[str | None, Node],
        counts: dict[str | None, int],
        views: Sequence[InstanceView],
        rng: random.Random,
        make_child: Callable[[], Node],
    ) -> None:
        self.attr = attr
        self.children = children
        self.counts = counts
        self.views = views
        self.rng = rng
        self.make_child = make_child  # an empty subtree, for a value first seen by sync()
        self.heap: list[tuple[int, Any, float, int, str | None]] = []
        self.reheap()

    def reheap(self) -> None:
        """Rebuild this level's heap (and the levels below) from the current counts: between
        calls counts can fall (tasks stop), which the lazy refresh in key() cannot see."""
        heap = []
        for seq, (value, child) in enumerate(self.children.items()):
            if isinstance(child, Buckets):
                child.reheap()
            ck = child.key()
            if ck is not None:
                heap.append((self.counts.get(value, 0), ck, self.rng.random(), seq, value))
        heapq.heapify(heap)
        self.heap = heap

    def key(self) -> tuple[int, Any] | None:
        heap = self.heap
        while heap:
            count, ck, tb, seq, value = heap[0]
            current_ck = self.children[value].key()
            if current_ck is None:
                heapq.heappop(heap)
                continue
            current = self.counts.get(value, 0)
            if current != count or current_ck != ck:
                heapq.heapreplace(heap, (current, current_ck, tb, seq, value))
                continue
            return (count, ck)
        return None

    def pick(self) -> int:
        return self.children[self.heap[0][4]].pick()

    def update(self, i: int, still_feasible: bool) -> None:
        self.children[self.views[i].attributes.get(self.attr)].update(i, still_feasible)

    def sync(self, i: int, feasible: bool) -> None:
        value = self.views[i].attributes.get(self.attr)
        child = self.children.get(value)
        if child is None:
            if not feasible:
                return
            child = self.children[value] = self.make_child()
        child.sync(i, feasible)  # the caller reheaps once all changes are in


def _entry(score: int, tie: int, i: int) -> int:
    return (score << _SCORE_SHIFT) | (tie << _INDEX_BITS) | i


class Scorer:
    """One strategy's per-instance score (lower is better), singly and in bulk."""

    def __init__(
        self, one: Callable[[int], int], bulk: Callable[[list[int]], list[int]] | None
    ) -> None:
        self.one = one
        self._bulk = bulk  # a faster form valid while the call has no deltas

    def bulk(self, members: list[int], has_deltas: bool) -> list[int]:
        if self._bulk is None or has_deltas:
            one = self.one
            return [one(i) for i in members]
        return self._bulk(members)


def build_tree(
    call: Call, demand: TaskDemand, members: list[int], chain: list[Strategy], count: int | None
) -> Node:
    """The ranking tree over `members`; count=None keeps every member (a standing tree)."""
    levels, rest = split_chain(chain)
    scorers = [strategy_scorer(call, demand, s) for s in rest]
    return _build_level(call, demand, members, levels, (scorers, volatile_leaves(rest), count))


def split_chain(chain: list[Strategy]) -> tuple[list[str], list[Strategy]]:
    """The leading spread(attribute) names (bucket levels) and the strategies scored in leaves."""
    levels: list[str] = []
    for s in chain:
        if s.type != SPREAD or not s.field.startswith(ATTRIBUTE_PREFIX):
            break
        levels.append(s.field[len(ATTRIBUTE_PREFIX) :])
    rest = chain[len(levels) :]
    while rest and rest[-1].type == RANDOM:
        rest = rest[:-1]  # a trailing random adds nothing to the random tie-break
    return levels, rest


def volatile_leaves(rest: list[Strategy]) -> bool:
    """Whether an unpicked member's leaf score can change (a spread(attribute) after another
    strategy counts tasks on other instances of its bucket)."""
    return any(s.type == SPREAD and s.field.startswith(ATTRIBUTE_PREFIX) for s in rest)


def _build_level(
    call: Call,
    demand: TaskDemand,
    members: list[int],
    levels: list[str],
    leaf_spec: tuple[list[Scorer], bool, int | None],
) -> Node:
    if not levels:
        return _make_leaf(call, members, *leaf_spec)
    attr = levels[0]
    parts: dict[str | None, list[int]] = defaultdict(list)
    views = call.views
    for i in members:
        parts[views[i].attributes.get(attr)].append(i)
    children = {
        value: _build_level(call, demand, part, levels[1:], leaf_spec)
        for value, part in parts.items()
    }
    counts = call.bucket_counts(demand.group, attr)

    def make_child() -> Node:
        return _build_level(call, demand, [], levels[1:], leaf_spec)

    return Buckets(attr, children, counts, views, call.rng, make_child)


def _make_leaf(
    call: Call, members: list[int], scorers: list[Scorer], volatile: bool, count: int | None
) -> Node:
    if not scorers:
        return _RandomLeaf(members, call.rng)
    has_deltas = bool(call.deltas)
    scores = scorers[0].bulk(members, has_deltas)
    for scorer in scorers[1:]:
        more = scorer.bulk(members, has_deltas)
        scores = [(a << _COMPONENT_BITS) | b for a, b in zip(scores, more, strict=True)]
    bits = call.rng.getrandbits
    entries = [
        (s << _SCORE_SHIFT) | (bits(TIE_BITS) << _INDEX_BITS) | i
        for s, i in zip(scores, members, strict=True)
    ]
    if not volatile and count is not None and len(entries) > count:
        # An unpicked member's score never changes and each pick takes the current best, so
        # the group's `count` picks all come from the best `count` entries: keep only those.
        entries = heapq.nsmallest(count, entries)
    return _Leaf(entries, pack_scores([s.one for s in scorers]), call.rng, volatile)


def pack_scores(parts: list[Callable[[int], int]]) -> Callable[[int], int]:
    if len(parts) == 1:
        return parts[0]

    def packed(i: int) -> int:
        score = 0
        for part in parts:
            score = (score << _COMPONENT_BITS) | part(i)
        return score

    return packed


def strategy_scorer(call: Call, demand: TaskDemand, s: Strategy) -> Scorer:
    """A per-instance score for one strategy: lower is better, a non-negative int."""
    views, deltas = call.views, call.deltas
    if s.type == BINPACK and s.field == "cpu":
        return Scorer(
            lambda i: views[i].cpu_free - (deltas[i].cpu if i in deltas else 0),
            lambda ms: [views[i].cpu_free for i in ms],
        )
    if s.type == BINPACK:
        return Scorer(
            lambda i: views[i].memory_free - (deltas[i].memory if i in deltas else 0),
            lambda ms: [views[i].memory_free for i in ms],
        )
    if s.type == RANDOM:
        return Scorer(call.random_of, None)
    group = demand.group
    if s.field in ("instanceId", "host"):
        if group:
            bulk = lambda ms: [views[i].task_groups.get(group, 0) for i in ms]  # noqa: E731
        else:
            bulk = lambda ms: [views[i].running_tasks_count for i in ms]  # noqa: E731
        return Scorer(lambda i: call.group_count(i, group), bulk)
    attr = s.field[len(ATTRIBUTE_PREFIX) :]
    counts = call.bucket_counts(group, attr)

    def by_bucket(i: int) -> int:
        return counts.get(views[i].attributes.get(attr), 0)

    return Scorer(by_bucket, None)
