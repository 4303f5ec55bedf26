"""The service planner: a pure function from (service, world) to a Plan (no I/O, no asyncio).

One pass: take a census of the service's tasks; stop what is broken (lost on an instance
down past its grace, unhealthy, of no known deployment); trip the circuit breaker (and roll
back); then REPLICA keeps desiredCount within minimumHealthyPercent / maximumPercent, DAEMON
keeps one task per eligible ACTIVE instance; last, deployments complete or go away and the
steady state is announced. The plan carries the service's next state (a copy) and the
starts and stops for the scheduler to apply.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field

from controller.orchestrator import scalein
from controller.orchestrator.model import Service, add_event, new_deployment, notice, retire
from controller.orchestrator.world import Member, Plan, Start, Stop, World

UNFINISHED = ("PROVISIONING", "PENDING", "ACTIVATING", "RUNNING")
STEADY_REPEAT = 300.0  # re-announce a steady state at most this often when nothing changes
MAX_RETRY_DELAY = 900.0  # ECS's cap on the delay between launches of a failing service
BREAKER_MIN, BREAKER_MAX = 3, 200


@dataclass
class Census:
    """The service's unfinished tasks, sorted by what the planner must do about them."""

    live: dict[str, list[Member]] = field(default_factory=dict)  # deployment -> counted
    stopping: list[Member] = field(default_factory=list)  # on their way down
    lost: list[Member] = field(default_factory=list)  # on an instance down past the grace
    unhealthy: list[Member] = field(default_factory=list)
    orphans: list[Member] = field(default_factory=list)  # of no known deployment
    moving: set[str] = field(default_factory=set)  # live tasks on DRAINING/ineligible hosts

    def all_live(self) -> list[Member]:
        return [m for ms in self.live.values() for m in ms]

    def occupying(self) -> int:
        """Tasks that hold a copy's place against maximumPercent (lost ones do not)."""
        return len(self.all_live()) + len(self.stopping) + len(self.unhealthy) + len(self.orphans)

    def per_deployment(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for m in self.all_live() + self.stopping + self.unhealthy:
            out[m.deployment] = out.get(m.deployment, 0) + 1
        return out


def breaker_threshold(desired: int) -> int:
    """ECS: 0.5 x desiredCount failed tasks, clamped to [3, 200]."""
    return min(max(math.ceil(desired * 0.5), BREAKER_MIN), BREAKER_MAX)


def retry_delay(streak: int) -> float:
    """Growing delays for a service whose tasks keep failing: 0, 1, 2, 4 ... 900 s."""
    return 0.0 if streak <= 1 else min(2.0 ** (streak - 2), MAX_RETRY_DELAY)


def take_census(svc: Service, world: World) -> Census:
    c = Census()
    known = {d.id for d in svc.deployments}
    for m in world.tasks:
        node = world.nodes.get(m.instance)
        down = node is None or (not node.reachable and node.down_for > world.grace)
        if down and (node is None or svc.scheduling == "REPLICA"):
            if m.desired == "RUNNING":
                c.lost.append(m)
        elif m.desired != "RUNNING" or m.status not in UNFINISHED:
            c.stopping.append(m)
        elif m.deployment not in known:
            c.orphans.append(m)
        elif m.health == "UNHEALTHY":
            c.unhealthy.append(m)
        else:
            c.live.setdefault(m.deployment, []).append(m)
            if node is not None and (node.status != "ACTIVE" or not node.eligible):
                c.moving.add(m.arn)
    return c


def plan(svc: Service, world: World) -> Plan:
    """Decide one pass for one service."""
    p = Plan(copy.deepcopy(svc))
    if p.service.status == "INACTIVE" or not p.service.deployments:
        return p
    census = take_census(p.service, world)
    _stop_broken(p, census, world)
    if p.service.status == "DRAINING":
        _wind_down(p, census)
        return p
    if _breaker(p.service, world.now):
        census = take_census(p.service, world)
    if p.service.scheduling == "DAEMON":
        _daemon(p, census, world)
    else:
        _replica(p, census, world)
    _progress(p, census, world)
    return p


def note_failure(svc: Service, deployment: str, why: str, now: float) -> None:
    """A task of the service failed: count it for the breaker; a PRIMARY task's failure also
    grows the launch delay (old deployments' failures must not slow a rollback)."""
    dep = svc.deployment(deployment)
    if dep is not None:
        dep.failed_tasks += 1
        dep.updated_at = now
    if dep is None or dep.status != "PRIMARY":
        return
    svc.failure_streak += 1
    svc.steady = False
    delay = retry_delay(svc.failure_streak)
    svc.retry_at = max(svc.retry_at, now + delay)
    if delay:
        notice(
            svc,
            "failing",
            f"is unable to consistently start tasks successfully: {svc.failure_streak} "
            f"tasks failed in a row (last: {why}). Next attempt in {delay:g} s.",
            now,
            every=5.0,
        )


# ---------------------------------------------------------------- steps


def _stop_broken(p: Plan, c: Census, world: World) -> None:
    for m in c.lost:
        node = world.nodes.get(m.instance)
        where = node.id if node else m.instance.rsplit("/", 1)[-1]
        p.stops.append(
            Stop(
                m.arn,
                f"Task replaced: container instance {where} disconnected "
                f"for more than {world.grace:g} s",
            )
        )
    for m in c.unhealthy:
        p.stops.append(Stop(m.arn, "Task failed container health checks", failure=True))
    for m in c.orphans:
        p.stops.append(Stop(m.arn, "Task belongs to no deployment of the service"))


def _hold_lost(p: Plan, c: Census, world: World, missing: int) -> None:
    """Mark the lost tasks the service still needs (up to `missing`, on instances still
    registered) as stopped only once a replacement has started (`replaced`). When the whole
    fleet is gone nothing can be placed: stopping the originals then gained nothing and cost
    a second start of every one on the agents' return, beside the stops of the originals
    (Nomad keeps the original on a reconnect too, #12680). Lost tasks beyond the need (a
    scale-in meanwhile) and those of deregistered instances stop at once, as before."""
    held = {m.arn for m in c.lost if m.instance in world.nodes}
    held = set(sorted(held)[: max(0, missing)])
    p.stops = [dataclasses.replace(s, until_replaced=s.task in held) for s in p.stops]


def replaced(held: list[Stop], started: int) -> list[Stop]:
    """Of the stops held until replaced, those that `started` new tasks replace."""
    return held[: max(0, started)]


def _wind_down(p: Plan, c: Census) -> None:
    """A deleted service: stop everything; INACTIVE once nothing is left."""
    for m in c.all_live():
        p.stops.append(Stop(m.arn, "Service deleted"))
    if not c.occupying():
        p.service.status = "INACTIVE"
        p.service.desired_count = 0


def _breaker(svc: Service, now: float) -> bool:
    """Mark the PRIMARY rollout FAILED past the threshold; True when it rolled back."""
    prim = svc.primary
    if not svc.breaker or prim.rollout_state != "IN_PROGRESS":
        return False
    if prim.failed_tasks < breaker_threshold(svc.desired_count):
        return False
    prim.rollout_state, prim.updated_at = "FAILED", now
    prim.rollout_reason = (
        f"ECS deployment circuit breaker: {prim.failed_tasks} tasks failed to start or "
        "stay healthy."
    )
    add_event(svc, f"(deployment {prim.id}) deployment failed: tasks failed to start.", now)
    target = svc.last_completed
    if not svc.rollback or target is None or target[0] == prim.task_definition:
        return False
    dep = new_deployment(svc, target[0], target[1], now)
    dep.rollback_of = prim.id
    add_event(
        svc,
        f"(deployment {prim.id}) rolling back to {target[0]} in deployment {dep.id}.",
        now,
    )
    return True


def _launch(p: Plan, deployment: str, count: int, now: float, instance: str = "") -> None:
    svc = p.service
    if count <= 0:
        return
    if now < svc.retry_at:
        wait = math.ceil(svc.retry_at - now)
        notice(svc, "backoff", f"is waiting {wait} s before starting tasks again.", now, 30.0)
        return
    p.starts.append(Start(deployment, count, instance))


def _replica(p: Plan, c: Census, world: World) -> None:
    svc = p.service
    want, prim = svc.desired_count, svc.primary.id
    max_total = want * svc.max_percent // 100
    min_healthy = math.ceil(want * svc.min_healthy / 100)
    mine = [m for m in c.live.get(prim, []) if m.arn not in c.moving]
    extra = scalein.pick(mine, c.all_live(), world.nodes, len(mine) - want, world.now)
    for m in extra:
        p.stops.append(Stop(m.arn, f"Scaling activity initiated by (deployment {prim})"))
    room = max_total - c.occupying()
    _hold_lost(p, c, world, want - len(mine))
    _launch(p, prim, min(want - len(mine) + len(extra), room), world.now)
    gone = {m.arn for m in extra}
    healthy = sum(m.healthy and m.arn not in gone for m in c.all_live())
    _retire(p, c, world, healthy - min_healthy)


def _retire(p: Plan, c: Census, world: World, budget: int) -> None:
    """Stop old-deployment and draining tasks: not-yet-healthy ones at once, healthy ones
    only while the healthy count stays at or above the minimum. A protected task of an old
    deployment is left running (the rollout waits for it), as ECS's deployments do."""
    prim = p.service.primary.id
    old = [
        m
        for m in c.all_live()
        if m.arn in c.moving or (m.deployment != prim and not m.protected(world.now))
    ]
    order = sorted(old, key=lambda m: (m.healthy, m.arn not in c.moving, m.created_at))
    for m in order:
        if m.healthy and budget <= 0:
            break
        budget -= m.healthy
        p.stops.append(Stop(m.arn, _retire_reason(p.service, m, c, world)))


def _retire_reason(svc: Service, m: Member, c: Census, world: World) -> str:
    node = world.nodes.get(m.instance)
    if m.arn in c.moving and node is not None:
        if node.status != "ACTIVE":
            return f"Task replaced: container instance {node.id} is {node.status}"
        return f"Container instance {node.id} no longer meets the placement constraints"
    return f"Scaling activity initiated by (deployment {svc.primary.id})"


def _daemon(p: Plan, c: Census, world: World) -> None:
    """One task per reachable, ACTIVE, eligible instance; rollouts stop first (max 100 %)."""
    prim = p.service.primary.id
    here: dict[str, list[Member]] = {}
    for m in c.all_live():
        here.setdefault(m.instance, []).append(m)
    busy = {m.instance for m in c.stopping + c.unhealthy + c.orphans}
    wanted = 0
    for node in sorted(world.nodes.values(), key=lambda n: n.arn):
        tasks = here.get(node.arn, [])
        if not node.reachable:
            wanted += bool(tasks)  # left alone: nothing can replace it elsewhere
            continue
        if node.status != "ACTIVE" or not node.eligible:
            p.stops += [Stop(m.arn, _retire_reason(p.service, m, c, world)) for m in tasks]
            continue
        wanted += 1
        old = [m for m in tasks if m.deployment != prim]
        mine = sorted((m for m in tasks if m.deployment == prim), key=lambda m: m.created_at)
        reason = f"Scaling activity initiated by (deployment {prim})"
        p.stops += [Stop(m.arn, reason) for m in old + mine[1:]]
        if not old and not mine and node.arn not in busy:
            _launch(p, prim, 1, world.now, node.arn)
    p.service.desired_count = wanted


def _progress(p: Plan, c: Census, world: World) -> None:
    """Drop drained old deployments, complete the rollout, announce a steady state."""
    svc, now = p.service, world.now
    counts = c.per_deployment()
    drained = [d for d in svc.deployments[1:] if not counts.get(d.id)]
    svc.deployments = [svc.primary] + [d for d in svc.deployments[1:] if counts.get(d.id)]
    if drained:
        retire(svc, drained, now)
    prim = svc.primary
    ready = sum(m.healthy and m.arn not in c.moving for m in c.live.get(prim.id, []))
    settled = len(svc.deployments) == 1 and not p.starts and not p.stops
    settled = settled and ready == svc.desired_count == len(c.all_live()) and not c.stopping
    if settled and prim.rollout_state == "IN_PROGRESS":
        prim.rollout_state, prim.updated_at = "COMPLETED", now
        prim.rollout_reason = f"ECS deployment {prim.id} completed."  # ECS's words
        svc.last_completed = (prim.task_definition, prim.task_definition_arn)
        add_event(svc, f"(deployment {prim.id}) deployment completed.", now)
    if settled:
        svc.failure_streak, svc.retry_at = 0, 0.0
        if not svc.steady or now - svc.steady_event_at >= STEADY_REPEAT:
            add_event(svc, "has reached a steady state.", now)
            svc.steady_event_at = now
    svc.steady = settled
