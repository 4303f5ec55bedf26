"""The state of record: every stored kind, read by one loader, committed through one place.

`StateOfRecord` is the one object between the controller's parts and its `Store`
(controller/store_api.py): at startup `load()` reads every kind in `KINDS` from the store,
once; the cluster kinds go into `ClusterState` (controller/state.py) and every other kind's
rows are handed to the part that keeps them in memory (`take(kind)`: the services'
orchestrator, roles and secrets, tags, account settings, security). Every write goes through
`commit(ops)`, which returns once the store has committed them; each committed change is
then published once on the change feed (controller/feed.py) under its kind.

A new stored kind: add it to `KINDS` with the part that owns it, give that part a load step
that takes its rows (copy `JoinTokens.load` in controller/security/tokens.py), and commit its
`Put`/`Delete` records through `commit` (or the operations' `Core.commit`, which calls it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from controller.feed import Change, ChangeFeed
from controller.model import from_doc
from controller.records import Delete, Op, Put
from controller.state import ClusterState
from controller.store_api import Store, StoreBusy

if TYPE_CHECKING:  # their modules import the operations' context, which imports this one
    from controller.orchestrator.model import Service
    from controller.roles import Role, Secret
    from controller.security.agents import BoundSecret, Revoked
    from controller.security.keys import AccessKey
    from controller.security.tokens import JoinToken

Row = tuple[str, str, dict[str, Any]]  # (key, cluster, document), as Store.load_rows gives

# the kinds ClusterState holds, in the order they load (tasks refer to their instance)
CLUSTER_KINDS = ("cluster", "taskdef", "instance", "task")

# every stored kind -> what holds its objects in memory (the one list of what is stored;
# "sealing", the store's own sealing record, is read by controller.security.sealing before)
KINDS: dict[str, str] = {
    "cluster": "ClusterState.clusters (controller/state.py)",
    "taskdef": "ClusterState.taskdefs",
    "instance": "ClusterState.instances",
    "task": "ClusterState.tasks",
    "service": "StateOfRecord.services (decoded by controller/orchestrator/scheduler.py)",
    "role": "StateOfRecord.roles (kept by RoleService, controller/roles.py); sealed",
    "secret": "StateOfRecord.secrets (kept by RoleService); sealed",
    "rolekey": "RoleService's credentials-id key; sealed",
    "ecs-extra": "task definitions' tags, retired revisions (TaskdefRows, controller/ecs_extra.py)",
    "account_setting": "StateOfRecord.account_settings (controller/ops/account_settings.py)",
    "jointoken": "StateOfRecord.join_tokens (kept by JoinTokens, controller/security/tokens.py)",
    "accesskey": "StateOfRecord.access_keys (kept by AccessKeys, security/keys.py); sealed",
    "revokedinstance": "StateOfRecord.revoked (kept by AgentGate, security/agents.py)",
    "instancesecret": "StateOfRecord.instance_secrets (kept by AgentGate)",
    "ca": "the cluster CA (controller/security/cluster_ca.py); its key sealed",
    # Cloud Map (issue 21): StateOfRecord.discovery[kind] (kept by Discovery,
    # controller/ops/discovery_state.py)
    "sd_namespace": "StateOfRecord.discovery (controller/ops/discovery_state.py)",
    "sd_service": "StateOfRecord.discovery",
    "sd_instance": "StateOfRecord.discovery",
    "sd_operation": "StateOfRecord.discovery",
    "scalable_target": "AutoScaling.targets (controller/ops/autoscaling.py)",
    "scaling_policy": "AutoScaling.policies",
    "scheduled_action": "AutoScaling.actions",
    "scaling_activity": "AutoScaling.activities (the newest 100 per target)",
    "capacity_provider": "StateOfRecord.capacity_providers (controller/ops/capacity_providers.py)",
    "cluster_capacity": "StateOfRecord.cluster_capacity (clusters' providers, same module)",
    "events_rule": "ScheduledRules.rules (EventBridge rules, controller/ops/events_rules.py)",
}

# written first and deleted last by `dockyard restore` (controller/backup.py): a store that
# still holds it is half restored, and no controller may run on it
RESTORE_MARKER = "restore-in-progress"


class StateOfRecord:
    def __init__(self, store: Store, feed: ChangeFeed | None = None) -> None:
        self.store = store
        self.cluster = ClusterState()
        # The other kinds' objects, each filled and saved by the part named in KINDS (which
        # decodes its rows at startup and commits its changes through `commit`):
        self.services: dict[str, Service] = {}  # by ARN (clusters' operations count them)
        self.roles: dict[str, Role] = {}  # by ARN
        self.secrets: dict[str, Secret] = {}  # by name
        self.join_tokens: dict[str, JoinToken] = {}  # by id
        self.access_keys: dict[str, AccessKey] = {}  # by access key id
        self.revoked: dict[str, Revoked] = {}  # by instance id
        self.instance_secrets: dict[str, BoundSecret] = {}  # by instance id
        self.account_settings: dict[tuple[str, str], str] = {}  # (principal, name) -> value
        self.discovery: dict[str, dict[str, dict[str, Any]]] = {}  # Cloud Map: kind -> key -> doc
        self.capacity_providers: dict[str, dict[str, Any]] = {}  # by name (issue 22)
        self.cluster_capacity: dict[str, dict[str, Any]] = {}  # by cluster name
        self.feed = feed or ChangeFeed()  # committed changes, published once
        self._rows: dict[str, list[Row]] = {}  # loaded, not yet taken by their owner
        self._unwatch = store.watch(self._committed)  # every commit, published once

    async def load(self) -> None:
        """The one loader: read every stored kind once (startup), fill the cluster state."""
        if await self.store.load_rows(RESTORE_MARKER):
            raise StoreBusy(
                f"{self.store.location} holds a restore that did not finish: "
                "run `dockyard restore FILE --force` again before starting a controller"
            )
        for kind in KINDS:
            self._rows[kind] = await self.store.load_rows(kind)
        for kind in CLUSTER_KINDS:
            for _, _, doc in self.take(kind):
                self.cluster.load(kind, from_doc(kind, doc))
        for arn in self.cluster.instances:
            self.cluster.refresh_view(arn)

    def active_services(self, cluster: str) -> int:
        """How many services of `cluster` are not INACTIVE (DeleteCluster refuses them)."""
        return sum(s.cluster == cluster and s.status != "INACTIVE" for s in self.services.values())

    def take(self, kind: str) -> list[Row]:
        """The loaded rows of `kind`, handed once to the part that keeps that kind."""
        if kind not in KINDS:
            raise KeyError(f"{kind!r} is not a stored kind: list it in StateOfRecord's KINDS")
        return self._rows.pop(kind, [])

    def docs(self, kind: str) -> list[dict[str, Any]]:
        """The loaded documents of `kind` (see `take`)."""
        return [doc for _, _, doc in self.take(kind)]

    async def commit(self, ops: list[Op]) -> None:
        """Commit ops (Put, Delete, EventRow) to the store; returns once they are durable
        (and published on the feed: the store's watch calls `_committed` first)."""
        await self.store.write(ops)

    def _committed(self, revision: int, ops: list[Op]) -> None:
        """Publish each committed Put and Delete of a kind somebody subscribed to, once per
        object (a batch that wrote a key twice stored only the last write)."""
        subscribed = self.feed.kinds()
        latest: dict[tuple[str, str], Change] = {}
        for op in ops:  # the kind first: most ops are of kinds nobody subscribed to
            if op.kind in subscribed and isinstance(op, Put | Delete):
                new = (op.obj if op.doc is None else op.doc) if isinstance(op, Put) else None
                latest.pop((op.kind, op.key), None)  # re-insert: keep the commit's order
                latest[(op.kind, op.key)] = Change(op.kind, op.key, new)
        if latest:
            self.feed.publish(list(latest.values()))
