"""ECS services: the model, a pure planner, the scheduler loop and the service operations.

The controller builds the services' records (`records.ServiceRecords`, the state's
services) before the service layer, hands them to it and to the `ServiceScheduler`, whose
`run()` it starts as a background task, and binds `handlers(sched)` into the operations
chain. The scheduler hears of stopped tasks on the change feed.
"""

from __future__ import annotations

from controller.ops.chain import Handler
from controller.orchestrator.api import ServiceApi
from controller.orchestrator.records import ServiceRecords
from controller.orchestrator.scheduler import ServiceScheduler

__all__ = ["ServiceApi", "ServiceRecords", "ServiceScheduler", "handlers"]


def handlers(sched: ServiceScheduler) -> dict[str, Handler]:
    """The service (and service deployment) operations, for the one operations table."""
    from controller.ops.service_deployments import ServiceDeployments  # it imports us

    return {**ServiceApi(sched).handlers(), **ServiceDeployments(sched.cs).handlers()}
