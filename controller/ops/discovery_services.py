"""Cloud Map services (issue 21): CreateService, GetService, ListServices, UpdateService,
DeleteService.

A service with a `DnsConfig` (only in a private DNS namespace) is a record set
`<service>.<namespace>` the agents answer: A and SRV records (`MULTIVALUE` routing: every
healthy instance). Refused, each naming why: `AAAA` and `CNAME` records (tasks are reached
at their host's IPv4 address), `WEIGHTED` routing, and `HealthCheckConfig` (Route 53 health
checks; use `HealthCheckCustomConfig`, which ECS drives from the tasks' health). A service
with instances cannot be deleted (ResourceInUse), as Cloud Map refuses it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from controller.ops.discovery_namespaces import check_tags, invalid_input, page, summary_filter
from controller.ops.discovery_state import OPERATION, SERVICE, Discovery, new_id
from dockyard.errors import ApiError

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
SD = "servicediscovery:"
RECORD_TYPES = ("A", "SRV")


def check_records(path: str, records: list[dict[str, Any]]) -> None:
    """Only A and SRV, once each (what the agents' resolvers answer)."""
    types = [r["Type"] for r in records]
    for i, kind in enumerate(types):
        if kind not in RECORD_TYPES:
            raise invalid_input(
                f"{path}.DnsRecords[{i}].Type: {kind} is not served by Dockyard (A and SRV "
                "only: tasks are reached at their host's IPv4 address and port)"
            )
    if len(set(types)) != len(types):
        raise invalid_input(f"{path}.DnsRecords: each record type at most once")
    if not records:
        raise invalid_input(f"{path}.DnsRecords: at least one record")


def _no_route53_checks(body: dict[str, Any], path: str = "HealthCheckConfig") -> None:
    if "HealthCheckConfig" in body:
        raise invalid_input(
            f"{path}: Route 53 health checks are not available in Dockyard; use "
            "HealthCheckCustomConfig (ECS reports its tasks' health through it)"
        )


class ServiceOps:
    def __init__(self, discovery: Discovery) -> None:
        self.d = discovery

    def handlers(self) -> dict[str, Handler]:
        return {
            SD + "CreateService": self.create,
            SD + "GetService": self.get,
            SD + "ListServices": self.list_services,
            SD + "UpdateService": self.update,
            SD + "DeleteService": self.delete,
        }

    def _namespace_of(self, body: dict[str, Any]) -> dict[str, Any]:
        ref = body.get("NamespaceId") or body.get("DnsConfig", {}).get("NamespaceId")
        if not ref:
            raise invalid_input("NamespaceId: required")
        return self.d.namespace(ref)

    def _dns(self, body: dict[str, Any], ns: dict[str, Any]) -> dict[str, Any] | None:
        dns = body.get("DnsConfig")
        if dns is None:
            return None
        if ns["Type"] != "DNS_PRIVATE":
            raise invalid_input(f"DnsConfig: namespace {ns['Name']} is an HTTP namespace")
        if dns.get("RoutingPolicy", "MULTIVALUE") != "MULTIVALUE":
            raise invalid_input("DnsConfig.RoutingPolicy: Dockyard answers MULTIVALUE only")
        check_records("DnsConfig", dns["DnsRecords"])
        return {
            "NamespaceId": ns["Id"],
            "RoutingPolicy": "MULTIVALUE",
            "DnsRecords": dns["DnsRecords"],
        }

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        _no_route53_checks(body)
        tags = check_tags(body.get("Tags", []))
        async with self.d.lock:
            ns = self._namespace_of(body)
            dns = self._dns(body, ns)
            kind = body.get("Type") or ("DNS_HTTP" if dns else "HTTP")
            if kind == "HTTP" and dns is not None:
                raise invalid_input("Type: HTTP services take no DnsConfig")
            if kind != "HTTP" and dns is None:
                raise invalid_input(f"Type: {kind} needs a DnsConfig")
            for svc in self.d.namespace_services(ns["Id"]):
                if svc["Name"] == body["Name"]:
                    raise ApiError(
                        "ServiceAlreadyExists",
                        f"namespace {ns['Name']} already has a service {body['Name']}",
                        409,
                    )
            sid = new_id("srv-")
            doc: dict[str, Any] = {
                "Id": sid,
                "Arn": self.d.arn("service", sid),
                "ResourceOwner": self.d.account,
                "CreatedByAccount": self.d.account,
                "Name": body["Name"],
                "NamespaceId": ns["Id"],
                "Type": kind,
                "CreateDate": time.time(),
                "Tags": tags,
                **({"DnsConfig": dns} if dns else {}),
                **{
                    k: body[k]
                    for k in ("Description", "CreatorRequestId", "HealthCheckCustomConfig")
                    if k in body
                },
            }
            await self.d.commit([(SERVICE, doc)])
        return {"Service": self.view(doc)}

    def view(self, svc: dict[str, Any]) -> dict[str, Any]:
        count = len(self.d.service_instances(svc["Id"]))
        return {k: v for k, v in svc.items() if k != "Tags"} | {"InstanceCount": count}

    async def get(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"Service": self.view(self.d.service(body["Id"]))}

    async def list_services(self, body: dict[str, Any]) -> dict[str, Any]:
        keep = summary_filter(
            body.get("Filters", []),
            {
                "NAMESPACE_ID": lambda s: str(s["NamespaceId"]),
                "RESOURCE_OWNER": lambda s: str(s["ResourceOwner"]),
            },
        )
        services = sorted(self.d.services.values(), key=lambda s: s["CreateDate"])
        drop = ("NamespaceId", "CreatorRequestId")
        found = [
            {k: v for k, v in self.view(s).items() if k not in drop} for s in services if keep(s)
        ]
        return page(found, body, "Services")

    async def update(self, body: dict[str, Any]) -> dict[str, Any]:
        change = body["Service"]
        _no_route53_checks(change, "Service.HealthCheckConfig")
        async with self.d.lock:
            svc = self.d.service(body["Id"])
            new = dict(svc)
            if "Description" in change:
                new["Description"] = change["Description"]
            if "DnsConfig" in change:
                if "DnsConfig" not in svc:
                    raise invalid_input("Service.DnsConfig: the service has no DNS records")
                records = change["DnsConfig"]["DnsRecords"]
                check_records("Service.DnsConfig", records)
                new["DnsConfig"] = {**svc["DnsConfig"], "DnsRecords": records}
            op = self.d.operation("UPDATE_SERVICE", {"SERVICE": svc["Id"]})
            await self.d.commit([(SERVICE, new), (OPERATION, op)], self.d.expired_operations())
        return {"OperationId": op["Id"]}

    async def delete(self, body: dict[str, Any]) -> dict[str, Any]:
        async with self.d.lock:
            svc = self.d.service(body["Id"])
            count = len(self.d.service_instances(svc["Id"]))
            if count:
                raise ApiError(
                    "ResourceInUse",
                    f"service {svc['Name']} has {count} registered instance(s): "
                    "deregister them first",
                )
            await self.d.commit([], [(SERVICE, svc["Id"])])
        return {}
