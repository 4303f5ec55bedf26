"""The operations' handlers, bound once to a context: what the chain is built from.

Each resource module lists its operations in `HANDLERS` (name -> plain function of the
context and the request body); this binds them to one `OpContext` for
`controller.ops.chain.OperationChain`, which checks them against the one table
(controller/ops/table.py). A new resource module's `HANDLERS` is added to `RESOURCES` here.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from controller import ecs_views
from controller.ops import (
    clusters,
    container_instances,
    exec_command,
    roles,
    tags,
    task_definitions,
    tasks,
)
from controller.ops.chain import Handler
from controller.ops.context import OpContext, OpFn

RESOURCES: tuple[dict[str, OpFn], ...] = (
    clusters.HANDLERS,
    task_definitions.HANDLERS,
    tasks.HANDLERS,
    exec_command.HANDLERS,  # issue 20
    container_instances.HANDLERS,
    tags.HANDLERS,
    roles.HANDLERS,  # roles and secrets (their credentials: controller/roles.py)
)


def handlers(ctx: OpContext) -> dict[str, Handler]:
    """Every operation of the resource modules and of the context's parts (account
    settings, capacity providers, task protection), bound to `ctx`."""
    bound: dict[str, Handler] = {}
    for operations in RESOURCES:
        for name, fn in operations.items():
            assert name not in bound, f"{name} is bound twice"
            bound[name] = partial(fn, ctx)
    return {
        **bound,
        **ctx.account.handlers(),
        **ctx.capacity.handlers(),  # issue 22
        "PutClusterCapacityProviders": partial(put_cluster_capacity_providers, ctx),
        **ctx.task_protection.handlers(),  # issue 22
    }


async def put_cluster_capacity_providers(ctx: OpContext, body: dict[str, Any]) -> dict[str, Any]:
    """The cluster's providers and default strategy (controller/ops/capacity_providers.py
    keeps them; the answer is the cluster's view)."""
    c = ctx.cluster(body["cluster"])
    view = ecs_views.cluster_view(c, ctx.state, ctx.arns, ctx.record.active_services(c.name))
    return await ctx.capacity.put_cluster(body, view)
