"""Task scale-in protection in the pure planner (issue 22): scale-in and rollouts skip tasks
protected at the world's clock, pick among the rest as before, and take them once the
protection expires (the clock is injected: World.now)."""

from __future__ import annotations

from dataclasses import replace

from controller.orchestrator import scalein
from controller.orchestrator.model import new_deployment
from controller.orchestrator.world import Member, Node
from tests.test_services_planner import Sim, make_nodes, make_service


def test_scale_in_never_picks_a_protected_task_and_picks_among_the_rest() -> None:
    nodes = {"i1": Node("i1", "1", "ACTIVE", True), "i2": Node("i2", "2", "ACTIVE", True)}
    where = ["i1", "i1", "i1", "i2"]
    tasks = [
        Member(f"t{k}", "d", w, "RUNNING", "RUNNING", "HEALTHY", float(k))
        for k, w in enumerate(where)
    ]
    assert [m.arn for m in scalein.pick(tasks, tasks, nodes, 1, now=50.0)] == ["t2"]
    tasks[2] = replace(tasks[2], protected_until=100.0)  # the one scale-in would take
    chosen = scalein.pick(tasks, tasks, nodes, 1, now=50.0)
    assert [m.arn for m in chosen] == ["t1"]  # the busiest host's next newest, as before
    everyone = [replace(m, protected_until=100.0) for m in tasks]
    assert scalein.pick(everyone, everyone, nodes, 2, now=50.0) == []
    assert [m.arn for m in scalein.pick(tasks, tasks, nodes, 1, now=100.0)] == ["t2"]  # expired


def test_service_scale_in_keeps_the_protected_task_until_it_expires() -> None:
    sim = Sim(make_service(3), make_nodes(3))
    sim.run(3)
    assert sim.healthy() == 3
    keep = sorted(sim.tasks)[-1]  # the newest: scale-in's first choice on a tie
    sim.tasks[keep] = replace(sim.tasks[keep], protected_until=sim.now + 10)
    sim.svc.desired_count = 1
    p = sim.step()
    assert len(p.stops) == 2 and keep not in {s.task for s in p.stops}
    sim.settle()
    assert set(sim.tasks) == {keep}

    sim.svc.desired_count = 0  # nothing else to stop: the protected one stays, no starts
    p = sim.step()
    assert not p.stops and not p.starts
    sim.now += 10  # its protection expires
    p = sim.step()
    assert [s.task for s in p.stops] == [keep]


def test_rollout_waits_for_a_protected_old_task() -> None:
    sim = Sim(make_service(2), make_nodes(2))
    sim.run(3)
    old = sorted(sim.tasks)
    sim.tasks[old[0]] = replace(sim.tasks[old[0]], protected_until=sim.now + 20)
    new_deployment(sim.svc, "web:2", "arn:td/web:2", sim.now)
    sim.run(6)
    assert old[0] in sim.tasks and old[1] not in sim.tasks  # the unprotected one replaced
    assert len(sim.svc.deployments) == 2  # the rollout is not done while it runs
    sim.now += 20
    sim.run(4)
    assert old[0] not in sim.tasks
    assert len(sim.svc.deployments) == 1 and sim.healthy() == 2
