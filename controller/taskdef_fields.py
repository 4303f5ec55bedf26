"""Every field of an ECS task definition, classified: honoured on Docker, or refused by name.

tests/test_taskdef_fields.py reads botocore's shapes (ContainerDefinition, the
RegisterTaskDefinition input, Volume, LinuxParameters): a field a later botocore adds fails
that test until it is put in exactly one list here. `check` is what validation runs: a
refused field present in a definition is an error naming it, saying why and what to use.

Keep one entry per line, alphabetical: branches that honour more fields move lines from
REFUSED to HONOURED and merge without conflicts.
"""

from __future__ import annotations

from typing import Any

from dockyard.errors import invalid

_LATER = "is not applied on Docker by Dockyard yet; remove it"

# ---------------------------------------------------------------- ContainerDefinition

CONTAINER_HONOURED = frozenset(
    {
        "command",
        "cpu",
        "dockerLabels",
        "entryPoint",
        "environment",
        "essential",
        "healthCheck",
        "hostname",
        "image",
        "links",
        "logConfiguration",
        "memory",
        "memoryReservation",
        "mountPoints",
        "name",
        "portMappings",
        "repositoryCredentials",
        "secrets",
        "stopTimeout",
        "user",
        "versionConsistency",
        "volumesFrom",
        "workingDirectory",
    }
)

CONTAINER_REFUSED = {
    "credentialSpecs": "Active Directory credential specs are for Windows containers; "
    "Dockyard runs Linux containers",
    "dependsOn": _LATER,
    "disableNetworking": f"{_LATER} (networkMode none gives a container no network)",
    "dnsSearchDomains": _LATER,
    "dnsServers": _LATER,
    "dockerSecurityOptions": _LATER,
    "environmentFiles": "environment files are read from Amazon S3, which Dockyard has no "
    "access to: use environment, or secrets (dockyard secrets put)",
    "extraHosts": _LATER,
    "firelensConfiguration": "FireLens needs a log router AWS provisions: use "
    "logConfiguration with the fluentd or gelf driver",
    "interactive": _LATER,
    "linuxParameters": _LATER,
    "privileged": _LATER,
    "pseudoTerminal": _LATER,
    "readonlyRootFilesystem": _LATER,
    "resourceRequirements": _LATER,
    "restartPolicy": _LATER,
    "startTimeout": _LATER,
    "systemControls": _LATER,
    "ulimits": _LATER,
}

# ---------------------------------------------------------------- RegisterTaskDefinition

TASK_HONOURED = frozenset(
    {
        "containerDefinitions",
        "cpu",
        "executionRoleArn",
        "family",
        "memory",
        "networkMode",
        "placementConstraints",
        "requiresCompatibilities",
        "runtimePlatform",
        "tags",
        "taskRoleArn",
        "volumes",
    }
)

TASK_REFUSED = {
    "enableFaultInjection": "AWS Fault Injection Service does not reach Dockyard tasks: "
    "inject faults with docker kill/pause or the lab's chaos tools",
    "ephemeralStorage": "a Fargate setting: on a Docker host a task's disk is the host's",
    "inferenceAccelerators": "Elastic Inference accelerators exist only on AWS",
    "ipcMode": _LATER,
    "pidMode": _LATER,
    "proxyConfiguration": "App Mesh proxy configuration needs awsvpc network mode, which "
    "Dockyard does not have",
    "trustedExecutionConfiguration": "trusted execution needs AWS Nitro hardware",
}

# ---------------------------------------------------------------- Volume

VOLUME_HONOURED = frozenset(
    {
        "dockerVolumeConfiguration",
        "host",
        "name",
    }
)

VOLUME_REFUSED = {
    "configuredAtLaunch": "volumes configured at launch are EBS volumes ECS attaches: use "
    "dockerVolumeConfiguration or host.sourcePath",
    "efsVolumeConfiguration": "Amazon EFS is not reachable from Dockyard: mount an NFS export "
    "with dockerVolumeConfiguration (driver local, driverOpts type=nfs, o=addr=...,"
    " device=:/path), or use host.sourcePath",
    "fsxWindowsFileServerVolumeConfiguration": "FSx for Windows serves Windows containers: "
    "use dockerVolumeConfiguration (driver local, driverOpts type=cifs) or host.sourcePath",
    "s3filesVolumeConfiguration": "Amazon S3 is not reachable from Dockyard: use "
    "dockerVolumeConfiguration or host.sourcePath",
}

# ---------------------------------------------------------------- LinuxParameters

LINUX_PARAMETERS_HONOURED: frozenset[str] = frozenset()

LINUX_PARAMETERS_REFUSED = {
    "capabilities": _LATER,
    "devices": _LATER,
    "initProcessEnabled": _LATER,
    "maxSwap": _LATER,
    "sharedMemorySize": _LATER,
    "swappiness": _LATER,
    "tmpfs": _LATER,
}

# Values that ask for nothing: ECS writes them into exported definitions, so they pass.
_HARMLESS: dict[str, tuple[Any, ...]] = {
    "configuredAtLaunch": (False,),
    "enableFaultInjection": (False,),
}


def check(
    doc: dict[str, Any], honoured: frozenset[str], refused: dict[str, str], where: str
) -> None:
    """Refuse a refused field that asks for something, and any field ECS does not have."""
    prefix = f"{where}." if where else ""
    for key in doc:
        if key in refused and doc[key] not in _HARMLESS.get(key, ()):
            raise invalid(f"{prefix}{key}", refused[key])
        if key not in honoured and key not in refused:
            raise invalid(f"{prefix}{key}", "is not a field of an ECS task definition")
