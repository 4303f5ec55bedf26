"""The agent's DNS resolver (issue 21) against the host's own resolver, in the same run.

Each resolver runs in its own process; the client sends one query at a time from a blocking
UDP socket per client thread (prebuilt wire, a fresh id per query) and records the latency.
Measured: answers/s and p50/p99 latency for
- the agent's resolver answering a name of the cluster's namespace (from its snapshot);
- the host's own resolver (first `nameserver` of /etc/resolv.conf) answering a cached name
  (--host-name, asked once before timing so it is cached), when it answers;
- otherwise a stub upstream (dnspython, in-process answer, no cache needed), and the agent
  forwarding an outside name to that stub (the cost the agent adds to other names).
Usage: python -m bench.bench_dns [--queries 5000] [--clients 4] [--host-name localhost]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import statistics
import threading
import time
from pathlib import Path

import dns.message
import dns.rcode
import dns.rrset

from agent.dns_server import Resolver, upstreams
from dockyard.v1 import agent_pb2

NAME = "web.internal.local"


def _snapshot() -> agent_pb2.DnsSnapshot:
    targets = [agent_pb2.DnsTarget(ipv4=f"10.0.0.{i}", port=32000 + i) for i in range(1, 4)]
    rs = agent_pb2.DnsRecordSet(name=NAME, ttl=10, a=True, srv=True, targets=targets)
    return agent_pb2.DnsSnapshot(version=1, zones=["internal.local"], records=[rs])


def _serve_agent(port_out: multiprocessing.Queue, upstream: tuple[str, int]) -> None:
    async def main() -> None:
        r = Resolver([upstream])
        r.update(_snapshot())
        await r.start("127.0.0.1", 0)
        assert r.address is not None
        port_out.put(r.address[1])
        await asyncio.Event().wait()

    import uvloop

    uvloop.run(main())


class _Stub(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        q = dns.message.from_wire(data)
        reply = dns.message.make_response(q)
        reply.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", "192.0.2.1"))
        self.t.sendto(reply.to_wire(), addr)


def _serve_stub(port_out: multiprocessing.Queue) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        t, _ = await loop.create_datagram_endpoint(_Stub, local_addr=("127.0.0.1", 0))
        port_out.put(t.get_extra_info("sockname")[1])
        await asyncio.Event().wait()

    import uvloop

    uvloop.run(main())


def _client(server: tuple[str, int], name: str, n: int, out: list[float]) -> None:
    wire = bytearray(dns.message.make_query(name, "A").to_wire())
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.connect(server)
    for i in range(n):
        wire[0:2] = (i & 0xFFFF).to_bytes(2, "big")
        t0 = time.perf_counter()
        s.send(wire)
        while True:
            got = s.recv(4096)
            if got[:2] == wire[:2]:
                break
        out.append(time.perf_counter() - t0)
    s.close()


def measure(server: tuple[str, int], name: str, queries: int, clients: int) -> dict[str, float]:
    lats: list[list[float]] = [[] for _ in range(clients)]
    threads = [
        threading.Thread(target=_client, args=(server, name, queries // clients, lats[i]))
        for i in range(clients)
    ]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    flat = sorted(x for lat in lats for x in lat)
    return {
        "answers_per_s": len(flat) / wall,
        "p50_ms": statistics.median(flat) * 1000,
        "p99_ms": flat[int(len(flat) * 0.99) - 1] * 1000,
    }


def _host_answers(server: tuple[str, int], name: str) -> bool:
    """Does the host's resolver answer `name` (and so hold it cached for the run)?"""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1)
    try:
        s.sendto(dns.message.make_query(name, "A").to_wire(), server)
        return dns.message.from_wire(s.recv(4096)).rcode() == dns.rcode.NOERROR
    except OSError:
        return False
    finally:
        s.close()


def _spawn(target: object, *args: object) -> tuple[multiprocessing.Process, int]:
    q: multiprocessing.Queue = multiprocessing.Queue()
    p = multiprocessing.Process(target=target, args=(q, *args), daemon=True)  # type: ignore[arg-type]
    p.start()
    return p, int(q.get(timeout=10))


def compare(queries: int, clients: int, host_name: str) -> dict[str, dict[str, float]]:
    """Each resolver's answers/s and latency, in one run (bench/bench_discovery.py too)."""
    stub, stub_port = _spawn(_serve_stub)
    agent, agent_port = _spawn(_serve_agent, ("127.0.0.1", stub_port))
    rows = {}
    try:
        rows["agent: namespace name"] = measure(("127.0.0.1", agent_port), NAME, queries, clients)
        hosts = upstreams(Path("/etc/resolv.conf"), set())
        if hosts and _host_answers(hosts[0], host_name):
            rows[f"host resolver {hosts[0][0]}: cached {host_name}"] = measure(
                hosts[0], host_name, queries, clients
            )
        else:
            print(f"host resolver {hosts[:1]} does not answer {host_name}: using a stub")
        rows["stub upstream (dnspython)"] = measure(
            ("127.0.0.1", stub_port), "outside.example", queries, clients
        )
        rows["agent: forwarded to stub"] = measure(
            ("127.0.0.1", agent_port), "outside.example", queries, clients
        )
    finally:
        agent.terminate()
        stub.terminate()
    return rows


def print_rows(rows: dict[str, dict[str, float]]) -> None:
    print(f"{'resolver':45} {'answers/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for what, r in rows.items():
        print(f"{what:45} {r['answers_per_s']:10.0f} {r['p50_ms']:8.3f} {r['p99_ms']:8.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=5000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--host-name", default="localhost", help="a name the host resolver caches")
    args = ap.parse_args()
    print_rows(compare(args.queries, args.clients, args.host_name))


if __name__ == "__main__":
    main()
