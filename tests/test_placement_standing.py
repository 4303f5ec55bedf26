"""Standing placement trees (controller/placement/standing.py) decide exactly as fresh ones.

The property test drives a cluster through random RunTask-like decisions, claims that are
sometimes dropped (a caller that fails after the decision) and task stops, and at every step
asks both the standing placer and a fresh `place()` over the same views. Memory is kept
unique per instance (distinct residues mod 1024, demands in multiples of 1024) so the chains
used have no ties and the two must pick the very same instances, ports and failures.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.bench_placement import add_instances
from controller.placement import engine
from controller.placement.model import (
    ChangeLog,
    Constraint,
    Failure,
    InstanceView,
    LiveViews,
    Placement,
    Strategy,
    TaskDemand,
)
from controller.placement.standing import StandingPlacer
from controller.server import Controller, ControllerConfig
from dockyard.v1 import agent_pb2

CHAINS = [
    [Strategy("binpack", "memory")],
    [Strategy("spread", "attribute:zone"), Strategy("binpack", "memory")],
    [Strategy("spread", "instanceId"), Strategy("binpack", "memory")],
    [
        Strategy("spread", "attribute:zone"),
        Strategy("spread", "attribute:rack"),
        Strategy("binpack", "memory"),
    ],
]
CONSTRAINTS = [
    [],
    [Constraint("memberOf", "attribute:zone != c")],
    [Constraint("distinctInstance")],
    [Constraint("memberOf", "task:group != web")],
]
DEMANDS = [
    TaskDemand(cpu=128, memory=1024, group="web"),
    TaskDemand(cpu=512, memory=4096, group="batch"),
    TaskDemand(cpu=0, memory=2048, dynamic_tcp=2, group="web"),
    TaskDemand(cpu=64, memory=1024, tcp_ports=[8080], group=""),
]


def make_views(n: int, rnd: random.Random) -> list[InstanceView]:
    views = []
    for i in range(n):
        zone = rnd.choice("abc")
        attrs = {"zone": zone} if rnd.random() > 0.1 else {}  # some lack the attribute
        if rnd.random() > 0.3:
            attrs["rack"] = rnd.choice(["r1", "r2"])
        views.append(
            InstanceView(
                arn=f"arn:i-{i}",
                instance_id=f"i-{i}",
                status="ACTIVE" if rnd.random() > 0.05 else "DRAINING",
                connected=rnd.random() > 0.05,
                attributes=attrs,
                agent_version="1",
                registered_at=0.0,
                cpu_free=rnd.choice([1024, 2048, 4096]),
                memory_free=1024 * rnd.randint(2, 24) + i,  # unique residue mod 1024
                tcp_ports_used={22},
                udp_ports_used=set(),
                running_tasks_count=0,
                task_groups={},
            )
        )
    return views


class Claims:
    """What ClusterState does with a decision, reduced to the views: claim, release, log."""

    def __init__(self, views: LiveViews) -> None:
        self.views = views
        self.held: list[tuple[int, TaskDemand, list[int]]] = []

    def claim(self, demand: TaskDemand, placement: Placement) -> None:
        i = self.views.position[placement.instance_arn]
        ports = demand.tcp_ports + placement.tcp_host_ports
        self._apply(i, demand, ports, +1)
        self.held.append((i, demand, ports))

    def release(self, k: int) -> None:
        i, demand, ports = self.held.pop(k)
        self._apply(i, demand, ports, -1)

    def _apply(self, i: int, demand: TaskDemand, ports: list[int], sign: int) -> None:
        v = self.views[i]
        self.views.changes.append(v.arn)
        v.cpu_free -= sign * demand.cpu
        v.memory_free -= sign * demand.memory
        v.running_tasks_count += sign
        if demand.group:
            v.task_groups[demand.group] = v.task_groups.get(demand.group, 0) + sign
            if not v.task_groups[demand.group]:
                del v.task_groups[demand.group]
        if sign > 0:
            v.tcp_ports_used |= set(ports)
        else:
            v.tcp_ports_used -= set(ports)


def outcome(results: list[engine.Result]) -> list[tuple[str, ...]]:
    return [
        (r.instance_arn, *map(str, r.tcp_host_ports))
        if isinstance(r, Placement)
        else ("FAIL", r.reason)
        for r in results
    ]


steps = st.lists(
    st.tuples(
        st.sampled_from(["place", "place", "place", "drop", "stop"]),
        st.integers(0, len(DEMANDS) - 1),
        st.integers(1, 12),
        st.integers(0, 10**6),
    ),
    min_size=5,
    max_size=30,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10**6),
    size=st.integers(1, 60),
    chain=st.sampled_from(range(len(CHAINS))),
    constraints=st.sampled_from(range(len(CONSTRAINTS))),
    script=steps,
)
def test_standing_trees_decide_as_fresh_ones(
    seed: int, size: int, chain: int, constraints: int, script: list[tuple[str, int, int, int]]
) -> None:
    rnd = random.Random(seed)
    views = LiveViews(make_views(size, rnd), ChangeLog(limit=64))  # small: exercises trimming
    claims = Claims(views)
    standing = StandingPlacer(random.Random(seed), min_instances=1)
    strategies, cons = CHAINS[chain], CONSTRAINTS[constraints]
    for action, d, count, pick in script:
        if action == "stop":
            if claims.held:
                claims.release(pick % len(claims.held))
            continue
        demands = [DEMANDS[d]] * count
        fresh = engine.place(demands, views, cons, strategies, random.Random(0))
        kept = standing.place(demands, views, cons, strategies)
        assert outcome(kept) == outcome(fresh)
        if action == "place":  # "drop": the caller failed after the decision, claims nothing
            for r in kept:
                if isinstance(r, Placement):
                    claims.claim(DEMANDS[d], r)
    for v in views:
        assert v.cpu_free >= 0 and v.memory_free >= 0


def test_a_tree_stands_until_its_views_are_replaced_or_its_log_runs_out() -> None:
    rnd = random.Random(7)
    views = LiveViews(make_views(40, rnd), ChangeLog(limit=16))
    claims = Claims(views)
    placer = StandingPlacer(random.Random(1), min_instances=1)
    chain = CHAINS[1]
    demand = DEMANDS[0]
    for _ in range(5):
        for r in placer.place([demand] * 2, views, [], chain):
            assert isinstance(r, Placement)
            claims.claim(demand, r)
    assert placer.rebuilds == 1  # one tree served every call
    for _ in range(20):  # more claims than the log keeps: this tree's history is gone
        claims.claim(demand, Placement(views[0].arn, [], []))
    placer.place([demand], views, [], chain)
    assert placer.rebuilds == 2
    replaced = LiveViews(list(views), views.changes)  # what refresh_view leads to
    placer.place([demand], replaced, [], chain)
    assert placer.rebuilds == 3


def test_failures_count_every_instance_once_the_tree_is_empty() -> None:
    views = LiveViews(make_views(30, random.Random(3)), ChangeLog())
    claims = Claims(views)
    placer = StandingPlacer(random.Random(1), min_instances=1)
    big = TaskDemand(cpu=0, memory=1024 * 8, group="big")
    results: list[engine.Result] = []
    for _ in range(40):
        for r in placer.place([big] * 4, views, [], CHAINS[1]):
            results.append(r)
            if isinstance(r, Placement):
                claims.claim(big, r)
    failure = results[-1]
    assert isinstance(failure, Failure)
    assert sum(failure.counts.values()) == len(views)
    assert all(v.memory_free >= 0 for v in views)


async def test_run_task_at_scale_keeps_trees_and_never_overcommits(tmp_path: Path) -> None:
    """Through the real service layer: RunTask, StopTask and RunTask again over 400
    instances reuse standing trees, and the accounting stays exact."""
    ctl = Controller(ControllerConfig(data_dir=tmp_path, listen="127.0.0.1:0", http="127.0.0.1:0"))
    await ctl.start()
    try:
        await add_instances(ctl, 400)  # 4096 cpu, 16384 MiB each
        await ctl.api.call(
            "RegisterTaskDefinition",
            {
                "family": "big",
                "containerDefinitions": [{"name": "a", "image": "x", "memory": 8000}],
            },
        )
        body = {
            "taskDefinition": "big",
            "count": 10,
            "placementStrategy": [
                {"type": "spread", "field": "attribute:zone"},
                {"type": "binpack", "field": "memory"},
            ],
        }
        placer = ctl.service.placer.placer
        arns: list[str] = []
        for _ in range(60):  # 600 tasks of 8000 MiB: two fit per instance
            out = await ctl.api.call("RunTask", body)
            assert not out["failures"]
            arns += [t["taskArn"] for t in out["tasks"]]
        for arn in arns[:100]:  # stopped, as their agent would report it
            task = ctl.state.tasks[arn]
            report = agent_pb2.TaskStatus(task_arn=arn, last_status="STOPPED")
            link = ctl.dispatcher.link
            assert not await link.apply_reports(ctl.state.instances[task.instance_arn], [report])
        outs = await asyncio.gather(*(ctl.api.call("RunTask", body) for _ in range(35)))
        placed = sum(len(o["tasks"]) for o in outs)
        assert placed == 800 - 600 + 100  # every freed and remaining slot, not one more
        assert {f["reason"] for o in outs for f in o["failures"]} == {"RESOURCE:MEMORY"}
        assert placer.rebuilds <= 2
        ctl.state.validate()
        per_instance = [v.running_tasks_count for v in ctl.state.views.values()]
        assert max(per_instance) == 2
    finally:
        await ctl.stop()
