"""The service scheduler's thin async layer: snapshot the state, run the planner, apply.

One loop runs every service's planner on a tick (and at once when woken by an API write or
a stopped task), under the same lock as the service APIs, so a pass never interleaves with
an update. Applying a plan goes through the task writes (controller.ops.task_writes:
`launch`, with a typed `LaunchSpec` built from the Service, and `stop_tasks`), which commit
before they tell the agents.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from typing import Any

from controller import launch, liveness, placement, taskdef_host
from controller.capacity import strategy as capacity_strategy
from controller.capacity.strategy import PROVIDER_ATTRIBUTE
from controller.feed import TASK_STOPPED, Change
from controller.launch import LaunchSpec
from controller.model import Cluster, Instance, Task, TaskDefinition, now
from controller.ops import task_writes
from controller.ops.context import OpContext
from controller.ops.discovery_state import Discovery
from controller.orchestrator import planner
from controller.orchestrator.model import (
    Service,
    add_event,
    grace_from_tags,
    notice,
    service_from_doc,
    to_doc,
)
from controller.orchestrator.world import Member, Node, Plan, Start, Stop, World
from controller.placement.constraints import Rules, compile_rules
from controller.placement.model import InstanceView
from controller.store_api import Op, Put
from dockyard.errors import ApiError

log = logging.getLogger(__name__)

FAILURE_CODES = ("EssentialContainerExited", "TaskFailedToStart")
DEFAULT_ZONE_ATTRIBUTE = "ecs.availability-zone"
STABLE_AFTER = 5.0  # seconds RUNNING before a task counts as healthy
FULL_PASS_S = 5.0  # every live service is planned at least this often, changed or not
EVENT_TASK_IDS = 10  # task ids named in one service event
SERVICE_STRATEGIES = [
    {"type": s.type, "field": s.field} for s in placement.DEFAULT_SERVICE_STRATEGIES
]


def member_health(task: Task, td: TaskDefinition | None, at: float, stable_after: float) -> str:
    """HEALTHY when every essential container with a health check is healthy and the task
    has been RUNNING for `stable_after` seconds (SwarmKit's update monitor, Nomad's
    min_healthy_time): a revision that crashes seconds after starting never counts as
    healthy, so it cannot complete a rollout or replace the old tasks. Only the PRIMARY
    deployment's tasks must prove themselves so: older ones serving now count at once, or a
    rollout right after a scale-up would stop them all as "not yet healthy"."""
    if task.last_status != "RUNNING":
        return "UNKNOWN"
    defs = td.doc["containerDefinitions"] if td else []
    checked = {c["name"] for c in defs if c.get("essential", True) and c.get("healthCheck")}
    states = [c.health for c in task.containers if c.name in checked]
    if "UNHEALTHY" in states or task.health == "UNHEALTHY":
        return "UNHEALTHY"
    if at - (task.started_at or at) < stable_after:
        return "UNKNOWN"
    return "HEALTHY" if all(s == "HEALTHY" for s in states) else "UNKNOWN"


def zone_attribute(svc: Service) -> str:
    for s in svc.strategies:
        if s.get("type") == "spread" and s.get("field", "").startswith("attribute:"):
            return s["field"].split(":", 1)[1]
    return DEFAULT_ZONE_ATTRIBUTE


class ServiceScheduler:
    def __init__(self, cs: OpContext, grace: float, tick: float = 0.5) -> None:
        self.cs = cs
        self.state = cs.state
        self.grace = grace
        self.tick = tick
        self.services = cs.record.services  # by ARN: the state of record holds them
        self._pass_lock = asyncio.Lock()  # one pass at a time
        # one service's world and plan per loop turn (up to ~0.2 s at 5,000 tasks): the
        # services of a pass, planned back to back, held the loop for a second
        self._planning = asyncio.Lock()
        self._locks: dict[str, asyncio.Lock] = {}  # per service ARN: see lock_for
        self._wake = asyncio.Event()
        self._saved: dict[str, dict[str, Any]] = {}
        self._docker_down: dict[str, float] = {}
        self._planned_at: dict[str, float] = {}  # service ARN -> when a pass last planned it
        self._started = now()
        # one snapshot of the instances per pass and (cluster, zone attribute): services that
        # share them share it (DAEMON services, whose eligibility differs, build their own)
        self._pass_nodes: dict[tuple[str, str], dict[str, Node]] | None = None
        # agents dropping in numbers: set by the controller to the dispatcher's
        self.departures: liveness.Departures | None = None
        self.discovery: Discovery | None = None  # Cloud Map (issue 21): set by the controller
        cs.feed.subscribe((TASK_STOPPED,), self._on_stopped)

    # ------------------------------------------------------------------ lookups

    def find(self, cluster: str, name: str) -> Service | None:
        return self.services.get(self.cs.arns.service(cluster, name))

    def taskdef(self, family_rev: str) -> TaskDefinition | None:
        family, _, rev = family_rev.rpartition(":")
        return self.state.taskdefs.get(family, {}).get(int(rev)) if rev.isdigit() else None

    # ------------------------------------------------------------------ lifecycle

    def load(self) -> None:
        """Take the services the state of record's loader read at startup."""
        for doc in self.cs.record.docs("service"):
            svc = service_from_doc(doc)
            self.services[svc.arn] = svc
            self._saved[svc.arn] = doc

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # not asyncio.wait_for: on 3.11 it can swallow a cancel that races the wake-up
            timer = loop.call_later(self.tick, self._wake.set)
            try:
                await self._wake.wait()
            finally:
                timer.cancel()
            self._wake.clear()
            try:
                await self._after_departures()
                await self.pass_once()
            except Exception:
                log.exception("service scheduler pass failed")

    def lock_for(self, arn: str) -> asyncio.Lock:
        """Serialises one service's plan-and-apply with API writes to that service. Writes
        to other services never wait for a pass (one global lock made an UpdateService wait
        seconds behind a pass that was starting thousands of another service's tasks)."""
        return self._locks.setdefault(arn, asyncio.Lock())

    async def pass_once(self) -> None:
        """Plan and apply every service that needs it (`_due`). Services are reconciled
        concurrently: each waits for store commits, and one after another a pass over ten
        busy services waited for twenty commits in a row; together their placements share
        a decision batch and their writes a group commit. A service that fails does not
        stop the rest."""
        async with self._pass_lock:
            at = now()
            changes = self.state.take_changes()
            unsettled = self._unsettled_clusters() if self.services else set()
            due = [
                arn
                for arn, svc in self.services.items()
                if svc.status != "INACTIVE" and self._due(svc, changes, unsettled, at)
            ]
            self._pass_nodes = {}
            hold_until = time.monotonic() + liveness.HOLD_MAX_S  # one budget for the pass
            try:
                results = await asyncio.gather(
                    *(self._reconcile_live(arn, at, hold_until) for arn in due),
                    return_exceptions=True,
                )
            finally:
                self._pass_nodes = None
            for arn, result in zip(due, results, strict=True):
                if isinstance(result, BaseException):
                    log.error("reconciling %s failed", arn, exc_info=result)

    def _due(
        self,
        svc: Service,
        changes: tuple[set[tuple[str, str]], set[str]],
        unsettled: set[str],
        at: float,
    ) -> bool:
        """Whether a pass must plan this service: it is not steady (a rollout, a scale, a
        failing launch, an API write), its tasks or its cluster's instances changed, a host
        of its cluster is down (the grace runs out with time), or FULL_PASS_S went by. A
        steady service of 5,000 tasks cost every pass ~15 ms to plan again for nothing."""
        services, clusters = changes
        return (
            not svc.steady
            or (svc.cluster, svc.name) in services
            or svc.cluster in clusters
            or svc.cluster in unsettled
            or at - self._planned_at.get(svc.arn, 0.0) >= FULL_PASS_S
        )

    def _unsettled_clusters(self) -> set[str]:
        """Clusters with an unreachable instance that still has tasks."""
        return {
            i.cluster
            for i in self.state.instances.values()
            if not (i.connected and i.docker_healthy)
            and i.status != "INACTIVE"
            and self.state.tasks_on.get(i.arn)
        }

    async def _after_departures(self, deadline: float = 0.0) -> None:
        """Wait (until `deadline`, or HOLD_MAX_S) while agents drop in numbers: their
        disconnects go first (liveness.Departures says why), planning can wait for the
        grace."""
        if self.departures is None:
            return
        deadline = deadline or time.monotonic() + liveness.HOLD_MAX_S
        while True:
            at = time.monotonic()
            if at >= deadline or not self.departures.bursting(at):
                return
            await asyncio.sleep(min(deadline - at, self.departures.quiet_in(at)))

    async def _reconcile_live(self, arn: str, at: float, hold_until: float = 0.0) -> None:
        await self._after_departures(hold_until)  # between the services of a pass, too
        async with self.lock_for(arn):
            svc = self.services[arn]
            if svc.status != "INACTIVE":
                self._planned_at[arn] = at
                await self.reconcile(svc)

    async def reconcile(self, svc: Service) -> Plan:
        async with self._planning:
            tasks = self.state.service_tasks(svc.cluster, svc.name)
            tasks = [t for t in tasks if t.last_status != "STOPPED"]
            p = planner.plan(svc, self.world(svc, tasks))
        self.services[svc.arn] = p.service
        await self.apply(p.service, p, {t.arn: t for t in tasks})
        await self.save(self.services[svc.arn])
        return p

    async def set_tags(self, arn: str, tags: list[dict[str, str]]) -> None:
        """Tag/UntagResource on a service; its disconnect-grace tag takes effect at once."""
        grace = grace_from_tags(tags)  # refuses a bad value before anything changes
        async with self.lock_for(arn):
            svc = self.services[arn]
            svc.tags, svc.grace = tags, grace
            await self.save(svc)

    async def save(self, svc: Service, *with_ops: Op) -> None:
        """Commit the service if it changed, in one transaction with `with_ops` (its event):
        each commit waits for the store's next group commit, so one is half the latency."""
        doc = to_doc(svc)
        changed = doc != self._saved.get(svc.arn)
        ops = [Put("service", svc.arn, svc.cluster, doc)] if changed else []
        if ops or with_ops:
            await self.cs.commit([*ops, *with_ops])
        if changed:
            self._saved[svc.arn] = doc

    # ------------------------------------------------------------------ the world

    def world(self, svc: Service, tasks: list[Task]) -> World:
        at = now()
        rules = self._rules(svc) if svc.scheduling == "DAEMON" else None
        zone = zone_attribute(svc)
        shared = self._pass_nodes if rules is None else None
        nodes = shared.get((svc.cluster, zone)) if shared is not None else None
        if nodes is None:
            nodes = {
                i.arn: self._node(i, at, zone, rules)
                for i in self.state.cluster_instances(svc.cluster)
                if i.status != "INACTIVE"
            }
            if shared is not None:
                shared[(svc.cluster, zone)] = nodes
        primary = svc.primary.id if svc.deployments else ""
        members = [
            Member(
                t.arn,
                t.started_by,
                t.instance_arn,
                t.last_status,
                t.desired_status,
                member_health(
                    t,
                    self.taskdef(f"{t.family}:{t.revision}"),
                    at,
                    STABLE_AFTER if t.started_by == primary else 0.0,
                ),
                t.created_at,
                t.protected_until,
            )
            for t in tasks
        ]
        grace = self.grace if svc.grace is None else svc.grace
        return World(nodes, members, at, grace)

    def _rules(self, svc: Service) -> Rules:
        td = self.taskdef(svc.task_definition)
        raw = svc.constraints + list((td.doc.get("placementConstraints") or []) if td else [])
        raw += taskdef_host.implied_constraints(td.doc) if td else []  # issue 18
        return compile_rules(
            [placement.Constraint(c.get("type", ""), c.get("expression", "")) for c in raw]
        )

    def _node(self, inst: Instance, at: float, zone: str, rules: Rules | None) -> Node:
        if inst.connected and not inst.docker_healthy:
            self._docker_down.setdefault(inst.arn, at)
        else:
            self._docker_down.pop(inst.arn, None)
        reachable = inst.connected and inst.docker_healthy
        since = (
            self._docker_down.get(inst.arn, at)
            if inst.connected
            else (inst.disconnected_at or self._started)
        )
        view = self.state.views.get(inst.arn)
        eligible = rules is None or view is None or rules.member_reason(view) is None
        return Node(
            inst.arn,
            inst.id,
            inst.status,
            reachable,
            0.0 if reachable else at - since,
            inst.all_attributes.get(zone, ""),
            eligible,
        )

    # ------------------------------------------------------------------ applying a plan

    async def apply(self, svc: Service, p: Plan, tasks: dict[str, Task]) -> None:
        """Stops first (they free what the starts may need), then every start at once: a
        DAEMON service has one per instance, and each waits for a store commit. Lost tasks
        held until replaced stop last, one per task started (they free nothing reachable)."""
        held = [s for s in p.stops if s.until_replaced]
        await self._stop(svc, [s for s in p.stops if not s.until_replaced], tasks)
        started = await asyncio.gather(*(self._start(self.services[svc.arn], s) for s in p.starts))
        await self._stop(svc, planner.replaced(held, sum(started)), tasks)

    async def _stop(self, svc: Service, stops: list[Stop], tasks: dict[str, Task]) -> None:
        by_reason: dict[str, list[Task]] = defaultdict(list)
        for s in stops:
            task = tasks.get(s.task)
            if task is None:
                continue
            by_reason[s.reason].append(task)
            if s.failure:
                planner.note_failure(svc, task.started_by, f"task {task.id}: {s.reason}", now())
        for reason, group in by_reason.items():
            await task_writes.stop_tasks(self.cs, group, "ServiceSchedulerInitiated", reason)
            add_event(
                self.services[svc.arn],
                f"has stopped {len(group)} running tasks: {_task_ids(group)}. Reason: {reason}.",
                now(),
            )

    async def _start(self, svc: Service, start: Start) -> int:
        """Launch `start`; the number of tasks started."""
        dep = svc.deployment(start.deployment)
        td = self.taskdef(dep.task_definition) if dep else None
        cluster = self.state.clusters.get(svc.cluster)
        if dep is None or td is None or cluster is None:
            return 0
        if start.instance:
            views = [self.state.views[start.instance]] if start.instance in self.state.views else []
        else:
            views = self.state.cluster_views(svc.cluster)
        try:
            spec = await self._launch_spec(svc, dep.id, td, cluster, start, views)
            started, failures = await self._launch_by_provider(svc, spec)
        except ApiError as err:
            notice(svc, "start-error", f"was unable to start tasks: {err.message}", now())
            return 0
        self._report_start(self.services[svc.arn], started, failures)
        return len(started)

    async def _launch_by_provider(
        self, svc: Service, spec: LaunchSpec
    ) -> tuple[list[Task], list[dict[str, str]]]:
        """Launch the spec; with a capacity provider strategy (issue 22), split its tasks
        by base and weight, the service's tasks already on each provider counted."""
        if not svc.capacity_strategy:
            return await task_writes.launch(self.cs, spec)
        items = capacity_strategy.parse(svc.capacity_strategy)
        already = Counter(
            self.state.instances[t.instance_arn].all_attributes.get(PROVIDER_ATTRIBUTE, "")
            for t in self.state.service_tasks(svc.cluster, svc.name)
            if t.desired_status == "RUNNING" and t.instance_arn in self.state.instances
        )
        started: list[Task] = []
        failures: list[dict[str, str]] = []
        for name, n in capacity_strategy.split(items, spec.count, already).items():
            if n:
                got, failed = await task_writes.launch(self.cs, launch.on_provider(spec, name, n))
                started, failures = started + got, failures + failed
        return started, failures

    async def _launch_spec(
        self,
        svc: Service,
        started_by: str,
        td: TaskDefinition,
        cluster: Cluster,
        start: Start,
        views: list[InstanceView],
    ) -> LaunchSpec:
        """The typed launch of a start: from the Service itself, no request body."""
        group = f"service:{svc.name}"
        strategies = launch.strategies_of(
            svc.strategies or ([] if start.instance else SERVICE_STRATEGIES)
        )
        propagated = svc.propagate_tags == "TASK_DEFINITION"
        td_tags = await self.cs.rows.taskdef_tags(td.arn) if propagated else []
        tags = launch.task_tags(
            [], svc.propagate_tags, td_tags, svc.tags, svc.managed_tags, cluster.name, svc.name
        )
        return launch.LaunchSpec(
            cluster=cluster,
            td=td,
            count=start.count,
            instances=views,
            demand=launch.demand_of(td, {}, group),
            constraints=launch.constraints_of(svc.constraints, td, strategies),
            strategies=strategies,
            started_by=started_by,
            tags=tags,
            service=svc.name,
            exec_enabled=svc.exec_enabled,
        )

    @staticmethod
    def _report_start(svc: Service, started: list[Task], failures: list[dict[str, str]]) -> None:
        if started:
            add_event(svc, f"has started {len(started)} tasks: {_task_ids(started)}.", now())
        for f in failures[:1]:
            notice(
                svc,
                f"place:{f['reason']}",
                "was unable to place a task because no container instance met all of its "
                f"requirements. Reason: {f['reason']}. {f.get('detail', '')}".rstrip(),
                now(),
            )

    # ------------------------------------------------------------------ listener

    def _on_stopped(self, changes: list[Change]) -> None:
        self.on_stopped([c.new for c in changes])

    def on_stopped(self, tasks: list[Task]) -> None:
        """Tasks reached STOPPED: count failures of service tasks, then plan again soon."""
        for t in tasks:
            svc = self.find(t.cluster, t.service) if t.service else None
            if svc is None:
                continue
            if t.stop_code in FAILURE_CODES:
                why = f"task {t.id} stopped: {t.stopped_reason or t.stop_code}"
                planner.note_failure(svc, t.started_by, why, now())
            self.wake()


def _task_ids(tasks: list[Task]) -> str:
    """The tasks of a service event, ECS-style, naming at most EVENT_TASK_IDS of them: a
    scale to 5,000 put 190 kB into one event, kept in the service's document."""
    ids = " ".join(f"(task {t.id})" for t in tasks[:EVENT_TASK_IDS])
    more = len(tasks) - EVENT_TASK_IDS
    return f"{ids} and {more} more" if more > 0 else ids
