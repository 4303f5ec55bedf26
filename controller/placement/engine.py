"""One placement decision: filters (Nomad's feasibility chain), then a ranking tree.

`place` runs ECS's order for every demand of a call against one consistent view:

1. candidates: status ACTIVE (else DRAINING / INACTIVE) and agent connected (else AGENT);
2. resources: cpu, memory, static tcp/udp host ports, enough free ephemeral ports for the
   `hostPort: 0` mappings (RESOURCE:CPU / RESOURCE:MEMORY / RESOURCE:PORTS / RESOURCE:PORTS_UDP);
3. constraints: memberOf (ATTRIBUTE, or MissingAttribute when the expression names an attribute
   the instance lacks), then distinctInstance (DistinctInstance);
4. strategies, chained: the best instance is the lexicographic minimum of
   (strategy 1 score, strategy 2 score, ..., random). binpack scores the remaining cpu/memory;
   spread scores the number of tasks of the demand's group in the instance's bucket (instanceId
   and host: the instance; attribute:NAME: all instances with that value, instances without the
   attribute sharing one bucket of their own, so they stay usable - strategies are best effort).

Identical demands are grouped (SwarmKit) so the filters run once per group; each commit updates
private deltas (never the caller's views) so later demands see the resources, ports and group
counts taken by earlier ones. Ranking is a tree: leading spread(attribute) strategies become
bucket levels (a heap of buckets keyed by count), the rest a heap of instances, with lazy
revalidation - a pick only raises other entries' scores, so a stale entry is an underestimate
and is refreshed when it reaches the top. Each pick costs O(log n), not a scan.

Failure reasons are counted only when a demand cannot be placed: one diagnostic pass classifies
every instance by the first filter it fails; Failure.reason is the furthest filter reached (the
"closest match", as ECS reports it) and Failure.detail lists all counts.
"""

from __future__ import annotations

import bisect
import functools
import heapq
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from . import model
from .constraints import Rules, compile_rules, validate_constraints
from .model import Constraint, Failure, InstanceView, Placement, Strategy, TaskDemand
from .strategies import (
    ATTRIBUTE_PREFIX,
    BINPACK,
    DEFAULT_TASK_STRATEGIES,
    RANDOM,
    SPREAD,
    validate_strategies,
)

DEFAULT_EPHEMERAL_RANGE = (49153, 65535)
FILTER_ORDER = (
    model.MISSING,
    model.INACTIVE,
    model.DRAINING,
    model.AGENT,
    model.CPU,
    model.MEMORY,
    model.PORTS,
    model.PORTS_UDP,
    model.MISSING_ATTRIBUTE,
    model.ATTRIBUTE,
    model.DISTINCT_INSTANCE,
)
_EMPTY: frozenset[int] = frozenset()
_TIE_BITS = 24  # random tie-break bits in a packed heap entry
_INDEX_BITS = 24  # instance index bits (16M instances)
_INDEX_MASK = (1 << _INDEX_BITS) - 1
_SCORE_SHIFT = _TIE_BITS + _INDEX_BITS
_LOW_MASK = (1 << _SCORE_SHIFT) - 1
_COMPONENT_BITS = 40  # one strategy's score inside a packed chain score
_RANK = {reason: n for n, reason in enumerate(FILTER_ORDER)}

Result = Placement | Failure


def validate(
    constraints: Sequence[Constraint],
    strategies: Sequence[Strategy],
    constraints_field: str = "placementConstraints",
    strategies_field: str = "placementStrategy",
) -> None:
    """Raise InvalidParameterException (field path, and offset for a bad expression)."""
    validate_constraints(constraints, constraints_field)
    validate_strategies(strategies, strategies_field)


def place(
    demands: Sequence[TaskDemand],
    instances: Sequence[InstanceView],
    constraints: Sequence[Constraint],
    strategies: Sequence[Strategy],
    rng: random.Random,
    ephemeral_range: tuple[int, int] = DEFAULT_EPHEMERAL_RANGE,
) -> list[Result]:
    """Place all demands as one decision; result i is demand i's Placement or Failure."""
    rules = compile_rules(constraints)
    chain = validate_strategies(strategies) if strategies else list(DEFAULT_TASK_STRATEGIES)
    call = _Call(instances, rules, rng, ephemeral_range)
    results: list[Result | None] = [None] * len(demands)
    groups: dict[tuple[object, ...], list[int]] = {}
    for n, demand in enumerate(demands):
        groups.setdefault(demand.shape(), []).append(n)
    for positions in groups.values():
        outcome = _place_group(call, demands[positions[0]], len(positions), chain)
        for pos, res in zip(positions, outcome, strict=True):
            results[pos] = res
    return [r for r in results if r is not None]


def _place_group(
    call: _Call, demand: TaskDemand, count: int, chain: list[Strategy]
) -> list[Result]:
    members = call.feasible(demand)
    out: list[Result] = []
    if members and count > 1 and chain[0].type == BINPACK and not call.rules.dynamic:
        for i in _binpack_plan(call, demand, members, count, chain):
            if call.reject(i, demand) is not None:
                break  # cannot happen: capacities follow the same filters; the tree takes over
            out.append(call.commit(i, demand))
        if len(out) == count:
            return out
        members = call.feasible(demand)
    root = _build_tree(call, demand, members, chain, count - len(out)) if members else None
    return out + take(call, root, demand, count - len(out))


def take(call: _Call, root: _Node | None, demand: TaskDemand, count: int) -> list[Result]:
    """Pick `count` instances from the ranking tree, committing each pick to the call."""
    out: list[Result] = []
    while len(out) < count:
        if root is None or root.key() is None:
            failure = call.failure(demand)
            out.extend([failure] * (count - len(out)))
            break
        i = root.pick()
        out.append(call.commit(i, demand))
        root.update(i, call.reject(i, demand) is None)
    return out


def _binpack_plan(
    call: _Call, demand: TaskDemand, members: list[int], count: int, chain: list[Strategy]
) -> list[int]:
    """A group led by binpack: the fewest instances that hold it, then ECS's order.

    Walk the members least-remaining first (ECS's binpack, later strategies breaking ties) and
    fill each one, but skip a member when taking it would leave more tasks than the fewest
    remaining instances can hold (a lookahead over the largest capacities). One task behaves
    exactly as ECS; a batch never spreads over more instances than it must.
    """
    scorers = [_scorer(call, demand, s) for s in chain if s.type != RANDOM]
    score = _pack([s.one for s in scorers])
    bits = call.rng.getrandbits
    order = sorted(members, key=lambda i: (score(i), bits(_TIE_BITS)))
    caps = {i: call.capacity(i, demand, count) for i in members}
    pool = sorted(caps.values())  # capacities of the members not considered yet
    left = min(count, sum(pool))
    needed, held = 0, 0
    for c in reversed(pool):
        if held >= left:
            break
        held += c
        needed += 1
    plan: list[int] = []
    for i in order:
        if not left:
            break
        cap = caps[i]
        del pool[bisect.bisect_left(pool, cap)]
        take = min(cap, left)
        if take < left and sum(pool[len(pool) - needed + 1 :] if needed > 1 else ()) < left - take:
            continue  # the rest could not be held by the fewest remaining instances
        plan.extend([i] * take)
        left -= take
        needed -= 1
    return plan


# ----------------------------------------------------------------------------- call state


class _Delta:
    """What this call has taken from one instance so far."""

    __slots__ = ("cpu", "groups", "memory", "tasks", "tcp", "udp")

    def __init__(self) -> None:
        self.cpu = 0
        self.memory = 0
        self.tasks = 0
        self.tcp: set[int] = set()
        self.udp: set[int] = set()
        self.groups: dict[str, int] = defaultdict(int)


class _Overlay:
    """An instance as a query sees it once this call's tasks are added (dynamic memberOf)."""

    __slots__ = (
        "agent_version",
        "attributes",
        "connected",
        "instance_id",
        "registered_at",
        "running_tasks_count",
        "task_groups",
    )

    def __init__(self, view: InstanceView, delta: _Delta) -> None:
        self.instance_id = view.instance_id
        self.connected = view.connected
        self.attributes = view.attributes
        self.agent_version = view.agent_version
        self.registered_at = view.registered_at
        self.running_tasks_count = view.running_tasks_count + delta.tasks
        groups = dict(view.task_groups)
        for g, c in delta.groups.items():
            groups[g] = groups.get(g, 0) + c
        self.task_groups = groups


class _Call:
    """The consistent view of one place() call: snapshots plus private deltas."""

    def __init__(
        self,
        views: Sequence[InstanceView],
        rules: Rules,
        rng: random.Random,
        ephemeral: tuple[int, int],
    ) -> None:
        self.views = views
        self.rules = rules
        self.rng = rng
        self.lo, self.hi = ephemeral
        self.deltas: dict[int, _Delta] = {}
        self.spread_counts: dict[tuple[str, str], dict[str | None, int]] = {}
        self.random_score: dict[int, int] = {}

    # -- filters

    def feasible(self, demand: TaskDemand) -> list[int]:
        """Indices passing every filter: one generated pass over untouched instances (memberOf
        inlined), full checks for the few instances this call has already given tasks."""
        size = self.hi - self.lo + 1
        scan = _scanner(
            self.rules,
            bool(demand.tcp_ports or demand.udp_ports),
            bool(demand.dynamic_tcp),
            bool(demand.dynamic_udp),
            self.rules.distinct and bool(demand.group),
        )
        idx = scan(
            self.views,
            demand.cpu,
            demand.memory,
            size - demand.dynamic_tcp,
            size - demand.dynamic_udp,
            demand.group,
            lambda v: self._base_ports_fit(v, demand),
        )
        deltas = self.deltas
        if not deltas:
            return idx
        touched = [i for i in deltas if self.reject(i, demand) is None]
        return [i for i in idx if i not in deltas] + touched

    def capacity(self, i: int, demand: TaskDemand, limit: int) -> int:
        """How many copies of the demand instance i can still take (at most `limit`)."""
        v, d = self.views[i], self.deltas.get(i)
        caps = [limit]
        if demand.cpu:
            caps.append((v.cpu_free - (d.cpu if d else 0)) // demand.cpu)
        if demand.memory:
            caps.append((v.memory_free - (d.memory if d else 0)) // demand.memory)
        if demand.tcp_ports or demand.udp_ports or self.rules.distinct:
            caps.append(1)
        for used, taken, need in (
            (v.tcp_ports_used, d.tcp if d else _EMPTY, demand.dynamic_tcp),
            (v.udp_ports_used, d.udp if d else _EMPTY, demand.dynamic_udp),
        ):
            if need:
                busy = sum(1 for p in used if self.lo <= p <= self.hi)
                busy += sum(1 for p in taken if self.lo <= p <= self.hi)
                caps.append((self.hi - self.lo + 1 - busy) // need)
        return max(0, min(caps))

    def _base_ports_fit(self, v: InstanceView, demand: TaskDemand) -> bool:
        return self._ports_fit(
            v.tcp_ports_used, _EMPTY, demand.tcp_ports, demand.dynamic_tcp
        ) and self._ports_fit(v.udp_ports_used, _EMPTY, demand.udp_ports, demand.dynamic_udp)

    def reject(self, i: int, demand: TaskDemand) -> str | None:
        """The first filter instance i fails for this demand, or None."""
        v = self.views[i]
        if v.status != "ACTIVE":
            return model.DRAINING if v.status == "DRAINING" else model.INACTIVE
        if not v.connected:
            return model.AGENT
        d = self.deltas.get(i)
        if v.cpu_free - (d.cpu if d else 0) < demand.cpu:
            return model.CPU
        if v.memory_free - (d.memory if d else 0) < demand.memory:
            return model.MEMORY
        reason = self._ports_reason(i, demand)
        if reason:
            return reason
        if self.rules.member_of:
            reason = self._member_reason(i)
            if reason:
                return reason
        if self.rules.distinct and self.group_count(i, demand.group, distinct=True) > 0:
            return model.DISTINCT_INSTANCE
        return None

    def _member_reason(self, i: int) -> str | None:
        d = self.deltas.get(i)
        view = self.views[i]
        if d is not None and self.rules.dynamic:
            return self.rules.member_reason(_Overlay(view, d))
        return self.rules.member_reason(view)

    def _ports_reason(self, i: int, demand: TaskDemand) -> str | None:
        v, d = self.views[i], self.deltas.get(i)
        tcp_taken, udp_taken = (d.tcp, d.udp) if d else (_EMPTY, _EMPTY)
        if not self._ports_fit(v.tcp_ports_used, tcp_taken, demand.tcp_ports, demand.dynamic_tcp):
            return model.PORTS
        if not self._ports_fit(v.udp_ports_used, udp_taken, demand.udp_ports, demand.dynamic_udp):
            return model.PORTS_UDP
        return None

    def _ports_fit(
        self, used: set[int], taken: set[int] | frozenset[int], static: list[int], dynamic: int
    ) -> bool:
        for p in static:
            if p in used or p in taken:
                return False
        if not dynamic:
            return True
        size = self.hi - self.lo + 1
        if size - len(used) - len(taken) - len(static) >= dynamic:
            return True  # fast path: even if every used port were in the range
        lo, hi = self.lo, self.hi
        busy = {p for p in used if lo <= p <= hi} | {p for p in taken if lo <= p <= hi}
        busy.update(p for p in static if lo <= p <= hi)
        return size - len(busy) >= dynamic

    # -- counts the strategies read

    def group_count(self, i: int, group: str, distinct: bool = False) -> int:
        """Tasks of `group` on instance i (all tasks when the group is empty, for spread)."""
        v, d = self.views[i], self.deltas.get(i)
        if group:
            return v.task_groups.get(group, 0) + (d.groups.get(group, 0) if d else 0)
        if distinct:  # ungrouped distinctInstance: only this call's ungrouped tasks
            return d.groups.get("", 0) if d else 0
        return v.running_tasks_count + (d.tasks if d else 0)

    def bucket_counts(self, group: str, attr: str) -> dict[str | None, int]:
        """Tasks of `group` per value of `attr` over the whole cluster, kept current by commit."""
        key = (group, attr)
        counts = self.spread_counts.get(key)
        if counts is None:
            counts = self.spread_counts[key] = defaultdict(int)
            views = self.views
            if group:
                for v in [v for v in views if group in v.task_groups]:
                    counts[v.attributes.get(attr)] += v.task_groups[group]
            else:
                for v in views:
                    counts[v.attributes.get(attr)] += v.running_tasks_count
            for i, d in self.deltas.items():
                n = d.groups.get(group, 0) if group else d.tasks
                counts[views[i].attributes.get(attr)] += n
        return counts

    def random_of(self, i: int) -> int:
        """A random score for `random` inside a chain, redrawn when the instance is picked."""
        score = self.random_score.get(i)
        if score is None:
            score = self.random_score[i] = self.rng.getrandbits(_TIE_BITS)
        return score

    # -- commit and explain

    def commit(self, i: int, demand: TaskDemand) -> Placement:
        """Take the demand's resources on instance i and choose its dynamic ports."""
        v = self.views[i]
        d = self.deltas.get(i)
        if d is None:
            d = self.deltas[i] = _Delta()
        d.cpu += demand.cpu
        d.memory += demand.memory
        d.tasks += 1
        d.groups[demand.group] += 1
        d.tcp.update(demand.tcp_ports)
        d.udp.update(demand.udp_ports)
        tcp = self._allocate(v.tcp_ports_used, d.tcp, demand.dynamic_tcp)
        udp = self._allocate(v.udp_ports_used, d.udp, demand.dynamic_udp)
        for (group, attr), counts in self.spread_counts.items():
            if group == demand.group:
                counts[v.attributes.get(attr)] += 1
        self.random_score.pop(i, None)
        return Placement(v.arn, tcp, udp)

    def _allocate(self, used: set[int], taken: set[int], count: int) -> list[int]:
        """The lowest free ports of the ephemeral range (feasibility guaranteed enough)."""
        ports: list[int] = []
        port = self.lo
        while len(ports) < count and port <= self.hi:
            if port not in used and port not in taken:
                ports.append(port)
                taken.add(port)
            port += 1
        return ports

    def failure(self, demand: TaskDemand) -> Failure:
        """Why no instance can take this demand now: counts per first failing filter."""
        if not self.views:
            return Failure(model.MISSING, "no container instances in the cluster", {})
        counts: dict[str, int] = defaultdict(int)
        for i in range(len(self.views)):
            counts[self.reject(i, demand) or "FITS"] += 1
        counts.pop("FITS", None)  # cannot happen when called after the tree emptied
        ordered = sorted(counts, key=_RANK.__getitem__)
        parts = ", ".join(f"{counts[r]} {r}" for r in ordered)
        total = len(self.views)
        detail = f"no container instance meets all requirements: {parts} ({total} instances)"
        return Failure(ordered[-1], detail, dict(counts))


# ----------------------------------------------------------------------------- bulk filter


@functools.lru_cache(maxsize=256)
def _scanner(
    rules: Rules, static_ports: bool, dyn_tcp: bool, dyn_udp: bool, distinct: bool
) -> Callable[..., list[int]]:
    """Generate the bulk filter for one kind of demand: a single list comprehension, with the
    memberOf expressions inlined, run once per group of identical demands."""
    ns: dict[str, Any] = {}
    conds = ["v.memory_free >= mem", "v.cpu_free >= cpu", "v.connected", "v.status == 'ACTIVE'"]
    if static_ports:
        conds.append("slow_ports(v)")
    else:  # fast path: enough free ephemeral ports even if every used port were in the range
        if dyn_tcp:
            conds.append("(len(v.tcp_ports_used) <= tcap or slow_ports(v))")
        if dyn_udp:
            conds.append("(len(v.udp_ports_used) <= ucap or slow_ports(v))")
    conds.extend(expr.source(ns) for expr in rules.member_of)
    if distinct:
        conds.append("not v.task_groups.get(group)")
    src = (
        "def scan(views, cpu, mem, tcap, ucap, group, slow_ports):\n"
        f"    return [i for i, v in enumerate(views) if {' and '.join(conds)}]\n"
    )
    exec(src, ns)  # the source holds only our names and repr()'d literals
    return ns["scan"]  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------- ranking tree


class _Node:
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


class _RandomLeaf(_Node):
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


class _Leaf(_Node):
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
            entry = _entry(self.score(i), self.bits(_TIE_BITS), i)
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


class _Buckets(_Node):
    """spread(attribute:NAME) as a level: a heap of buckets keyed by (tasks, best child score)."""

    def __init__(
        self,
        attr: str,
        children: dict[str | None, _Node],
        counts: dict[str | None, int],
        views: Sequence[InstanceView],
        rng: random.Random,
        make_child: Callable[[], _Node],
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
            if isinstance(child, _Buckets):
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


class _Scorer:
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


def _build_tree(
    call: _Call, demand: TaskDemand, members: list[int], chain: list[Strategy], count: int | None
) -> _Node:
    """The ranking tree over `members`; count=None keeps every member (a standing tree)."""
    levels, rest = split_chain(chain)
    scorers = [_scorer(call, demand, s) for s in rest]
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
    call: _Call,
    demand: TaskDemand,
    members: list[int],
    levels: list[str],
    leaf_spec: tuple[list[_Scorer], bool, int | None],
) -> _Node:
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

    def make_child() -> _Node:
        return _build_level(call, demand, [], levels[1:], leaf_spec)

    return _Buckets(attr, children, counts, views, call.rng, make_child)


def _make_leaf(
    call: _Call, members: list[int], scorers: list[_Scorer], volatile: bool, count: int | None
) -> _Node:
    if not scorers:
        return _RandomLeaf(members, call.rng)
    has_deltas = bool(call.deltas)
    scores = scorers[0].bulk(members, has_deltas)
    for scorer in scorers[1:]:
        more = scorer.bulk(members, has_deltas)
        scores = [(a << _COMPONENT_BITS) | b for a, b in zip(scores, more, strict=True)]
    bits = call.rng.getrandbits
    entries = [
        (s << _SCORE_SHIFT) | (bits(_TIE_BITS) << _INDEX_BITS) | i
        for s, i in zip(scores, members, strict=True)
    ]
    if not volatile and count is not None and len(entries) > count:
        # An unpicked member's score never changes and each pick takes the current best, so
        # the group's `count` picks all come from the best `count` entries: keep only those.
        entries = heapq.nsmallest(count, entries)
    return _Leaf(entries, _pack([s.one for s in scorers]), call.rng, volatile)


def _pack(parts: list[Callable[[int], int]]) -> Callable[[int], int]:
    if len(parts) == 1:
        return parts[0]

    def packed(i: int) -> int:
        score = 0
        for part in parts:
            score = (score << _COMPONENT_BITS) | part(i)
        return score

    return packed


def _scorer(call: _Call, demand: TaskDemand, s: Strategy) -> _Scorer:
    """A per-instance score for one strategy: lower is better, a non-negative int."""
    views, deltas = call.views, call.deltas
    if s.type == BINPACK and s.field == "cpu":
        return _Scorer(
            lambda i: views[i].cpu_free - (deltas[i].cpu if i in deltas else 0),
            lambda ms: [views[i].cpu_free for i in ms],
        )
    if s.type == BINPACK:
        return _Scorer(
            lambda i: views[i].memory_free - (deltas[i].memory if i in deltas else 0),
            lambda ms: [views[i].memory_free for i in ms],
        )
    if s.type == RANDOM:
        return _Scorer(call.random_of, None)
    group = demand.group
    if s.field in ("instanceId", "host"):
        if group:
            bulk = lambda ms: [views[i].task_groups.get(group, 0) for i in ms]  # noqa: E731
        else:
            bulk = lambda ms: [views[i].running_tasks_count for i in ms]  # noqa: E731
        return _Scorer(lambda i: call.group_count(i, group), bulk)
    attr = s.field[len(ATTRIBUTE_PREFIX) :]
    counts = call.bucket_counts(group, attr)

    def by_bucket(i: int) -> int:
        return counts.get(views[i].attributes.get(attr), 0)

    return _Scorer(by_bucket, None)
