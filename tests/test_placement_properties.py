"""Property-based tests of placement over random clusters, task mixes and query expressions.

Each property is checked against an oracle written here, independently of the engine.
"""

from __future__ import annotations

import itertools
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.placement import (
    Constraint,
    Failure,
    InstanceView,
    Placement,
    Strategy,
    TaskDemand,
    parse,
    place,
)

PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RANGE = (50000, 50005)  # a small ephemeral range, so dynamic ports run out in examples
DAY0 = datetime(2024, 1, 1, tzinfo=UTC)

# ----------------------------------------------------------------------------- memberOf

ZONES = ["a", "b", "c"]
NUMBERS = ["0", "1", "2", "10", "1.5"]
VERSIONS = ["1.9.0", "1.14.5", "1.14", "2.0.1"]
GROUPS = ["g1", "g2", "g3"]
DATES = ["2024-01-01", "2024-01-02", "2024-01-03"]
PATTERNS = ["a.*", "[ab]", "1.*", "g[12]", ".*", "i-[0-2]"]
ATTRS = {"zone": [*ZONES, "a b"], "cores": NUMBERS, "ver": VERSIONS}
SUBJECT_OPS = {
    "attribute": ["==", "!=", ">", ">=", "<", "<=", "exists", "!exists", "in", "!in", "=~", "!~"],
    "agentConnected": ["==", "!=", "in", "!in"],
    "agentVersion": ["==", "!=", ">", ">=", "<", "<="],
    "instanceId": ["==", "!=", "in", "!in", "=~", "!~"],
    "registeredAt": ["==", "!=", ">", ">=", "<", "<="],
    "runningTasksCount": ["==", "!=", ">", ">=", "<", "<="],
    "task:group": ["==", "!=", "in", "!in", "=~", "!~", "exists", "!exists"],
}
BARE = re.compile(r"[^\s()\[\],'\"=!<>&|]+")  # what the language accepts unquoted
WORDS = {"==": "equals", "!=": "not_equals", ">": "greater_than", ">=": "greater_than_equal"}
WORDS |= {"<": "less_than", "<=": "less_than_equal", "!exists": "not_exists", "!in": "not_in"}
WORDS |= {"=~": "matches", "!~": "not_matches", "exists": "exists", "in": "in"}


def values_for(subject: str, name: str) -> list[str]:
    return {
        "attribute": ATTRS.get(name, ZONES),
        "agentConnected": ["true", "false"],
        "agentVersion": VERSIONS,
        "instanceId": ["i-0", "i-1", "i-2"],
        "registeredAt": DATES,
        "runningTasksCount": ["0", "1", "2"],
        "task:group": GROUPS,
    }[subject]


@st.composite
def comparisons(draw: st.DrawFn) -> tuple[Any, ...]:
    subject = draw(st.sampled_from(sorted(SUBJECT_OPS)))
    name = draw(st.sampled_from(sorted(ATTRS))) if subject == "attribute" else ""
    op = draw(st.sampled_from(SUBJECT_OPS[subject]))
    if op in ("exists", "!exists"):
        args: tuple[str, ...] = ()
    elif op in ("=~", "!~"):
        args = (draw(st.sampled_from(PATTERNS)),)
    elif op in ("in", "!in"):
        pool = values_for(subject, name)
        args = tuple(draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3)))
    else:
        args = (draw(st.sampled_from(values_for(subject, name))),)
    return ("cmp", subject, name, op, args)


trees = st.recursive(
    comparisons(),
    lambda inner: st.one_of(
        st.tuples(st.just("not"), inner),
        st.tuples(st.sampled_from(["and", "or"]), st.lists(inner, min_size=2, max_size=3)),
    ),
    max_leaves=6,
)


def render(tree: tuple[Any, ...], rnd: random.Random) -> str:
    """Write a tree the way a person might: symbols or words, any case, optional quotes."""
    kind = tree[0]
    if kind == "not":
        return rnd.choice(["!", "not ", "NOT "]) + "(" + render(tree[1], rnd) + ")"
    if kind in ("and", "or"):
        joiner = rnd.choice({"and": [" && ", " and ", " AND "], "or": [" || ", " or "]}[kind])
        return joiner.join("(" + render(t, rnd) + ")" for t in tree[1])
    _, subject, name, op, args = tree
    subj = f"attribute:{name}" if subject == "attribute" else subject
    if subject == "instanceId" and rnd.random() < 0.5:
        subj = "ec2InstanceId"
    op_text = WORDS[op] if rnd.random() < 0.3 else op
    if op in ("!exists", "!in") and op_text == op and rnd.random() < 0.5:
        op_text = "! " + op[1:]
    quoted = [a if BARE.fullmatch(a) and rnd.random() < 0.7 else f"'{a}'" for a in args]
    if op in ("in", "!in"):
        opener, closer = rnd.choice([("[", "]"), ("(", ")")])
        return f"{subj} {op_text} {opener}{', '.join(quoted)}{closer}"
    return f"{subj} {op_text} {quoted[0]}".rstrip() if args else f"{subj} {op_text}"


def _num(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        return None


def _ver(s: str) -> tuple[int, ...] | None:
    if not re.fullmatch(r"\d+(\.\d+)*", s):
        return None
    parts = [int(p) for p in s.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _order(a: Any, b: Any, op: str) -> bool:
    return {"==": a == b, ">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b}[op]


def reference(tree: tuple[Any, ...], v: InstanceView) -> bool:
    """The documented semantics, written plainly (negative operators negate positive ones)."""
    kind = tree[0]
    if kind == "not":
        return not reference(tree[1], v)
    if kind == "and":
        return all(reference(t, v) for t in tree[1])
    if kind == "or":
        return any(reference(t, v) for t in tree[1])
    _, subject, name, op, args = tree
    negate = {"!=": "==", "!in": "in", "!~": "=~", "!exists": "exists"}
    if op in negate:
        return not reference(("cmp", subject, name, negate[op], args), v)
    if subject == "task:group":
        running = {g for g, c in v.task_groups.items() if c > 0}
        if op == "exists":
            return bool(running)
        if op == "=~":
            return any(re.fullmatch(args[0], g) for g in running)
        return any(a in running for a in args)
    value: Any = {
        "attribute": v.attributes.get(name),
        "agentConnected": str(v.connected).lower(),
        "agentVersion": v.agent_version,
        "instanceId": v.instance_id,
        "registeredAt": v.registered_at,
        "runningTasksCount": v.running_tasks_count,
    }[subject]
    if op == "exists":
        return value is not None
    if value is None:
        return False
    if op == "=~":
        return re.fullmatch(args[0], str(value)) is not None
    if op == "in":
        return any(reference(("cmp", subject, name, "==", (a,)), v) for a in args)
    arg = args[0]
    if subject == "registeredAt":
        start = datetime.fromisoformat(arg).replace(tzinfo=UTC).timestamp()
        end = start + 86400
        return {"==": start <= value < end, ">": value >= end, ">=": value >= start}.get(
            op, value < start if op == "<" else value < end
        )
    if subject == "runningTasksCount":
        return _order(value, float(arg), op)
    if subject == "agentVersion" and _ver(value) and _ver(arg):
        return _order(_ver(value), _ver(arg), op)
    if _num(value) is not None and _num(arg) is not None:
        return _order(_num(value), _num(arg), op)
    return _order(value, arg, op)


@st.composite
def views(draw: st.DrawFn, n: int = 0) -> InstanceView:
    attrs = {k: draw(st.sampled_from(vs)) for k, vs in ATTRS.items() if draw(st.booleans())}
    groups = {g: draw(st.integers(0, 2)) for g in GROUPS if draw(st.booleans())}
    return InstanceView(
        arn=f"arn:ci/{n}",
        instance_id=draw(st.sampled_from(["i-0", "i-1", "i-2", "i-9"])),
        status="ACTIVE",
        connected=draw(st.booleans()),
        attributes=attrs,
        agent_version=draw(st.sampled_from(VERSIONS)),
        registered_at=(DAY0 + timedelta(hours=draw(st.integers(0, 71)))).timestamp(),
        cpu_free=1024,
        memory_free=1024,
        tcp_ports_used=set(),
        udp_ports_used=set(),
        running_tasks_count=draw(st.integers(0, 3)),
        task_groups=groups,
    )


@PROPERTY
@given(trees, st.lists(views(), min_size=1, max_size=4), st.randoms(use_true_random=False))
def test_member_of_round_trips_and_agrees_with_the_reference(
    tree: tuple[Any, ...], instances: list[InstanceView], rnd: random.Random
) -> None:
    text = render(tree, rnd)
    ast = parse(text)
    assert parse(str(ast)) == ast, (text, str(ast))
    for v in instances:
        assert ast.evaluate(v) is reference(tree, v), (text, v)


# ----------------------------------------------------------------------------- placement


@st.composite
def clusters(draw: st.DrawFn) -> list[InstanceView]:
    out = []
    for n in range(draw(st.integers(1, 6))):
        groups = {g: 1 for g in ("g1", "g2") if draw(st.integers(0, 3)) == 0}
        zone = draw(st.sampled_from(["a", "b", "c", None]))
        out.append(
            InstanceView(
                arn=f"arn:ci/{n}",
                instance_id=f"i{n}",
                status=draw(st.sampled_from(["ACTIVE"] * 4 + ["DRAINING", "INACTIVE"])),
                connected=draw(st.integers(0, 5)) > 0,
                attributes={"zone": zone} if zone else {},
                agent_version=draw(st.sampled_from(VERSIONS)),
                registered_at=0.0,
                cpu_free=draw(st.integers(0, 8)) * 128,
                memory_free=draw(st.integers(0, 8)) * 128,
                tcp_ports_used=set(draw(st.lists(st.sampled_from([22, 80, 81, 50000, 50003])))),
                udp_ports_used=set(draw(st.lists(st.sampled_from([53, 50001])))),
                running_tasks_count=len(groups),
                task_groups=groups,
            )
        )
    return out


demand_shapes = st.builds(
    TaskDemand,
    cpu=st.integers(0, 4).map(lambda k: k * 128),
    memory=st.integers(0, 4).map(lambda k: k * 128),
    tcp_ports=st.lists(st.sampled_from([80, 81]), max_size=1),
    udp_ports=st.lists(st.just(53), max_size=1),
    dynamic_tcp=st.integers(0, 2),
    dynamic_udp=st.integers(0, 1),
    group=st.sampled_from(["g1", "g2", ""]),
)
STATIC_RULES = [
    "attribute:zone != c",
    "attribute:zone in [a, b]",
    "attribute:zone exists",
    "agentVersion >= 1.14",
    "!(attribute:zone == a) || agentVersion < 2",
]
chains = st.lists(
    st.sampled_from(
        [
            Strategy("binpack", "cpu"),
            Strategy("binpack", "memory"),
            Strategy("spread", "instanceId"),
            Strategy("spread", "attribute:zone"),
            Strategy("random"),
        ]
    ),
    max_size=3,
)


@dataclass
class Used:
    cpu: int = 0
    memory: int = 0


def fits(
    v: InstanceView,
    used: Used,
    ports: dict[str, set[int]],
    d: TaskDemand,
    rules: list[Constraint],
    placed_groups: Counter[str],
) -> bool:
    """Could demand d go on v given what the call already put there?"""
    if v.status != "ACTIVE" or not v.connected:
        return False
    if v.cpu_free - used.cpu < d.cpu or v.memory_free - used.memory < d.memory:
        return False
    for proto, static, dyn in (
        ("tcp", d.tcp_ports, d.dynamic_tcp),
        ("udp", d.udp_ports, d.dynamic_udp),
    ):
        taken = ports[proto]
        if any(p in taken for p in static):
            return False
        free = [p for p in range(RANGE[0], RANGE[1] + 1) if p not in taken and p not in static]
        if len(free) < dyn:
            return False
    for c in rules:
        if c.type == "memberOf" and not parse(c.expression).evaluate(v):
            return False
        if c.type == "distinctInstance":
            before = v.task_groups.get(d.group, 0) if d.group else 0
            if before + placed_groups[d.group] > 0:
                return False
    return True


@PROPERTY
@given(
    clusters(),
    st.lists(demand_shapes, min_size=1, max_size=3),
    st.lists(st.integers(0, 2), min_size=1, max_size=10),
    st.booleans(),
    st.sampled_from([None, *STATIC_RULES]),
    chains,
    st.integers(0, 2**32),
)
def test_no_overcommit_no_distinct_violation_and_failures_are_real(
    cluster: list[InstanceView],
    shapes: list[TaskDemand],
    picks: list[int],
    distinct: bool,
    rule: str | None,
    chain: list[Strategy],
    seed: int,
) -> None:
    demands = [shapes[k % len(shapes)] for k in picks]
    constraints = [Constraint("distinctInstance")] if distinct else []
    if rule:
        constraints.append(Constraint("memberOf", rule))
    results = place(demands, cluster, constraints, chain, random.Random(seed), RANGE)
    assert len(results) == len(demands)
    by_arn = {v.arn: v for v in cluster}
    used: dict[str, Used] = defaultdict(Used)
    ports = {v.arn: {"tcp": set(v.tcp_ports_used), "udp": set(v.udp_ports_used)} for v in cluster}
    groups: dict[str, Counter[str]] = defaultdict(Counter)
    for d, r in zip(demands, results, strict=True):  # replay placements in order
        if isinstance(r, Failure):
            continue
        v = by_arn[r.instance_arn]
        assert v.status == "ACTIVE" and v.connected
        assert all(parse(c.expression).evaluate(v) for c in constraints if c.type == "memberOf")
        u = used[v.arn]
        u.cpu += d.cpu
        u.memory += d.memory
        assert u.cpu <= v.cpu_free and u.memory <= v.memory_free
        for proto, static, dyn in (
            ("tcp", d.tcp_ports, r.tcp_host_ports),
            ("udp", d.udp_ports, r.udp_host_ports),
        ):
            assert len(dyn) == (d.dynamic_tcp if proto == "tcp" else d.dynamic_udp)
            assert all(RANGE[0] <= p <= RANGE[1] for p in dyn)
            mine = list(static) + list(dyn)
            assert len(set(mine)) == len(mine)
            assert not set(mine) & ports[v.arn][proto], (proto, mine, ports[v.arn][proto])
            ports[v.arn][proto].update(mine)
        if distinct:
            before = v.task_groups.get(d.group, 0) if d.group else 0
            assert before == 0 and groups[v.arn][d.group] == 0
        groups[v.arn][d.group] += 1
    for d, r in zip(demands, results, strict=True):  # state only shrinks: failures stay real
        if isinstance(r, Failure):
            assert r.reason and str(sum(r.counts.values())) in r.detail
            assert not any(
                fits(v, used[v.arn], ports[v.arn], d, constraints, groups[v.arn]) for v in cluster
            )


def ample(n: int, zone: str | None) -> InstanceView:
    return InstanceView(
        arn=f"arn:ci/{n}",
        instance_id=f"i{n}",
        status="ACTIVE",
        connected=True,
        attributes={"zone": zone} if zone else {},
        agent_version="1",
        registered_at=0.0,
        cpu_free=100_000,
        memory_free=100_000,
        tcp_ports_used=set(),
        udp_ports_used=set(),
        running_tasks_count=0,
        task_groups={"other": 1},
    )


@PROPERTY
@given(
    st.lists(st.sampled_from(["a", "b", "c", "d", None]), min_size=1, max_size=8),
    st.integers(1, 30),
    st.sampled_from([[], [Strategy("binpack", "memory")], [Strategy("spread", "instanceId")]]),
    st.integers(0, 2**32),
)
def test_spread_keeps_counts_per_value_within_one(
    zones: list[str | None], count: int, tail: list[Strategy], seed: int
) -> None:
    cluster = [ample(n, z) for n, z in enumerate(zones)]
    demand = TaskDemand(cpu=10, memory=10, group="service:s")
    chain = [Strategy("spread", "attribute:zone"), *tail]
    results = place([demand] * count, cluster, [], chain, random.Random(seed))
    assert all(isinstance(r, Placement) for r in results)
    zone_of = {v.arn: v.attributes.get("zone") for v in cluster}
    per_zone = Counter(zone_of[r.instance_arn] for r in results if isinstance(r, Placement))
    counts = [per_zone.get(z, 0) for z in set(zones)]
    assert max(counts) - min(counts) <= 1, per_zone
    results = place(
        [demand] * count, cluster, [], [Strategy("spread", "instanceId")], random.Random(seed)
    )
    per_instance = Counter(r.instance_arn for r in results if isinstance(r, Placement))
    counts = [per_instance.get(v.arn, 0) for v in cluster]
    assert max(counts) - min(counts) <= 1


@PROPERTY
@given(
    st.lists(st.integers(1, 6), min_size=1, max_size=4),
    st.integers(1, 8),
    st.sampled_from([100, 200]),
    st.integers(0, 2**32),
)
def test_binpack_uses_no_more_instances_than_a_brute_force_oracle(
    free: list[int], count: int, size: int, seed: int
) -> None:
    cluster = [ample(n, None) for n in range(len(free))]
    for v, units in zip(cluster, free, strict=True):
        v.memory_free = units * 100
    demand = TaskDemand(cpu=1, memory=size)
    results = place(
        [demand] * count, cluster, [], [Strategy("binpack", "memory")], random.Random(seed)
    )
    placed = [r.instance_arn for r in results if isinstance(r, Placement)]
    caps = [v.memory_free // size for v in cluster]
    assert len(placed) == min(count, sum(caps))  # nothing that fits is refused
    fewest = next(
        k
        for k in range(len(cluster) + 1)
        if any(sum(c) >= len(placed) for c in itertools.combinations(caps, k))
    )
    assert len(set(placed)) <= fewest
