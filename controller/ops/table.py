"""Every operation Dockyard serves, in one explicit table, with what the chain needs to know.

This is the map of the API: an operation's resource (the module that implements it), who
may call it (`READ`: readonly keys too; `OPERATE`: operator keys too, the running of commands
in tasks (issue 20); `WRITE`: admin keys; `ADMIN`: admin keys, even for a listing: the
security operations) and how a native (gRPC, in-process) call is validated
(`LIMITS`: botocore's model's limits, unknown members let through because the CLI sends
Dockyard extensions; `STRICT`: the whole model, as the ECS endpoint checks every body).
Non-ECS operations (roles, secrets, tokens, keys) have no botocore model: their modules
check their bodies.

Pure: no I/O, importable by the authorisation and validation layers alike. The handlers
are bound to these names once, at startup (`controller.ops.chain.OperationChain`), which
refuses a table entry without a handler or a handler without an entry.
"""

from __future__ import annotations

from dataclasses import dataclass

READ, WRITE, ADMIN = "read", "write", "admin"
OPERATE = "operate"  # between READ and WRITE: `operator` keys (and admin ones)
LIMITS, STRICT = "limits", "strict"


@dataclass(frozen=True)
class Operation:
    name: str
    resource: str  # where it lives: controller/ops/<resource> (or the module named there)
    access: str  # READ | OPERATE | WRITE | ADMIN
    native_check: str = LIMITS  # LIMITS | STRICT: how a native body is validated
    ecs: bool = True  # an ECS API operation (botocore has its model); else Dockyard's own
    api: str = "ecs"  # botocore's model: "ecs", "servicediscovery" (Cloud Map), AAS, EVENTS

    @property
    def read_only(self) -> bool:
        return self.access == READ

    @property
    def wire_name(self) -> str:
        """Its name in its API's model (a Cloud Map one's table name carries its prefix)."""
        return self.name.partition(":")[2] or self.name


def _ops(resource: str, access: str, *names: str, **kw: object) -> list[Operation]:
    return [Operation(n, resource, access, **kw) for n in names]  # type: ignore[arg-type]


# Cloud Map (AWS `servicediscovery`, issue 21): its names clash with ECS's (CreateService,
# TagResource...), so the table names them `servicediscovery:<Op>`; they are not ECS
# operations (ecs=False) but botocore has their model (api), which validates them in full.
SD = "servicediscovery"
SD_TARGET = "Route53AutoNaming_v20170314"  # its X-Amz-Target prefix
ECS_TARGET = "AmazonEC2ContainerServiceV20141113"
# Application Auto Scaling (issue 22): its own names, served under their own target prefix
AAS = "application-autoscaling"
AAS_TARGET = "AnyScaleFrontendService"
# EventBridge's scheduled rules (issue 22, scheduled tasks): its own names, its own prefix
EVENTS = "events"
EVENTS_TARGET = "AWSEvents"


def _sd(resource: str, access: str, *names: str) -> list[Operation]:
    return [
        Operation(f"{SD}:{n}", f"discovery_{resource}", access, STRICT, ecs=False, api=SD)
        for n in names
    ]


def wire_target(path: str, header: str) -> str:
    """`<prefix>.<Op>` of a request: its X-Amz-Target (JSON 1.1, path `/`), or its path for
    Smithy's RPC v2 CBOR (`/service/<prefix>/operation/<Op>`, what boto3 speaks to Cloud Map
    since botocore 1.4x); "" when neither."""
    if path == "/":
        return header
    parts = path.split("/")
    if len(parts) == 5 and parts[1] == "service" and parts[3] == "operation":
        return f"{parts[2]}.{parts[4]}"
    return ""


def operation_for(target: str) -> str:
    """The table name an `X-Amz-Target` (`<prefix>.<Op>`) names ("" for another prefix)."""
    prefix, _, name = target.partition(".")
    if prefix == ECS_TARGET:
        op = OPERATIONS.get(name)
        return name if op is None or op.api == "ecs" else ""
    if prefix == SD_TARGET and name:
        return f"{SD}:{name}"
    if prefix == AAS_TARGET and name in OPERATIONS and OPERATIONS[name].api == AAS:
        return name
    if prefix == EVENTS_TARGET and name in OPERATIONS and OPERATIONS[name].api == EVENTS:
        return name
    return ""


_TABLE: list[Operation] = [
    # clusters: controller/ops/clusters.py
    *_ops("clusters", READ, "DescribeClusters", "ListClusters"),
    *_ops("clusters", WRITE, "CreateCluster", "DeleteCluster"),
    *_ops("clusters", WRITE, "UpdateCluster", "UpdateClusterSettings", native_check=STRICT),
    # task definitions: controller/ops/task_definitions.py
    *_ops(
        "task_definitions",
        READ,
        "DescribeTaskDefinition",
        "ListTaskDefinitions",
        "ListTaskDefinitionFamilies",
    ),
    *_ops(
        "task_definitions",
        WRITE,
        "RegisterTaskDefinition",
        "DeregisterTaskDefinition",
        "DeleteTaskDefinitions",
    ),
    # tasks: controller/ops/tasks.py (launching, stopping: controller/ops/task_writes.py)
    *_ops("tasks", READ, "DescribeTasks", "ListTasks"),
    *_ops("tasks", WRITE, "RunTask", "StartTask", "StopTask"),
    # exec (issue 20): controller/ops/exec_command.py; the session itself is the Exec stream
    *_ops("exec_command", OPERATE, "ExecuteCommand"),
    # container instances and their attributes: controller/ops/container_instances.py
    *_ops(
        "container_instances",
        READ,
        "ListContainerInstances",
        "DescribeContainerInstances",
        "ListAttributes",
    ),
    *_ops(
        "container_instances",
        WRITE,
        "DeregisterContainerInstance",
        "UpdateContainerInstancesState",
        "PutAttributes",
        "DeleteAttributes",
    ),
    # services: controller/orchestrator/api.py, controller/ops/service_deployments.py
    *_ops("services", READ, "DescribeServices", "ListServices", native_check=STRICT),
    *_ops("services", READ, "ListServicesByNamespace", native_check=STRICT),  # issue 21
    *_ops(
        "services",
        READ,
        "ListServiceDeployments",
        "DescribeServiceDeployments",
        "DescribeServiceRevisions",
        native_check=STRICT,
    ),
    *_ops(
        "services", WRITE, "CreateService", "UpdateService", "DeleteService", native_check=STRICT
    ),
    # task scale-in protection (issue 22): controller/ops/task_protection.py
    *_ops("task_protection", READ, "GetTaskProtection", native_check=STRICT),
    *_ops("task_protection", WRITE, "UpdateTaskProtection", native_check=STRICT),
    # tags: controller/ops/tags.py
    *_ops("tags", READ, "ListTagsForResource"),
    *_ops("tags", WRITE, "TagResource", "UntagResource"),
    # account settings: controller/ops/account_settings.py
    *_ops("account_settings", READ, "ListAccountSettings", native_check=STRICT),
    *_ops(
        "account_settings",
        WRITE,
        "PutAccountSetting",
        "PutAccountSettingDefault",
        "DeleteAccountSetting",
        native_check=STRICT,
    ),
    # capacity providers on host groups (issue 22): controller/ops/capacity_providers.py
    *_ops("capacity_providers", READ, "DescribeCapacityProviders", native_check=STRICT),
    *_ops(
        "capacity_providers",
        WRITE,
        "CreateCapacityProvider",
        "UpdateCapacityProvider",
        "DeleteCapacityProvider",
        "PutClusterCapacityProviders",
    ),
    # roles and secrets (Dockyard's own): controller/ops/roles.py (credentials: controller/roles.py)
    *_ops("roles", READ, "ListRoles", "ListSecrets", ecs=False),
    *_ops("roles", WRITE, "CreateRole", "DeleteRole", "PutSecret", "DeleteSecret", ecs=False),
    # security (Dockyard's own, admin keys only): controller/ops/security.py
    *_ops("security", ADMIN, "CreateJoinToken", "ListJoinTokens", "RevokeJoinToken", ecs=False),
    *_ops("security", ADMIN, "CreateAccessKey", "ListAccessKeys", "DeleteAccessKey", ecs=False),
    *_ops("security", ADMIN, "RevokeInstance", ecs=False),
    # usage (Dockyard's own, issue 20): controller/ops/usage.py
    *_ops("usage", READ, "DescribeUsage", ecs=False),
    # Cloud Map (issue 21): controller/ops/discovery_{namespaces,services,instances}.py
    *_sd("namespaces", READ, "GetNamespace", "ListNamespaces", "GetOperation", "ListOperations"),
    *_sd("namespaces", WRITE, "CreatePrivateDnsNamespace", "CreateHttpNamespace"),
    *_sd("namespaces", WRITE, "DeleteNamespace", "TagResource", "UntagResource"),
    *_sd("namespaces", READ, "ListTagsForResource"),
    *_sd("services", READ, "GetService", "ListServices"),
    *_sd("services", WRITE, "CreateService", "UpdateService", "DeleteService"),
    *_sd("instances", READ, "GetInstance", "ListInstances", "DiscoverInstances"),
    *_sd("instances", READ, "GetInstancesHealthStatus"),
    *_sd("instances", WRITE, "RegisterInstance", "DeregisterInstance"),
    *_sd("instances", WRITE, "UpdateInstanceCustomHealthStatus"),
    # service auto scaling (Application Auto Scaling's API, issue 22): controller/ops/autoscaling.py
    *_ops(
        "autoscaling",
        READ,
        "DescribeScalableTargets",
        "DescribeScalingPolicies",
        "DescribeScheduledActions",
        "DescribeScalingActivities",
        native_check=STRICT,
        api=AAS,
    ),
    *_ops(
        "autoscaling",
        WRITE,
        "RegisterScalableTarget",
        "DeregisterScalableTarget",
        "PutScalingPolicy",
        "DeleteScalingPolicy",
        "PutScheduledAction",
        "DeleteScheduledAction",
        native_check=STRICT,
        api=AAS,
    ),
    # scheduled tasks (EventBridge's rules API, issue 22): controller/ops/events_rules.py
    *_ops(
        "events_rules",
        READ,
        "DescribeRule",
        "ListRules",
        "ListTargetsByRule",
        native_check=STRICT,
        api=EVENTS,
    ),
    *_ops(
        "events_rules",
        WRITE,
        "PutRule",
        "DeleteRule",
        "EnableRule",
        "DisableRule",
        "PutTargets",
        "RemoveTargets",
        native_check=STRICT,
        api=EVENTS,
    ),
    *_ops("events_rules", READ, "DescribeSchedules", ecs=False),  # `dockyard schedules list`
]

OPERATIONS: dict[str, Operation] = {op.name: op for op in _TABLE}
assert len(OPERATIONS) == len(_TABLE), "an operation is listed twice"
