"""What every agent's resolver answers (issue 21): the DnsSnapshot, and its push.

`build_snapshot` is a pure function of the Cloud Map objects: each private DNS namespace is
a zone; each service with a `DnsConfig` is a record set `<service>.<namespace>` with its
records' TTL, answering A and/or SRV with the addresses (and ports) of its registered
instances that are not UNHEALTHY. `DnsPusher` follows the Cloud Map kinds on the change feed
and, at most once per `DEBOUNCE_S` (well inside the issue's 1 s), hands the whole new snapshot to
the dispatcher, which sends it to every connected agent (and to each agent as it
registers). The agent's resolver (branch disc-dns) answers from the last one it got.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

from controller.feed import Change, ChangeFeed
from controller.ops.discovery_state import INSTANCE, NAMESPACE, SERVICE
from dockyard.v1 import agent_pb2

DEBOUNCE_S = 0.1


def build_snapshot(
    namespaces: Iterable[dict[str, Any]],
    services: Iterable[dict[str, Any]],
    instances: Iterable[dict[str, Any]],
    version: int,
) -> agent_pb2.DnsSnapshot:
    """The snapshot of these Cloud Map documents (discovery_state's shapes)."""
    zones = {
        n["Id"]: n["Name"].lower().rstrip(".") for n in namespaces if n["Type"] == "DNS_PRIVATE"
    }
    by_service: dict[str, list[dict[str, Any]]] = {}
    for inst in instances:
        by_service.setdefault(inst["ServiceId"], []).append(inst)
    records = []
    for svc in sorted(services, key=lambda s: (s["NamespaceId"], s["Name"])):
        zone = zones.get(svc["NamespaceId"])
        dns = svc.get("DnsConfig")
        if zone is None or dns is None:
            continue
        types = {r["Type"]: int(r["TTL"]) for r in dns["DnsRecords"]}
        targets = [
            _target(i)
            for i in sorted(by_service.get(svc["Id"], []), key=lambda i: i["Id"])
            if i.get("_health") != "UNHEALTHY" and "AWS_INSTANCE_IPV4" in i["Attributes"]
        ]
        records.append(
            agent_pb2.DnsRecordSet(
                name=f"{svc['Name'].lower()}.{zone}",
                ttl=min(types.values()),
                a="A" in types,
                srv="SRV" in types,
                targets=targets,
            )
        )
    return agent_pb2.DnsSnapshot(
        version=version, zones=sorted(set(zones.values())), records=records
    )


def _target(inst: dict[str, Any]) -> agent_pb2.DnsTarget:
    port = inst["Attributes"].get("AWS_INSTANCE_PORT", "0")
    return agent_pb2.DnsTarget(
        ipv4=inst["Attributes"]["AWS_INSTANCE_IPV4"],
        port=int(port) if port.isdigit() else 0,
        instance_id=inst["Id"],
    )


class DnsPusher:
    """Rebuilds the snapshot after Cloud Map changes (at most once per DEBOUNCE_S) and hands
    it to `send`."""

    def __init__(
        self,
        docs: dict[str, dict[str, dict[str, Any]]],
        feed: ChangeFeed,
        send: Callable[[agent_pb2.DnsSnapshot], None],
    ) -> None:
        # its own copy, kept from the feed: Discovery applies a commit to `docs` only when
        # the write returns, which may be after the feed told us (and after a push built
        # then: the answers kept a deregistered address until the next change)
        self.docs = {kind: dict(docs.get(kind, {})) for kind in (NAMESPACE, SERVICE, INSTANCE)}
        self.send = send
        self.version = 0
        self._scheduled: asyncio.TimerHandle | None = None
        self._pushed_at = -DEBOUNCE_S  # loop time of the last push
        feed.subscribe((NAMESPACE, SERVICE, INSTANCE), self._changed)

    def snapshot(self) -> agent_pb2.DnsSnapshot:
        # versions grow across controller restarts too: agents ignore older snapshots
        self.version = max(self.version + 1, time.time_ns() // 1000)
        return build_snapshot(
            self.docs[NAMESPACE].values(),
            self.docs[SERVICE].values(),
            self.docs[INSTANCE].values(),
            self.version,
        )

    def _changed(self, changes: list[Change]) -> None:
        """A feed subscriber: push on the next loop turn (the changes of this one go
        together), then at most one push per DEBOUNCE_S while changes keep coming. A lone
        change waited out the whole DEBOUNCE_S before: a stopped task's container had
        exited ~85 ms before its address left the answers (issue 21 wants DNS first)."""
        for c in changes:
            if c.new is None:
                self.docs[c.kind].pop(c.key, None)
            else:
                self.docs[c.kind][c.key] = c.new
        if self._scheduled is None:
            loop = asyncio.get_running_loop()
            wait = max(0.0, self._pushed_at + DEBOUNCE_S - loop.time())
            self._scheduled = loop.call_later(wait, self._push)

    def _push(self) -> None:
        self._scheduled = None
        self._pushed_at = asyncio.get_running_loop().time()
        self.send(self.snapshot())
