"""A batch led by binpack: the fewest instances that hold it, filled in ECS's order."""

from __future__ import annotations

import bisect

from .feasible import TIE_BITS, Call
from .model import Strategy, TaskDemand
from .rank import pack_scores, strategy_scorer
from .strategies import RANDOM


def binpack_plan(
    call: Call, demand: TaskDemand, members: list[int], count: int, chain: list[Strategy]
) -> list[int]:
    """A group led by binpack: the fewest instances that hold it, then ECS's order.

    Walk the members least-remaining first (ECS's binpack, later strategies breaking ties) and
    fill each one, but skip a member when taking it would leave more tasks than the fewest
    remaining instances can hold (a lookahead over the largest capacities). One task behaves
    exactly as ECS; a batch never spreads over more instances than it must.
    """
    scorers = [strategy_scorer(call, demand, s) for s in chain if s.type != RANDOM]
    score = pack_scores([s.one for s in scorers])
    bits = call.rng.getrandbits
    order = sorted(members, key=lambda i: (score(i), bits(TIE_BITS)))
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
