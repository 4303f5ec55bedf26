"""The placement engine: each failure reason, one decision per call, each strategy, limits."""

from __future__ import annotations

import copy
import random
from collections import Counter

import pytest

from controller.placement import (
    DEFAULT_SERVICE_STRATEGIES,
    DEFAULT_TASK_STRATEGIES,
    Constraint,
    Failure,
    InstanceView,
    Placement,
    Strategy,
    TaskDemand,
    place,
    validate,
)
from dockyard.errors import ApiError


def inst(n: int, **kw: object) -> InstanceView:
    base: dict[str, object] = dict(
        arn=f"arn:ci/{n}",
        instance_id=f"i{n}",
        status="ACTIVE",
        connected=True,
        attributes={"zone": "abc"[n % 3]},
        agent_version="1.0.0",
        registered_at=0.0,
        cpu_free=4096,
        memory_free=8192,
        tcp_ports_used={22},
        udp_ports_used=set(),
        running_tasks_count=0,
        task_groups={},
    )
    base.update(kw)
    return InstanceView(**base)  # type: ignore[arg-type]


def run(
    demands: list[TaskDemand],
    instances: list[InstanceView],
    constraints: list[Constraint] | None = None,
    strategies: list[Strategy] | None = None,
    seed: int = 0,
    **kw: object,
) -> list[Placement | Failure]:
    return place(demands, instances, constraints or [], strategies or [], random.Random(seed), **kw)  # type: ignore[arg-type]


def arns(results: list[Placement | Failure]) -> list[str]:
    return [r.instance_arn if isinstance(r, Placement) else r.reason for r in results]


SMALL = TaskDemand(cpu=128, memory=128)
GROUPED = TaskDemand(cpu=1, memory=1, group="g")


@pytest.mark.parametrize(
    ("instance", "demand", "reason"),
    [
        (inst(0, connected=False), SMALL, "AGENT"),
        (inst(0, status="DRAINING"), SMALL, "DRAINING"),
        (inst(0, status="INACTIVE"), SMALL, "INACTIVE"),
        (inst(0, cpu_free=100), SMALL, "RESOURCE:CPU"),
        (inst(0, memory_free=100), SMALL, "RESOURCE:MEMORY"),
        (inst(0, tcp_ports_used={80}), TaskDemand(1, 1, tcp_ports=[80]), "RESOURCE:PORTS"),
        (inst(0, udp_ports_used={53}), TaskDemand(1, 1, udp_ports=[53]), "RESOURCE:PORTS_UDP"),
    ],
)
def test_each_filter_failure_reason(
    instance: InstanceView, demand: TaskDemand, reason: str
) -> None:
    [result] = run([demand], [instance])
    assert isinstance(result, Failure)
    assert result.reason == reason
    assert f"1 {reason}" in result.detail and "(1 instances)" in result.detail


def test_constraint_failure_reasons() -> None:
    member = [Constraint("memberOf", "attribute:zone == z")]
    [r] = run([SMALL], [inst(0)], member)
    assert isinstance(r, Failure) and r.reason == "ATTRIBUTE"
    [r] = run([SMALL], [inst(0, attributes={})], member)
    assert isinstance(r, Failure) and r.reason == "MissingAttribute"
    busy = inst(0, task_groups={"service:a": 1}, running_tasks_count=1)
    [r] = run([TaskDemand(1, 1, group="service:a")], [busy], [Constraint("distinctInstance")])
    assert isinstance(r, Failure) and r.reason == "DistinctInstance"
    [r] = run([SMALL], [])
    assert isinstance(r, Failure) and r.reason == "MISSING"


def test_failure_reports_the_closest_reason_and_every_count() -> None:
    cluster = [inst(0, connected=False), inst(1, memory_free=10), inst(2, memory_free=10)]
    cluster.append(inst(3, attributes={"zone": "q"}))
    [r] = run([SMALL], cluster, [Constraint("memberOf", "attribute:zone != q")])
    assert isinstance(r, Failure)
    assert r.reason == "ATTRIBUTE"  # instance 3 got furthest: only its attributes are wrong
    assert r.counts == {"AGENT": 1, "RESOURCE:MEMORY": 2, "ATTRIBUTE": 1}
    assert "1 AGENT, 2 RESOURCE:MEMORY, 1 ATTRIBUTE (4 instances)" in r.detail


def test_count_is_one_decision_that_never_overcommits() -> None:
    cluster = [inst(0, memory_free=1000), inst(1, memory_free=1000)]
    results = run([TaskDemand(10, 600)] * 3, cluster)
    assert sorted(arns(results)) == ["RESOURCE:MEMORY", "arn:ci/0", "arn:ci/1"]


def test_the_callers_views_are_never_mutated() -> None:
    cluster = [inst(n) for n in range(4)]
    before = copy.deepcopy(cluster)
    run([TaskDemand(100, 100, tcp_ports=[80], dynamic_tcp=2, group="g")] * 4, cluster)
    assert cluster == before


def test_static_ports_are_taken_by_earlier_demands_of_the_same_call() -> None:
    results = run([TaskDemand(1, 1, tcp_ports=[80])] * 3, [inst(0), inst(1)])
    assert sorted(arns(results)) == ["RESOURCE:PORTS", "arn:ci/0", "arn:ci/1"]


def test_dynamic_ports_are_unique_free_and_in_the_range() -> None:
    cluster = [inst(0, tcp_ports_used={50000, 50002})]
    results = run([TaskDemand(1, 1, dynamic_tcp=2)] * 3, cluster, ephemeral_range=(50000, 50007))
    ports = [p for r in results if isinstance(r, Placement) for p in r.tcp_host_ports]
    assert ports == [50001, 50003, 50004, 50005, 50006, 50007]
    results = run([TaskDemand(1, 1, dynamic_tcp=2)] * 4, cluster, ephemeral_range=(50000, 50007))
    assert arns(results)[-1] == "RESOURCE:PORTS"


def test_udp_dynamic_ports() -> None:
    [r] = run([TaskDemand(1, 1, dynamic_udp=1)], [inst(0, udp_ports_used={49153})])
    assert isinstance(r, Placement) and r.udp_host_ports == [49154] and r.tcp_host_ports == []


def test_distinct_instance_counts_tasks_placed_earlier_in_the_call() -> None:
    cluster = [inst(n) for n in range(3)]
    results = run(
        [TaskDemand(1, 1, group="service:a")] * 4, cluster, [Constraint("distinctInstance")]
    )
    assert sorted(arns(results)[:3]) == ["arn:ci/0", "arn:ci/1", "arn:ci/2"]
    assert arns(results)[3] == "DistinctInstance"


def test_member_of_with_task_group_sees_tasks_placed_in_the_call() -> None:
    rule = [Constraint("memberOf", "runningTasksCount < 1")]
    results = run([SMALL] * 4, [inst(n) for n in range(3)], rule)
    assert sorted(arns(results)) == ["ATTRIBUTE", "arn:ci/0", "arn:ci/1", "arn:ci/2"]


def test_binpack_picks_the_least_remaining_of_its_field() -> None:
    cluster = [inst(0, memory_free=5000), inst(1, memory_free=3000), inst(2, memory_free=4000)]
    assert arns(run([SMALL], cluster, strategies=[Strategy("binpack", "memory")])) == ["arn:ci/1"]
    cluster = [inst(0, cpu_free=500), inst(1, cpu_free=3000)]
    assert arns(run([SMALL], cluster, strategies=[Strategy("binpack", "cpu")])) == ["arn:ci/0"]


def test_binpack_batch_uses_the_fewest_instances() -> None:
    cluster = [inst(0, memory_free=300), inst(1, memory_free=1000), inst(2, memory_free=500)]
    results = run([TaskDemand(1, 100)] * 4, cluster, strategies=[Strategy("binpack", "memory")])
    assert set(arns(results)) == {"arn:ci/2"}  # least remaining among those that hold all four


def test_spread_by_instance_balances_the_group() -> None:
    cluster = [inst(n, task_groups={"g": 1} if n == 0 else {}) for n in range(4)]
    results = run(
        [TaskDemand(1, 1, group="g")] * 7, cluster, strategies=[Strategy("spread", "instanceId")]
    )
    per = Counter(arns(results))
    per["arn:ci/0"] += 1
    assert sorted(per.values()) == [2, 2, 2, 2]


def test_spread_by_attribute_balances_values_and_gives_missing_ones_their_own_bucket() -> None:
    cluster = [inst(n) for n in range(6)] + [inst(6, attributes={})]
    strategies = [Strategy("spread", "attribute:zone"), Strategy("binpack", "memory")]
    results = run([TaskDemand(1, 1, group="g")] * 8, cluster, strategies=strategies)
    zones = Counter(cluster[int(a.rsplit("/", 1)[1])].attributes.get("zone") for a in arns(results))
    assert sorted(zones.values()) == [2, 2, 2, 2] and None in zones
    per_instance = Counter(arns(results))
    assert max(per_instance.values()) == 2  # binpack fills one instance per zone first


def test_spread_counts_tasks_already_running_per_value() -> None:
    cluster = [inst(0, task_groups={"g": 3}), inst(1), inst(2)]  # zone a already has 3
    results = run(
        [TaskDemand(1, 1, group="g")] * 4,
        cluster,
        strategies=[Strategy("spread", "attribute:zone")],
    )
    assert sorted(arns(results)) == ["arn:ci/1", "arn:ci/1", "arn:ci/2", "arn:ci/2"]


def test_random_is_the_default_and_varies() -> None:
    assert DEFAULT_TASK_STRATEGIES == (Strategy("random"),)
    assert DEFAULT_SERVICE_STRATEGIES == (
        Strategy("spread", "attribute:ecs.availability-zone"),
        Strategy("spread", "instanceId"),
    )
    cluster = [inst(n) for n in range(5)]
    seen = {arns(run([SMALL], cluster, seed=s))[0] for s in range(40)}
    assert len(seen) == 5


def test_results_follow_demand_order_with_mixed_demands() -> None:
    big, small = TaskDemand(1, 5000), TaskDemand(1, 10)
    results = run([small, big, small, big], [inst(0)])
    assert [type(r).__name__ for r in results] == ["Placement", "Placement", "Placement", "Failure"]


def test_validate_limits_and_unknowns() -> None:
    ten = [Constraint("distinctInstance")] * 10
    validate(ten, [Strategy("random")] * 5)
    cases = [
        ([*ten, Constraint("distinctInstance")], [], "placementConstraints: at most 10"),
        ([], [Strategy("random")] * 6, "placementStrategy: at most 5"),
        ([Constraint("sameHost")], [], "placementConstraints[0].type"),
        ([Constraint("memberOf")], [], "placementConstraints[0].expression: memberOf needs"),
        ([Constraint("distinctInstance", "x")], [], "takes no expression"),
        ([], [Strategy("binpack", "disk")], "placementStrategy[0].field"),
        ([], [Strategy("spread", "zone")], "placementStrategy[0].field"),
        ([], [Strategy("random", "cpu")], "random takes no field"),
        ([], [Strategy("packing")], "placementStrategy[0].type"),
    ]
    for constraints, strategies, message in cases:
        with pytest.raises(ApiError) as caught:
            validate(constraints, strategies)
        assert caught.value.name == "InvalidParameterException"
        assert message in caught.value.message


def test_validate_names_the_expression_and_the_offset() -> None:
    constraints = [Constraint("distinctInstance"), Constraint("memberOf", "attribute:a == b")]
    constraints.append(Constraint("memberOf", "attribute:zone = a"))
    with pytest.raises(ApiError) as caught:
        validate(constraints, [])
    assert caught.value.message.startswith("placementConstraints[2].expression: ")
    assert "at offset 15" in caught.value.message


def test_strategy_spelling_is_normalised() -> None:
    cluster = [inst(0, memory_free=300), inst(1, memory_free=200)]
    assert arns(run([SMALL], cluster, strategies=[Strategy("BINPACK", "MEMORY")])) == ["arn:ci/1"]
