"""Task definitions' own rows and DeleteTaskDefinitions.

Task definitions have no `tags` field, so their tags, and each family's highest revision
ever registered (ECS never reuses a revision number, even after a delete), are rows of
their own in the store, read on first use.

A deleted revision is DELETE_IN_PROGRESS while a task or a service still uses it and is
removed (state and store) once nothing does; a sweeper checks while any are pending.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from controller import ecs_views
from controller.model import TaskDefinition, now
from controller.ops.tags import Tags
from controller.store import Delete, Put
from dockyard.arns import resource_name
from dockyard.errors import ApiError

if TYPE_CHECKING:
    from controller.ops.context import OpsContext
    from controller.store import Op

log = logging.getLogger(__name__)

KIND = "ecs-extra"  # store rows: {"type": "tags", ...} and {"type": "revision", ...}
SWEEP_PERIOD = 1.0  # seconds between checks for DELETE_IN_PROGRESS revisions to remove
# DeleteTaskDefinitions' failure reasons, in ECS's words
INVALID_REVISION = (
    "The specified task definition identifier is invalid. "
    "Specify a valid name or ARN and try again."
)
MISSING_REVISION = (
    "The specified task definition does not exist. "
    "Specify a valid account, family, revision and try again."
)
ACTIVE_REVISION = (
    "The specified task definition is still in ACTIVE status. "
    "Please deregister the target and try again."
)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass
class _Extra:
    """What this module keeps besides the state: task definition tags, revision marks."""

    taskdef_tags: dict[str, Tags] = field(default_factory=dict)  # by task definition ARN
    revisions: dict[str, int] = field(default_factory=dict)  # family -> highest ever


class TaskDefinitionRows:
    """Task definitions' tags and revision marks, and DeleteTaskDefinitions."""

    def __init__(self, ctx: OpsContext) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.state = ctx.state
        self._extra_loading: asyncio.Future[_Extra] | None = None
        self._sweeper: asyncio.Task[None] | None = None

    def handlers(self) -> dict[str, Handler]:
        return {"DeleteTaskDefinitions": self.op_DeleteTaskDefinitions}

    # ------------------------------------------------------------------ own rows

    async def extra(self) -> _Extra:
        """The module's rows, read from the store once (concurrent callers share the read)."""
        if self._extra_loading is None:
            self._extra_loading = asyncio.ensure_future(self._load_extra())
        return await self._extra_loading

    async def _load_extra(self) -> _Extra:
        out = _Extra()
        for doc in await self.store.load(KIND):
            if doc.get("type") == "tags":
                out.taskdef_tags[doc["arn"]] = doc["tags"]
            elif doc.get("type") == "revision":
                out.revisions[doc["family"]] = int(doc["revision"])
        if any(td.status == "DELETE_IN_PROGRESS" for td in self._all_taskdefs()):
            self._start_sweeper()
        return out

    async def next_revision(self, family: str) -> int:
        """The revision number a new registration of `family` gets (never one used before).
        Callers must create the revision before their next await, so no two get the same."""
        marks = (await self.extra()).revisions
        return max(max(self.state.taskdefs.get(family, {}), default=0), marks.get(family, 0)) + 1

    def taskdef_tag_ops(self, td_arn: str, tags: Tags) -> list[Op]:
        """Store a task definition's tags (call after `extra()` has loaded)."""
        assert self._extra_loading is not None and self._extra_loading.done()
        rows = self._extra_loading.result().taskdef_tags
        key = f"tags:{td_arn}"
        if not tags and td_arn not in rows:
            return []
        if not tags:
            rows.pop(td_arn, None)
            return [Delete(KIND, key)]
        rows[td_arn] = tags
        return [Put(KIND, key, "", {"type": "tags", "arn": td_arn, "tags": tags})]

    async def taskdef_tags(self, td_arn: str) -> Tags:
        return list((await self.extra()).taskdef_tags.get(td_arn, []))

    # ------------------------------------------------------------------ delete revisions

    async def op_DeleteTaskDefinitions(self, body: dict[str, Any]) -> dict[str, Any]:
        refs = body.get("taskDefinitions") or []
        if not refs:  # ECS's words for both bounds
            raise ApiError(
                "InvalidParameterException",
                "size of TaskDefinition references list must be greater than 0",
            )
        if len(refs) > 10:
            raise ApiError(
                "InvalidParameterException",
                "Size of TaskDefinition references list cannot exceed 10",
            )
        await self.extra()
        deleted, failures, ops = [], [], []
        for ref in refs:
            td, why = self._deletable(ref)
            if td is None:
                failures.append({"arn": ref, "reason": why})
                continue
            if td.status != "DELETE_IN_PROGRESS":
                td.status = td.doc["status"] = "DELETE_IN_PROGRESS"
                td.doc["deleteRequestedAt"] = now()
                ops += [
                    self.state.put_taskdef(td),
                    self.ctx.event("", "taskdef", td.arn, "task definition deletion requested"),
                ]
            deleted.append(ecs_views.taskdef_view(td))
        await self.ctx.commit(ops)
        await self.purge_deleted()
        if any(td.status == "DELETE_IN_PROGRESS" for td in self._all_taskdefs()):
            self._start_sweeper()
        return {"taskDefinitions": deleted, "failures": failures}

    def _deletable(self, ref: str) -> tuple[TaskDefinition | None, str]:
        family, _, rev = resource_name(ref).partition(":")
        if not rev.isdigit():
            return None, INVALID_REVISION
        td = self.state.taskdefs.get(family, {}).get(int(rev))
        if td is None:
            return None, MISSING_REVISION
        if td.status == "ACTIVE":
            return None, ACTIVE_REVISION
        return td, ""

    def _all_taskdefs(self) -> list[TaskDefinition]:
        return [td for revs in self.state.taskdefs.values() for td in revs.values()]

    def _in_use(self) -> set[str]:
        """ARNs of revisions a live task or a live service still references."""
        used = {t.task_definition_arn for t in self.state.tasks.values() if t.active}
        for svc in self.ctx.services.services.values():
            if svc.status != "INACTIVE":
                used.update(d.task_definition_arn for d in svc.deployments)
                used.add(svc.task_definition_arn)
        return used

    async def purge_deleted(self) -> int:
        """Remove DELETE_IN_PROGRESS revisions nothing uses any more; how many went."""
        extra = await self.extra()
        used = self._in_use()
        ops: list[Op] = []
        for td in self._all_taskdefs():
            if td.status != "DELETE_IN_PROGRESS" or td.arn in used:
                continue
            revs = self.state.taskdefs[td.family]
            del revs[td.revision]
            if not revs:
                del self.state.taskdefs[td.family]
            mark = max(extra.revisions.get(td.family, 0), td.revision)
            extra.revisions[td.family] = mark
            extra.taskdef_tags.pop(td.arn, None)
            doc = {"type": "revision", "family": td.family, "revision": mark}
            ops += [
                Delete("taskdef", td.key),
                Delete(KIND, f"tags:{td.arn}"),
                Put(KIND, f"revision:{td.family}", "", doc),
                self.ctx.event("", "taskdef", td.arn, "task definition deleted"),
            ]
        await self.ctx.commit(ops)
        return len(ops) // 4

    def _start_sweeper(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        """Purge until no revision is left DELETE_IN_PROGRESS (then stop)."""
        while any(td.status == "DELETE_IN_PROGRESS" for td in self._all_taskdefs()):
            await asyncio.sleep(SWEEP_PERIOD)
            try:
                await self.purge_deleted()
            except Exception:  # a failed commit is retried on the next round
                log.exception("purging deleted task definitions failed")
