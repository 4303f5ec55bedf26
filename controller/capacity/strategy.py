"""ECS's capacity provider strategy, purely: how many of `count` tasks go to each provider.

As ECS documents: the one provider with a `base` gets up to `base` tasks first; the tasks
left are shared by `weight` (a relative share; a provider of weight 0 gets none beyond its
base). The tasks beyond the bases are shared by largest remainders (each provider within one
task of its exact share; weights 1 and 4 give 1 and 4 of 5 tasks), and a running service's
existing tasks (`already`) count toward the shares: new tasks go where shares fall short.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dockyard.errors import invalid

# the attribute an agent joins a provider's host group with (`dockyard agent --capacity-provider`)
PROVIDER_ATTRIBUTE = "dockyard.capacity-provider"
MAX_BASE = 100000
MAX_WEIGHT = 1000


@dataclass(frozen=True)
class Item:
    provider: str
    base: int = 0
    weight: int = 0


def parse(raw: Sequence[dict[str, Any]], field: str = "capacityProviderStrategy") -> list[Item]:
    """A request's strategy, checked as ECS checks it (fields named on refusal)."""
    items: list[Item] = []
    for i, entry in enumerate(raw):
        name = entry.get("capacityProvider")
        if not isinstance(name, str) or not name:
            raise invalid(f"{field}[{i}].capacityProvider", "is required")
        base, weight = entry.get("base", 0), entry.get("weight", 0)
        if not isinstance(base, int) or not 0 <= base <= MAX_BASE:
            raise invalid(f"{field}[{i}].base", f"must be from 0 to {MAX_BASE}")
        if not isinstance(weight, int) or not 0 <= weight <= MAX_WEIGHT:
            raise invalid(f"{field}[{i}].weight", f"must be from 0 to {MAX_WEIGHT}")
        if any(it.provider == name for it in items):
            raise invalid(f"{field}[{i}].capacityProvider", f"{name} is listed twice")
        items.append(Item(name, base, weight))
    if sum(1 for it in items if it.base) > 1:
        raise invalid(field, "only one capacity provider in a strategy can have a base")
    if items and not any(it.weight for it in items):
        raise invalid(field, "at least one capacity provider must have a weight over 0")
    return items


def split(
    items: Sequence[Item], count: int, already: Mapping[str, int] | None = None
) -> dict[str, int]:
    """New tasks per provider for `count` more tasks, given the tasks `already` placed."""
    have = {it.provider: (already or {}).get(it.provider, 0) for it in items}
    new = {it.provider: 0 for it in items}
    left = count
    for it in items:  # base first
        take = min(max(it.base - have[it.provider], 0), left)
        new[it.provider] += take
        left -= take
    weighted = [it for it in items if it.weight > 0]
    beyond = {
        it.provider: max(have[it.provider] + new[it.provider] - it.base, 0) for it in weighted
    }
    quota = _hamilton(weighted, sum(beyond.values()) + left)
    deficit = {p: max(quota[p] - beyond[p], 0) for p in quota}
    order = {it.provider: i for i, it in enumerate(items)}
    for _ in range(left):  # the provider furthest below its share gets the next task
        best = max(deficit, key=lambda p: (deficit[p], -order[p]))
        new[best] += 1
        deficit[best] -= 1
    return new


def _hamilton(items: Sequence[Item], total: int) -> dict[str, int]:
    """`total` shared by weight, largest remainders first: each within one of its quota."""
    weights = sum(it.weight for it in items)
    exact = {it.provider: total * it.weight / weights for it in items}
    out = {p: int(q) for p, q in exact.items()}
    rest = total - sum(out.values())
    for p in sorted(exact, key=lambda p: out[p] - exact[p])[:rest]:
        out[p] += 1
    return out
