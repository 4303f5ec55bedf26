"""ECS operations beyond the core: resource tags and deleting task definition revisions.

`EcsExtraOps` is a mixin of `ClusterService`: its `op_*` methods are picked up like the
service's own and follow its write pattern (mutate the state, commit, then answer).

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from controller import ecs_views
from controller.model import TaskDefinition, now
from controller.store_api import Delete, Put
from dockyard.arns import resource_name
from dockyard.errors import (
    TASKDEF_NOT_FOUND,
    ApiError,
    client_error,
    cluster_not_found,
    invalid,
    service_not_found,
)

if TYPE_CHECKING:
    from controller.events import EventLog
    from controller.state import ClusterState
    from controller.state_of_record import StateOfRecord
    from controller.store_api import Op
    from dockyard.arns import ArnFactory

log = logging.getLogger(__name__)

KIND = "ecs-extra"  # store rows: {"type": "tags", ...} and {"type": "revision", ...}
MAX_TAGS = 50
RESERVED_PREFIX = "aws:"
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

Tags = list[dict[str, str]]


@dataclass
class _Extra:
    """What this module keeps besides the state: task definition tags, revision marks."""

    taskdef_tags: dict[str, Tags] = field(default_factory=dict)  # by task definition ARN
    revisions: dict[str, int] = field(default_factory=dict)  # family -> highest ever


@dataclass
class _Target:
    """A taggable resource: its current tags and how to store new ones."""

    tags: Tags
    save: Callable[[Tags], Awaitable[None]]


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


def merge_tags(old: Tags, new: Tags) -> Tags:
    """ECS's order after a TagResource: the new tags as given (a key given twice keeps its
    last value), then the old tags whose keys were not given again."""
    given = {t["key"]: t["value"] for t in new}
    return [{"key": k, "value": v} for k, v in given.items()] + [
        dict(t) for t in old if t["key"] not in given
    ]


def split_arn(arn: str) -> tuple[str, str]:
    """`arn:aws:ecs:r:a:task/c/id` -> ("task", "c/id"); InvalidParameter for non-ECS ARNs."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "ecs" or "/" not in parts[5]:
        raise invalid("resourceArn", f"{arn!r} is not an ECS resource ARN")
    kind, _, rest = parts[5].partition("/")
    return kind, rest


class EcsExtraOps:
    """TagResource, UntagResource, ListTagsForResource, DeleteTaskDefinitions."""

    if TYPE_CHECKING:  # provided by ClusterService
        record: StateOfRecord
        state: ClusterState
        events: EventLog
        arns: ArnFactory
        scheduler: Any

        async def commit(self, ops: list[Op]) -> None: ...

        def event(
            self,
            cluster: str,
            kind: str,
            subject: str,
            message: str,
            detail: dict[str, Any] | None = None,
        ) -> Op: ...

    _extra_loading: asyncio.Future[_Extra] | None = None
    _sweeper: asyncio.Task[None] | None = None

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

    # ------------------------------------------------------------------ tags

    async def op_TagResource(self, body: dict[str, Any]) -> dict[str, Any]:
        tags = check_tags(body.get("tags"))
        target = await self._target(body.get("resourceArn", ""))
        merged = merge_tags(target.tags, tags)
        if len(merged) > MAX_TAGS:
            raise invalid("tags", f"a resource can have at most {MAX_TAGS} tags")
        await target.save(merged)
        return {}

    async def op_UntagResource(self, body: dict[str, Any]) -> dict[str, Any]:
        gone = set(body.get("tagKeys") or [])
        target = await self._target(body.get("resourceArn", ""))
        await target.save([t for t in target.tags if t["key"] not in gone])
        return {}

    async def op_ListTagsForResource(self, body: dict[str, Any]) -> dict[str, Any]:
        arn = body.get("resourceArn", "")
        target = await self._target(arn)
        if not target.tags and split_arn(arn)[0] == "cluster":
            return {}  # ECS: a cluster that never had tags answers without a tags member
        return {"tags": [dict(t) for t in target.tags]}

    async def _target(self, arn: str) -> _Target:
        kind, rest = split_arn(arn)
        finders = {
            "cluster": self._cluster_target,
            "task-definition": self._taskdef_target,
            "task": self._task_target,
            "container-instance": self._instance_target,
            "service": self._service_target,
        }
        finder = finders.get(kind)
        if finder is None:
            raise invalid("resourceArn", f"{kind} resources take no tags in Dockyard")
        return await finder(arn, rest)

    def _missing(self, arn: str) -> ApiError:
        return ApiError("ResourceNotFoundException", f"The specified resource was not found: {arn}")

    def _check_cluster(self, name: str) -> None:
        c = self.state.clusters.get(name)
        if c is None or c.status != "ACTIVE":
            raise cluster_not_found()

    async def _cluster_target(self, arn: str, name: str) -> _Target:
        self._check_cluster(name)
        c = self.state.clusters[name]
        if c.arn != arn:
            raise self._missing(arn)

        async def save(tags: Tags) -> None:
            c.tags = tags
            await self.commit([self.state.put_cluster(c)])

        return _Target(c.tags, save)

    async def _taskdef_target(self, arn: str, name: str) -> _Target:
        family, _, rev = name.partition(":")
        td = self.state.taskdefs.get(family, {}).get(int(rev)) if rev.isdigit() else None
        if td is None or td.arn != arn:
            raise client_error(TASKDEF_NOT_FOUND)  # ECS's answer, as for DescribeTaskDefinition
        current = await self.taskdef_tags(arn)

        async def save(tags: Tags) -> None:
            await self.commit(self.taskdef_tag_ops(arn, tags))

        return _Target(current, save)

    async def _task_target(self, arn: str, rest: str) -> _Target:
        self._check_cluster(rest.partition("/")[0])
        task = self.state.tasks.get(arn)
        if task is None:
            raise self._missing(arn)

        async def save(tags: Tags) -> None:
            task.tags = tags
            await self.commit([self.state.save_task(task)])

        return _Target(task.tags, save)

    async def _instance_target(self, arn: str, rest: str) -> _Target:
        self._check_cluster(rest.partition("/")[0])
        inst = self.state.instances.get(arn)
        if inst is None or inst.status == "INACTIVE":
            raise self._missing(arn)

        async def save(tags: Tags) -> None:
            inst.tags = tags
            await self.commit([self.state.put_instance(inst)])

        return _Target(inst.tags, save)

    async def _service_target(self, arn: str, rest: str) -> _Target:
        sched = self._scheduler()
        svc = sched.services.get(arn) if sched is not None else None
        if svc is None or svc.status == "INACTIVE":
            raise service_not_found()  # ECS: whether or not its cluster exists

        async def save(tags: Tags) -> None:
            await sched.set_tags(arn, tags)

        return _Target(svc.tags, save)

    def _scheduler(self) -> Any:
        """The services' scheduler, if installed (it owns the live Service objects)."""
        return self.scheduler

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
                    self.event("", "taskdef", td.arn, "task definition deletion requested"),
                ]
            deleted.append(ecs_views.taskdef_view(td))
        await self.commit(ops)
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
        sched = self._scheduler()
        for svc in sched.services.values() if sched is not None else ():
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
                self.event("", "taskdef", td.arn, "task definition deleted"),
            ]
        await self.commit(ops)
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
