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

# ---------------------------------------------------------------- ContainerDefinition

CONTAINER_HONOURED = frozenset(
    {
        "command",
        "cpu",
        "dependsOn",
        "disableNetworking",
        "dnsSearchDomains",
        "dnsServers",
        "dockerLabels",
        "dockerSecurityOptions",
        "entryPoint",
        "environment",
        "essential",
        "extraHosts",
        "healthCheck",
        "hostname",
        "image",
        "interactive",
        "links",
        "linuxParameters",
        "logConfiguration",
        "memory",
        "memoryReservation",
        "mountPoints",
        "name",
        "portMappings",
        "privileged",
        "pseudoTerminal",
        "readonlyRootFilesystem",
        "repositoryCredentials",
        "resourceRequirements",
        "restartPolicy",
        "secrets",
        "startTimeout",
        "stopTimeout",
        "systemControls",
        "ulimits",
        "user",
        "versionConsistency",
        "volumesFrom",
        "workingDirectory",
    }
)

CONTAINER_REFUSED = {
    "credentialSpecs": "Active Directory credential specs are for Windows containers; "
    "Dockyard runs Linux containers",
    "environmentFiles": "environment files are read from Amazon S3, which Dockyard has no "
    "access to: use environment, or secrets (dockyard secrets put)",
    "firelensConfiguration": "FireLens needs a log router AWS provisions: use "
    "logConfiguration with the fluentd or gelf driver",
}

# ---------------------------------------------------------------- RegisterTaskDefinition

TASK_HONOURED = frozenset(
    {
        "containerDefinitions",
        "cpu",
        "executionRoleArn",
        "family",
        "ipcMode",
        "memory",
        "networkMode",
        "pidMode",
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

LINUX_PARAMETERS_HONOURED = frozenset(
    {
        "capabilities",
        "devices",
        "initProcessEnabled",
        "maxSwap",
        "sharedMemorySize",
        "swappiness",
        "tmpfs",
    }
)

LINUX_PARAMETERS_REFUSED: dict[str, str] = {}

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
