"""The orchestrator's wiring into the controller: `install(service, grace)` hooks the
scheduler into the operations' context (OpContext) and returns it (the controller starts its
`run()` as a background task); `handlers(sched)` gives the service operations for the one
operations table. Kept out of the package's __init__ so that importing a pure core of the
package (planner, world, model, scalein) loads no scheduler and no I/O.
"""

from __future__ import annotations

from controller.ops.chain import Handler
from controller.ops.context import OpContext
from controller.orchestrator.api import ServiceApi
from controller.orchestrator.scheduler import ServiceScheduler

__all__ = ["ServiceApi", "ServiceScheduler", "handlers", "install"]


def install(service: OpContext, grace: float, tick: float = 0.5) -> ServiceScheduler:
    """Create the scheduler (it keeps its services in the state of record) and give the
    operations its view of them (the service operations are bound by the controller:
    `handlers(sched)`)."""
    sched = ServiceScheduler(service, grace, tick)
    service.services = sched  # tags and task definitions read its services
    return sched


def handlers(sched: ServiceScheduler) -> dict[str, Handler]:
    """The service (and service deployment) operations, for the one operations table."""
    from controller.ops.service_deployments import ServiceDeployments  # it imports us

    return {**ServiceApi(sched).handlers(), **ServiceDeployments(sched.cs).handlers()}
