"""The operations per resource: each module's functions are where the one table says.

`controller/ops/table.py` names each operation's resource, the module it lives in
(`controller/ops/<resource>.py`); the chain refuses a controller whose handlers and table
disagree, but only at startup. This keeps the map honest without starting one: a function
listed in the wrong module, or a resource module forgotten in `controller/ops/bind.py`,
fails here.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from controller.ops import (
    bind,
    clusters,
    container_instances,
    exec_command,
    roles,
    security,
    tags,
    task_definitions,
    tasks,
)
from controller.ops.table import OPERATIONS

MODULES = [clusters, task_definitions, tasks, exec_command, container_instances, tags, roles]
# bound to their own narrow context (controller/ops/security.py `handlers`), not by bind.py
OWN_CONTEXT = [security]


def resource(module: ModuleType) -> str:
    return module.__name__.rsplit(".", 1)[1]


@pytest.mark.parametrize("module", MODULES + OWN_CONTEXT, ids=resource)
def test_a_resource_module_serves_exactly_its_resources_operations(module: ModuleType) -> None:
    listed = {op.name for op in OPERATIONS.values() if op.resource == resource(module)}
    assert set(module.HANDLERS) == listed


def test_every_resource_module_is_bound() -> None:
    assert [m.HANDLERS for m in MODULES] == list(bind.RESOURCES)
