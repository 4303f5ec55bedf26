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

    @property
    def read_only(self) -> bool:
        return self.access == READ


def _ops(resource: str, access: str, *names: str, **kw: object) -> list[Operation]:
    return [Operation(n, resource, access, **kw) for n in names]  # type: ignore[arg-type]


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
    # roles and secrets (Dockyard's own): controller/roles.py
    *_ops("roles", READ, "ListRoles", "ListSecrets", ecs=False),
    *_ops("roles", WRITE, "CreateRole", "DeleteRole", "PutSecret", "DeleteSecret", ecs=False),
    # security (Dockyard's own, admin keys only): controller/security/{tokens,keys,agents}.py
    *_ops("security", ADMIN, "CreateJoinToken", "ListJoinTokens", "RevokeJoinToken", ecs=False),
    *_ops("security", ADMIN, "CreateAccessKey", "ListAccessKeys", "DeleteAccessKey", ecs=False),
    *_ops("security", ADMIN, "RevokeInstance", ecs=False),
    # usage (Dockyard's own, issue 20): controller/ops/usage.py
    *_ops("usage", READ, "DescribeUsage", ecs=False),
]

OPERATIONS: dict[str, Operation] = {op.name: op for op in _TABLE}
assert len(OPERATIONS) == len(_TABLE), "an operation is listed twice"
