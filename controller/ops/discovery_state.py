"""Cloud Map's objects (issue 21): namespaces, services, instances and operations, kept in
memory and stored through the state of record.

The documents are Cloud Map's own shapes (what GetNamespace, GetService... answer), so the
operation modules (controller/ops/discovery_{namespaces,services,instances}.py) only pick
and filter. Every change is committed through `StateOfRecord.commit` and so published on
the change feed by its kind: the DNS snapshot (controller/discovery_dns.py) follows
`sd_instance`, `sd_service` and `sd_namespace` from there.

Cloud Map's operations (the asynchronous ones: namespaces, registrations) complete here at
once; each is kept (kind `sd_operation`, the newest `MAX_OPERATIONS`) with status SUCCESS
so GetOperation and ListOperations answer as Cloud Map does.
"""

from __future__ import annotations

import asyncio
import secrets
import string
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from controller.records import Delete, Op, Put
from dockyard.errors import ApiError

if TYPE_CHECKING:
    from controller.state_of_record import StateOfRecord

NAMESPACE, SERVICE, INSTANCE, OPERATION = (
    "sd_namespace",
    "sd_service",
    "sd_instance",
    "sd_operation",
)
KINDS = (NAMESPACE, SERVICE, INSTANCE, OPERATION)
MAX_OPERATIONS = 1000
_ID_CHARS = string.ascii_lowercase + string.digits


def new_id(prefix: str, length: int = 16) -> str:
    """A Cloud Map-style id: `ns-…`, `srv-…` (16 lowercase letters and digits)."""
    return prefix + "".join(secrets.choice(_ID_CHARS) for _ in range(length))


def instance_key(service_id: str, instance_id: str) -> str:
    return f"{service_id}/{instance_id}"


def not_found(kind: str, what: str) -> ApiError:
    """Cloud Map's not-found exceptions: NamespaceNotFound, ServiceNotFound..."""
    return ApiError(f"{kind}NotFound", f"{kind} not found: {what[:200]}", 404)


class Discovery:
    """The Cloud Map objects, by kind then key; written through to the store."""

    def __init__(self, record: StateOfRecord, region: str, account: str) -> None:
        self.record = record
        self.region = region
        self.account = account
        self.docs: dict[str, dict[str, dict[str, Any]]] = record.discovery
        for kind in KINDS:
            self.docs.setdefault(kind, {})
        self.lock = asyncio.Lock()  # one writer at a time: names stay unique
        self._loaded = False

    def load(self) -> None:
        """Take the stored documents (once, at startup) from the state of record's loader."""
        if self._loaded:
            return
        for kind in KINDS:
            for key, _, doc in self.record.take(kind):
                self.docs[kind][key] = doc
        self._loaded = True

    def arn(self, kind: str, rid: str) -> str:
        return f"arn:aws:servicediscovery:{self.region}:{self.account}:{kind}/{rid}"

    # ------------------------------------------------------------ lookups

    @property
    def namespaces(self) -> dict[str, dict[str, Any]]:
        return self.docs[NAMESPACE]

    @property
    def services(self) -> dict[str, dict[str, Any]]:
        return self.docs[SERVICE]

    @property
    def instances(self) -> dict[str, dict[str, Any]]:
        return self.docs[INSTANCE]

    @property
    def operations(self) -> dict[str, dict[str, Any]]:
        return self.docs[OPERATION]

    def namespace(self, ref: str) -> dict[str, Any]:
        """A namespace by id or ARN, or NamespaceNotFound."""
        doc = self.namespaces.get(ref.rsplit("/", 1)[-1])
        if doc is None:
            raise not_found("Namespace", ref)
        return doc

    def service(self, ref: str) -> dict[str, Any]:
        """A service by id or ARN, or ServiceNotFound."""
        doc = self.services.get(ref.rsplit("/", 1)[-1])
        if doc is None:
            raise not_found("Service", ref)
        return doc

    def service_instances(self, service_id: str) -> list[dict[str, Any]]:
        prefix = service_id + "/"
        return [d for k, d in sorted(self.instances.items()) if k.startswith(prefix)]

    def namespace_services(self, namespace_id: str) -> list[dict[str, Any]]:
        return [s for s in self.services.values() if s["NamespaceId"] == namespace_id]

    def by_names(self, namespace: str, service: str) -> dict[str, Any] | None:
        """The service `service` of the namespace named `namespace` (HTTP name or DNS)."""
        for ns in self.namespaces.values():
            if _http_name(ns) == namespace or ns["Name"] == namespace:
                for svc in self.namespace_services(ns["Id"]):
                    if svc["Name"] == service:
                        return svc
        return None

    def resource(self, arn: str) -> tuple[str, dict[str, Any]]:
        """The namespace or service an ARN names (tags), or ResourceNotFoundException."""
        for kind in (NAMESPACE, SERVICE):
            doc = self.docs[kind].get(arn.rsplit("/", 1)[-1])
            if doc is not None and doc["Arn"] == arn:
                return kind, doc
        raise ApiError("ResourceNotFoundException", f"no resource {arn[:300]}", 404)

    # ------------------------------------------------------------ writes

    async def commit(
        self, puts: Iterable[tuple[str, dict[str, Any]]], deletes: Iterable[tuple[str, str]] = ()
    ) -> None:
        """Store the documents (kind, doc: keyed by `key_of`) and deletions, then keep them."""
        ops: list[Op] = []
        puts, deletes = list(puts), list(deletes)
        for kind, doc in puts:
            ops.append(Put(kind, key_of(kind, doc), "", doc))
        for kind, key in deletes:
            ops.append(Delete(kind, key))
        await self.record.commit(ops)
        for kind, doc in puts:
            self.docs[kind][key_of(kind, doc)] = doc
        for kind, key in deletes:
            self.docs[kind].pop(key, None)

    def operation(self, kind: str, targets: dict[str, str]) -> dict[str, Any]:
        """A finished Cloud Map operation (its document, to commit with the change)."""
        now = time.time()
        return {
            "Id": new_id("", 32) + "-" + new_id("", 8),
            "OwnerAccount": self.account,
            "Type": kind,
            "Status": "SUCCESS",
            "CreateDate": now,
            "UpdateDate": now,
            "Targets": targets,
        }

    def expired_operations(self) -> list[tuple[str, str]]:
        """The oldest operations beyond MAX_OPERATIONS (to delete with the next write)."""
        extra = len(self.operations) + 1 - MAX_OPERATIONS
        if extra <= 0:
            return []
        oldest = sorted(self.operations.values(), key=lambda o: o["CreateDate"])[:extra]
        return [(OPERATION, o["Id"]) for o in oldest]


def key_of(kind: str, doc: dict[str, Any]) -> str:
    if kind == INSTANCE:
        return instance_key(doc["ServiceId"], doc["Id"])
    return str(doc["Id"])


def _http_name(ns: dict[str, Any]) -> str:
    return str(ns.get("Properties", {}).get("HttpProperties", {}).get("HttpName", ns["Name"]))
