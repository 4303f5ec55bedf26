"""ContainerSpec host settings -> Docker's create body (pure, issue 18).

Limits and security (ulimits, linuxParameters, privileged, read-only root, security options,
sysctls), DNS and extra hosts, stdin/tty, and the task's pid/ipc namespaces. A task-shared
namespace ("task" mode) belongs to the task's first container in start order (the one the
reconcile plan starts first, agent.start_order); the others join it.
"""

from __future__ import annotations

from typing import Any

from agent.start_order import namespace_owner
from dockyard.labels import HOST_DEVICES_DISABLED, PRIVILEGED_DISABLED
from dockyard.v1 import agent_pb2

MIB = 1024 * 1024
GPU_LABEL = "dockyard.gpu-ids"  # the GPUs a container was given: the agent's GPU ledger
_PERMISSIONS = {"read": "r", "write": "w", "mknod": "m"}


def policy_attributes(disable_privileged: bool, disable_host_devices: bool) -> dict[str, str]:
    """The attributes that tell placement about this agent's policy."""
    out = {}
    if disable_privileged:
        out[PRIVILEGED_DISABLED] = "true"
    if disable_host_devices:
        out[HOST_DEVICES_DISABLED] = "true"
    return out


def refused_by_policy(spec: agent_pb2.ContainerSpec, attributes: dict[str, str]) -> str:
    """Why this agent's policy refuses the container ("" when it does not): placement should
    have kept the task away, so this only catches a stale or hand-made placement."""
    if spec.security.privileged and PRIVILEGED_DISABLED in attributes:
        return (
            f"CannotStartContainerError: {spec.name}: privileged containers are disabled on "
            "this instance (dockyard agent --disable-privileged)"
        )
    if spec.linux.devices and HOST_DEVICES_DISABLED in attributes:
        return (
            f"CannotStartContainerError: {spec.name}: host devices are disabled on this "
            "instance (dockyard agent --disable-host-devices)"
        )
    return ""


def with_resolver(
    task: agent_pb2.DesiredTask, spec: agent_pb2.ContainerSpec, resolver: str
) -> agent_pb2.ContainerSpec:
    """The agent's resolver as the container's DNS server (issue 21), when the cluster has
    namespaces (`resolver` set); an explicit dnsServers, or no networking, wins."""
    mode = task.network_mode or "bridge"
    if not resolver or mode not in ("bridge", "host") or spec.dns.servers:
        return spec
    if spec.dns.disable_networking:
        return spec
    out = agent_pb2.ContainerSpec()
    out.CopyFrom(spec)
    out.dns.servers.append(resolver)
    return out


def apply(
    config: dict[str, Any],
    task: agent_pb2.DesiredTask,
    spec: agent_pb2.ContainerSpec,
    docker_names: dict[str, str],
) -> None:
    """Add the spec's host settings to `config` (its HostConfig is config["HostConfig"])."""
    host: dict[str, Any] = config["HostConfig"]
    if spec.ulimits:
        host["Ulimits"] = [{"Name": u.name, "Soft": u.soft, "Hard": u.hard} for u in spec.ulimits]
    if spec.HasField("linux"):
        host.update(_linux(spec))
    if spec.HasField("security"):
        host.update(_security(spec.security))
    if spec.HasField("dns"):
        _dns(config, host, spec.dns)
    if spec.interactive:
        config["OpenStdin"] = True
    if spec.pseudo_terminal:
        config["Tty"] = True
    host.update(_namespaces(task, spec, docker_names))
    if spec.gpu_ids:
        host["DeviceRequests"] = [
            {"Driver": "nvidia", "DeviceIDs": list(spec.gpu_ids), "Capabilities": [["gpu"]]}
        ]
        config["Labels"][GPU_LABEL] = ",".join(spec.gpu_ids)


def _linux(spec: agent_pb2.ContainerSpec) -> dict[str, Any]:
    lp = spec.linux
    out: dict[str, Any] = {}
    if lp.cap_add:
        out["CapAdd"] = list(lp.cap_add)
    if lp.cap_drop:
        out["CapDrop"] = list(lp.cap_drop)
    if lp.devices:
        out["Devices"] = [
            {
                "PathOnHost": d.host_path,
                "PathInContainer": d.container_path or d.host_path,
                "CgroupPermissions": "".join(_PERMISSIONS[p] for p in d.permissions) or "rwm",
            }
            for d in lp.devices
        ]
    if lp.init:
        out["Init"] = True
    if lp.shared_memory_mib:
        out["ShmSize"] = lp.shared_memory_mib * MIB
    if lp.tmpfs:
        out["Tmpfs"] = {
            t.container_path: ",".join([f"size={t.size_mib}m", *t.mount_options]) for t in lp.tmpfs
        }
    if lp.HasField("max_swap_mib") and spec.memory_mib:
        out["MemorySwap"] = (spec.memory_mib + lp.max_swap_mib) * MIB
    if lp.HasField("swappiness"):
        out["MemorySwappiness"] = lp.swappiness
    return out


def _security(sec: agent_pb2.Security) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if sec.privileged:
        out["Privileged"] = True
    if sec.readonly_root_filesystem:
        out["ReadonlyRootfs"] = True
    if sec.security_options:
        out["SecurityOpt"] = list(sec.security_options)
    if sec.sysctls:
        out["Sysctls"] = dict(sec.sysctls)
    return out


def _dns(config: dict[str, Any], host: dict[str, Any], dns: agent_pb2.Dns) -> None:
    if dns.servers:
        host["Dns"] = list(dns.servers)
    if dns.search_domains:
        host["DnsSearch"] = list(dns.search_domains)
    if dns.extra_hosts:
        host["ExtraHosts"] = list(dns.extra_hosts)
    if dns.disable_networking:
        config["NetworkDisabled"] = True


def _namespaces(
    task: agent_pb2.DesiredTask, spec: agent_pb2.ContainerSpec, docker_names: dict[str, str]
) -> dict[str, str]:
    out: dict[str, str] = {}
    owner = namespace_owner(task)
    joined = f"container:{docker_names[owner]}" if owner and owner != spec.name else ""
    if task.pid_mode == "host":
        out["PidMode"] = "host"
    elif task.pid_mode == "task" and joined:
        out["PidMode"] = joined
    if task.ipc_mode in ("host", "none"):
        out["IpcMode"] = task.ipc_mode
    elif task.ipc_mode == "task":
        out["IpcMode"] = joined or "shareable"
    return out
