"""Capacity providers, the pure parts (issue 22): ECS's CapacityProviderReservation and the
scaling decision (controller/capacity/reservation.py), and the base/weight split of a
capacity provider strategy (controller/capacity/strategy.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.capacity import strategy
from controller.capacity.reservation import (
    Host,
    Scaling,
    Waiting,
    decide,
    instances_for,
    needed,
    reservation,
)
from controller.capacity.strategy import Item, parse, split
from dockyard.errors import ApiError

BIG = (2048, 4096)


def hosts(*tasks: int, warming: int = 0) -> list[Host]:
    out = [Host(f"h{i}", *BIG, t) for i, t in enumerate(tasks)]
    return out + [Host(f"w{i}", *BIG, 0, warming=True) for i in range(warming)]


def test_reservation_is_m_over_n_with_ecs_special_cases() -> None:
    assert reservation(3, 4) == 75.0
    assert reservation(4, 4) == 100.0
    assert reservation(2, 0) == 200.0  # tasks waiting, empty group
    assert reservation(0, 0) == 100.0  # nothing at all


def test_m_counts_busy_hosts_then_packs_waiting_tasks() -> None:
    assert needed(hosts(1, 0, 2), [], 1) == 2
    # 3 waiting tasks of 1024 CPU: two fit a 2048-CPU host, the third needs another
    assert needed(hosts(1, 1), [Waiting(1024, 256)] * 3, 1) == 4
    # at least N + minimumScalingStepSize
    assert needed(hosts(1, 1), [Waiting(10, 10)], 3) == 5
    assert instances_for([Waiting(9999, 1)], *BIG) == 1  # too big: still one instance


def test_scale_out_within_the_steps() -> None:
    d = decide(hosts(1, 1), [Waiting(2048, 512)] * 6, Scaling(100, 1, 3))
    assert d.reservation == 400.0 and d.desired == 5 and d.reason == "scale out by 3"
    d = decide([], [Waiting(512, 512)], Scaling(100, 2, 10))
    assert (d.reservation, d.desired) == (200.0, 2)  # empty group: min step


def test_target_below_100_keeps_spare_hosts() -> None:
    d = decide(hosts(1, 1, 1, 1), [], Scaling(target=80))
    assert d.reservation == 100.0 and d.desired == 5  # ceil(4 / 0.8)


def test_scale_in_with_termination_protection_removes_idle_hosts_only() -> None:
    d = decide(hosts(2, 0, 0, 1), [], Scaling(protect=True))
    assert d.reservation == 50.0 and d.desired == 2 and d.remove == ("h1", "h2")
    d = decide(hosts(1, 1), [], Scaling(target=100, protect=True))
    assert d.desired == 2 and d.remove == ()
    # more hosts than needed but every one busy after a drain: nothing removed yet
    d = decide(hosts(1, 1, 1), [], Scaling(target=100, protect=True))
    assert d.desired == 3


def test_no_scale_in_while_a_host_warms_up() -> None:
    d = decide(hosts(1, 0, warming=1), [], Scaling())
    assert d.desired == 3


def test_strategy_base_first_then_weights() -> None:
    items = [Item("a", base=2, weight=1), Item("b", weight=4)]
    assert split(items, 1) == {"a": 1, "b": 0}
    assert split(items, 7) == {"a": 3, "b": 4}
    assert split([Item("a", weight=1), Item("b", weight=1)], 5) == {"a": 3, "b": 2}
    assert split([Item("a", weight=1), Item("b", weight=0)], 3) == {"a": 3, "b": 0}
    # a service's existing tasks count toward the shares
    assert split([Item("a", weight=1), Item("b", weight=1)], 2, {"a": 4}) == {"a": 0, "b": 2}


@pytest.mark.parametrize(
    "raw, field",
    [
        (
            [
                {"capacityProvider": "a", "base": 1, "weight": 1},
                {"capacityProvider": "b", "base": 1, "weight": 1},
            ],
            "capacityProviderStrategy",
        ),
        ([{"capacityProvider": "a"}], "capacityProviderStrategy"),
        ([{"capacityProvider": "a", "weight": 1001}], "capacityProviderStrategy[0].weight"),
        (
            [{"capacityProvider": "a", "weight": 1}, {"capacityProvider": "a", "weight": 1}],
            "capacityProviderStrategy[1].capacityProvider",
        ),
    ],
)
def test_strategy_refusals_name_the_field(raw: list, field: str) -> None:
    with pytest.raises(ApiError) as err:
        parse(raw)
    assert field in str(err.value)


@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=4),
    st.integers(0, 60),
)
def test_split_properties(pairs: list[tuple[int, int]], count: int) -> None:
    items = [Item(f"p{i}", base=b if i == 0 else 0, weight=w) for i, (b, w) in enumerate(pairs)]
    if not any(it.weight for it in items):
        items[-1] = Item(items[-1].provider, items[-1].base, 1)
    out = split(items, count)
    assert sum(out.values()) == count  # every task goes somewhere
    first = items[0]
    assert out[first.provider] >= min(first.base, count)  # base first
    for it in items:
        if it.weight == 0 and it is not first:
            assert out[it.provider] == 0
    beyond = {
        it.provider: out[it.provider] - (min(first.base, count) if it is first else 0)
        for it in items
    }
    total_w = sum(it.weight for it in items)
    left = count - min(first.base, count)
    for it in items:  # each share within one task of its weight's proportion
        assert abs(beyond[it.provider] - left * it.weight / total_w) < 1 + 1e-9


def test_strategy_module_limits() -> None:
    assert strategy.MAX_WEIGHT == 1000
