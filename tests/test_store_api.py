"""The Store interface's promises (controller/store_api.py), checked on every backend.

A new backend (etcd) adds its factory to BACKENDS and must pass the same tests: documents
come back as written, a batch is all or nothing, events come back by sequence, and each
commit is reported once to the watchers with a growing revision.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from controller.records import Op
from controller.store import SqliteStore
from controller.store_api import Delete, EventRow, Put, Store
from controller.store_factory import UnknownStore, open_store
from tests.memory_store import MemoryStore

BACKENDS: dict[str, Callable[[Path], Store]] = {
    "sqlite": lambda path: open_store("sqlite", path),
    "memory (the unit tests' fake)": MemoryStore,
}


@contextlib.asynccontextmanager
async def opened(make: Callable[[Path], Store], path: Path) -> AsyncIterator[Store]:
    store = make(path)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Callable[[Path], Store]:
    return BACKENDS[request.param]


def _event(seq: int, subject: str, at: float | None = 1.0) -> EventRow:
    return EventRow(seq, at, "default", "test", subject, f"event {seq}", {"n": seq})  # type: ignore[arg-type]


async def test_a_backend_is_a_store_and_documents_come_back_after_reopening(
    backend: Callable[[Path], Store], tmp_path: Path
) -> None:
    async with opened(backend, tmp_path) as store:
        assert isinstance(store, Store)
        await store.write(
            [
                Put("widget", "a", "c1", {"name": "a", "n": 1}),
                Put("widget", "b", "c2", {"name": "b", "n": 2}),
                Put("gadget", "a", "", {"other": True}),
                _event(1, "a"),
            ]
        )
        await store.write([Delete("widget", "b"), _event(2, "b")])
    async with opened(backend, tmp_path) as store:
        assert await store.load_rows("widget") == [("a", "c1", {"name": "a", "n": 1})]
        assert await store.load("gadget") == [{"other": True}]
        assert [e.seq for e in await store.load_events()] == [1, 2]
        assert [e.seq for e in await store.load_events(subject="b")] == [2]
        assert await store.last_event_seq() == 2


async def test_a_failed_batch_writes_nothing_and_its_writer_is_told(
    backend: Callable[[Path], Store], tmp_path: Path
) -> None:
    async with opened(backend, tmp_path) as store:
        await store.write([Put("widget", "kept", "", {"v": 1})])
        bad = [
            Put("widget", "kept", "", {"v": 2}),
            Put("widget", "new", "", {}),
            _event(1, "x", None),
        ]
        # an event without a time cannot be stored; each backend raises its own error
        with pytest.raises(Exception):  # noqa: B017
            await store.write(bad)
        assert await store.load_rows("widget") == [("kept", "", {"v": 1})]
        assert await store.last_event_seq() == 0
        await store.write([Put("widget", "after", "", {})])  # the store still works
        assert {k for k, _, _ in await store.load_rows("widget")} == {"kept", "after"}


async def test_watchers_see_each_commit_once_in_order_with_a_growing_revision(
    backend: Callable[[Path], Store], tmp_path: Path
) -> None:
    async with opened(backend, tmp_path) as store:
        seen: list[tuple[int, list[Op]]] = []
        unwatch = store.watch(lambda rev, ops: seen.append((rev, ops)))
        first, second = Put("widget", "a", "", {"v": 1}), Delete("widget", "a")
        start = store.revision
        await store.write([first])
        await store.write([second])
        unwatch()
        await store.write([Put("widget", "b", "", {})])
        assert [ops for _, ops in seen] == [[first], [second]]
        revisions = [rev for rev, _ in seen]
        assert start < revisions[0] < revisions[1] <= store.revision


def test_the_factory_refuses_an_unknown_backend_by_name(tmp_path: Path) -> None:
    assert isinstance(open_store("sqlite", tmp_path), SqliteStore)
    with pytest.raises(UnknownStore, match=r"'postgres'.*sqlite"):
        open_store("postgres", tmp_path)


def test_the_controller_refuses_an_unknown_store_flag(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "dockyard.cli.main", "controller", "--data-dir", str(tmp_path)]
    out = subprocess.run(
        [*argv, "--store", "postgres", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "--store 'postgres': unknown state store" in out.stderr
    assert "Traceback" not in out.stderr


async def test_erase_removes_every_object_and_event_in_one_commit(
    backend: Callable[[Path], Store], tmp_path: Path
) -> None:
    async with opened(backend, tmp_path) as store:
        await store.write([Put("widget", "a", "", {"v": 1}), _event(1, "a")])
        await store.erase()
        assert await store.load_rows("widget") == []
        assert await store.load_events() == [] and await store.last_event_seq() == 0
        await store.write([Put("widget", "b", "", {"v": 2}), _event(1, "b")])  # usable after
    async with opened(backend, tmp_path) as store:
        assert await store.load("widget") == [{"v": 2}]
