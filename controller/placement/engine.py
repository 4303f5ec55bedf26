"""One placement decision: feasibility (feasible.py), then ranking (rank.py, binpack.py).

`place` runs ECS's order for every demand of a call against one consistent view (a
feasible.Call): the filters keep the instances that can take the demand, then a ranking tree
(or, for a batch led by binpack, a packing plan) picks among them, committing each pick to the
call so later demands see what earlier ones took.

Identical demands are grouped (SwarmKit) so the filters run once per group. Failure reasons are
counted only when a demand cannot be placed (feasible.Call.failure).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from .binpack import binpack_plan
from .constraints import compile_rules, validate_constraints
from .feasible import FILTER_ORDER, Call
from .model import Constraint, Failure, InstanceView, Placement, Strategy, TaskDemand
from .rank import Node, build_tree
from .strategies import BINPACK, DEFAULT_TASK_STRATEGIES, validate_strategies

__all__ = ["DEFAULT_EPHEMERAL_RANGE", "FILTER_ORDER", "Result", "place", "take", "validate"]

DEFAULT_EPHEMERAL_RANGE = (49153, 65535)

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
    call = Call(instances, rules, rng, ephemeral_range)
    results: list[Result | None] = [None] * len(demands)
    groups: dict[tuple[object, ...], list[int]] = {}
    for n, demand in enumerate(demands):
        groups.setdefault(demand.shape(), []).append(n)
    for positions in groups.values():
        outcome = _place_group(call, demands[positions[0]], len(positions), chain)
        for pos, res in zip(positions, outcome, strict=True):
            results[pos] = res
    return [r for r in results if r is not None]


def _place_group(call: Call, demand: TaskDemand, count: int, chain: list[Strategy]) -> list[Result]:
    members = call.feasible(demand)
    out: list[Result] = []
    if members and count > 1 and chain[0].type == BINPACK and not call.rules.dynamic:
        for i in binpack_plan(call, demand, members, count, chain):
            if call.reject(i, demand) is not None:
                break  # cannot happen: capacities follow the same filters; the tree takes over
            out.append(call.commit(i, demand))
        if len(out) == count:
            return out
        members = call.feasible(demand)
    root = build_tree(call, demand, members, chain, count - len(out)) if members else None
    return out + take(call, root, demand, count - len(out))


def take(call: Call, root: Node | None, demand: TaskDemand, count: int) -> list[Result]:
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
