"""The host settings of a ContainerSpec, from a validated container definition (pure, issue 18).

controller/taskdef_host.py checked these fields; this module only translates them into the
structured agent messages (LinuxParams, Ulimit, Security, Dns, Dependency, RestartPolicy).
"""

from __future__ import annotations

from typing import Any

from controller.taskdef_host import RESTART_PERIOD, container_gpus
from dockyard.v1 import agent_pb2


def add_host_settings(spec: agent_pb2.ContainerSpec, cdef: dict[str, Any]) -> None:
    """Fill the issue-18 fields of `spec` from container definition `cdef`."""
    if "linuxParameters" in cdef:
        spec.linux.CopyFrom(_linux(cdef["linuxParameters"]))
    spec.ulimits.extend(
        agent_pb2.Ulimit(name=u["name"], soft=u["softLimit"], hard=u["hardLimit"])
        for u in cdef.get("ulimits", [])
    )
    security = agent_pb2.Security(
        privileged=cdef.get("privileged", False),
        readonly_root_filesystem=cdef.get("readonlyRootFilesystem", False),
        security_options=cdef.get("dockerSecurityOptions", []),
        sysctls={s["namespace"]: s["value"] for s in cdef.get("systemControls", [])},
    )
    if security.ByteSize():
        spec.security.CopyFrom(security)
    dns = agent_pb2.Dns(
        servers=cdef.get("dnsServers", []),
        search_domains=cdef.get("dnsSearchDomains", []),
        extra_hosts=[f"{h['hostname']}:{h['ipAddress']}" for h in cdef.get("extraHosts", [])],
        disable_networking=cdef.get("disableNetworking", False),
    )
    if dns.ByteSize():
        spec.dns.CopyFrom(dns)
    spec.depends_on.extend(
        agent_pb2.Dependency(container=d["containerName"], condition=d["condition"])
        for d in cdef.get("dependsOn", [])
    )
    spec.start_timeout_s = cdef.get("startTimeout", 0)
    rp = cdef.get("restartPolicy")
    if rp and rp["enabled"]:
        spec.restart_policy.CopyFrom(
            agent_pb2.RestartPolicy(
                enabled=True,
                ignored_exit_codes=rp.get("ignoredExitCodes", []),
                attempt_period_s=rp.get("restartAttemptPeriod", RESTART_PERIOD[2]),
            )
        )
    spec.gpus = container_gpus(cdef)
    spec.interactive = cdef.get("interactive", False)
    spec.pseudo_terminal = cdef.get("pseudoTerminal", False)


def _linux(lp: dict[str, Any]) -> agent_pb2.LinuxParams:
    caps = lp.get("capabilities", {})
    out = agent_pb2.LinuxParams(
        cap_add=caps.get("add", []),
        cap_drop=caps.get("drop", []),
        devices=[
            agent_pb2.Device(
                host_path=d["hostPath"],
                container_path=d.get("containerPath", ""),
                permissions=d.get("permissions", []),
            )
            for d in lp.get("devices", [])
        ],
        init=lp.get("initProcessEnabled", False),
        shared_memory_mib=lp.get("sharedMemorySize", 0),
        tmpfs=[
            agent_pb2.Tmpfs(
                container_path=t["containerPath"],
                size_mib=t["size"],
                mount_options=t.get("mountOptions", []),
            )
            for t in lp.get("tmpfs", [])
        ],
    )
    if "maxSwap" in lp:
        out.max_swap_mib = lp["maxSwap"]
    if "swappiness" in lp:
        out.swappiness = lp["swappiness"]
    return out
