"""Task-definition fields real applications need: volumes, mounts, logs, runtime platform.

Pure validation and normalisation, called by controller.taskdef.validate: each error names
the field. What passes here is what the agent applies on Docker (agent/docker_driver.py).
"""

from __future__ import annotations

from typing import Any

from controller import taskdef_fields as fields
from dockyard.errors import invalid

# Docker's own log drivers Dockyard passes through; awslogs only where the agent allows it.
LOG_DRIVERS = ("awslogs", "fluentd", "gelf", "journald", "json-file", "local", "none", "syslog")
# The drivers Docker reads back for `docker logs` without dual logging (json-file, local,
# journald); the others write elsewhere.
READABLE_LOG_DRIVERS = ("journald", "json-file", "local")
VOLUME_SCOPES = ("task", "shared")
# runtimePlatform.cpuArchitecture -> the agents' ecs.cpu-architecture attribute
ARCHITECTURES = {"X86_64": "x86_64", "ARM64": "aarch64"}


def _str_map(value: Any, field: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise invalid(field, "must map strings to strings")
    return value


def _bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise invalid(field, f"must be true or false, got {value!r}")
    return value


def _docker_volume(cfg: Any, field: str) -> dict[str, Any]:
    if not isinstance(cfg, dict):
        raise invalid(field, "must be an object")
    scope = cfg.get("scope", "task")
    if scope not in VOLUME_SCOPES:
        raise invalid(f"{field}.scope", f"must be task or shared, got {scope!r}")
    out: dict[str, Any] = {**cfg, "scope": scope}
    if "autoprovision" in cfg:
        _bool(cfg["autoprovision"], f"{field}.autoprovision")
        if scope != "shared":
            raise invalid(f"{field}.autoprovision", "applies only to scope shared")
    if not isinstance(cfg.get("driver", "local"), str) or not cfg.get("driver", "local"):
        raise invalid(f"{field}.driver", "must be a Docker volume driver name")
    for key in ("driverOpts", "labels"):
        if key in cfg:
            _str_map(cfg[key], f"{field}.{key}")
    return out


def volume(v: Any, field: str) -> dict[str, Any]:
    """One task volume: a host path, a Docker volume, or neither (an empty task volume)."""
    if not isinstance(v, dict):
        raise invalid(field, "must be an object")
    fields.check(v, fields.VOLUME_HONOURED, fields.VOLUME_REFUSED, field)
    name = v.get("name")
    if not isinstance(name, str) or not name:
        raise invalid(f"{field}.name", "is required")
    host = v.get("host")
    if host is not None:
        if not isinstance(host, dict):
            raise invalid(f"{field}.host", "must be an object")
        src = host.get("sourcePath")
        if src is not None and not (isinstance(src, str) and src.startswith("/")):
            raise invalid(f"{field}.host.sourcePath", "must be an absolute path on the host")
    out = dict(v)
    if "dockerVolumeConfiguration" in v:
        if host is not None and host.get("sourcePath"):
            raise invalid(field, "give host.sourcePath or dockerVolumeConfiguration, not both")
        out["dockerVolumeConfiguration"] = _docker_volume(
            v["dockerVolumeConfiguration"], f"{field}.dockerVolumeConfiguration"
        )
    return out


def volumes(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise invalid("volumes", "must be a list")
    out = [volume(v, f"volumes[{i}]") for i, v in enumerate(value)]
    names = [v["name"] for v in out]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise invalid(f"volumes[{i}].name", f"duplicate volume name {name!r}")
    return out


def _objects(value: Any, field: str, members: str) -> list[tuple[str, dict[str, Any]]]:
    """(field[i], item) of a list that must hold objects."""
    if not isinstance(value, list):
        raise invalid(field, "must be a list")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise invalid(f"{field}[{i}]", f"must be an object with {members}")
    return [(f"{field}[{i}]", item) for i, item in enumerate(value)]


def mount_points(value: Any, field: str, volume_names: set[str]) -> list[dict[str, Any]]:
    out = []
    for f, mp in _objects(value, field, "sourceVolume, containerPath, readOnly"):
        if mp.get("sourceVolume") not in volume_names:
            known = ", ".join(sorted(volume_names)) or "none declared"
            raise invalid(
                f"{f}.sourceVolume",
                f"{mp.get('sourceVolume')!r} is not a volume of the task (volumes: {known})",
            )
        path = mp.get("containerPath")
        if not isinstance(path, str) or not path.startswith("/"):
            raise invalid(f"{f}.containerPath", "must be an absolute path in the container")
        out.append({**mp, "readOnly": _bool(mp.get("readOnly", False), f"{f}.readOnly")})
    return out


def volumes_from(value: Any, field: str, own: str, names: list[str]) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise invalid(field, "must be a list")
    out = []
    for i, vf in enumerate(value):
        f = f"{field}[{i}]"
        src = vf.get("sourceContainer") if isinstance(vf, dict) else None
        if src not in names or src == own:
            raise invalid(f"{f}.sourceContainer", f"{src!r} is not another container of the task")
        out.append({**vf, "readOnly": _bool(vf.get("readOnly", False), f"{f}.readOnly")})
    return out


def check_volumes_from_cycles(containers: list[dict[str, Any]]) -> None:
    """A container waits for its volumesFrom sources to exist: a cycle would never start."""
    edges = {c["name"]: [v["sourceContainer"] for v in c["volumesFrom"]] for c in containers}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in edges.get(start, []):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    for i, c in enumerate(containers):
        if reaches(c["name"], c["name"], set()):
            raise invalid(f"containerDefinitions[{i}].volumesFrom", "forms a cycle")


def log_configuration(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(field, "must be an object")
    driver = value.get("logDriver")
    if driver == "awsfirelens":
        raise invalid(f"{field}.logDriver", "awsfirelens needs FireLens: use fluentd or gelf")
    if driver not in LOG_DRIVERS:
        raise invalid(f"{field}.logDriver", f"must be one of {', '.join(LOG_DRIVERS)}")
    out: dict[str, Any] = {**value}
    if "options" in value:
        _str_map(value["options"], f"{field}.options")
    for j, s in enumerate(value.get("secretOptions") or []):
        if not isinstance(s, dict) or not isinstance(s.get("name"), str) or not s["name"]:
            raise invalid(f"{field}.secretOptions[{j}].name", "is required")
    return out


def version_consistency(value: Any, field: str) -> str:
    if value == "disabled":
        return value
    if value == "enabled":
        raise invalid(
            field,
            "enabled is not applied (each host resolves the tag when it starts the task): "
            "pin the image by digest (name@sha256:...) for the same effect, or say disabled",
        )
    raise invalid(field, f"must be enabled or disabled, got {value!r}")


def runtime_platform(value: Any) -> list[dict[str, str]]:
    """Only Linux hosts exist; a cpuArchitecture becomes a placement constraint on the
    agents' ecs.cpu-architecture attribute (tasks go only to matching hosts)."""
    if not isinstance(value, dict):
        raise invalid("runtimePlatform", "must be an object")
    os_family = value.get("operatingSystemFamily", "LINUX")
    if os_family != "LINUX":
        raise invalid(
            "runtimePlatform.operatingSystemFamily",
            f"{os_family!r}: Dockyard agents run Linux containers only (use LINUX)",
        )
    arch = value.get("cpuArchitecture")
    if arch is None:
        return []
    if arch not in ARCHITECTURES:
        raise invalid("runtimePlatform.cpuArchitecture", "must be X86_64 or ARM64")
    expr = f"attribute:ecs.cpu-architecture == {ARCHITECTURES[arch]}"
    return [{"type": "memberOf", "expression": expr}]
