"""Cloud Map namespaces, operations and tags (issue 21): CreatePrivateDnsNamespace,
CreateHttpNamespace, GetNamespace, ListNamespaces, DeleteNamespace, GetOperation,
ListOperations, TagResource, UntagResource, ListTagsForResource.

A private DNS namespace is a zone every agent of the cluster answers (controller/
discovery_dns.py builds what they are sent); `Vpc` is taken as Cloud Map requires it and
means nothing here (Dockyard has no VPCs). A namespace with services cannot be deleted
(ResourceInUse), as Cloud Map refuses it. Public DNS namespaces are not offered: Dockyard
serves no public zone.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from controller.ecs_paging import paginate
from controller.ops.discovery_state import NAMESPACE, OPERATION, SERVICE, Discovery, new_id
from dockyard.errors import ApiError

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
Getter = Callable[[dict[str, Any]], str]
SD = "servicediscovery:"
_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
MAX_TAGS = 50


def invalid_input(message: str) -> ApiError:
    return ApiError("InvalidInput", message)


def check_dns_name(field: str, name: str) -> str:
    """A DNS name as Cloud Map takes one (labels of letters, digits, `-`, `_`, at most 63
    characters, not starting or ending with `-`; 253 in all); lowercased, no final dot."""
    bare = name.rstrip(".")
    if not bare or len(bare) > 253 or not all(_DNS_LABEL.fullmatch(p) for p in bare.split(".")):
        raise invalid_input(
            f"{field}: {name[:100]!r} is not a DNS name (labels of letters, digits, '-' and "
            "'_', 1-63 characters each, not starting or ending with '-')"
        )
    return bare.lower()


def summary_filter(
    filters: list[dict[str, Any]], fields: dict[str, Callable[[dict[str, Any]], str]]
) -> Callable[[dict[str, Any]], bool]:
    """A predicate for Cloud Map's list filters (Name, Values, Condition EQ|IN|BEGINS_WITH)."""
    checks: list[Callable[[dict[str, Any]], bool]] = []

    def prefix(get: Getter, values: list[str]) -> Callable[[dict[str, Any]], bool]:
        return lambda d: any(get(d).startswith(x) for x in values)

    def member(get: Getter, values: list[str]) -> Callable[[dict[str, Any]], bool]:
        return lambda d: get(d) in values

    for f in filters:
        if f["Name"] not in fields:
            raise invalid_input(f"Filters: {f['Name']} is not a filter of this operation")
        get, values, cond = fields[f["Name"]], f["Values"], f.get("Condition", "EQ")
        if cond == "EQ" and len(values) != 1:
            raise invalid_input(f"Filters: {f['Name']} with EQ takes exactly one value")
        if cond == "BETWEEN":
            raise invalid_input(f"Filters: {f['Name']} does not take BETWEEN")
        if cond == "BEGINS_WITH":
            checks.append(prefix(get, values))
        else:
            checks.append(member(get, values))
    return lambda d: all(c(d) for c in checks)


def page(items: list[dict[str, Any]], body: dict[str, Any], field: str) -> dict[str, Any]:
    """One page of `items` (already in order) as `{field: [...], NextToken}`."""
    found, token = paginate(
        list(range(len(items))),
        body.get("NextToken"),
        body.get("MaxResults"),
        default=100,
        limit=100,
    )
    return {field: [items[i] for i in found], **({"NextToken": token} if token else {})}


class NamespaceOps:
    def __init__(self, discovery: Discovery) -> None:
        self.d = discovery

    def handlers(self) -> dict[str, Handler]:
        return {
            SD + "CreatePrivateDnsNamespace": self.create_private,
            SD + "CreateHttpNamespace": self.create_http,
            SD + "GetNamespace": self.get,
            SD + "ListNamespaces": self.list_namespaces,
            SD + "DeleteNamespace": self.delete,
            SD + "GetOperation": self.get_operation,
            SD + "ListOperations": self.list_operations,
            SD + "TagResource": self.tag,
            SD + "UntagResource": self.untag,
            SD + "ListTagsForResource": self.list_tags,
        }

    async def create_private(self, body: dict[str, Any]) -> dict[str, Any]:
        name = check_dns_name("Name", body["Name"])
        ttl = body.get("Properties", {}).get("DnsProperties", {}).get("SOA", {}).get("TTL", 15)
        props = {"DnsProperties": {"HostedZoneId": new_id("Z", 20).upper(), "SOA": {"TTL": ttl}}}
        props["HttpProperties"] = {"HttpName": name}
        return await self._create(body, name, "DNS_PRIVATE", props)

    async def create_http(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["Name"]
        return await self._create(body, name, "HTTP", {"HttpProperties": {"HttpName": name}})

    async def _create(
        self, body: dict[str, Any], name: str, kind: str, props: dict[str, Any]
    ) -> dict[str, Any]:
        tags = check_tags(body.get("Tags", []))
        async with self.d.lock:
            for ns in self.d.namespaces.values():
                if ns["Name"] == name:
                    if (
                        body.get("CreatorRequestId")
                        and ns.get("CreatorRequestId") == body["CreatorRequestId"]
                    ):
                        return {"OperationId": ns["_operation"]}  # Cloud Map's idempotent retry
                    raise ApiError(
                        "NamespaceAlreadyExists",
                        f"a namespace named {name} already exists ({ns['Id']})",
                        409,
                    )
            nid = new_id("ns-")
            op = self.d.operation("CREATE_NAMESPACE", {"NAMESPACE": nid})
            doc: dict[str, Any] = {
                "Id": nid,
                "Arn": self.d.arn("namespace", nid),
                "ResourceOwner": self.d.account,
                "Name": name,
                "Type": kind,
                "Properties": props,
                "CreateDate": time.time(),
                "Tags": tags,
                "_operation": op["Id"],
                **{k: body[k] for k in ("Description", "CreatorRequestId") if k in body},
            }
            await self.d.commit([(NAMESPACE, doc), (OPERATION, op)], self.d.expired_operations())
        return {"OperationId": op["Id"]}

    def view(self, ns: dict[str, Any]) -> dict[str, Any]:
        count = len(self.d.namespace_services(ns["Id"]))
        return {k: v for k, v in ns.items() if k not in ("Tags", "_operation")} | {
            "ServiceCount": count
        }

    async def get(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"Namespace": self.view(self.d.namespace(body["Id"]))}

    async def list_namespaces(self, body: dict[str, Any]) -> dict[str, Any]:
        keep = summary_filter(
            body.get("Filters", []),
            {
                "TYPE": lambda n: str(n["Type"]),
                "NAME": lambda n: str(n["Name"]),
                "HTTP_NAME": lambda n: str(
                    n["Properties"].get("HttpProperties", {}).get("HttpName", "")
                ),
            },
        )
        found = [
            self.view(n)
            for n in sorted(self.d.namespaces.values(), key=lambda n: n["CreateDate"])
            if keep(n)
        ]
        summaries = [{k: v for k, v in n.items() if k not in ("CreatorRequestId",)} for n in found]
        return page(summaries, body, "Namespaces")

    async def delete(self, body: dict[str, Any]) -> dict[str, Any]:
        async with self.d.lock:
            ns = self.d.namespace(body["Id"])
            services = self.d.namespace_services(ns["Id"])
            if services:
                names = ", ".join(sorted(s["Name"] for s in services)[:10])
                raise ApiError(
                    "ResourceInUse",
                    f"namespace {ns['Name']} has {len(services)} service(s) ({names}): "
                    "delete them first",
                )
            op = self.d.operation("DELETE_NAMESPACE", {"NAMESPACE": ns["Id"]})
            deletes = [(NAMESPACE, ns["Id"]), *self.d.expired_operations()]
            await self.d.commit([(OPERATION, op)], deletes)
        return {"OperationId": op["Id"]}

    async def get_operation(self, body: dict[str, Any]) -> dict[str, Any]:
        op = self.d.operations.get(body["OperationId"])
        if op is None:
            raise ApiError("OperationNotFound", f"no operation {body['OperationId'][:100]}", 404)
        return {"Operation": op}

    async def list_operations(self, body: dict[str, Any]) -> dict[str, Any]:
        filters = body.get("Filters", [])
        dates = [f for f in filters if f["Name"] == "UPDATE_DATE"]
        keep = summary_filter(
            [f for f in filters if f["Name"] != "UPDATE_DATE"],
            {
                "NAMESPACE_ID": lambda o: str(o["Targets"].get("NAMESPACE", "")),
                "SERVICE_ID": lambda o: str(o["Targets"].get("SERVICE", "")),
                "STATUS": lambda o: str(o["Status"]),
                "TYPE": lambda o: str(o["Type"]),
            },
        )
        low, high = _between(dates)
        ops = sorted(self.d.operations.values(), key=lambda o: o["CreateDate"])
        found = [
            {"Id": o["Id"], "Status": o["Status"]}
            for o in ops
            if keep(o) and low <= o["UpdateDate"] <= high
        ]
        return page(found, body, "Operations")

    async def tag(self, body: dict[str, Any]) -> dict[str, Any]:
        async with self.d.lock:
            kind, doc = self.d.resource(body["ResourceARN"])
            new = {t["Key"]: t["Value"] for t in doc.get("Tags", [])}
            new.update({t["Key"]: t["Value"] for t in body["Tags"]})
            tags = check_tags([{"Key": k, "Value": v} for k, v in new.items()])
            await self.d.commit([(kind, doc | {"Tags": tags})])
        return {}

    async def untag(self, body: dict[str, Any]) -> dict[str, Any]:
        async with self.d.lock:
            kind, doc = self.d.resource(body["ResourceARN"])
            tags = [t for t in doc.get("Tags", []) if t["Key"] not in body["TagKeys"]]
            await self.d.commit([(kind, doc | {"Tags": tags})])
        return {}

    async def list_tags(self, body: dict[str, Any]) -> dict[str, Any]:
        _, doc = self.d.resource(body["ResourceARN"])
        return {"Tags": doc.get("Tags", [])}


def check_tags(tags: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(tags) > MAX_TAGS:
        raise ApiError("TooManyTagsException", f"at most {MAX_TAGS} tags per resource")
    return tags


def _between(dates: list[dict[str, Any]]) -> tuple[float, float]:
    """UPDATE_DATE's BETWEEN bounds (epoch seconds), or everything."""
    if not dates:
        return float("-inf"), float("inf")
    values = dates[0]["Values"]
    if dates[0].get("Condition", "EQ") != "BETWEEN" or len(values) != 2:
        raise invalid_input("Filters: UPDATE_DATE takes BETWEEN and two epoch-second values")
    try:
        return float(values[0]), float(values[1])
    except ValueError:
        raise invalid_input("Filters: UPDATE_DATE values must be epoch seconds") from None


__all__ = ["SERVICE", "NamespaceOps", "check_dns_name", "invalid_input", "page", "summary_filter"]
