"""The lab network: a bridge in the root namespace, a namespace + veth per host.

Lab traffic stays on the bridge: hosts reach each other and the root namespace (registry,
controller); the only iptables rule we add lets bridged host-to-host frames through the
root FORWARD chain (Docker sets its policy to DROP and br_netfilter sends bridged frames
through it). A partition takes the root end of a host's veth down: the host and its
containers keep running, but nothing reaches it and it reaches nothing.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence

from dockyard.lab.state import ControllerNode, Host, LabError, LabState

Node = Host | ControllerNode  # a namespace on the bridge: a Docker host or a controller node


def run(cmd: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    if check and out.returncode != 0:
        raise LabError(f"`{' '.join(cmd)}` failed: {out.stderr.strip() or out.stdout.strip()}")
    return out


def enter(host: Node) -> list[str]:
    """Prefix that runs a command in the host's network namespace (nsenter keeps /sys and
    the cgroup mounts, which `ip netns exec` remounts)."""
    return ["nsenter", f"--net={host.netns_path}"]


def link_exists(name: str) -> bool:
    return run(["ip", "link", "show", "dev", name], check=False).returncode == 0


def netns_exists(name: str) -> bool:
    return run(["ip", "netns", "pids", name], check=False).returncode == 0


def link_up(name: str) -> bool:
    out = run(["ip", "-j", "link", "show", "dev", name], check=False)
    if out.returncode != 0:
        return False
    return "UP" in json.loads(out.stdout)[0].get("flags", [])


def create_bridge(state: LabState) -> None:
    if link_exists(state.bridge):
        raise LabError(
            f"bridge {state.bridge} already exists: another lab uses index "
            f"{state.index}; run `dockyard lab down` for it or pass another --index"
        )
    run(["ip", "link", "add", state.bridge, "type", "bridge"])
    run(["ip", "addr", "add", f"{state.gateway}/24", "dev", state.bridge])
    run(["ip", "link", "set", state.bridge, "up"])
    allow_forwarding(state)


def create_host(state: LabState, host: Node) -> None:
    """Namespace, veth pair (root end on the bridge, `eth0` inside), address and routes."""
    run(["ip", "netns", "add", host.netns])
    run(
        [
            "ip",
            "link",
            "add",
            host.veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            host.netns,
        ]
    )
    run(["ip", "link", "set", host.veth, "master", state.bridge, "up"])
    inside = [*enter(host), "ip"]
    run([*inside, "addr", "add", f"{host.address}/24", "dev", "eth0"])
    run([*inside, "link", "set", "eth0", "up"])
    run([*inside, "link", "set", "lo", "up"])
    run([*inside, "route", "add", "default", "via", state.gateway])


def _forward_rule(state: LabState) -> list[str]:
    return [
        "FORWARD",
        "-i",
        state.bridge,
        "-o",
        state.bridge,
        "-m",
        "comment",
        "--comment",
        state.iptables_tag,
        "-j",
        "ACCEPT",
    ]


def allow_forwarding(state: LabState) -> None:
    run(["iptables", "-I", *_forward_rule(state)])


def remove_forwarding(state: LabState) -> None:
    """Delete every FORWARD rule carrying our comment (and nothing else)."""
    out = run(["iptables", "-S", "FORWARD"], check=False)
    for line in out.stdout.splitlines():
        if f"--comment {state.iptables_tag} " in line + " " and line.startswith("-A "):
            run(["iptables", "-D", *line[3:].split()], check=False)


def partition(host: Node) -> None:
    run(["ip", "link", "set", host.veth, "down"])


def heal(host: Node) -> None:
    run(["ip", "link", "set", host.veth, "up"])


def remove_host(netns_name: str, veth: str) -> None:
    """Delete a host's namespace and the root end of its veth (the pair goes with it)."""
    if netns_exists(netns_name):
        run(["ip", "netns", "del", netns_name], check=False)
    if link_exists(veth):
        run(["ip", "link", "del", veth], check=False)


def destroy(state: LabState, netns_names: Sequence[str]) -> None:
    for name in netns_names:
        remove_host(name, name)  # a box's veth is named after its namespace
    for host in state.boxes:
        remove_host(host.netns, host.veth)
    if link_exists(state.bridge):
        run(["ip", "link", "del", state.bridge], check=False)
    remove_forwarding(state)


def lab_netns(state: LabState) -> list[str]:
    """Namespaces of this lab: the recorded hosts plus any `<prefix>-hN` a crash left."""
    names = {h.netns for h in state.boxes}
    out = run(["ip", "netns", "list"], check=False)
    for line in out.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        for kind in ("h", "c"):  # hosts, controller nodes
            rest = name.removeprefix(f"{state.prefix}-{kind}")
            if rest != name and rest.isdigit():
                names.add(name)
    return sorted(names)
