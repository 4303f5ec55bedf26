"""What every writer of the state needs: the state of record (its store, cluster state and
change feed), the event log, the ARNs, and the lookups that turn a request's reference into
an object.

The operations' context (controller.ops.context.OpContext) extends it; the parts that only
write their own rows and record events (roles and secrets, task definition rows, security,
the agents' link) take a `Core` and nothing more, so they import nothing of the operations.
Each write follows one pattern: decide and mutate the in-memory state synchronously (so a
decision never races another), `commit` what changed, and only then publish on the feed
(`notify_agents`, `tasks_stopped`) and answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controller.events import EventLog
from controller.feed import TASK_DESIRED, TASK_STOPPED, ChangeFeed, task_changes
from controller.model import Cluster, Instance, Task, TaskDefinition
from controller.state import ClusterState
from controller.state_of_record import StateOfRecord
from controller.store_api import Op, Store
from dockyard.arns import ArnFactory, last_part, resource_name
from dockyard.errors import TASKDEF_NOT_FOUND, client_error, cluster_not_found, invalid

DEFAULT_CLUSTER = "default"


@dataclass(eq=False)
class Core:
    record: StateOfRecord  # every stored kind, loaded once; commits go through it
    events: EventLog
    arns: ArnFactory = field(default_factory=ArnFactory)
    store: Store = field(init=False)  # the record's
    state: ClusterState = field(init=False)  # the record's cluster kinds
    # committed changes, published once: the dispatcher and the orchestrator subscribe
    feed: ChangeFeed = field(init=False)  # the record's

    def __post_init__(self) -> None:
        self.store = self.record.store
        self.state = self.record.cluster
        self.feed = self.record.feed

    async def commit(self, ops: list[Op]) -> None:
        await self.record.commit(ops)

    def event(
        self,
        cluster: str,
        kind: str,
        subject: str,
        message: str,
        detail: dict[str, Any] | None = None,
    ) -> Op:
        return self.events.record(cluster, kind, subject, message, detail)

    def notify_agents(self, tasks: list[Task]) -> None:
        """Publish that these tasks' desired state changed (after they are committed): the
        dispatcher, subscribed, sends each instance's agent its delta."""
        if tasks:
            self.feed.publish(task_changes(TASK_DESIRED, tasks))

    def tasks_stopped(self, tasks: list[Task]) -> None:
        """Publish that these tasks reached STOPPED (after they are committed)."""
        if tasks:
            self.feed.publish(task_changes(TASK_STOPPED, tasks))

    # ------------------------------------------------------------------ lookups

    def cluster(self, ref: str | None) -> Cluster:
        name = resource_name(ref or DEFAULT_CLUSTER)
        c = self.state.clusters.get(name)
        if c is None or c.status != "ACTIVE":
            raise cluster_not_found()
        return c

    def taskdef(self, ref: Any, field: str = "taskDefinition") -> TaskDefinition:
        if not isinstance(ref, str) or not ref:
            raise invalid(field, "is required: family, family:revision or an ARN")
        name = resource_name(ref)
        family, _, rev = name.partition(":")
        revisions = self.state.taskdefs.get(family, {})
        if rev:
            if not rev.isdigit() or int(rev) not in revisions:
                raise client_error(TASKDEF_NOT_FOUND)
            return revisions[int(rev)]
        active = [td for td in revisions.values() if td.status == "ACTIVE"]
        if not active:
            raise client_error(TASKDEF_NOT_FOUND)
        return max(active, key=lambda td: td.revision)

    def find_task(self, cluster: Cluster, ref: str) -> Task | None:
        """A task of the cluster by ARN or id."""
        t = self.state.tasks.get(ref) or self.state.tasks.get(
            self.arns.task(cluster.name, last_part(ref))
        )
        return t if t is not None and t.cluster == cluster.name else None

    def find_instance(self, cluster: Cluster, ref: str) -> Instance | None:
        """A container instance of the cluster by ARN or id."""
        inst = self.state.instances.get(ref) or self.state.instance_by_id(
            cluster.name, last_part(ref)
        )
        return inst if inst is not None and inst.cluster == cluster.name else None

    def task(self, cluster: Cluster, ref: Any, field: str = "task") -> Task:
        if not isinstance(ref, str) or not ref:
            raise invalid(field, "is required: a task ARN or id")
        t = self.find_task(cluster, ref)
        if t is None:
            raise invalid(field, f"task {ref} was not found in cluster {cluster.name}")
        return t

    def instance(self, cluster: Cluster, ref: Any, field: str = "containerInstance") -> Instance:
        if not isinstance(ref, str) or not ref:
            raise invalid(field, "is required: a container instance ARN or id")
        inst = self.find_instance(cluster, ref)
        if inst is None:
            raise invalid(
                field, f"container instance {ref} was not found in cluster {cluster.name}"
            )
        return inst
