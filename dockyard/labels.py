"""Docker labels that tie a container to its task: the agent rebuilds its view from them.

Dockyard writes its own labels and ECS's (`com.amazonaws.ecs.*`), so tooling written
for ECS hosts keeps working.
"""

CLUSTER = "dockyard.cluster"
TASK_ARN = "dockyard.task-arn"
CONTAINER_NAME = "dockyard.container-name"
FAMILY = "dockyard.task-definition-family"
REVISION = "dockyard.task-definition-version"
INSTANCE = "dockyard.instance-id"

ECS_ALIASES = {
    CLUSTER: "com.amazonaws.ecs.cluster",
    TASK_ARN: "com.amazonaws.ecs.task-arn",
    CONTAINER_NAME: "com.amazonaws.ecs.container-name",
    FAMILY: "com.amazonaws.ecs.task-definition-family",
    REVISION: "com.amazonaws.ecs.task-definition-version",
}


def container_labels(
    cluster: str, task_arn: str, container: str, family: str, revision: int, instance_id: str
) -> dict[str, str]:
    """All labels for one container of a task."""
    ours = {
        CLUSTER: cluster,
        TASK_ARN: task_arn,
        CONTAINER_NAME: container,
        FAMILY: family,
        REVISION: str(revision),
        INSTANCE: instance_id,
    }
    return ours | {ECS_ALIASES[k]: v for k, v in ours.items() if k in ECS_ALIASES}


# Instance attributes an agent's policy flags report (issue 18): placement keeps tasks the
# policy refuses off the instance (controller/taskdef_host.implied_constraints).
PRIVILEGED_DISABLED = "dockyard.policy.privileged-disabled"  # dockyard agent --disable-privileged
HOST_DEVICES_DISABLED = "dockyard.policy.host-devices-disabled"  # --disable-host-devices
