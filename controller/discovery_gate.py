"""Deregister, then stop (issue 21): a registered task's stop waits for its DNS removal.

ECS takes a service's task out of Cloud Map before it stops the task, so that nobody is
sent to a container that is going away. Here the dispatcher hands every stop request (a
task's desired status turned STOPPED, whoever asked: StopTask, a service's scale-in or
replacement, an instance's draining or deregistration) to `StopGate.admit`. A task that
`EcsRegistrations` still has registered is held; it is released (sent on to its agent) once
- its Cloud Map instances are deregistered (the deregistration committed), and
- the last DnsSnapshot queued on the agents' streams no longer names it.
That snapshot is queued on every connected agent's stream before the stop is queued: the
task's own agent applies it before it reads the stop (one in-order stream), the others have
it in their outboxes before the stop leaves the controller. The check runs on both events
(a snapshot pushed, a deregistration done), whichever comes last releases.

A stop is never held longer than MAX_HOLD_S: a deregistration that fails (its registry
deleted, the store refusing) must not keep a task running; it goes out then, with a warning.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from controller.model import Task
from dockyard.arns import last_part
from dockyard.v1 import agent_pb2

log = logging.getLogger(__name__)

MAX_HOLD_S = 10.0


def _never(_: Task) -> bool:
    return False


class StopGate:
    """Holds stop requests of registered tasks until their DNS removal went out first."""

    def __init__(self, release: Callable[[list[Task]], None]) -> None:
        self.release = release  # sends tasks' desired state on (the dispatcher's delta)
        self.registered: Callable[[Task], bool] = _never  # wired to EcsRegistrations
        self.published: set[str] = set()  # instance ids in the last snapshot pushed
        self.held: dict[str, tuple[Task, asyncio.TimerHandle]] = {}

    def admit(self, tasks: Iterable[Task]) -> list[Task]:
        """The tasks whose desired state may go to their agents now; holds the others."""
        now: list[Task] = []
        for task in tasks:
            if task.arn in self.held:
                continue  # still held: the release sends its then current state
            if task.desired_status == "STOPPED" and self._waits(task):
                timer = asyncio.get_running_loop().call_later(MAX_HOLD_S, self._expire, task.arn)
                self.held[task.arn] = (task, timer)
            else:
                now.append(task)
        return now

    def _waits(self, task: Task) -> bool:
        return self.registered(task) or last_part(task.arn) in self.published

    def pushed(self, snapshot: agent_pb2.DnsSnapshot) -> None:
        """A snapshot was queued on every agent's stream: release who it no longer names."""
        self.published = {t.instance_id for rs in snapshot.records for t in rs.targets}
        self.check()

    def check(self) -> None:
        """Release every held stop whose task is deregistered and out of the last push."""
        ready = [arn for arn, (task, _) in self.held.items() if not self._waits(task)]
        self._release(ready)

    def forget(self, arns: Iterable[str]) -> None:
        """These tasks reached STOPPED on their own: nothing left to hold."""
        for arn in arns:
            held = self.held.pop(arn, None)
            if held is not None:
                held[1].cancel()

    def _expire(self, arn: str) -> None:
        if arn in self.held:
            log.warning(
                "task %s: its Cloud Map deregistration did not reach DNS in %.0f s; "
                "stopping it anyway",
                arn,
                MAX_HOLD_S,
            )
            self._release([arn])

    def _release(self, arns: list[str]) -> None:
        tasks = []
        for arn in arns:
            task, timer = self.held.pop(arn)
            timer.cancel()
            tasks.append(task)
        if tasks:
            self.release(tasks)
