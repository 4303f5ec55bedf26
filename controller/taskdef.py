"""Task definitions in ECS JSON: validation with errors that name the field, and normalisation.

A definition that works on ECS's EC2 launch type (bridge or host network mode) registers
unchanged; what Dockyard cannot honour (awsvpc, Fargate-only settings) is refused with a
reason rather than silently ignored.
"""

from __future__ import annotations

import re
from typing import Any

from controller import taskdef_apps as apps
from controller import taskdef_fields as fields
from controller import taskdef_host
from controller.request_limits import check_image, check_task_definition_size
from dockyard.errors import ApiError, client_error, invalid

NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,255}$")
NETWORK_MODES = ("bridge", "host", "none")
MAX_CONTAINERS = 10
STOP_TIMEOUT_MAX = 120
DEFAULT_STOP_TIMEOUT = 30

_MEMORY_UNITS = {"": 1, "mib": 1, "mb": 1, "gb": 1024, "gib": 1024}


def parse_cpu(value: Any, field: str) -> int:
    """ECS task-level cpu: "1024", "1 vCPU", "0.5 vcpu" or a number of units."""
    if value in (None, ""):
        return 0
    text = str(value).strip().lower()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(vcpu)?", text)
    if not m:
        raise invalid(field, f"{value!r} is not a CPU amount (units like 512, or '0.5 vCPU')")
    amount = float(m.group(1))
    units = int(amount * 1024) if m.group(2) else int(amount)
    if units <= 0:
        raise invalid(field, "must be greater than 0")
    return units


def parse_memory(value: Any, field: str) -> int:
    """ECS task-level memory: "512", "512 MiB", "1GB", "0.5 GB" -> MiB."""
    if value in (None, ""):
        return 0
    text = str(value).strip().lower()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text)
    if not m or m.group(2) not in _MEMORY_UNITS:
        raise invalid(field, f"{value!r} is not a memory amount (MiB like 512, or '1 GB')")
    mib = int(float(m.group(1)) * _MEMORY_UNITS[m.group(2)])
    if mib <= 0:
        raise invalid(field, "must be greater than 0")
    return mib


def _int(value: Any, field: str, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(field, f"must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise invalid(field, f"must be {bound}, got {value}")
    return value


def _str_list(value: Any, field: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid(field, "must be a list of strings")
    return value


def _key_values(value: Any, field: str) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise invalid(field, "must be a list of {name, value}")
    out = []
    for i, kv in enumerate(value):
        if not isinstance(kv, dict) or not isinstance(kv.get("name"), str) or not kv["name"]:
            raise invalid(f"{field}[{i}].name", "is required and must be a string")
        if not isinstance(kv.get("value", ""), str):
            raise invalid(f"{field}[{i}].value", "must be a string")
        out.append({"name": kv["name"], "value": kv.get("value", "")})
    return out


def _port_mappings(value: Any, field: str, network_mode: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise invalid(field, "must be a list")
    out = []
    for i, pm in enumerate(value):
        f = f"{field}[{i}]"
        if not isinstance(pm, dict):
            raise invalid(f, "must be an object with containerPort, hostPort, protocol")
        if "containerPort" not in pm and network_mode == "host" and "hostPort" in pm:
            pm = {**pm, "containerPort": pm["hostPort"]}
        if "containerPort" not in pm:
            raise invalid(f"{f}.containerPort", "is required")
        cport = _int(pm["containerPort"], f"{f}.containerPort", 1, 65535)
        hport = _int(
            pm.get("hostPort", 0 if network_mode == "bridge" else cport), f"{f}.hostPort", 0, 65535
        )
        proto = pm.get("protocol", "tcp")
        if proto not in ("tcp", "udp"):
            raise invalid(f"{f}.protocol", f"must be tcp or udp, got {proto!r}")
        if network_mode == "host" and hport != cport:
            raise invalid(f"{f}.hostPort", "must equal containerPort in host network mode")
        if network_mode == "none":
            raise invalid(f, "port mappings need bridge or host network mode")
        out.append({**pm, "containerPort": cport, "hostPort": hport, "protocol": proto})
    return out


def _health_check(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(field, "must be an object")
    cmd = _str_list(value.get("command"), f"{field}.command")
    if not cmd or cmd[0] not in ("CMD", "CMD-SHELL"):
        raise invalid(f"{field}.command", 'must start with "CMD" or "CMD-SHELL"')
    return {
        "command": cmd,
        "interval": _int(value.get("interval", 30), f"{field}.interval", 5, 300),
        "timeout": _int(value.get("timeout", 5), f"{field}.timeout", 2, 60),
        "retries": _int(value.get("retries", 3), f"{field}.retries", 1, 10),
        "startPeriod": _int(value.get("startPeriod", 0), f"{field}.startPeriod", 0, 300),
    }


def _container(c: Any, i: int, network_mode: str) -> dict[str, Any]:
    f = f"containerDefinitions[{i}]"
    if not isinstance(c, dict):
        raise invalid(f, "must be an object")
    fields.check(c, fields.CONTAINER_HONOURED, fields.CONTAINER_REFUSED, f)
    if isinstance(c.get("linuxParameters"), dict):
        fields.check(
            c["linuxParameters"],
            fields.LINUX_PARAMETERS_HONOURED,
            fields.LINUX_PARAMETERS_REFUSED,
            f"{f}.linuxParameters",
        )
    name = c.get("name")
    if name in (None, ""):
        raise client_error("Container.name should not be null or empty.")  # ECS's words
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise invalid(f"{f}.name", "1-255 letters, digits, hyphens, underscores")
    image = c.get("image")
    if not isinstance(image, str) or not image.strip():
        raise client_error("Container.image should not be null or empty.")
    check_image(image, f"{f}.image")
    out = dict(c)
    out["essential"] = c.get("essential", True)
    if not isinstance(out["essential"], bool):
        raise invalid(f"{f}.essential", "must be true or false")
    out["cpu"] = _int(c.get("cpu", 0), f"{f}.cpu", 0, 10 * 1024 * 1024)
    for key in ("memory", "memoryReservation"):
        if c.get(key) is not None:
            out[key] = _int(c[key], f"{f}.{key}", 6)
    if "memory" in out and "memoryReservation" in out and out["memoryReservation"] > out["memory"]:
        raise invalid(f"{f}.memoryReservation", "must not exceed memory (the hard limit)")
    for key in ("command", "entryPoint", "links", "dnsServers"):
        if key in c:
            out[key] = _str_list(c[key], f"{f}.{key}")
    out["environment"] = _key_values(c.get("environment", []), f"{f}.environment")
    out["portMappings"] = _port_mappings(
        c.get("portMappings", []), f"{f}.portMappings", network_mode
    )
    if "healthCheck" in c:
        out["healthCheck"] = _health_check(c["healthCheck"], f"{f}.healthCheck")
    if "stopTimeout" in c:
        out["stopTimeout"] = _int(c["stopTimeout"], f"{f}.stopTimeout", 2, STOP_TIMEOUT_MAX)
    if "links" in out and network_mode != "bridge":
        raise invalid(f"{f}.links", "links need bridge network mode")
    if "dockerLabels" in c and not (
        isinstance(c["dockerLabels"], dict)
        and all(isinstance(v, str) for v in c["dockerLabels"].values())
    ):
        raise invalid(f"{f}.dockerLabels", "must map strings to strings")
    if "logConfiguration" in c:
        out["logConfiguration"] = apps.log_configuration(
            c["logConfiguration"], f"{f}.logConfiguration"
        )
    if "versionConsistency" in c:
        apps.version_consistency(c["versionConsistency"], f"{f}.versionConsistency")
    out.setdefault("mountPoints", [])
    out.setdefault("volumesFrom", [])
    out.update(taskdef_host.check_container(c, f, network_mode))
    return out


def _storage(containers: list[dict[str, Any]], volume_names: set[str]) -> None:
    """mountPoints name declared volumes; volumesFrom names other containers, without cycles."""
    names = [c["name"] for c in containers]
    for i, c in enumerate(containers):
        f = f"containerDefinitions[{i}]"
        c["mountPoints"] = apps.mount_points(
            c.get("mountPoints", []), f"{f}.mountPoints", volume_names
        )
        c["volumesFrom"] = apps.volumes_from(
            c.get("volumesFrom", []), f"{f}.volumesFrom", c["name"], names
        )
    apps.check_volumes_from_cycles(containers)


def validate(body: dict[str, Any]) -> dict[str, Any]:
    """Check a RegisterTaskDefinition request; return the normalised definition (no ARN yet)."""
    if not isinstance(body, dict):
        raise ApiError("ClientException", "the task definition must be a JSON object")
    check_task_definition_size(body)
    fields.check(body, fields.TASK_HONOURED, fields.TASK_REFUSED, "")
    family = body.get("family")
    if not isinstance(family, str) or not NAME_RE.match(family):
        raise invalid("family", "is required: 1-255 letters, digits, hyphens, underscores")
    network_mode = body.get("networkMode", "bridge")
    if network_mode == "awsvpc":
        raise invalid("networkMode", "awsvpc is not supported by Dockyard (use bridge or host)")
    if network_mode not in NETWORK_MODES:
        raise invalid(
            "networkMode", f"must be one of {', '.join(NETWORK_MODES)}, got {network_mode!r}"
        )
    volumes = apps.volumes(body.get("volumes", []))
    defs = body.get("containerDefinitions")
    if not isinstance(defs, list) or not defs:
        raise invalid("containerDefinitions", "is required and must not be empty")
    if len(defs) > MAX_CONTAINERS:
        raise ApiError(
            "ClientException",
            f"containerDefinitions: Too many containers ({len(defs)}); "
            f"at most {MAX_CONTAINERS} per task definition",
        )
    containers = [_container(c, i, network_mode) for i, c in enumerate(defs)]
    _check_across_containers(containers, body)
    _storage(containers, {v["name"] for v in volumes})
    out = {k: v for k, v in body.items() if k not in ("tags",)}
    out.update(family=family, networkMode=network_mode, containerDefinitions=containers)
    out.update(taskdef_host.check_task(body, containers))
    if body.get("cpu") not in (None, ""):
        out["cpu"] = str(parse_cpu(body["cpu"], "cpu"))
    if body.get("memory") not in (None, ""):
        out["memory"] = str(parse_memory(body["memory"], "memory"))
    out["volumes"] = volumes
    out.setdefault("placementConstraints", [])
    if "runtimePlatform" in body:
        out["placementConstraints"] = list(out["placementConstraints"]) + apps.runtime_platform(
            body["runtimePlatform"]
        )
    compat = body.get("requiresCompatibilities")
    if compat is not None:  # ECS shows requiresCompatibilities only when it was given
        if "FARGATE" in compat and network_mode != "awsvpc":
            compat = [c for c in compat if c != "FARGATE"] or ["EC2"]
        out["requiresCompatibilities"] = compat
    out["compatibilities"] = ["EC2", "EXTERNAL"]
    return out


def _check_across_containers(containers: list[dict[str, Any]], body: dict[str, Any]) -> None:
    names = [c["name"] for c in containers]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise invalid(f"containerDefinitions[{i}].name", f"duplicate container name {name!r}")
    if not any(c["essential"] for c in containers):
        raise invalid("containerDefinitions", "at least one container must be essential")
    task_memory = parse_memory(body.get("memory"), "memory")
    for i, c in enumerate(containers):
        if not task_memory and not c.get("memory") and not c.get("memoryReservation"):
            raise client_error(
                f"Invalid setting for container '{c['name']}'. "
                "At least one of 'memory' or 'memoryReservation' must be specified."
            )
        if task_memory and c.get("memory", 0) > task_memory:
            raise invalid(
                f"containerDefinitions[{i}].memory",
                f"{c['memory']} MiB exceeds the task's memory ({task_memory} MiB)",
            )
        for link in c.get("links", []):
            if link.split(":")[0] not in names:
                raise invalid(f"containerDefinitions[{i}].links", f"unknown container {link!r}")
    seen: dict[tuple[int, str], str] = {}
    for i, c in enumerate(containers):
        for j, pm in enumerate(c["portMappings"]):
            hp = (pm["hostPort"], pm["protocol"])
            if pm["hostPort"] and hp in seen:
                raise invalid(
                    f"containerDefinitions[{i}].portMappings[{j}].hostPort",
                    f"host port {hp[0]}/{hp[1]} is already used by {seen[hp]}",
                )
            seen[hp] = c["name"]


def task_resources(td: dict[str, Any], overrides: dict[str, Any] | None = None) -> tuple[int, int]:
    """(cpu units, memory MiB) a task reserves: task-level values win, else container sums.

    Container memory counts memoryReservation (the soft floor) when set, else memory.
    """
    overrides = overrides or {}
    cpu = parse_cpu(overrides.get("cpu") or td.get("cpu"), "cpu")
    memory = parse_memory(overrides.get("memory") or td.get("memory"), "memory")
    by_name = {o.get("name"): o for o in overrides.get("containerOverrides", [])}
    if not cpu:
        cpu = sum(
            by_name.get(c["name"], {}).get("cpu", c.get("cpu", 0))
            for c in td["containerDefinitions"]
        )
    if not memory:
        memory = 0
        for c in td["containerDefinitions"]:
            o = by_name.get(c["name"], {})
            memory += (
                o.get("memoryReservation")
                or c.get("memoryReservation")
                or o.get("memory")
                or c.get("memory")
                or 0
            )
    return cpu, memory
