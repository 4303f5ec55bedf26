"""Make 169.254.170.2:80 reach the agent's task endpoint, the two ways ECS setups do it.

`iptables` (ECS agent's init): nat PREROUTING DNAT of 169.254.170.2:80 arriving on the
agent's Docker bridge to the endpoint, an OUTPUT rule for host-network containers, and
`route_localnet` on that bridge, plus a filter rule that drops outside traffic to the
loopback port (what route_localnet would otherwise open). The rules live in the agent's own
chains (`DYK-CRED-<port>`), so applying them twice changes nothing and removing them on a
clean stop removes exactly them; chains left by agents that were killed (their endpoint
refuses connections) are removed when the next agent applies its own. `route_localnet` is
given back as found by the last agent that needs it (the value found is kept in the engine
claim's directory until then), never under another live agent's redirect.

`bridge` (awslabs' amazon-ecs-local-container-endpoints, for Docker Desktop where the host's
iptables is not the containers'): a Docker network 169.254.170.0/24 on which a small busybox
forwarder holds 169.254.170.2 and relays each connection to the agent; task containers join
that network. `auto` picks iptables when it can be programmed, else bridge.

The agent applies its mode at start, as ECS's agent (its init) does: every task gets
ECS_CONTAINER_METADATA_URI_V4 at 169.254.170.2, with or without a role.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import aiodocker
from aiodocker.exceptions import DockerError

from agent.engine_claim import lock_dir

log = logging.getLogger("dockyard.agent.netconfig")

MODES = ("auto", "iptables", "bridge")
ENDPOINT_IP = "169.254.170.2"
NETWORK = "dockyard-task-endpoint"
SUBNET = "169.254.170.0/24"
GATEWAY = "169.254.170.1"
FORWARDER = "dockyard-task-endpoint"
FORWARDER_IMAGE = "dockyard/busybox:latest"
MATCH = ["-d", f"{ENDPOINT_IP}/32", "-p", "tcp", "--dport", "80"]


def iptables_problem() -> str:
    """Why this process cannot program iptables in its network namespace ("" if it can)."""
    if os.geteuid() != 0:
        return "not root"
    try:
        out = subprocess.run(
            ["iptables", "-w", "5", "-t", "nat", "-S", "OUTPUT"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"iptables: {err}"
    if out.returncode != 0:
        return f"iptables: {out.stderr.decode(errors='replace').strip() or 'failed'}"
    return ""


def resolve_mode(requested: str) -> tuple[str, str]:
    """(mode, why): the mode to use and a phrase for the log saying how it was chosen."""
    if requested not in MODES:
        raise ValueError(f"--credentials-mode: {requested!r} is not one of {', '.join(MODES)}")
    if requested != "auto":
        return requested, f"requested {requested}"
    problem = iptables_problem()
    if problem:
        return "bridge", f"auto: cannot program iptables ({problem})"
    return "iptables", "auto: iptables can be programmed"


CHAIN_PREFIX = "DYK-CRED-"
PARENTS = {"nat": ("PREROUTING", "OUTPUT"), "filter": ("INPUT",)}  # where our jumps live


def chain_name(port: int) -> str:
    return f"{CHAIN_PREFIX}{port}"


def dnat_targets(listing: list[str]) -> dict[str, tuple[str, int]]:
    """Pure: each of our chains in `iptables -t nat -S` output -> the host and port it DNATs to."""
    out = {}
    for line in listing:
        parts = line.split()
        ours = parts[:1] == ["-A"] and parts[1].startswith(CHAIN_PREFIX)
        if ours and "--to-destination" in parts:
            host, _, port = parts[parts.index("--to-destination") + 1].rpartition(":")
            out[parts[1]] = (host, int(port))
    return out


def probe_targets(nat: list[str], filter_: list[str]) -> dict[str, tuple[str, int]]:
    """Pure: each of our chains in either table -> the endpoint to probe for its agent. A
    chain without a DNAT rule (left half-removed, e.g. only its filter guard) is probed at
    127.0.0.1 on the port in its name, where its agent's endpoint listened."""
    targets = dnat_targets(nat)
    for line in nat + filter_:
        parts = line.split()
        if parts[:1] == ["-N"] and parts[1].startswith(CHAIN_PREFIX) and parts[1] not in targets:
            port = parts[1].removeprefix(CHAIN_PREFIX)
            if port.isdigit():
                targets[parts[1]] = ("127.0.0.1", int(port))
    return targets


def jumps_to(chain: str, table: str, listing: list[str]) -> list[list[str]]:
    """Pure: the rule specs (for -D) in PARENTS[table] that jump to `chain`."""
    rules = [line.split()[1:] for line in listing if line.split()[-2:] == ["-j", chain]]
    return [r for r in rules if r[0] in PARENTS[table]]


def nat_rules(chain: str, bridge: str, target: str, port: int) -> list[list[str]]:
    """(table-less) rule specs, pure: the chain's DNAT and the two jumps into it."""
    return [
        ["-A", chain, *MATCH, "-j", "DNAT", "--to-destination", f"{target}:{port}"],
        ["PREROUTING", "-i", bridge, *MATCH, "-j", chain],
        ["OUTPUT", *MATCH, "-j", chain],
    ]


def filter_rules(chain: str, port: int) -> list[list[str]]:
    guard = ["-d", "127.0.0.0/8", "!", "-s", "127.0.0.0/8", "-p", "tcp", "--dport", str(port)]
    state = ["-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED,DNAT"]
    return [
        ["-A", chain, *guard, *state, "-j", "DROP"],
        ["INPUT", "-p", "tcp", "--dport", str(port), "-j", chain],
    ]


async def _iptables(*args: str, check: bool = True) -> bool:
    proc = await asyncio.create_subprocess_exec(
        "iptables",
        "-w",
        "5",
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if check and proc.returncode != 0:
        raise OSError(f"iptables {' '.join(args)}: {err.decode().strip()}")
    return proc.returncode == 0


async def _listing(table: str) -> list[str]:
    """`iptables -t table -S`: every rule of the table, one spec a line (none without
    iptables, e.g. in bridge mode on a host whose iptables this process cannot use)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "iptables", "-w", "5", "-t", table, "-S",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
    except OSError:
        return []
    out, _ = await proc.communicate()
    return out.decode().splitlines()


async def drop_chain(chain: str) -> None:
    """Remove one of our chains and every jump to it, in both tables (absent is fine)."""
    for table in PARENTS:
        for rule in jumps_to(chain, table, await _listing(table)):
            await _iptables("-t", table, "-D", *rule, check=False)
        await _iptables("-t", table, "-F", chain, check=False)
        await _iptables("-t", table, "-X", chain, check=False)


async def _listening(host: str, port: int) -> bool:
    """False only when host:port refuses connections: nobody serves there any more."""
    try:
        async with asyncio.timeout(2):
            _, writer = await asyncio.open_connection(host, port)
    except ConnectionRefusedError:
        return False
    except (OSError, TimeoutError):
        return True  # unsure: keep what may be another live agent's
    writer.close()
    return True


async def drop_dead_chains(keep: str) -> list[str]:
    """Remove the chains of agents that did not stop cleanly (SIGKILL, crash) on another
    port: their endpoint refuses connections, yet their OUTPUT rule would still catch
    169.254.170.2 for host processes. Live agents' chains stay. Returns what went."""
    targets = probe_targets(await _listing("nat"), await _listing("filter"))
    dead = [
        chain
        for chain, (host, port) in targets.items()
        if chain != keep and not await _listening(host, port)
    ]
    for chain in dead:
        await drop_chain(chain)
    return dead


def _sysctl(bridge: str, value: str) -> str:
    """Set the bridge's route_localnet (needed to DNAT to 127.0.0.1); returns the old value."""
    path = Path(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet")
    old = path.read_text().strip()
    path.write_text(value + "\n")
    return old


def _localnet_record(bridge: str) -> Path:
    """Where the value route_localnet had before any agent changed it is kept, per network
    namespace and bridge, until the last agent needing it restores it."""
    netns = os.stat("/proc/self/ns/net").st_ino
    return lock_dir() / f"route_localnet-{netns}-{bridge}.before"


def enable_localnet(bridge: str) -> None:
    """route_localnet=1 on the bridge, remembering the value found if an agent changes it."""
    record = _localnet_record(bridge)
    before = _sysctl(bridge, "1")
    if before != "1" and not record.exists():
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(before + "\n")


def restore_localnet(bridge: str, others_alive: bool) -> None:
    """Give the bridge back its route_localnet as found, only if an agent changed it and no
    other live agent's redirect still needs it (the last one restores it)."""
    record = _localnet_record(bridge)
    if others_alive or not record.exists():
        return
    with contextlib.suppress(OSError):
        _sysctl(bridge, record.read_text().strip())
        record.unlink()


async def other_live_chains(keep: str) -> list[str]:
    """Our chains of other agents whose endpoint still answers (their redirect is in use)."""
    targets = probe_targets(await _listing("nat"), await _listing("filter"))
    return [c for c, (host, port) in targets.items() if c != keep and await _listening(host, port)]


def forward_to() -> str:
    """Where the bridge-mode forwarder connects: the gateway (the agent's host), or e.g.
    host.docker.internal where containers run in a VM (Docker Desktop)."""
    return os.environ.get("DOCKYARD_ENDPOINT_FORWARD_TO", GATEWAY)


def forwarder_cmd(target: str, port: int) -> list[str]:
    """The forwarder: a child per connection relays it to the agent (which finds out who
    called by looking at that child's sockets: agent/callers.py)."""
    return ["nc", "-ll", "-p", "80", "-e", "nc", target, str(port)]


class Redirect:
    """The routing of 169.254.170.2:80 to host:port in the chosen mode."""

    def __init__(self, requested: str, host: str, port: int, docker_host: str) -> None:
        self.mode, self.why = resolve_mode(requested)
        self.port = port
        self.target = "127.0.0.1" if host in ("", "0.0.0.0", "localhost") else host
        self.docker_host = docker_host
        self.gateway = ""  # bridge mode: the extra address the endpoint listens on
        self._bridge = ""
        self._applied = False
        self._touched = False  # an apply started: remove() cleans up even after a failed one
        self._lock = asyncio.Lock()  # containers starting together must not race the rules

    @property
    def chain(self) -> str:
        return chain_name(self.port)

    def _docker(self) -> aiodocker.Docker:
        return aiodocker.Docker(url=self.docker_host)

    async def apply(self) -> None:
        async with self._lock:
            if self._applied:
                return
            self._touched = True
            # either mode: a dead agent's OUTPUT rule would take host-network tasks' traffic
            for chain in await drop_dead_chains(keep=self.chain):
                log.info("removed %s: its agent stopped without removing it", chain)
            if self.mode == "iptables":
                await self._apply_iptables()
            else:
                await self._apply_bridge()
            self._applied = True
        log.info("169.254.170.2:80 reaches the task endpoint (%s mode)", self.mode)

    async def remove(self) -> None:
        async with self._lock:
            if not self._touched:
                return
            if self.mode == "iptables":
                await self._remove_iptables()
            else:
                await self._remove_bridge()
            self._applied = self._touched = False
        log.info("task endpoint routing removed (%s mode)", self.mode)

    def networks(self, network_mode: str) -> list[str]:
        """Bridge mode: the extra network a bridge-network task joins (before it starts)."""
        if self.mode == "bridge" and self._applied and network_mode == "bridge":
            return [NETWORK]
        return []

    # ------------------------------------------------------------ iptables

    async def _bridge_name(self) -> str:
        docker = self._docker()
        try:
            info = await (await docker.networks.get("bridge")).show()
        except DockerError:
            return "docker0"
        finally:
            await docker.close()
        return str((info.get("Options") or {}).get("com.docker.network.bridge.name", "docker0"))

    async def _apply_iptables(self) -> None:
        self._bridge = await self._bridge_name()
        if self.target.startswith("127."):
            enable_localnet(self._bridge)
        for table, chain, rules in (
            ("nat", self.chain, nat_rules(self.chain, self._bridge, self.target, self.port)),
            ("filter", self.chain, filter_rules(self.chain, self.port)),
        ):
            await _iptables("-t", table, "-N", chain, check=False)
            await _iptables("-t", table, "-F", chain)
            for rule in rules:
                if rule[0] == "-A":
                    await _iptables("-t", table, *rule)
                elif not await _iptables("-t", table, "-C", *rule, check=False):
                    await _iptables("-t", table, "-I", rule[0], "1", *rule[1:])

    async def _remove_iptables(self) -> None:
        await drop_chain(self.chain)
        if self.target.startswith("127.") and self._bridge:
            others = await other_live_chains(keep=self.chain)
            restore_localnet(self._bridge, bool(others))

    # ------------------------------------------------------------ bridge network

    async def _apply_bridge(self) -> None:
        from dockyard import images

        await asyncio.to_thread(images.build_base, self.docker_host)
        docker = self._docker()
        try:
            await self._ensure_network(docker)
            await self._ensure_forwarder(docker)
        finally:
            await docker.close()
        # the forwarder reaches the agent on the network's gateway unless told otherwise
        self.gateway = GATEWAY if forward_to() == GATEWAY else ""

    async def _ensure_network(self, docker: aiodocker.Docker) -> None:
        try:
            await docker.networks.get(NETWORK)
        except DockerError:
            await docker.networks.create(
                {
                    "Name": NETWORK,
                    "Driver": "bridge",
                    "IPAM": {"Config": [{"Subnet": SUBNET, "Gateway": GATEWAY}]},
                    "Labels": {"dockyard.role": "task-endpoint"},
                }
            )

    async def _ensure_forwarder(self, docker: aiodocker.Docker) -> None:
        cmd = forwarder_cmd(forward_to(), self.port)
        with contextlib.suppress(DockerError):
            old = await docker.containers.get(FORWARDER)
            if old["Config"]["Cmd"] == cmd and old["State"]["Running"]:
                return
            await old.delete(force=True)
        config: dict[str, Any] = {
            "Image": FORWARDER_IMAGE,
            "Cmd": cmd,
            "Labels": {"dockyard.role": "task-endpoint"},
            "HostConfig": {"NetworkMode": NETWORK, "RestartPolicy": {"Name": "unless-stopped"}},
            "NetworkingConfig": {
                "EndpointsConfig": {NETWORK: {"IPAMConfig": {"IPv4Address": ENDPOINT_IP}}}
            },
        }
        container = await docker.containers.create(config, name=FORWARDER)
        await container.start()

    async def _remove_bridge(self) -> None:
        docker = self._docker()
        try:
            with contextlib.suppress(DockerError):
                forwarder = await docker.containers.get(FORWARDER)
                if forwarder["Config"]["Cmd"] != forwarder_cmd(forward_to(), self.port):
                    return  # another agent's (sharing the engine): it removes its own
                await forwarder.delete(force=True)
            try:
                await (await docker.networks.get(NETWORK)).delete()
            except DockerError as err:
                if err.status != 404:  # running task containers still use it
                    log.info("network %s kept: %s", NETWORK, err.message.strip())
        finally:
            await docker.close()
