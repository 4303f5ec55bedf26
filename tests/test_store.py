"""The SQLite store: documents come back exactly as the objects that were written, and a
batch holding several writes of one key keeps the last (real SQLite, real files)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

from controller.model import ContainerState, PortAssignment, Task, from_doc, to_doc
from controller.store import Delete, EventRow, Put
from controller.store import SqliteStore as Store


def _task(arn: str, status: str) -> Task:
    return Task(
        arn=arn,
        id=arn.rsplit("/", 1)[-1],
        cluster="default",
        family="web",
        revision=3,
        task_definition_arn="arn:aws:ecs:local:0:task-definition/web:3",
        instance_arn="arn:aws:ecs:local:0:container-instance/default/i-1",
        containers=[
            ContainerState(
                name="app",
                image="dockyard/httpd",
                ports=[PortAssignment(container_port=80, host_port=49153, protocol="tcp")],
                exit_code=None,
                command=["httpd", "-f"],
                environment=[{"name": "MODE", "value": "é ünïcode"}],
            )
        ],
        cpu=128,
        memory=256,
        group="service:web",
        last_status=status,
        overrides={"containerOverrides": [{"name": "app", "environment": []}]},
        tags=[{"key": "team", "value": "a"}],
        started_at=1.5e9,
    )


@contextlib.asynccontextmanager
async def opened(path: Path) -> AsyncIterator[Store]:
    store = Store(path)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def test_documents_round_trip_and_the_last_write_of_a_key_wins(tmp_path: Path) -> None:
    async with opened(tmp_path) as store:
        pending, running = _task("arn:t/1", "PENDING"), _task("arn:t/1", "RUNNING")
        other = _task("arn:t/2", "PENDING")
        await store.write(
            [
                Put("task", pending.arn, "default", None, obj=pending),
                Put("task", other.arn, "default", None, obj=other),
                Put("task", running.arn, "default", None, obj=running),
            ]
        )
        docs = {d["arn"]: d for d in await store.load("task")}
        assert from_doc("task", docs["arn:t/1"]) == running
        assert from_doc("task", docs["arn:t/2"]) == other
        # the same document the standard library would have written from to_doc
        assert docs["arn:t/1"] == json.loads(json.dumps(to_doc(running)))


async def test_deletes_events_and_reopening(tmp_path: Path) -> None:
    async with opened(tmp_path) as store:
        kept, gone = _task("arn:t/kept", "RUNNING"), _task("arn:t/gone", "RUNNING")
        back = _task("arn:t/back", "STOPPED")
        await store.write([Put("task", t.arn, "default", None, obj=t) for t in (kept, gone, back)])
        event = EventRow(
            7,
            1795438316.305123,
            "default",
            "task",
            kept.arn,
            "lastStatus → RUNNING",
            {"stopCode": "", "exitCode": None, "n": 1.25},
        )
        await store.write(
            [
                Delete("task", gone.arn),
                Delete("task", back.arn),
                Put("task", back.arn, "default", None, obj=back),  # the later op wins
                event,
            ]
        )
    async with opened(tmp_path) as reopened:
        assert {d["arn"] for d in await reopened.load("task")} == {kept.arn, back.arn}
        assert await reopened.load_events(subject=kept.arn) == [event]
        assert await reopened.last_event_seq() == 7


async def test_a_failed_batch_writes_nothing_and_the_store_goes_on(tmp_path: Path) -> None:
    """A batch is one transaction: when one of its rows is refused, none of it is stored,
    every write in it fails, and the next batch commits as usual."""
    async with opened(tmp_path) as store:
        good, later = _task("arn:t/good", "PENDING"), _task("arn:t/later", "RUNNING")
        # the events statement runs after the tasks statement, and refuses a NULL cluster
        refused = EventRow(1, 1.0, None, "task", good.arn, "refused", {})  # type: ignore[arg-type]
        batch = [Put("task", good.arn, "default", None, obj=good), refused]
        try:
            await store.write(batch)
        except Exception as err:
            assert "NOT NULL" in str(err)
        else:
            raise AssertionError("a batch with a refused row was committed")
        await store.write([Put("task", later.arn, "default", None, obj=later)])
        assert {d["arn"] for d in await store.load("task")} == {later.arn}
