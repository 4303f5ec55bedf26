"""What a cluster is configured with: CreateCluster's `settings`, `configuration`,
`serviceConnectDefaults`, `capacityProviders` and `defaultCapacityProviderStrategy`, and
the UpdateCluster / UpdateClusterSettings operations.

Dockyard keeps and returns the settings, the ECS Exec / managed storage configuration and
the Service Connect namespace; none of them changes what Dockyard does (it has no
Container Insights, no ECS Exec, no managed EBS storage, no Service Connect: README,
"Cluster settings"). Capacity providers are host groups' (controller/ops/capacity_providers.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from controller import ecs_views
from controller.model import Cluster
from dockyard.errors import invalid

if TYPE_CHECKING:
    from controller.service import ClusterService

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
INSIGHTS = ("enhanced", "enabled", "disabled")
LOGGING = ("NONE", "DEFAULT", "OVERRIDE")


def check_settings(raw: list[dict[str, str]]) -> list[dict[str, str]]:
    """ECS's cluster settings: containerInsights = enhanced|enabled|disabled, once."""
    seen: dict[str, str] = {}
    for i, item in enumerate(raw):
        name, value = item.get("name", ""), item.get("value", "")
        if name != "containerInsights":
            raise invalid(f"settings[{i}].name", f"must be containerInsights, not {name!r}")
        if value not in INSIGHTS:
            raise invalid(f"settings[{i}].value", f"must be {', '.join(INSIGHTS)}")
        seen[name] = value
    return [{"name": n, "value": v} for n, v in seen.items()]


def check_configuration(raw: dict[str, Any]) -> dict[str, Any]:
    """ECS Exec's logging choice must agree with its log configuration, as ECS checks."""
    exe = raw.get("executeCommandConfiguration") or {}
    logging = exe.get("logging", "DEFAULT")
    where = "configuration.executeCommandConfiguration"
    if logging not in LOGGING:
        raise invalid(f"{where}.logging", f"must be {', '.join(LOGGING)}")
    if logging == "OVERRIDE" and not exe.get("logConfiguration"):
        raise invalid(f"{where}.logConfiguration", "is required when logging is OVERRIDE")
    if logging != "OVERRIDE" and exe.get("logConfiguration"):
        raise invalid(f"{where}.logConfiguration", "is used only when logging is OVERRIDE")
    return dict(raw)


def configure(c: Cluster, body: dict[str, Any]) -> None:
    """Apply the request's settings, configuration and Service Connect default onto `c`
    (everything checked first, so a refused request changes nothing)."""
    settings = check_settings(body["settings"]) if "settings" in body else None
    config = check_configuration(body["configuration"]) if "configuration" in body else None
    if settings is not None:
        merged = {s["name"]: s["value"] for s in c.settings} | {
            s["name"]: s["value"] for s in settings
        }
        c.settings = [{"name": n, "value": v} for n, v in merged.items()]
    if config is not None:
        c.configuration = config
    if "serviceConnectDefaults" in body:
        c.service_connect_namespace = body["serviceConnectDefaults"].get("namespace", "")


def as_described(view: dict[str, Any], include: list[str]) -> dict[str, Any]:
    """DescribeClusters shows settings and configuration only when `include` asks for
    SETTINGS / CONFIGURATIONS, as ECS documents (Create/Update return them always)."""
    if "SETTINGS" not in include:
        view.pop("settings", None)
    if "CONFIGURATIONS" not in include:
        view.pop("configuration", None)
    return view


class ClusterOps:
    """UpdateCluster and UpdateClusterSettings over the service's clusters."""

    def __init__(self, cs: ClusterService) -> None:
        self.cs = cs

    def handlers(self) -> dict[str, Handler]:
        return {"UpdateCluster": self.update, "UpdateClusterSettings": self.update}

    async def update(self, body: dict[str, Any]) -> dict[str, Any]:
        """UpdateCluster and UpdateClusterSettings (the chain checked the body's shape)."""
        c = self.cs.cluster(body["cluster"])
        configure(c, body)
        await self.cs.commit(
            [
                self.cs.state.put_cluster(c),
                self.cs.event(c.name, "cluster", c.arn, "cluster updated"),
            ]
        )
        services = self.cs.active_services(c.name)
        return {"cluster": ecs_views.cluster_view(c, self.cs.state, self.cs.arns, services)}
