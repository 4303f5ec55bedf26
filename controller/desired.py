"""Build what an agent is told to run: a DesiredTask from a task and its definition (pure).

Overrides are applied here, so the agent never sees ECS JSON, only resolved container specs
with concrete host ports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from controller.desired_host import add_host_settings
from controller.model import Task, TaskDefinition
from controller.taskdef import DEFAULT_STOP_TIMEOUT
from dockyard.v1 import agent_pb2

if TYPE_CHECKING:
    from controller.roles import TaskExtras


def _environment(
    base: list[dict[str, str]], override: list[dict[str, str]] | None
) -> list[agent_pb2.KeyValue]:
    env = {kv["name"]: kv.get("value", "") for kv in base}
    env.update({kv["name"]: kv.get("value", "") for kv in override or []})
    return [agent_pb2.KeyValue(name=k, value=v) for k, v in env.items()]


def _health(hc: dict[str, Any] | None) -> agent_pb2.HealthCheck | None:
    if not hc:
        return None
    return agent_pb2.HealthCheck(
        command=hc["command"],
        interval_s=hc["interval"],
        timeout_s=hc["timeout"],
        retries=hc["retries"],
        start_period_s=hc["startPeriod"],
    )


def _volume(v: dict[str, Any]) -> agent_pb2.VolumeSpec:
    """A host path is a bind mount; anything else a Docker volume (ECS: a volume with
    neither is an empty Docker volume of the task's own)."""
    host_path = (v.get("host") or {}).get("sourcePath", "")
    if host_path:
        return agent_pb2.VolumeSpec(name=v["name"], host_path=host_path)
    cfg = v.get("dockerVolumeConfiguration") or {}
    return agent_pb2.VolumeSpec(
        name=v["name"],
        docker=agent_pb2.DockerVolume(
            scope=cfg.get("scope", "task"),
            autoprovision=cfg.get("autoprovision", False),
            driver=cfg.get("driver", ""),
            driver_opts=cfg.get("driverOpts", {}),
            labels=cfg.get("labels", {}),
        ),
    )


def _storage_and_logs(cdef: dict[str, Any], spec: agent_pb2.ContainerSpec) -> None:
    for mp in cdef.get("mountPoints", []):
        spec.mounts.add(
            source_volume=mp["sourceVolume"],
            container_path=mp["containerPath"],
            read_only=mp.get("readOnly", False),
        )
    for vf in cdef.get("volumesFrom", []):
        spec.volumes_from.add(
            source_container=vf["sourceContainer"], read_only=vf.get("readOnly", False)
        )
    log = cdef.get("logConfiguration")
    if log:
        spec.log_config.driver = log["logDriver"]
        spec.log_config.options.update(log.get("options", {}))


def container_spec(cdef: dict[str, Any], task: Task, index: int) -> agent_pb2.ContainerSpec:
    state = task.containers[index]
    spec = agent_pb2.ContainerSpec(
        name=cdef["name"],
        image=cdef["image"],
        command=state.command if state.command is not None else cdef.get("command", []),
        entry_point=cdef.get("entryPoint", []),
        environment=_environment(cdef.get("environment", []), state.environment),
        port_mappings=[
            agent_pb2.PortMapping(
                container_port=p.container_port, host_port=p.host_port, protocol=p.protocol
            )
            for p in state.ports
        ],
        memory_mib=state.memory or 0,
        memory_reservation_mib=state.memory_reservation or 0,
        cpu=state.cpu or 0,
        essential=state.essential,
        stop_timeout_s=cdef.get("stopTimeout", 0),
        docker_labels=cdef.get("dockerLabels", {}),
        working_directory=cdef.get("workingDirectory", ""),
        user=cdef.get("user", ""),
        links=cdef.get("links", []),
        hostname=cdef.get("hostname", ""),
    )
    add_host_settings(spec, cdef)
    health = _health(cdef.get("healthCheck"))
    if health is not None:
        spec.health_check.CopyFrom(health)
    _storage_and_logs(cdef, spec)
    return spec


def desired_task(
    task: Task, td: TaskDefinition, extras: TaskExtras | None = None
) -> agent_pb2.DesiredTask:
    """`extras` (controller.roles) adds the task's credentials, secrets and registry logins:
    secrets go only to the containers that declare them."""
    defs = td.doc["containerDefinitions"]
    desired = agent_pb2.DesiredTask(
        task_arn=task.arn,
        cluster=task.cluster,
        family=task.family,
        revision=task.revision,
        desired_status=task.desired_status,
        containers=[container_spec(c, task, i) for i, c in enumerate(defs)],
        network_mode=td.doc.get("networkMode", "bridge"),
        pid_mode=td.doc.get("pidMode", ""),  # issue 18
        ipc_mode=td.doc.get("ipcMode", ""),
        stop_code=task.stop_code,
        stopped_reason=task.stopped_reason,
        task_role_arn=task.overrides.get("taskRoleArn") or td.doc.get("taskRoleArn", ""),
        group=task.group,
        service=task.service,
        known_status=task.last_status,
        stop_timeout_s=DEFAULT_STOP_TIMEOUT,
        volumes=[_volume(v) for v in td.doc.get("volumes", [])],
    )
    if extras is not None:
        _add_extras(desired, extras)
    return desired


def _add_extras(desired: agent_pb2.DesiredTask, extras: TaskExtras) -> None:
    if extras.credentials is not None:
        desired.credentials.CopyFrom(extras.credentials)
    for spec in desired.containers:
        spec.secrets.update(extras.secrets.get(spec.name, {}))
        if spec.HasField("log_config"):  # logConfiguration.secretOptions, resolved
            spec.log_config.options.update(extras.log_options.get(spec.name, {}))
        auth = extras.registry_auth.get(spec.name)
        if auth is not None:
            spec.registry_auth.CopyFrom(auth)
