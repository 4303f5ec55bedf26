"""The change feed: each change to the state of record, published once, after its commit.

Components that react to the state subscribe here instead of being called by the code that
changed it (SwarmKit's store watch, in process): the dispatcher turns task changes into
per-instance desired-state deltas, the services' orchestrator re-plans services whose tasks
stopped, the state gauges of /metrics count tasks and instances (controller/metrics.py).
A subscriber is a plain function of the batch of changes of its kinds, called synchronously
in the publisher's loop turn, so it must only note work and return (queue a delta, wake a
loop); the order of subscribers is the order they subscribed.

Kinds published today:
- Every stored kind (`"task"`, `"instance"`, `"service"`, `"role"`, ... : the keys of
  `controller.state_of_record.KINDS`): each committed `Put` or `Delete`, once, right after
  the store committed it (`StateOfRecord` publishes what the store's `watch` reports, so a
  replicated backend's follower is fed the same way). `new` is the object written (the state
  object, or the stored document when the writer built one), None for a delete. Only kinds
  somebody subscribed to are built and published.
- `TASK_DESIRED`: a task's desired state changed (placed, stop requested, credentials
  refreshed): `new` is the Task.
- `TASK_STOPPED`: a task reached STOPPED (its agent reported it): `new` is the Task.

A new subscriber: a function of `list[Change]`, subscribed where its component is built
(copy `Dispatcher.__init__`'s `service.feed.subscribe(...)`, controller/dispatcher.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, KeysView
from dataclasses import dataclass
from typing import Any

TASK_DESIRED = "task/desired"
TASK_STOPPED = "task/stopped"


@dataclass(frozen=True, slots=True)
class Change:
    kind: str
    key: str  # the object's key in its kind (a task's ARN)
    new: Any  # the object as committed (None: deleted)
    old: Any = None  # what it was, when the publisher had it apart (objects change in place)


Subscriber = Callable[[list[Change]], None]


class ChangeFeed:
    def __init__(self) -> None:
        self._subscribers: dict[str, list[Subscriber]] = defaultdict(list)

    def subscribe(self, kinds: Iterable[str], subscriber: Subscriber) -> None:
        for kind in kinds:
            self._subscribers[kind].append(subscriber)

    def kinds(self) -> KeysView[str]:
        """The kinds somebody subscribed to (publishers skip building unwanted changes)."""
        return self._subscribers.keys()

    def publish(self, changes: list[Change]) -> None:
        """Hand each subscriber the changes of its kinds, in one call per kind."""
        by_kind: dict[str, list[Change]] = defaultdict(list)
        for c in changes:
            by_kind[c.kind].append(c)
        for kind, batch in by_kind.items():
            for subscriber in self._subscribers.get(kind, ()):
                subscriber(batch)


def task_changes(kind: str, tasks: Iterable[Any]) -> list[Change]:
    return [Change(kind, t.arn, t) for t in tasks]
