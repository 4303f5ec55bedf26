"""ECS services: the model, a pure planner, the scheduler loop and the service operations.

`install(service, grace)` hooks it all into a ClusterService and returns the scheduler,
whose `run()` the controller starts as a background task.
"""

from __future__ import annotations

from controller.orchestrator.api import ServiceApi
from controller.orchestrator.scheduler import ServiceScheduler
from controller.service import ClusterService

__all__ = ["ServiceApi", "ServiceScheduler", "install"]


def install(service: ClusterService, grace: float, tick: float = 0.5) -> ServiceScheduler:
    """Create the scheduler, add the service (and service deployment) operations, make
    active_services count."""
    from controller.ops.service_deployments import ServiceDeployments  # it imports us

    sched = ServiceScheduler(service, grace, tick)
    service.add_operations(ServiceApi(sched).handlers())
    service.add_operations(ServiceDeployments(service).handlers())
    service.service_counter = sched.active_count
    service.scheduler = sched
    return sched
