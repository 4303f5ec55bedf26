"""Unit tests of the pure service planner, driven by a tiny simulated cluster."""

from __future__ import annotations

import itertools
from dataclasses import replace

from controller.ops import service_deployments
from controller.orchestrator import scalein
from controller.orchestrator.model import Service, new_deployment
from controller.orchestrator.planner import (
    breaker_threshold,
    note_failure,
    plan,
    replaced,
    retry_delay,
)
from controller.orchestrator.world import Member, Node, Plan, World


def make_service(count: int = 3, **kw: object) -> Service:
    svc = Service(
        name="web",
        arn="arn:svc/web",
        cluster="default",
        task_definition="web:1",
        task_definition_arn="arn:td/web:1",
        desired_count=count,
        **kw,  # type: ignore[arg-type]
    )
    new_deployment(svc, "web:1", "arn:td/web:1", 1.0)
    return svc


def make_nodes(n: int, zones: str = "") -> dict[str, Node]:
    return {
        f"i{k}": Node(f"i{k}", f"id{k}", "ACTIVE", True, zone=zones[k] if zones else "")
        for k in range(n)
    }


class Sim:
    """Applies plans the way the scheduler and agents would: starts become PENDING tasks
    spread over reachable ACTIVE nodes, `settle()` makes them RUNNING and removes stopped."""

    def __init__(self, svc: Service, nodes: dict[str, Node], grace: float = 10.0) -> None:
        self.svc, self.nodes, self.grace = svc, nodes, grace
        self.tasks: dict[str, Member] = {}
        self.now = 100.0
        self.ids = itertools.count()
        self.bad: set[str] = set()  # task definitions whose tasks crash

    def step(self) -> Plan:
        p = plan(self.svc, World(self.nodes, list(self.tasks.values()), self.now, self.grace))
        self.svc = p.service
        for s in p.stops:
            self.tasks[s.task] = replace(self.tasks[s.task], desired="STOPPED")
            if s.failure:
                note_failure(self.svc, self.tasks[s.task].deployment, s.reason, self.now)
        targets = itertools.cycle(
            sorted(n.arn for n in self.nodes.values() if n.reachable and n.status == "ACTIVE")
        )
        for st in p.starts:
            for _ in range(st.count):
                arn = f"t{next(self.ids)}"
                where = st.instance or next(targets)
                self.tasks[arn] = Member(arn, st.deployment, where, "PENDING", "RUNNING", "", 0)
                self.tasks[arn] = replace(self.tasks[arn], created_at=self.now)
        self.now += 1
        return p

    def settle(self) -> None:
        for arn, m in list(self.tasks.items()):
            dep = self.svc.deployment(m.deployment)
            if m.desired == "STOPPED":
                del self.tasks[arn]
            elif dep is not None and dep.task_definition in self.bad:
                del self.tasks[arn]
                note_failure(self.svc, m.deployment, f"task {arn} exited", self.now)
            else:
                self.tasks[arn] = replace(m, status="RUNNING", health="HEALTHY")

    def run(self, rounds: int = 20) -> None:
        for _ in range(rounds):
            self.step()
            self.settle()

    def healthy(self) -> int:
        return sum(m.healthy and m.desired == "RUNNING" for m in self.tasks.values())

    def by_deployment(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for m in self.tasks.values():
            out[m.deployment] = out.get(m.deployment, 0) + 1
        return out


def messages(svc: Service) -> list[str]:
    return [e.message for e in svc.events]


def test_scale_up_then_down_then_zero() -> None:
    sim = Sim(make_service(0), make_nodes(3))
    sim.run(2)
    assert not sim.tasks
    sim.svc.desired_count = 6
    p = sim.step()
    assert [(s.deployment, s.count) for s in p.starts] == [(sim.svc.primary.id, 6)]
    sim.settle()
    sim.run(2)
    assert sim.healthy() == 6 and sim.svc.steady
    assert sim.svc.primary.rollout_state == "COMPLETED"
    sim.svc.desired_count = 2
    p = sim.step()
    assert len(p.stops) == 4 and not p.starts
    assert all("Scaling activity" in s.reason for s in p.stops)
    sim.settle()
    assert sim.healthy() == 2
    assert len({m.instance for m in sim.tasks.values()}) == 2  # balanced: two hosts, not one
    sim.svc.desired_count = 0
    sim.run(3)
    assert not sim.tasks


def test_steady_state_announced_once() -> None:
    sim = Sim(make_service(2), make_nodes(2))
    sim.run(10)
    steady = [m for m in messages(sim.svc) if "steady state" in m]
    assert steady == ["(service web) has reached a steady state."]
    assert any("deployment completed" in m for m in messages(sim.svc))


def _rollout(sim: Sim, lo: int, hi: int) -> list[tuple[int, int]]:
    """Roll to web:2 and record (healthy, all tasks) after every step."""
    new_deployment(sim.svc, "web:2", "arn:td/web:2", sim.now)
    seen = []
    for _ in range(30):
        sim.step()
        seen.append((sim.healthy(), len(sim.tasks)))
        sim.settle()
        seen.append((sim.healthy(), len(sim.tasks)))
    return seen


def test_rolling_update_stays_within_min_and_max() -> None:
    for lo, hi in ((100, 200), (50, 150), (0, 100), (100, 125)):
        sim = Sim(make_service(6, min_healthy=lo, max_percent=hi), make_nodes(3))
        sim.run(3)
        seen = _rollout(sim, lo, hi)
        assert min(h for h, _ in seen) >= 6 * lo // 100, (lo, hi, seen)
        assert max(n for _, n in seen) <= 6 * hi // 100, (lo, hi, seen)
        assert len(sim.svc.deployments) == 1
        assert sim.svc.primary.task_definition == "web:2"
        assert sim.svc.primary.rollout_state == "COMPLETED"
        assert sim.by_deployment() == {sim.svc.primary.id: 6}


def test_circuit_breaker_rolls_back_to_last_completed() -> None:
    sim = Sim(make_service(4, breaker=True, rollback=True), make_nodes(2))
    sim.run(3)
    first = sim.svc.primary.id
    sim.bad.add("web:2")
    new_deployment(sim.svc, "web:2", "arn:td/web:2", sim.now)
    failed = sim.svc.primary.id
    for _ in range(40):
        sim.step()
        sim.settle()
        sim.now += 5  # let the growing retry delays pass
    states = {d.id: d for d in sim.svc.deployments}
    assert failed not in states  # drained away after the rollback
    assert sim.svc.primary.task_definition == "web:1" and sim.svc.primary.id != first
    assert sim.svc.primary.rollout_state == "COMPLETED"
    assert sim.healthy() == 4
    text = " ".join(messages(sim.svc))
    assert f"(deployment {failed}) deployment failed" in text
    assert "rolling back to web:1" in text
    # ECS's service deployments: the rollback belongs to the deployment that failed
    gone = next(d for d in sim.svc.past if d.id == failed)
    assert service_deployments.status(sim.svc, gone)[0] == "ROLLBACK_SUCCESSFUL"
    assert sim.svc.primary.rollback_of == failed and sim.svc.primary.sources[0] == failed


def test_breaker_threshold_and_retry_delays() -> None:
    assert [breaker_threshold(n) for n in (1, 6, 7, 100, 1000)] == [3, 3, 4, 50, 200]
    assert [retry_delay(n) for n in (1, 2, 3, 4, 30)] == [0, 1, 2, 4, 900]


def test_failures_delay_launches_and_say_why() -> None:
    sim = Sim(make_service(1), make_nodes(1))
    sim.bad.add("web:1")
    sim.step()
    sim.settle()
    sim.step()
    sim.settle()  # two failures in a row: next launch waits 1 s
    assert sim.svc.failure_streak == 2 and sim.svc.retry_at > sim.now - 1
    p = plan(sim.svc, World(sim.nodes, [], sim.svc.retry_at - 0.5, 10.0))
    assert not p.starts
    text = " ".join(messages(p.service))
    assert "unable to consistently start tasks successfully" in text
    p = plan(sim.svc, World(sim.nodes, [], sim.svc.retry_at + 0.1, 10.0))
    assert p.starts


def test_scale_in_balances_zone_then_instance() -> None:
    nodes = {
        "i1": Node("i1", "1", "ACTIVE", True, zone="a"),
        "i2": Node("i2", "2", "ACTIVE", True, zone="a"),
        "i3": Node("i3", "3", "ACTIVE", True, zone="b"),
    }
    where = ["i1", "i1", "i1", "i2", "i3", "i3"]
    tasks = [
        Member(f"t{k}", "d", w, "RUNNING", "RUNNING", "HEALTHY", float(k))
        for k, w in enumerate(where)
    ]
    chosen = scalein.pick(tasks, tasks, nodes, 3)
    assert [m.instance for m in chosen] == ["i1", "i1", "i3"]
    pending = replace(tasks[4], arn="p", status="PENDING")
    assert scalein.pick([*tasks, pending], [*tasks, pending], nodes, 1)[0].arn == "p"


def test_draining_starts_replacements_first_then_stops() -> None:
    sim = Sim(make_service(2), make_nodes(2))
    sim.run(3)
    sim.nodes["i0"] = replace(sim.nodes["i0"], status="DRAINING")
    on_drained = {a for a, m in sim.tasks.items() if m.instance == "i0"}
    p = sim.step()
    assert sum(s.count for s in p.starts) == len(on_drained) and not p.stops
    sim.settle()
    p = sim.step()
    assert {s.task for s in p.stops} == on_drained
    assert all("DRAINING" in s.reason for s in p.stops)
    sim.settle()
    sim.run(2)
    assert sim.healthy() == 2 and all(m.instance == "i1" for m in sim.tasks.values())
    assert sim.svc.steady


def test_daemon_follows_instances_and_constraints() -> None:
    nodes = make_nodes(3)
    nodes["i2"] = replace(nodes["i2"], eligible=False)
    sim = Sim(make_service(0, scheduling="DAEMON", min_healthy=0, max_percent=100), nodes)
    sim.run(2)
    assert sorted(m.instance for m in sim.tasks.values()) == ["i0", "i1"]
    assert sim.svc.desired_count == 2 and sim.svc.steady
    sim.nodes["i3"] = Node("i3", "id3", "ACTIVE", True)  # joins
    sim.nodes["i0"] = replace(sim.nodes["i0"], eligible=False)  # no longer matches
    sim.run(3)
    assert sorted(m.instance for m in sim.tasks.values()) == ["i1", "i3"]
    assert sim.svc.desired_count == 2


def test_daemon_rollout_stops_first() -> None:
    sim = Sim(make_service(0, scheduling="DAEMON", min_healthy=0, max_percent=100), make_nodes(2))
    sim.run(2)
    new_deployment(sim.svc, "web:2", "arn:td/web:2", sim.now)
    p = sim.step()
    assert len(p.stops) == 2 and not p.starts
    sim.settle()
    sim.run(2)
    assert sim.by_deployment() == {sim.svc.primary.id: 2}
    assert sim.svc.primary.rollout_state == "COMPLETED"


def test_disconnected_tasks_count_during_grace_then_are_replaced() -> None:
    sim = Sim(make_service(4), make_nodes(2), grace=10.0)
    sim.run(3)
    down = {a for a, m in sim.tasks.items() if m.instance == "i0"}
    sim.nodes["i0"] = replace(sim.nodes["i0"], reachable=False, down_for=5.0)
    p = sim.step()
    assert not p.starts and not p.stops
    sim.nodes["i0"] = replace(sim.nodes["i0"], down_for=10.5)
    p = sim.step()
    assert {s.task for s in p.stops} == down
    assert all("id0 disconnected for more than 10 s" in s.reason for s in p.stops)
    assert sum(s.count for s in p.starts) == len(down)
    originals = {a: sim.tasks[a] for a in down}
    sim.settle()  # replacements run on i1; the originals wait for their agent
    # the agent returns: originals still report RUNNING with desiredStatus STOPPED
    sim.tasks.update(originals)
    sim.nodes["i0"] = replace(sim.nodes["i0"], reachable=True, down_for=0.0)
    p = sim.step()
    assert not p.starts and not p.stops  # nothing counted twice, nothing started again
    assert sim.healthy() == 4
    sim.settle()
    sim.run(2)
    assert len(sim.tasks) == 4 and sim.svc.steady


def test_lost_tasks_are_kept_while_no_replacement_can_start() -> None:
    """The whole fleet gone past the grace: the lost tasks are stopped only as replacements
    start (none can: every host is down), so when the agents come back the originals are
    simply theirs again; nothing is placed twice, nothing runs beyond desiredCount."""
    sim = Sim(make_service(4), make_nodes(2), grace=10.0)
    sim.run(3)
    originals = set(sim.tasks)
    for k in ("i0", "i1"):
        sim.nodes[k] = replace(sim.nodes[k], reachable=False, down_for=10.5)
    p = plan(sim.svc, World(sim.nodes, list(sim.tasks.values()), sim.now, sim.grace))
    held = [s for s in p.stops if s.until_replaced]
    assert {s.task for s in held} == originals and len(p.stops) == 4
    assert sum(s.count for s in p.starts) == 4  # asked for, but there is nowhere to place
    assert replaced(held, 0) == [] and replaced(held, 3) == held[:3]
    for k in ("i0", "i1"):  # the agents return, their tasks never stopped
        sim.nodes[k] = replace(sim.nodes[k], reachable=True, down_for=0.0)
    p = sim.step()
    assert not p.starts and not p.stops and set(sim.tasks) == originals


def test_lost_tasks_beyond_the_need_stop_at_once() -> None:
    """Scaled in while its hosts are gone: the lost tasks no longer needed are not held."""
    sim = Sim(make_service(4), make_nodes(2), grace=10.0)
    sim.run(3)
    sim.nodes["i0"] = replace(sim.nodes["i0"], reachable=False, down_for=10.5)
    sim.svc.desired_count = 2
    p = plan(sim.svc, World(sim.nodes, list(sim.tasks.values()), sim.now, sim.grace))
    lost = {a for a, m in sim.tasks.items() if m.instance == "i0"}
    assert {s.task for s in p.stops if not s.until_replaced} >= lost
    assert not p.starts


def test_unhealthy_task_is_replaced_and_counted_as_failure() -> None:
    sim = Sim(make_service(2, breaker=True), make_nodes(2))
    sim.run(3)
    victim = next(iter(sim.tasks))
    sim.tasks[victim] = replace(sim.tasks[victim], health="UNHEALTHY")
    p = sim.step()
    assert [(s.task, s.failure) for s in p.stops] == [(victim, True)]
    assert sum(s.count for s in p.starts) == 1
    assert sim.svc.failure_streak == 1
    sim.settle()
    sim.run(2)
    assert sim.healthy() == 2 and sim.svc.steady and sim.svc.failure_streak == 0


def test_deleted_service_winds_down_to_inactive() -> None:
    sim = Sim(make_service(3), make_nodes(2))
    sim.run(3)
    sim.svc.status, sim.svc.desired_count = "DRAINING", 0
    sim.run(3)
    assert not sim.tasks and sim.svc.status == "INACTIVE"
