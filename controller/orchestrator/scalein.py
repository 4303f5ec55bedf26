"""Which tasks a scale-in stops, ECS's way (pure).

Tasks not yet running go first; then, one at a time, the task in the spread-attribute bucket
(zone) holding most of the service's tasks, and within it on the instance holding most;
ties go to the newest task, so long-running ones survive. Tasks under scale-in protection
(UpdateTaskProtection, or the task itself through the agent's endpoint) are never picked: the
service stays above its desired count until their protection expires or is removed.
"""

from __future__ import annotations

from collections import Counter

from controller.orchestrator.world import Member, Node


def pick(
    candidates: list[Member],
    peers: list[Member],
    nodes: dict[str, Node],
    count: int,
    now: float = 0.0,
) -> list[Member]:
    """Choose `count` of `candidates` to stop, keeping `peers` (all the service's live tasks)
    balanced across zones, then instances; never a task protected at `now`."""
    candidates = [m for m in candidates if not m.protected(now)]
    if count <= 0 or not candidates:
        return []  # every pass asks; counting the peers is the cost of a scale-in only

    def zone(m: Member) -> str:
        node = nodes.get(m.instance)
        return node.zone if node else ""

    zones = Counter(zone(m) for m in peers)
    hosts = Counter(m.instance for m in peers)
    pool = list(candidates)
    chosen: list[Member] = []
    for _ in range(max(0, min(count, len(pool)))):
        best = max(
            pool,
            key=lambda m: (not m.running, zones[zone(m)], hosts[m.instance], m.created_at, m.arn),
        )
        pool.remove(best)
        chosen.append(best)
        zones[zone(best)] -= 1
        hosts[best.instance] -= 1
    return chosen
