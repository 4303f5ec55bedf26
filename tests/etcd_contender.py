"""A controller-shaped contender for the leadership tests: a real process that campaigns
on etcd and, every 0.1 s, tries a fenced write of who it is. It prints one line per fact:
`LEADER <revision>`, `FOLLOWER`, `WROTE <n>`, `REFUSED <n> <reason>`, so a test can stop,
resume or kill it and read what it did.

    python -m tests.etcd_contender etcd://127.0.0.1:2379?prefix=/x NAME [TTL [blind]]

`blind`: the store's fence trusts no clock and always claims to lead with the last fencing
token this contender won, so only etcd's transaction condition stands between a deposed
leader and the data (what the SIGSTOP test shows).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

from controller.etcd_client import EtcdClient, created_at
from controller.leadership import Leadership
from controller.records import Put
from controller.store_etcd import EtcdStore, NotLeader, StoreUnavailable


class BlindFence:
    """Claims leadership with the last token won, whatever the lease says."""

    def __init__(self, leadership: Leadership) -> None:
        self.leadership = leadership
        self.token = 0

    @property
    def is_leader(self) -> bool:
        return True

    def compare(self) -> Any:
        return created_at(self.leadership.key, self.token)

    def deposed(self) -> None:
        pass


def say(line: str) -> None:
    print(line, flush=True)


async def main(spec: str, name: str, ttl: int, blind: bool) -> None:
    store = EtcdStore(spec, Path(tempfile.mkdtemp(prefix="dyk-contender-")))
    await store.open()
    client = EtcdClient(store.url)
    leadership = Leadership(client, store.url.prefix, name, ttl)
    fence = BlindFence(leadership)

    def changed(lead: bool) -> None:
        if lead:
            fence.token = leadership.create_revision
        say(f"LEADER {leadership.create_revision}" if lead else "FOLLOWER")

    leadership.on_change = changed
    store.fence_with(fence if blind else leadership)
    leadership.start()
    say("STARTED")
    for n in range(1_000_000):
        try:
            await store.write([Put("probe", "owner", "", {"by": name, "n": n})])
            say(f"WROTE {n}")
        except (NotLeader, StoreUnavailable) as err:
            say(f"REFUSED {n} {err}")
        await asyncio.sleep(0.1)


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(main(args[0], args[1], int(args[2]) if len(args) > 2 else 2, "blind" in args))
