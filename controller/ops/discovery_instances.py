"""Cloud Map instances (issue 21): RegisterInstance, DeregisterInstance, GetInstance,
ListInstances, DiscoverInstances, GetInstancesHealthStatus, UpdateInstanceCustomHealthStatus.

An instance's health: `HEALTHY`/`UNHEALTHY` when its service has a `HealthCheckCustomConfig`
(set by UpdateInstanceCustomHealthStatus, first from `AWS_INIT_HEALTH_STATUS`, else
HEALTHY), `UNKNOWN` otherwise (always discovered, as Cloud Map answers for services without
health checks). A service with A or SRV records needs `AWS_INSTANCE_IPV4` (and SRV
`AWS_INSTANCE_PORT`) on each instance, as Cloud Map requires; `AWS_INSTANCE_IPV6` and
`AWS_INSTANCE_CNAME` are refused (Dockyard serves neither record). ECS's service
registrations (controller/discovery_ecs.py) use `put` and `remove` below.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Awaitable, Callable
from typing import Any

from controller.ops.discovery_namespaces import invalid_input, page
from controller.ops.discovery_state import (
    INSTANCE,
    OPERATION,
    Discovery,
    instance_key,
    not_found,
)
from dockyard.errors import ApiError

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
SD = "servicediscovery:"
MAX_ATTRIBUTES = 30
_REFUSED = {
    "AWS_INSTANCE_IPV6": "Dockyard serves no AAAA records",
    "AWS_INSTANCE_CNAME": "Dockyard serves no CNAME records",
    "AWS_ALIAS_DNS_NAME": "Dockyard has no load balancers",
    "AWS_EC2_INSTANCE_ID": "Dockyard has no EC2 instances",
}


def record_types(svc: dict[str, Any]) -> set[str]:
    return {r["Type"] for r in svc.get("DnsConfig", {}).get("DnsRecords", [])}


def check_attributes(svc: dict[str, Any], attrs: dict[str, str]) -> None:
    """What Cloud Map requires of an instance's attributes for its service's records."""
    if len(attrs) > MAX_ATTRIBUTES:
        raise invalid_input(f"Attributes: at most {MAX_ATTRIBUTES}")
    for key, why in _REFUSED.items():
        if key in attrs:
            raise invalid_input(f"Attributes.{key}: {why}")
    types = record_types(svc)
    ip = attrs.get("AWS_INSTANCE_IPV4")
    if types and ip is None:
        raise invalid_input("Attributes.AWS_INSTANCE_IPV4: required for a service with DNS records")
    if ip is not None:
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            raise invalid_input(
                f"Attributes.AWS_INSTANCE_IPV4: {ip[:50]!r} is not an IPv4 address"
            ) from None
    port = attrs.get("AWS_INSTANCE_PORT")
    if "SRV" in types and port is None:
        raise invalid_input("Attributes.AWS_INSTANCE_PORT: required for a service with SRV records")
    if port is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise invalid_input(f"Attributes.AWS_INSTANCE_PORT: {port[:20]!r} is not a port (1-65535)")
    init = attrs.get("AWS_INIT_HEALTH_STATUS")
    if init is not None:
        if "HealthCheckCustomConfig" not in svc:
            raise invalid_input(
                "Attributes.AWS_INIT_HEALTH_STATUS: the service has no custom health check"
            )
        if init not in ("HEALTHY", "UNHEALTHY"):
            raise invalid_input("Attributes.AWS_INIT_HEALTH_STATUS: HEALTHY or UNHEALTHY")


def health_of(doc: dict[str, Any]) -> str:
    return str(doc.get("_health", "UNKNOWN"))


class InstanceOps:
    def __init__(self, discovery: Discovery) -> None:
        self.d = discovery
        self.revisions: dict[str, int] = {}  # service id -> InstancesRevision (changes)

    def handlers(self) -> dict[str, Handler]:
        return {
            SD + "RegisterInstance": self.register,
            SD + "DeregisterInstance": self.deregister,
            SD + "GetInstance": self.get,
            SD + "ListInstances": self.list_instances,
            SD + "DiscoverInstances": self.discover,
            SD + "GetInstancesHealthStatus": self.health_status,
            SD + "UpdateInstanceCustomHealthStatus": self.update_health,
        }

    def _instance(self, service_id: str, instance_id: str) -> dict[str, Any]:
        doc = self.d.instances.get(instance_key(service_id, instance_id))
        if doc is None:
            raise not_found("Instance", instance_id)
        return doc

    def _bump(self, service_id: str) -> None:
        self.revisions[service_id] = max(
            self.revisions.get(service_id, 0) + 1, time.time_ns() // 1000
        )

    # ------------------------------------------------------------ for ECS's registrations

    async def put(
        self,
        service_id: str,
        instance_id: str,
        attrs: dict[str, str],
        health: str | None = None,
        creator: str = "",
    ) -> str:
        """Register (or re-register) an instance; the operation's id."""
        async with self.d.lock:
            svc = self.d.service(service_id)
            check_attributes(svc, attrs)
            custom = "HealthCheckCustomConfig" in svc
            old = self.d.instances.get(instance_key(svc["Id"], instance_id), {})
            state = health or attrs.get("AWS_INIT_HEALTH_STATUS") or old.get("_health") or "HEALTHY"
            doc = {
                "Id": instance_id,
                "ServiceId": svc["Id"],
                "Attributes": attrs,
                "CreatedByAccount": self.d.account,
                "_health": state if custom else "UNKNOWN",
                **({"CreatorRequestId": creator} if creator else {}),
            }
            op = self.d.operation(
                "REGISTER_INSTANCE", {"SERVICE": svc["Id"], "INSTANCE": instance_id}
            )
            await self.d.commit([(INSTANCE, doc), (OPERATION, op)], self.d.expired_operations())
            self._bump(svc["Id"])
        return str(op["Id"])

    async def remove(self, service_id: str, instance_id: str) -> str:
        """Deregister an instance (InstanceNotFound if it is not registered)."""
        async with self.d.lock:
            svc = self.d.service(service_id)
            self._instance(svc["Id"], instance_id)
            op = self.d.operation(
                "DEREGISTER_INSTANCE", {"SERVICE": svc["Id"], "INSTANCE": instance_id}
            )
            deletes = [
                (INSTANCE, instance_key(svc["Id"], instance_id)),
                *self.d.expired_operations(),
            ]
            await self.d.commit([(OPERATION, op)], deletes)
            self._bump(svc["Id"])
        return str(op["Id"])

    # ------------------------------------------------------------ the API

    async def register(self, body: dict[str, Any]) -> dict[str, Any]:
        op = await self.put(
            body["ServiceId"],
            body["InstanceId"],
            body["Attributes"],
            creator=body.get("CreatorRequestId", ""),
        )
        return {"OperationId": op}

    async def deregister(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"OperationId": await self.remove(body["ServiceId"], body["InstanceId"])}

    def view(self, doc: dict[str, Any]) -> dict[str, Any]:
        return {
            k: v
            for k, v in doc.items()
            if k in ("Id", "CreatorRequestId", "Attributes", "CreatedByAccount")
        }

    async def get(self, body: dict[str, Any]) -> dict[str, Any]:
        svc = self.d.service(body["ServiceId"])
        return {
            "ResourceOwner": self.d.account,
            "Instance": self.view(self._instance(svc["Id"], body["InstanceId"])),
        }

    async def list_instances(self, body: dict[str, Any]) -> dict[str, Any]:
        svc = self.d.service(body["ServiceId"])
        found = [
            {k: v for k, v in self.view(i).items() if k != "CreatorRequestId"}
            for i in self.d.service_instances(svc["Id"])
        ]
        return {"ResourceOwner": self.d.account, **page(found, body, "Instances")}

    async def discover(self, body: dict[str, Any]) -> dict[str, Any]:
        if not any(
            n["Name"] == body["NamespaceName"]
            or n["Properties"].get("HttpProperties", {}).get("HttpName") == body["NamespaceName"]
            for n in self.d.namespaces.values()
        ):
            raise not_found("Namespace", body["NamespaceName"])
        svc = self.d.by_names(body["NamespaceName"], body["ServiceName"])
        if svc is None:
            raise not_found("Service", body["ServiceName"])
        found = [
            i
            for i in self.d.service_instances(svc["Id"])
            if _matches(i, body.get("QueryParameters", {}))
        ]
        optional = [i for i in found if _matches(i, body.get("OptionalParameters", {}))]
        found = optional or found
        wanted = body.get("HealthStatus", "HEALTHY")
        healthy = [i for i in found if health_of(i) != "UNHEALTHY"]
        if wanted == "HEALTHY" or (wanted == "HEALTHY_OR_ELSE_ALL" and healthy):
            found = healthy
        elif wanted == "UNHEALTHY":
            found = [i for i in found if health_of(i) != "HEALTHY"]
        summaries = [
            {
                "InstanceId": i["Id"],
                "NamespaceName": body["NamespaceName"],
                "ServiceName": svc["Name"],
                "HealthStatus": health_of(i),
                "Attributes": i["Attributes"],
            }
            for i in found[: body.get("MaxResults", 100)]
        ]
        revision = self.revisions.setdefault(svc["Id"], time.time_ns() // 1000)
        return {"Instances": summaries, "InstancesRevision": revision}

    async def health_status(self, body: dict[str, Any]) -> dict[str, Any]:
        svc = self.d.service(body["ServiceId"])
        instances = self.d.service_instances(svc["Id"])
        if "Instances" in body:
            instances = [self._instance(svc["Id"], i) for i in body["Instances"]]
        ids = [i["Id"] for i in instances]
        health = {i["Id"]: health_of(i) for i in instances}
        listed = page([{"Id": i} for i in ids], body, "Status")
        return {**listed, "Status": {x["Id"]: health[x["Id"]] for x in listed["Status"]}}

    async def update_health(self, body: dict[str, Any]) -> dict[str, Any]:
        svc = self.d.service(body["ServiceId"])
        if "HealthCheckCustomConfig" not in svc:
            raise ApiError(
                "CustomHealthNotFound", f"service {svc['Name']} has no custom health check", 404
            )
        async with self.d.lock:
            doc = self._instance(svc["Id"], body["InstanceId"])
            if doc.get("_health") != body["Status"]:
                await self.d.commit([(INSTANCE, doc | {"_health": body["Status"]})])
                self._bump(svc["Id"])
        return {}


def _matches(instance: dict[str, Any], params: dict[str, str]) -> bool:
    attrs = instance["Attributes"]
    return all(attrs.get(k) == v for k, v in params.items())
