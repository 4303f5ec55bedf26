"""ECS's capacity provider operations on the operator's own machines (issue 22):
CreateCapacityProvider, UpdateCapacityProvider, DeleteCapacityProvider,
DescribeCapacityProviders and PutClusterCapacityProviders.

A provider is tied to a **host group** (`autoScalingGroupProvider.autoScalingGroupArn`: an
Auto Scaling group ARN or a plain name, which names the group), whose size the operator's
command changes: the Dockyard tag `dockyard:group-size-command` (`CMD {desired}`), which the
CLI's `--group-size-command` sets, so boto3 callers set it as a tag. Agents join a provider's
group with `dockyard agent --attribute dockyard.capacity-provider=NAME`
(`PROVIDER_ATTRIBUTE`). Providers are stored (kind "capacity_provider"), as is each
cluster's association and default strategy (kind "cluster_capacity").
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from controller.capacity import reservation as rsv
from controller.capacity import strategy
from controller.ecs_paging import paginate
from controller.store_api import Delete, Put
from dockyard.arns import ArnFactory, last_part
from dockyard.errors import client_error, invalid

if TYPE_CHECKING:
    from controller.state_of_record import StateOfRecord

KIND, CLUSTER_KIND = "capacity_provider", "cluster_capacity"
COMMAND_TAG = "dockyard:group-size-command"
RESERVED = ("FARGATE", "FARGATE_SPOT")
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
_SCALING_LIMITS = {
    "targetCapacity": (1, 100),
    "minimumScalingStepSize": (1, 10000),
    "maximumScalingStepSize": (1, 10000),
    "instanceWarmupPeriod": (0, 10000),
}


def group_name(ref: str) -> str:
    """The host group an `autoScalingGroupArn` names: an ASG ARN's
    `autoScalingGroupName/NAME`, or the plain name."""
    return ref.split("autoScalingGroupName/", 1)[1] if "autoScalingGroupName/" in ref else ref


def check_scaling(raw: dict[str, Any], old: dict[str, Any] | None = None) -> dict[str, Any]:
    """managedScaling with ECS's defaults filled in (an update keeps what it omits)."""
    where = "autoScalingGroupProvider.managedScaling"
    out = dict(
        old
        or {
            "status": "ENABLED",
            "targetCapacity": rsv.DEFAULT_TARGET,
            "minimumScalingStepSize": rsv.DEFAULT_MIN_STEP,
            "maximumScalingStepSize": rsv.DEFAULT_MAX_STEP,
            "instanceWarmupPeriod": rsv.DEFAULT_WARMUP,
        }
    )
    out.update(raw)
    if out["status"] not in ("ENABLED", "DISABLED"):
        raise invalid(f"{where}.status", "must be ENABLED or DISABLED")
    for name, (low, high) in _SCALING_LIMITS.items():
        if not isinstance(out[name], int) or not low <= out[name] <= high:
            raise invalid(f"{where}.{name}", f"must be from {low} to {high}")
    if out["minimumScalingStepSize"] > out["maximumScalingStepSize"]:
        raise invalid(f"{where}.minimumScalingStepSize", "must not exceed maximumScalingStepSize")
    return out


def scaling_of(doc: dict[str, Any]) -> rsv.Scaling:
    """The pure scaler's view of a stored provider."""
    asg = doc["autoScalingGroupProvider"]
    ms = asg["managedScaling"]
    return rsv.Scaling(
        ms["targetCapacity"],
        ms["minimumScalingStepSize"],
        ms["maximumScalingStepSize"],
        asg.get("managedTerminationProtection") == "ENABLED",
    )


def command_of(doc: dict[str, Any]) -> str:
    return next((t["value"] for t in doc.get("tags", []) if t["key"] == COMMAND_TAG), "")


class CapacityProviders:
    """The providers and the clusters' associations, in memory, written through."""

    def __init__(self, record: StateOfRecord, arns: ArnFactory) -> None:
        self.record = record
        self.arns = arns
        self.providers: dict[str, dict[str, Any]] = record.capacity_providers
        self.clusters: dict[str, dict[str, Any]] = record.cluster_capacity
        self._loaded = False
        self._lock = asyncio.Lock()

    def handlers(self) -> dict[str, Handler]:
        return {
            "CreateCapacityProvider": self.create,
            "UpdateCapacityProvider": self.update,
            "DeleteCapacityProvider": self.delete,
            "DescribeCapacityProviders": self.describe,
        }

    def load(self) -> None:
        """Take the stored providers and associations once (the first call that needs them)."""
        if self._loaded:
            return
        for doc in self.record.docs(KIND):
            self.providers[doc["name"]] = doc
        for doc in self.record.docs(CLUSTER_KIND):
            self.clusters[doc["cluster"]] = doc
        self._loaded = True

    def _arn(self, name: str) -> str:
        return f"arn:aws:ecs:{self.arns.region}:{self.arns.account}:capacity-provider/{name}"

    def provider(self, ref: str, field: str = "capacityProvider") -> dict[str, Any]:
        self.load()
        doc = self.providers.get(last_part(ref))
        if doc is None:
            raise invalid(field, f"The specified capacity provider {ref} does not exist")
        return doc

    async def _save(self, doc: dict[str, Any]) -> None:
        await self.record.commit([Put(KIND, doc["name"], "", doc)])
        self.providers[doc["name"]] = doc

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        self.load()
        name = str(body["name"])
        if name.upper().startswith(("AWS", "ECS", "FARGATE")):
            raise invalid("name", "cannot start with aws, ecs or fargate (ECS reserves them)")
        if name in self.providers:
            raise client_error(f"The specified capacity provider {name} already exists")
        asg = body.get("autoScalingGroupProvider")
        if not asg or not asg.get("autoScalingGroupArn"):
            raise invalid(
                "autoScalingGroupProvider.autoScalingGroupArn",
                "names the host group (Dockyard has no Fargate or managed instances providers)",
            )
        if body.get("cluster"):
            raise invalid("cluster", "is for managed instances providers; host groups serve any")
        if body.get("managedInstancesProvider"):
            raise invalid("managedInstancesProvider", "Dockyard's machines are the operator's")
        group = group_name(asg["autoScalingGroupArn"])
        if any(
            group_name(p["autoScalingGroupProvider"]["autoScalingGroupArn"]) == group
            for p in self.providers.values()
        ):
            raise invalid(
                "autoScalingGroupProvider.autoScalingGroupArn",
                f"host group {group} already has a capacity provider",
            )
        doc = {
            "capacityProviderArn": self._arn(name),
            "name": name,
            "status": "ACTIVE",
            "autoScalingGroupProvider": self._group(asg, None),
            "updateStatus": "UPDATE_COMPLETE",
            "type": "EC2_AUTOSCALING",
            "tags": list(body.get("tags") or []),
        }
        await self._save(doc)
        return {"capacityProvider": doc}

    def _group(self, raw: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        """autoScalingGroupProvider, checked: managed termination protection needs managed
        scaling, as ECS says."""
        out = dict(
            old or {"managedTerminationProtection": "DISABLED", "managedDraining": "ENABLED"}
        )
        out["managedScaling"] = check_scaling(
            raw.get("managedScaling") or {}, (old or {}).get("managedScaling")
        )
        for key in ("autoScalingGroupArn", "managedTerminationProtection", "managedDraining"):
            if key in raw:
                out[key] = raw[key]
        for key in ("managedTerminationProtection", "managedDraining"):
            if out[key] not in ("ENABLED", "DISABLED"):
                raise invalid(f"autoScalingGroupProvider.{key}", "must be ENABLED or DISABLED")
        if out["managedTerminationProtection"] == "ENABLED" and (
            out["managedScaling"]["status"] != "ENABLED"
        ):
            raise invalid(
                "autoScalingGroupProvider.managedTerminationProtection",
                "managed termination protection requires managed scaling ENABLED",
            )
        return out

    async def update(self, body: dict[str, Any]) -> dict[str, Any]:
        doc = dict(self.provider(body["name"], "name"))
        raw = body.get("autoScalingGroupProvider") or {}
        if "autoScalingGroupArn" in raw:
            raise invalid("autoScalingGroupProvider.autoScalingGroupArn", "cannot be changed")
        doc["autoScalingGroupProvider"] = self._group(raw, doc["autoScalingGroupProvider"])
        await self._save(doc)
        return {"capacityProvider": doc}

    async def delete(self, body: dict[str, Any]) -> dict[str, Any]:
        doc = self.provider(body["capacityProvider"])
        users = [c for c, a in self.clusters.items() if doc["name"] in a["capacityProviders"]]
        if users:
            raise client_error(
                f"The specified capacity provider {doc['name']} is in use by cluster "
                f"{users[0]}: remove it with PutClusterCapacityProviders first"
            )
        await self.record.commit([Delete(KIND, doc["name"])])
        self.providers.pop(doc["name"], None)
        return {
            "capacityProvider": {**doc, "status": "INACTIVE", "updateStatus": "DELETE_COMPLETE"}
        }

    async def describe(self, body: dict[str, Any]) -> dict[str, Any]:
        self.load()
        wanted = body.get("capacityProviders")
        found, failures = [], []
        if wanted:
            for ref in wanted:
                doc = self.providers.get(last_part(ref))
                if doc is None:
                    failures.append({"arn": ref, "reason": "MISSING"})
                else:
                    found.append(doc)
        else:
            found = list(self.providers.values())
        if "TAGS" not in (body.get("include") or []):
            found = [{k: v for k, v in d.items() if k != "tags"} for d in found]
        page, token = paginate(
            found,
            body.get("nextToken"),
            body.get("maxResults"),
            key=lambda d: d["name"],
            default=10,
            limit=10,
        )
        out: dict[str, Any] = {"capacityProviders": page, "failures": failures}
        return {**out, **({"nextToken": token} if token else {})}

    def association(self, cluster: str) -> dict[str, Any]:
        self.load()
        return self.clusters.get(
            cluster,
            {"cluster": cluster, "capacityProviders": [], "defaultCapacityProviderStrategy": []},
        )

    async def put_cluster(
        self, body: dict[str, Any], cluster_view: dict[str, Any]
    ) -> dict[str, Any]:
        """Associate providers and a default strategy with a cluster (whose ECS view the
        caller passes, so this module needs no cluster layer)."""
        doc = self.association_of(cluster_view["clusterName"], body)
        await self.save_association(doc)
        return {"cluster": self.overlay(cluster_view)}

    async def save_association(self, doc: dict[str, Any]) -> None:
        await self.record.commit([Put(CLUSTER_KIND, doc["cluster"], doc["cluster"], doc)])
        self.clusters[doc["cluster"]] = doc

    def association_of(self, cluster: str, body: dict[str, Any]) -> dict[str, Any]:
        """PutClusterCapacityProviders' (or CreateCluster's) providers and default strategy,
        checked: the providers exist, the strategy names only them."""
        names = list(body.get("capacityProviders") or [])
        for i, ref in enumerate(names):
            self.provider(ref, f"capacityProviders[{i}]")
        names = [last_part(n) for n in names]
        items = strategy.parse(
            body.get("defaultCapacityProviderStrategy") or [], "defaultCapacityProviderStrategy"
        )
        for i, it in enumerate(items):
            if it.provider not in names:
                raise invalid(
                    f"defaultCapacityProviderStrategy[{i}].capacityProvider",
                    f"{it.provider} is not associated with the cluster: list it in "
                    "capacityProviders",
                )
        return {
            "cluster": cluster,
            "capacityProviders": names,
            "defaultCapacityProviderStrategy": [
                {"capacityProvider": it.provider, "base": it.base, "weight": it.weight}
                for it in items
            ],
        }

    def overlay(self, view: dict[str, Any]) -> dict[str, Any]:
        """A cluster's ECS view with its providers and default strategy filled in."""
        a = self.association(view["clusterName"])
        return {
            **view,
            "capacityProviders": a["capacityProviders"],
            "defaultCapacityProviderStrategy": a["defaultCapacityProviderStrategy"],
        }

    def strategy_for(self, cluster: str, raw: list[dict[str, Any]] | None) -> list[strategy.Item]:
        """A RunTask/CreateService strategy (else the cluster's default), checked: every
        provider must be associated with the cluster, as ECS requires."""
        a = self.association(cluster)
        if not raw:
            return strategy.parse(a["defaultCapacityProviderStrategy"])
        items = strategy.parse(raw)
        for i, it in enumerate(items):
            if it.provider not in a["capacityProviders"]:
                raise invalid(
                    f"capacityProviderStrategy[{i}].capacityProvider",
                    f"The specified capacity provider {it.provider} is not associated with "
                    f"cluster {cluster}",
                )
        return items
