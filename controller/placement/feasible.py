"""Feasibility: which instances can take a demand, within one place() call's view.

The filters run in ECS's order (FILTER_ORDER), like Nomad's feasibility chain
(scheduler/feasible.go):

1. candidates: status ACTIVE (else DRAINING / INACTIVE) and agent connected (else AGENT);
2. resources: cpu, memory, static tcp/udp host ports, enough free ephemeral ports for the
   `hostPort: 0` mappings (RESOURCE:CPU / RESOURCE:MEMORY / RESOURCE:PORTS / RESOURCE:PORTS_UDP);
3. constraints: memberOf (ATTRIBUTE, or MissingAttribute when the expression names an attribute
   the instance lacks), then distinctInstance (DistinctInstance).

A `Call` is the consistent view of one decision: the caller's snapshots plus private deltas, so
later demands see the resources, ports and group counts taken by earlier ones (the views
themselves are never changed). It also keeps the counts the rankers read (rank.py) and explains
a failure: one diagnostic pass classifies every instance by the first filter it fails;
Failure.reason is the furthest filter reached (the "closest match", as ECS reports it) and
Failure.detail lists all counts.
"""

from __future__ import annotations

import functools
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from . import model
from .constraints import Rules
from .model import Failure, InstanceView, Placement, TaskDemand

FILTER_ORDER = (
    model.MISSING,
    model.INACTIVE,
    model.DRAINING,
    model.AGENT,
    model.CPU,
    model.MEMORY,
    model.GPU,
    model.PORTS,
    model.PORTS_UDP,
    model.MISSING_ATTRIBUTE,
    model.ATTRIBUTE,
    model.DISTINCT_INSTANCE,
)
TIE_BITS = 24  # random tie-break bits (rank.py packs them into heap entries)
_EMPTY: frozenset[int] = frozenset()
_RANK = {reason: n for n, reason in enumerate(FILTER_ORDER)}


class _Delta:
    """What this call has taken from one instance so far."""

    __slots__ = ("cpu", "gpus", "groups", "memory", "tasks", "tcp", "udp")

    def __init__(self) -> None:
        self.cpu = 0
        self.memory = 0
        self.gpus = 0
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


class Call:
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
            demand.gpus,
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
        if demand.gpus:
            caps.append((v.gpu_free - (d.gpus if d else 0)) // demand.gpus)
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
        if demand.gpus and v.gpu_free - (d.gpus if d else 0) < demand.gpus:
            return model.GPU
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
            score = self.random_score[i] = self.rng.getrandbits(TIE_BITS)
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
        d.gpus += demand.gpus
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
        if counts.keys() & {model.ATTRIBUTE, model.MISSING_ATTRIBUTE}:  # say which: the
            # task's own memberOf, or one a definition implies (an agent's policy, issue 18)
            detail += "; memberOf " + " and ".join(str(e) for e in self.rules.member_of)
        return Failure(ordered[-1], detail, dict(counts))


# ----------------------------------------------------------------------------- bulk filter


@functools.lru_cache(maxsize=256)
def _scanner(
    rules: Rules, static_ports: bool, dyn_tcp: bool, dyn_udp: bool, distinct: bool, gpus: int = 0
) -> Callable[..., list[int]]:
    """Generate the bulk filter for one kind of demand: a single list comprehension, with the
    memberOf expressions inlined, run once per group of identical demands."""
    ns: dict[str, Any] = {}
    conds = ["v.memory_free >= mem", "v.cpu_free >= cpu", "v.connected", "v.status == 'ACTIVE'"]
    if gpus:
        conds.append(f"v.gpu_free >= {int(gpus)}")
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
