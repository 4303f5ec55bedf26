"""Service discovery (issue 21): the Cloud Map API's parts, built once at startup.

The objects live in `Discovery` (controller/ops/discovery_state.py); the operations in
controller/ops/discovery_{namespaces,services,instances}.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from controller.ops.discovery_instances import InstanceOps
from controller.ops.discovery_namespaces import NamespaceOps
from controller.ops.discovery_services import ServiceOps
from controller.ops.discovery_state import Discovery
from controller.state_of_record import StateOfRecord
from dockyard.arns import ArnFactory

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class ServiceDiscovery:
    """The Cloud Map objects and their operations."""

    def __init__(self, record: StateOfRecord, arns: ArnFactory) -> None:
        self.state = Discovery(record, arns.region, arns.account)
        self.state.load()
        self.namespaces = NamespaceOps(self.state)
        self.services = ServiceOps(self.state)
        self.instances = InstanceOps(self.state)

    def handlers(self) -> dict[str, Handler]:
        return {
            **self.namespaces.handlers(),
            **self.services.handlers(),
            **self.instances.handlers(),
        }
