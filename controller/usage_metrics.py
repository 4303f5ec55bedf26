"""Prometheus series of the agents' usage reports, with bounded cardinality.

By default one series per service (CPU and memory used, and ECS's utilisation of what the
tasks reserve) and one per instance: a scrape's size follows services and hosts, never
tasks, whose ids churn with every deployment. `dockyard controller --metrics-per-task` adds
one series per running task (its id, and its service) for those who want them.

A collector over the controller's own UsageHistory, in a registry of its own (rendered
after the global one by /metrics): several in-process controllers never mix their series.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from controller.usage import UsageHistory
from dockyard.arns import last_part


class UsageCollector(Collector):
    def __init__(self, usage: UsageHistory, per_task: bool = False) -> None:
        self.usage = usage
        self.per_task = per_task

    def collect(self) -> Iterator[GaugeMetricFamily]:
        svc = ("cluster", "service")
        families = {
            "svc_cpu": GaugeMetricFamily(
                "dockyard_service_cpu_units", "CPU units used by the service's tasks", labels=svc
            ),
            "svc_mem": GaugeMetricFamily(
                "dockyard_service_memory_bytes", "memory used by the service's tasks", labels=svc
            ),
            "svc_cpu_pct": GaugeMetricFamily(
                "dockyard_service_cpu_utilization_percent",
                "ECSServiceAverageCPUUtilization: CPU used over CPU reserved, last minute",
                labels=svc,
            ),
            "svc_mem_pct": GaugeMetricFamily(
                "dockyard_service_memory_utilization_percent",
                "ECSServiceAverageMemoryUtilization: memory used over reserved, last minute",
                labels=svc,
            ),
            "inst_cpu": GaugeMetricFamily(
                "dockyard_instance_task_cpu_units",
                "CPU units used by the tasks on the instance",
                labels=("cluster", "instance"),
            ),
            "inst_mem": GaugeMetricFamily(
                "dockyard_instance_task_memory_bytes",
                "memory used by the tasks on the instance",
                labels=("cluster", "instance"),
            ),
        }
        task = ("cluster", "service", "task")
        if self.per_task:
            families["task_cpu"] = GaugeMetricFamily(
                "dockyard_task_cpu_units", "CPU units used by the task", labels=task
            )
            families["task_mem"] = GaugeMetricFamily(
                "dockyard_task_memory_bytes", "memory used by the task", labels=task
            )
        for cluster in sorted(self.usage.clusters()):
            self._cluster(cluster, families)
        yield from families.values()

    def _cluster(self, cluster: str, f: dict[str, GaugeMetricFamily]) -> None:
        for name, rows in self.usage.services(cluster).items():
            labels = [cluster, name]
            f["svc_cpu"].add_metric(labels, sum(r.latest.cpu_units for r in rows))
            f["svc_mem"].add_metric(labels, sum(r.latest.memory_bytes for r in rows))
            now = self.usage.service_now(cluster, name)
            if now.cpu is not None:
                f["svc_cpu_pct"].add_metric(labels, now.cpu)
            if now.memory is not None:
                f["svc_mem_pct"].add_metric(labels, now.memory)
        for arn, rows in self.usage.instances(cluster).items():
            labels = [cluster, last_part(arn)]
            f["inst_cpu"].add_metric(labels, sum(r.latest.cpu_units for r in rows))
            f["inst_mem"].add_metric(labels, sum(r.latest.memory_bytes for r in rows))
        if self.per_task:
            for r in self.usage.tasks(cluster):
                labels = [cluster, r.service, last_part(r.task_arn)]
                f["task_cpu"].add_metric(labels, r.latest.cpu_units)
                f["task_mem"].add_metric(labels, r.latest.memory_bytes)


def registry(usage: UsageHistory, per_task: bool = False) -> CollectorRegistry:
    """A registry of the usage series alone, for one controller."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(UsageCollector(usage, per_task))
    return reg
