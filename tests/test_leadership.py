"""Leader election with fencing on a real etcd, with real contender processes: one leader
at a time; a SIGKILLed leader is replaced within about one lease TTL; a SIGSTOPped leader,
once resumed, writes nothing (its successor's writes are the ones that stand); a leader
whose lease is gone behind its back is refused by etcd itself; a leader cut off from etcd
stops deciding on its own clock; a clean stop hands over at once."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from controller.etcd_client import EtcdClient
from controller.leadership import Leadership
from controller.records import Put
from controller.store_etcd import EtcdStore, NotLeader
from tests.etcd_fixture import EtcdCluster, etcd_cluster

TTL = 2


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdCluster]:
    with etcd_cluster(1) as cluster:
        yield cluster


@pytest.fixture
def spec(etcd: EtcdCluster) -> str:
    return f"{etcd.url}?prefix=/lead-{uuid.uuid4().hex[:8]}"


@dataclass
class Contender:
    """A tests.etcd_contender process and the lines it printed (read by a thread)."""

    name: str
    proc: subprocess.Popen[str]
    lines: list[tuple[float, str]] = field(default_factory=list)
    _new: queue.Queue[str] = field(default_factory=queue.Queue)

    def read(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.strip()))
            self._new.put(line.strip())

    def wait_line(self, start: str, timeout: float = 20.0) -> float:
        """When (monotonic) the first line starting with `start` after now was printed."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name}: no {start!r} in {timeout}s: {self.tail()}")
            try:
                line = self._new.get(timeout=left)
            except queue.Empty:
                continue
            if line.startswith(start):
                return self.lines[-1][0] if self.lines[-1][1] == line else time.monotonic()

    def wait_since(self, start: str, moment: float, timeout: float = 5.0) -> None:
        """Until a line starting with `start` printed after `moment` is seen."""
        deadline = time.monotonic() + timeout
        while not any(at > moment and line.startswith(start) for at, line in self.lines):
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no {start!r} in {timeout}s: {self.tail()}")
            time.sleep(0.05)

    def seen(self, start: str) -> bool:
        return any(line.startswith(start) for _, line in self.lines)

    def tail(self) -> list[str]:
        return [line for _, line in self.lines[-8:]]

    def wrote_after(self, moment: float) -> list[str]:
        return [line for at, line in self.lines if at > moment and line.startswith("WROTE")]


@contextlib.contextmanager
def contenders(spec: str, *names: str) -> Iterator[dict[str, Contender]]:
    """Contender processes, started in order; all killed (resumed first) afterwards."""
    started: dict[str, Contender] = {}
    try:
        for name in names:
            name, _, mode = name.partition(":")
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.etcd_contender", spec, name, str(TTL), mode],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            c = started[name] = Contender(name, proc)
            threading.Thread(target=c.read, daemon=True).start()
            c.wait_line("STARTED")
        yield started
    finally:
        for c in started.values():
            if c.proc.poll() is None:
                c.proc.send_signal(signal.SIGCONT)
                c.proc.kill()
            c.proc.wait(timeout=10)


def probe_owner(etcd: EtcdCluster, spec: str) -> dict[str, object]:
    """The probe document as etcd holds it (read with etcdctl, not our client)."""
    prefix = spec.split("prefix=")[1]
    from tests.support import tool

    out = subprocess.run(
        [
            tool("etcdctl"),
            f"--endpoints={etcd.endpoints}",
            "get",
            "--print-value-only",
            f"{prefix}/data/o/probe/owner",
        ],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
        env={"ETCDCTL_API": "3"},
    ).stdout
    return dict(orjson.loads(out)["doc"])


def test_one_leader_and_a_sigkilled_leader_is_replaced_within_a_ttl(
    spec: str, etcd: EtcdCluster
) -> None:
    with contenders(spec, "a", "b") as cs:
        cs["a"].wait_line("LEADER")
        time.sleep(0.5)
        assert not cs["b"].seen("LEADER")  # one leader at a time
        assert cs["b"].seen("REFUSED")  # and the other one's writes are refused
        killed = time.monotonic()
        cs["a"].proc.kill()
        elected = cs["b"].wait_line("LEADER", timeout=TTL + 5)
        assert elected - killed < TTL + 1.5, f"takeover took {elected - killed:.2f}s"
        cs["b"].wait_line("WROTE")
        assert probe_owner(etcd, spec)["by"] == "b"


def test_a_sigstopped_leader_resumed_after_its_successor_writes_nothing(
    spec: str, etcd: EtcdCluster
) -> None:
    """`a` is blind (its store trusts no lease clock, so it goes on writing with the token
    it won): after SIGSTOP, `b` takes over; resumed, every write of `a` is refused by etcd's
    transaction condition, and the data is `b`'s."""
    with contenders(spec, "a:blind", "b") as cs:
        cs["a"].wait_line("LEADER")
        cs["a"].wait_line("WROTE")
        cs["a"].proc.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        cs["b"].wait_line("LEADER", timeout=TTL + 5)
        cs["b"].wait_line("WROTE")
        cs["a"].proc.send_signal(signal.SIGCONT)
        cs["a"].wait_since("REFUSED", stopped)
        cs["a"].wait_since("FOLLOWER", stopped)  # and it noticed its lease was gone
        time.sleep(1.0)  # ten more write attempts of a
        assert cs["a"].wrote_after(stopped) == [], cs["a"].tail()
        refused = [line for at, line in cs["a"].lines if at > stopped]
        assert any("etcd refused the write" in line for line in refused), refused
        assert probe_owner(etcd, spec)["by"] == "b"
        assert not cs["b"].seen("FOLLOWER")  # b kept leading throughout


@contextlib.asynccontextmanager
async def leading(spec: str, name: str, tmp: Path) -> AsyncIterator[tuple[Leadership, EtcdStore]]:
    """An in-process contender: its fenced store and its leadership (stopped after)."""
    store = EtcdStore(spec, tmp / name)
    await store.open()
    client = EtcdClient(store.url)
    leadership = Leadership(client, store.url.prefix, name, TTL)
    store.fence_with(leadership)
    leadership.start()
    try:
        yield leadership, store
    finally:
        await leadership.stop()
        await client.close()
        await store.close()


async def test_etcd_refuses_a_leader_whose_lease_is_gone(
    spec: str, etcd: EtcdCluster, tmp_path: Path
) -> None:
    """The lease is revoked behind the leader's back (as when it expires while the leader
    is paused): its own clock still says it leads, yet etcd refuses its write."""
    async with leading(spec, "a", tmp_path) as (lead, store):
        await asyncio.wait_for(lead.elected.wait(), 10)
        await store.write([Put("probe", "before", "", {"ok": True})])
        other = EtcdClient(store.url)
        try:
            await other.revoke(lead.lease_id)
        finally:
            await other.close()
        assert lead.is_leader  # it has not heard yet
        with pytest.raises(NotLeader, match="etcd refused the write"):
            await store.write([Put("probe", "after", "", {"ok": False})])
        assert not lead.is_leader  # and it stopped deciding at once
    async with leading(spec, "reader", tmp_path) as (_, reader):
        assert {k for k, _, _ in await reader.load_rows("probe")} == {"before"}


@pytest.mark.timeout(60)
async def test_a_leader_cut_off_from_etcd_stops_deciding_within_its_ttl(
    spec: str, tmp_path: Path
) -> None:
    with etcd_cluster(1) as own:
        changes: list[tuple[float, bool]] = []
        own_spec = f"{own.url}?prefix=/cut"
        async with leading(own_spec, "a", tmp_path) as (lead, _):
            lead.on_change = lambda up: changes.append((time.monotonic(), up))
            await asyncio.wait_for(lead.elected.wait(), 10)
            assert own.members[0].proc
            own.members[0].proc.send_signal(signal.SIGSTOP)
            cut = time.monotonic()
            try:
                for _ in range(100):
                    if not lead.is_leader:
                        break
                    await asyncio.sleep(0.05)
                lost_after = time.monotonic() - cut
                assert not lead.is_leader
                assert lost_after < TTL, f"still deciding {lost_after:.2f}s after the cut"
            finally:
                own.members[0].proc.send_signal(signal.SIGCONT)
            # etcd back: it leads again, its lease renewed (etcd was paused too, so the lease
            # did not lapse there) or a new one won
            for _ in range(400):
                if lead.is_leader:
                    break
                await asyncio.sleep(0.05)
            assert lead.is_leader, changes


async def test_a_leader_that_stops_cleanly_hands_over_at_once(spec: str, tmp_path: Path) -> None:
    async with leading(spec, "a", tmp_path) as (a, _):
        await asyncio.wait_for(a.elected.wait(), 10)
        async with leading(spec, "b", tmp_path) as (b, store_b):
            await asyncio.sleep(0.3)
            assert not b.is_leader and await b.leader() == "a"
            started = time.monotonic()
            await a.stop()  # resigns: revokes its lease
            await asyncio.wait_for(b.elected.wait(), 5)
            assert time.monotonic() - started < 1.0
            assert await b.leader() == "b"
            await store_b.write([Put("probe", "b", "", {})])


async def test_a_leader_whose_event_loop_is_busy_for_longer_than_its_ttl_keeps_leading(
    spec: str, tmp_path: Path
) -> None:
    """A new leader building a large state blocks its loop for seconds: its lease is
    renewed from its own thread meanwhile, so it is still the leader and can write."""
    async with leading(spec, "a", tmp_path) as (lead, store):
        await asyncio.wait_for(lead.elected.wait(), 10)
        revision = lead.create_revision
        time.sleep(TTL * 2)  # noqa: ASYNC251 - the point: the event loop does nothing
        assert lead.is_leader and lead.create_revision == revision
        await store.write([Put("probe", "after-busy", "", {})])
        assert await lead.leader() == "a"
