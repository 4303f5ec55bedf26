"""The operations' narrow context: what an operation function gets instead of a hub's `self`.

`OpContext` is the `Core` (state of record, store, events, ARNs, change feed, lookups) plus
the parts operations of several resources share: the placer (tasks' launches are batched
into one placement decision), the task roles' checks, the task definitions' own rows
(tags, revision marks), the account settings, and a view of the services (owned by the
orchestrator, which installs itself here when it starts). Each resource's operations are
plain functions `(ctx, body) -> response` in `controller/ops/<resource>.py`, bound to their
names once at startup (`controller.ops.bind.handlers`).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from controller.ecs_extra import TaskdefRows
from controller.ops.account_settings import AccountSettings
from controller.ops.capacity_providers import CapacityProviders
from controller.ops.core import Core
from controller.ops.task_protection import TaskProtectionOps
from controller.placement_batch import PlacementBatcher
from controller.roles import RoleService


class ServicesView(Protocol):
    """What the operations of other resources read of the services (the orchestrator's)."""

    @property
    def services(self) -> Mapping[str, Any]: ...  # by ARN: orchestrator.model.Service

    def find(self, cluster: str, name: str) -> Any: ...

    async def set_tags(self, arn: str, tags: list[dict[str, str]]) -> None: ...


class NoServices:
    """The services' view before the orchestrator is installed: there are none."""

    services: Mapping[str, Any] = {}

    def find(self, cluster: str, name: str) -> Any:
        return None

    async def set_tags(self, arn: str, tags: list[dict[str, str]]) -> None:
        raise RuntimeError("no services without the orchestrator")


@dataclass(eq=False)
class OpContext(Core):
    """The operations' context (see the module's docstring)."""

    rng: random.Random = field(default_factory=random.Random)
    services: ServicesView = field(default_factory=NoServices)  # set by orchestrator.wiring
    placer: PlacementBatcher = field(init=False)
    roles: RoleService = field(init=False)  # roles, secrets, task credentials (issue 7)
    rows: TaskdefRows = field(init=False)  # task definitions' tags and revision marks
    account: AccountSettings = field(init=False)  # account settings (issue 16)
    capacity: CapacityProviders = field(init=False)  # capacity providers (issue 22)
    task_protection: TaskProtectionOps = field(init=False)  # (issue 22; also the agents')

    def __post_init__(self) -> None:
        super().__post_init__()
        self.placer = PlacementBatcher(self.rng)
        self.roles = RoleService(self)
        self.rows = TaskdefRows(self, self.revisions_in_use)
        self.account = AccountSettings(self.record, self.arns)
        self.capacity = CapacityProviders(self.record, self.arns)
        self.task_protection = TaskProtectionOps(self)

    def revisions_in_use(self) -> set[str]:
        """ARNs of task definition revisions a live task or a live service references (a
        deleted revision is removed only once none does)."""
        used = {t.task_definition_arn for t in self.state.tasks.values() if t.active}
        for svc in self.services.services.values():
            if svc.status != "INACTIVE":
                used.update(d.task_definition_arn for d in svc.deployments)
                used.add(svc.task_definition_arn)
        return used


OpFn = Callable[[OpContext, dict[str, Any]], Awaitable[dict[str, Any]]]  # an operation
