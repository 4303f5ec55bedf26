"""Task-definition fields the agent applies to the Docker host config (issue 18).

Limits and security (`ulimits`, `linuxParameters`, `privileged`, ...), DNS and hosts,
start order (`dependsOn`, `startTimeout`), `restartPolicy`, task `pidMode`/`ipcMode`.
Kept apart from controller/taskdef.py so each field's checks read in one place; every
error names the field. The checks follow ECS's limits for the EC2 launch type.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from controller import taskdef as base  # circular on purpose: used at call time only
from dockyard.errors import client_error, invalid
from dockyard.labels import HOST_DEVICES_DISABLED, PRIVILEGED_DISABLED

ULIMIT_NAMES = (
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
)
DEVICE_PERMISSIONS = ("read", "write", "mknod")
CONDITIONS = ("START", "COMPLETE", "SUCCESS", "HEALTHY")
PID_MODES = ("host", "task")
IPC_MODES = ("host", "task", "none")
CAPABILITY_RE = re.compile(r"^[A-Z][A-Z0-9_]{1,40}$")
SECURITY_OPTION_RE = re.compile(r"^(no-new-privileges(:(true|false))?|apparmor:\S+|label:\S+)$")
SYSCTL_RE = re.compile(r"^[a-z0-9_]+(\.[a-zA-Z0-9_*-]+)+$")
HOSTNAME_RE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,251}[a-zA-Z0-9])?$")
IPC_SYSCTL_PREFIXES = ("kernel.msg", "kernel.sem", "kernel.shm", "fs.mqueue.")
BOOL_FIELDS = (
    "privileged",
    "readonlyRootFilesystem",
    "disableNetworking",
    "interactive",
    "pseudoTerminal",
)
RESTART_PERIOD = (60, 1800, 300)  # ECS: min, max, default seconds
MAX_IGNORED_EXIT_CODES = 50


def _int(value: Any, field: str, lo: int, hi: int | None = None) -> int:
    return base._int(value, field, lo, hi)


def _strings(value: Any, field: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise invalid(field, "must be a list of non-empty strings")
    return value


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(field, "must be an object")
    return value


def _list(value: Any, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise invalid(field, "must be a list")
    return value


# ---------------------------------------------------------------- container fields


def check_container(c: dict[str, Any], f: str, network_mode: str) -> dict[str, Any]:
    """The normalised values of this module's fields for container `c` (at field path `f`)."""
    out: dict[str, Any] = {}
    for key in BOOL_FIELDS:
        if key in c and not isinstance(c[key], bool):
            raise invalid(f"{f}.{key}", "must be true or false")
    if "user" in c and (not isinstance(c["user"], str) or not c["user"]):
        raise invalid(f"{f}.user", "must be a non-empty string (user, uid, user:group or uid:gid)")
    if "ulimits" in c:
        out["ulimits"] = [_ulimit(u, f"{f}.ulimits[{i}]") for i, u in enumerate(_ulimits(c, f))]
    if "linuxParameters" in c:
        out["linuxParameters"] = _linux(c["linuxParameters"], f"{f}.linuxParameters", c)
    if "dockerSecurityOptions" in c:
        for i, opt in enumerate(_strings(c["dockerSecurityOptions"], f"{f}.dockerSecurityOptions")):
            if not SECURITY_OPTION_RE.match(opt):
                raise invalid(
                    f"{f}.dockerSecurityOptions[{i}]",
                    f"{opt!r} is not supported on Linux: use no-new-privileges, "
                    "apparmor:PROFILE or label:VALUE",
                )
    if "systemControls" in c:
        out["systemControls"] = _sysctls(c["systemControls"], f"{f}.systemControls", network_mode)
    _check_network_fields(c, f)
    if "startTimeout" in c:
        out["startTimeout"] = _int(c["startTimeout"], f"{f}.startTimeout", 2, 3600)
    if "restartPolicy" in c:
        out["restartPolicy"] = _restart_policy(c["restartPolicy"], f"{f}.restartPolicy")
    if "resourceRequirements" in c:
        out["resourceRequirements"] = _requirements(c["resourceRequirements"], f)
    return out


def _requirements(value: Any, f: str) -> list[dict[str, str]]:
    out = []
    for i, r in enumerate(_list(value, f"{f}.resourceRequirements")):
        r = _object(r, f"{f}.resourceRequirements[{i}]")
        if r.get("type") == "InferenceAccelerator":
            raise invalid(
                f"{f}.resourceRequirements[{i}].type",
                "InferenceAccelerator (Elastic Inference) does not exist outside AWS; use GPU",
            )
        if r.get("type") != "GPU":
            raise invalid(f"{f}.resourceRequirements[{i}].type", "must be GPU")
        value = r.get("value")
        if not isinstance(value, str) or not value.isdigit() or int(value) < 1:
            raise invalid(f"{f}.resourceRequirements[{i}].value", 'must be a GPU count like "1"')
        out.append({"type": "GPU", "value": str(int(value))})
    if len(out) > 1:
        raise invalid(f"{f}.resourceRequirements", "GPU may be given once")
    return out


def container_gpus(c: dict[str, Any]) -> int:
    """GPUs a (validated) container definition asks for."""
    return sum(int(r["value"]) for r in c.get("resourceRequirements", []) if r["type"] == "GPU")


def task_gpus(doc: dict[str, Any]) -> int:
    """GPUs a task of this (validated) definition holds on its instance."""
    return sum(container_gpus(c) for c in doc.get("containerDefinitions", []))


def _ulimits(c: dict[str, Any], f: str) -> list[Any]:
    items = _list(c["ulimits"], f"{f}.ulimits")
    names = [u.get("name") for u in items if isinstance(u, dict)]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise invalid(f"{f}.ulimits[{i}].name", f"{name!r} is given twice")
    return items


def _ulimit(u: Any, f: str) -> dict[str, Any]:
    u = _object(u, f)
    if u.get("name") not in ULIMIT_NAMES:
        raise invalid(f"{f}.name", f"must be one of {', '.join(ULIMIT_NAMES)}")
    for key in ("softLimit", "hardLimit"):
        if key not in u:
            raise invalid(f"{f}.{key}", "is required")
    lo = -1 if u["name"] in ("nice", "rtprio") else 0
    soft = _int(u["softLimit"], f"{f}.softLimit", lo)
    hard = _int(u["hardLimit"], f"{f}.hardLimit", lo)
    if soft > hard:
        raise invalid(f"{f}.softLimit", f"{soft} exceeds hardLimit {hard}")
    return {"name": u["name"], "softLimit": soft, "hardLimit": hard}


def _linux(value: Any, f: str, c: dict[str, Any]) -> dict[str, Any]:
    lp = dict(_object(value, f))
    known = {
        "capabilities",
        "devices",
        "initProcessEnabled",
        "sharedMemorySize",
        "tmpfs",
        "maxSwap",
        "swappiness",
    }
    for key in lp:
        if key not in known:
            raise invalid(f"{f}.{key}", "is not a linuxParameters field Dockyard knows")
    if "capabilities" in lp:
        caps = _object(lp["capabilities"], f"{f}.capabilities")
        for key in caps:
            if key not in ("add", "drop"):
                raise invalid(f"{f}.capabilities.{key}", "must be add or drop")
            for i, cap in enumerate(_strings(caps[key], f"{f}.capabilities.{key}")):
                if not CAPABILITY_RE.match(cap):
                    raise invalid(f"{f}.capabilities.{key}[{i}]", f"{cap!r} is not a capability")
    if "devices" in lp:
        lp["devices"] = [
            _device(d, f"{f}.devices[{i}]")
            for i, d in enumerate(_list(lp["devices"], f"{f}.devices"))
        ]
    if "initProcessEnabled" in lp and not isinstance(lp["initProcessEnabled"], bool):
        raise invalid(f"{f}.initProcessEnabled", "must be true or false")
    if "sharedMemorySize" in lp:
        _int(lp["sharedMemorySize"], f"{f}.sharedMemorySize", 1)
    if "tmpfs" in lp:
        lp["tmpfs"] = [
            _tmpfs(t, f"{f}.tmpfs[{i}]") for i, t in enumerate(_list(lp["tmpfs"], f"{f}.tmpfs"))
        ]
    if "maxSwap" in lp:
        _int(lp["maxSwap"], f"{f}.maxSwap", 0)
        if not c.get("memory"):
            raise invalid(
                f"{f}.maxSwap",
                "needs the container's memory (hard limit): swap is memory + maxSwap",
            )
    if "swappiness" in lp:
        _int(lp["swappiness"], f"{f}.swappiness", 0, 100)
    return lp


def _path(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise invalid(field, "is required and must be an absolute path")
    return value


def _device(d: Any, f: str) -> dict[str, Any]:
    d = _object(d, f)
    out: dict[str, Any] = {"hostPath": _path(d.get("hostPath"), f"{f}.hostPath")}
    if "containerPath" in d:
        out["containerPath"] = _path(d["containerPath"], f"{f}.containerPath")
    if "permissions" in d:
        perms = _strings(d["permissions"], f"{f}.permissions")
        for p in perms:
            if p not in DEVICE_PERMISSIONS:
                raise invalid(f"{f}.permissions", f"{p!r} is not one of read, write, mknod")
        out["permissions"] = perms
    return out


def _tmpfs(t: Any, f: str) -> dict[str, Any]:
    t = _object(t, f)
    path = _path(t.get("containerPath"), f"{f}.containerPath")
    if "size" not in t:
        raise invalid(f"{f}.size", "is required (MiB)")
    out: dict[str, Any] = {"containerPath": path, "size": _int(t["size"], f"{f}.size", 1)}
    if "mountOptions" in t:
        options = _strings(t["mountOptions"], f"{f}.mountOptions")
        if any("," in opt for opt in options):
            raise invalid(f"{f}.mountOptions", "one option per entry (no commas)")
        out["mountOptions"] = options
    return out


def _sysctls(value: Any, f: str, network_mode: str) -> list[dict[str, str]]:
    out = []
    for i, sc in enumerate(_list(value, f)):
        sc = _object(sc, f"{f}[{i}]")
        ns, val = sc.get("namespace"), sc.get("value")
        if not isinstance(ns, str) or not SYSCTL_RE.match(ns):
            raise invalid(
                f"{f}[{i}].namespace", "is required: a kernel parameter like net.core.somaxconn"
            )
        if not isinstance(val, str):
            raise invalid(f"{f}[{i}].value", "is required and must be a string")
        if ns.startswith("net.") and network_mode == "host":
            raise invalid(
                f"{f}[{i}].namespace",
                "network parameters cannot be set in host network mode "
                "(they would change the host)",
            )
        if not ns.startswith(("net.", *IPC_SYSCTL_PREFIXES)):
            raise invalid(
                f"{f}[{i}].namespace",
                f"{ns!r} is not namespaced: only net.* and IPC parameters (kernel.msg*, "
                "kernel.sem, kernel.shm*, fs.mqueue.*) can be set per container",
            )
        out.append({"namespace": ns, "value": val})
    return out


def _check_network_fields(c: dict[str, Any], f: str) -> None:
    for key in ("dnsServers", "dnsSearchDomains"):
        if key not in c:
            continue
        values = _strings(c[key], f"{f}.{key}")
        for i, v in enumerate(values):
            if key == "dnsServers":
                try:
                    ipaddress.ip_address(v)
                except ValueError:
                    raise invalid(f"{f}.{key}[{i}]", f"{v!r} is not an IP address") from None
            elif not HOSTNAME_RE.match(v):
                raise invalid(f"{f}.{key}[{i}]", f"{v!r} is not a domain name")
    if "extraHosts" in c:
        for i, h in enumerate(_list(c["extraHosts"], f"{f}.extraHosts")):
            h = _object(h, f"{f}.extraHosts[{i}]")
            if not isinstance(h.get("hostname"), str) or not HOSTNAME_RE.match(h["hostname"]):
                raise invalid(f"{f}.extraHosts[{i}].hostname", "is required: a host name")
            try:
                ipaddress.ip_address(str(h.get("ipAddress", "")))
            except ValueError:
                raise invalid(
                    f"{f}.extraHosts[{i}].ipAddress", "is required: an IP address"
                ) from None
    if "hostname" in c:
        if not isinstance(c["hostname"], str) or not HOSTNAME_RE.match(c["hostname"]):
            raise invalid(f"{f}.hostname", "must be a host name (letters, digits, dots, hyphens)")


def _restart_policy(value: Any, f: str) -> dict[str, Any]:
    rp = _object(value, f)
    if not isinstance(rp.get("enabled"), bool):
        raise invalid(f"{f}.enabled", "is required: true or false")
    lo, hi, default = RESTART_PERIOD
    out: dict[str, Any] = {"enabled": rp["enabled"]}
    codes = rp.get("ignoredExitCodes", [])
    if not isinstance(codes, list) or len(codes) > MAX_IGNORED_EXIT_CODES:
        raise invalid(
            f"{f}.ignoredExitCodes",
            f"must be a list of at most {MAX_IGNORED_EXIT_CODES} exit codes",
        )
    out["ignoredExitCodes"] = [
        _int(x, f"{f}.ignoredExitCodes[{i}]", 0, 255) for i, x in enumerate(codes)
    ]
    out["restartAttemptPeriod"] = _int(
        rp.get("restartAttemptPeriod", default), f"{f}.restartAttemptPeriod", lo, hi
    )
    return out


# ---------------------------------------------------------------- placement


def implied_constraints(doc: dict[str, Any]) -> list[dict[str, str]]:
    """memberOf constraints a definition implies: privileged containers or host devices keep
    the task off instances whose agent policy refuses them (ECS_DISABLE_PRIVILEGED). Such an
    instance fails placement with ECS's ATTRIBUTE reason."""
    defs = doc.get("containerDefinitions", [])
    out = []
    if any(c.get("privileged") for c in defs):
        out.append({"type": "memberOf", "expression": f"attribute:{PRIVILEGED_DISABLED} !exists"})
    if any((c.get("linuxParameters") or {}).get("devices") for c in defs):
        out.append({"type": "memberOf", "expression": f"attribute:{HOST_DEVICES_DISABLED} !exists"})
    return out


# ---------------------------------------------------------------- task fields


def check_task(body: dict[str, Any], containers: list[dict[str, Any]]) -> dict[str, Any]:
    """Task-level checks: pidMode/ipcMode and dependsOn across containers (names, cycles)."""
    out: dict[str, Any] = {}
    if "pidMode" in body:
        if body["pidMode"] not in PID_MODES:
            raise invalid("pidMode", f"must be host or task, got {body['pidMode']!r}")
        out["pidMode"] = body["pidMode"]
    if "ipcMode" in body:
        if body["ipcMode"] not in IPC_MODES:
            raise invalid("ipcMode", f"must be host, task or none, got {body['ipcMode']!r}")
        out["ipcMode"] = body["ipcMode"]
    if body.get("ipcMode") == "host":
        for i, c in enumerate(containers):
            for j, sc in enumerate(c.get("systemControls", [])):
                if sc["namespace"].startswith(IPC_SYSCTL_PREFIXES):
                    raise invalid(
                        f"containerDefinitions[{i}].systemControls[{j}].namespace",
                        "IPC parameters cannot be set with ipcMode host "
                        "(they would change the host)",
                    )
    _check_depends_on(containers)
    for key in ("pidMode", "ipcMode"):
        if out.get(key) == "task" and not any(
            c["essential"] and not c.get("dependsOn") and not c.get("links") for c in containers
        ):
            raise invalid(
                key,
                "task needs an essential container without dependsOn or links: it holds the "
                "namespace the task's other containers join",
            )
    return out


def _check_depends_on(containers: list[dict[str, Any]]) -> None:
    by_name = {c["name"]: c for c in containers}
    graph: dict[str, list[str]] = {}
    for i, c in enumerate(containers):
        f = f"containerDefinitions[{i}].dependsOn"
        deps = c.get("dependsOn")
        if deps is None:
            continue
        if not isinstance(deps, list):
            raise client_error(f"{f}: must be a list of {{containerName, condition}}")
        graph[c["name"]] = []
        for j, d in enumerate(deps):
            graph[c["name"]].append(_dependency(d, f"{f}[{j}]", c["name"], by_name))
    cycle = _find_cycle(graph)
    if cycle:
        raise client_error(
            f"dependsOn: containers depend on each other in a cycle ({' -> '.join(cycle)})"
        )


def _dependency(d: Any, f: str, own: str, by_name: dict[str, dict[str, Any]]) -> str:
    if not isinstance(d, dict):
        raise client_error(f"{f}: must be an object with containerName and condition")
    name, cond = d.get("containerName"), d.get("condition")
    if name not in by_name:
        raise client_error(
            f"{f}.containerName: {name!r} is not a container of this task definition"
        )
    if name == own:
        raise client_error(f"{f}.containerName: a container cannot depend on itself")
    if cond not in CONDITIONS:
        raise client_error(f"{f}.condition: must be one of {', '.join(CONDITIONS)}, got {cond!r}")
    target = by_name[name]
    if cond in ("COMPLETE", "SUCCESS") and target["essential"]:
        raise client_error(
            f"{f}.condition: {cond} cannot be set on a dependency "
            f"on an essential container ({name})"
        )
    if cond == "HEALTHY" and "healthCheck" not in target:
        raise client_error(f"{f}.condition: HEALTHY needs a healthCheck on container {name}")
    return name


def _find_cycle(graph: dict[str, list[str]]) -> list[str]:
    """A dependency cycle as a path that returns to its start, or [] when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(n: str) -> list[str]:
        state[n] = 1
        path.append(n)
        for m in graph.get(n, []):
            if state.get(m) == 1:
                return [*path[path.index(m) :], m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        path.pop()
        state[n] = 2
        return []

    for n in graph:
        if n not in state:
            found = visit(n)
            if found:
                return found
    return []
