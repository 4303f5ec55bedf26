"""Task definitions' own rows (tags, revision marks) and ECS's rules for tags.

The operations are elsewhere (tags: controller/ops/tags.py; DeleteTaskDefinitions:
controller/ops/task_definitions.py); `TaskdefRows` is the part of their context that keeps
these rows.

Tags live on the objects that have a `tags` field (clusters, tasks, container instances,
services). Task definitions have none, so their tags, and each family's highest revision
ever registered (ECS never reuses a revision number, even after a delete), are rows of
their own in the store, taken from the state of record's loader on first use.

A deleted revision is DELETE_IN_PROGRESS while a task or a service still uses it and is
removed (state and store) once nothing does; a sweeper checks while any are pending.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from controller.model import TaskDefinition
from controller.store_api import Delete, Put
from dockyard.errors import invalid

if TYPE_CHECKING:
    from controller.ops.core import Core
    from controller.store_api import Op

log = logging.getLogger(__name__)

KIND = "ecs-extra"  # store rows: {"type": "tags", ...} and {"type": "revision", ...}
MAX_TAGS = 50
RESERVED_PREFIX = "aws:"
SWEEP_PERIOD = 1.0  # seconds between checks for DELETE_IN_PROGRESS revisions to remove
Tags = list[dict[str, str]]


@dataclass
class _Extra:
    """What this module keeps besides the state: task definition tags, revision marks."""

    taskdef_tags: dict[str, Tags] = field(default_factory=dict)  # by task definition ARN
    revisions: dict[str, int] = field(default_factory=dict)  # family -> highest ever


def check_tags(tags: Any, field_name: str = "tags") -> Tags:
    """Tags as ECS accepts them (shapes are already checked): no reserved `aws:` keys."""
    out = []
    for i, tag in enumerate(tags or []):
        key = str(tag.get("key", ""))
        if not key:
            raise invalid(f"{field_name}[{i}].key", "is required")
        if key.lower().startswith(RESERVED_PREFIX):
            raise invalid(f"{field_name}[{i}].key", "keys starting with aws: are reserved")
        out.append({"key": key, "value": str(tag.get("value", ""))})
    if len(out) > MAX_TAGS:
        raise invalid(field_name, f"at most {MAX_TAGS} tags per resource")
    return out


class TaskdefRows:
    """Task definitions' tags and revision marks (rows of their own), and the removal of
    deleted revisions once nothing uses them (the operations: controller.ops.tags and
    controller.ops.task_definitions)."""

    def __init__(self, core: Core, in_use: Callable[[], set[str]]) -> None:
        self.record = core.record  # its rows come from the state of record's loader
        self.state = core.state
        self.commit = core.commit
        self.event = core.event
        self._in_use = in_use  # ARNs of the revisions live tasks and services reference
        self._extra_loading: asyncio.Future[_Extra] | None = None
        self._sweeper: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ own rows

    async def extra(self) -> _Extra:
        """The module's rows, taken from the state of record's loader on first use."""
        if self._extra_loading is None:
            self._extra_loading = asyncio.ensure_future(self._load_extra())
        return await self._extra_loading

    async def _load_extra(self) -> _Extra:
        out = _Extra()
        for doc in self.record.docs(KIND):
            if doc.get("type") == "tags":
                out.taskdef_tags[doc["arn"]] = doc["tags"]
            elif doc.get("type") == "revision":
                out.revisions[doc["family"]] = int(doc["revision"])
        if any(td.status == "DELETE_IN_PROGRESS" for td in self.all_taskdefs()):
            self.start_sweeper()
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

    def all_taskdefs(self) -> list[TaskDefinition]:
        return [td for revs in self.state.taskdefs.values() for td in revs.values()]

    async def purge_deleted(self) -> int:
        """Remove DELETE_IN_PROGRESS revisions nothing uses any more; how many went."""
        extra = await self.extra()
        used = self._in_use()
        ops: list[Op] = []
        for td in self.all_taskdefs():
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
                self.event("", "taskdef", td.arn, "task definition deleted"),
            ]
        await self.commit(ops)
        return len(ops) // 4

    def start_sweeper(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        """Purge until no revision is left DELETE_IN_PROGRESS (then stop)."""
        while any(td.status == "DELETE_IN_PROGRESS" for td in self.all_taskdefs()):
            await asyncio.sleep(SWEEP_PERIOD)
            try:
                await self.purge_deleted()
            except Exception:  # a failed commit is retried on the next round
                log.exception("purging deleted task definitions failed")
