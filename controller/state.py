"""The controller's in-memory cluster state: objects, indexes and live resource accounting.

Like dask.distributed's scheduler state, it is explicit and synchronous: no I/O happens
here, so a placement decision and the claims it makes are one atomic step on the event loop.
The store is written by the service layer with what these methods changed.
`validate()` checks the invariants the tests rely on.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from controller import taskdef_host
from controller.model import Cluster, Instance, Task, TaskDefinition, to_doc
from controller.placement.model import ChangeLog, InstanceView, LiveViews
from controller.records import Put


def task_ports(task: Task) -> tuple[set[int], set[int]]:
    tcp: set[int] = set()
    udp: set[int] = set()
    for c in task.containers:
        for p in c.ports:
            (udp if p.protocol == "udp" else tcp).add(p.host_port)
    return tcp, udp


class ClusterState:
    def __init__(self) -> None:
        self.clusters: dict[str, Cluster] = {}
        self.taskdefs: dict[str, dict[int, TaskDefinition]] = defaultdict(dict)
        self.tasks: dict[str, Task] = {}
        self.instances: dict[str, Instance] = {}
        self.views: dict[str, InstanceView] = {}
        # tasks an instance's agent must know about (not yet STOPPED and reported)
        self.tasks_on: dict[str, set[str]] = defaultdict(set)
        self.tasks_in_cluster: dict[str, set[str]] = defaultdict(set)
        # (cluster, service) -> its tasks in tasks_on: what the services' scheduler plans with
        self.tasks_of_service: dict[tuple[str, str], set[str]] = defaultdict(set)
        # what changed since the services' scheduler last took them (take_changes)
        self.changed_services: set[tuple[str, str]] = set()
        self.changed_clusters: set[str] = set()
        self.client_tokens: dict[tuple[str, str], list[str]] = {}
        # (cluster, instance id) -> ARN and cluster -> ARNs: a registration storm of N
        # agents was O(N^2) with scans (each register looks its instance up by id)
        self.instance_ids: dict[tuple[str, str], str] = {}
        self.instances_in_cluster: dict[str, dict[str, None]] = defaultdict(dict)
        self._cluster_views: dict[str, LiveViews] = {}  # invalidated on change
        self.view_changes = ChangeLog()  # views changed in place by claims (placement reads it)
        self._task_gpus: dict[str, int] = {}  # task -> GPUs it claimed (issue 18)
        # PROVISIONING tasks waiting for a capacity provider's room, oldest first (issue 22)
        self.waiting: dict[str, None] = {}

    # ------------------------------------------------------------------ objects

    def put_cluster(self, cluster: Cluster) -> Put:
        self.clusters[cluster.name] = cluster
        return Put("cluster", cluster.key, cluster.name, to_doc(cluster))

    def put_taskdef(self, td: TaskDefinition) -> Put:
        self.taskdefs[td.family][td.revision] = td
        return Put("taskdef", td.key, "", to_doc(td))

    def put_instance(self, inst: Instance) -> Put:
        self._index_instance(inst)
        self.refresh_view(inst.arn)
        self.changed_clusters.add(inst.cluster)
        return Put("instance", inst.key, inst.cluster, None, obj=inst)

    def _index_instance(self, inst: Instance) -> None:
        self.instances[inst.arn] = inst
        self.instance_ids[(inst.cluster, inst.id)] = inst.arn
        self.instances_in_cluster[inst.cluster][inst.arn] = None

    def add_task(self, task: Task) -> Put:
        """Index a new task and claim its resources on its instance."""
        self.tasks[task.arn] = task
        self.tasks_in_cluster[task.cluster].add(task.arn)
        if task.token_key:
            self.client_tokens.setdefault(task.token_key, []).append(task.arn)
        if task.active and task.instance_arn:
            self._put_on_instance(task)
            self._claim(task, +1)
        return self.save_task(task)

    def save_task(self, task: Task) -> Put:
        """Every change to a task ends here: note its service changed (the gauges count it
        from the change feed once committed: controller/metrics.py)."""
        task.version += 1
        self._index_waiting(task)
        if task.service:
            self.changed_services.add((task.cluster, task.service))
        return Put("task", task.key, task.cluster, None, obj=task)

    def _index_waiting(self, task: Task) -> None:
        if task.waiting:
            self.waiting.setdefault(task.arn, None)
        else:
            self.waiting.pop(task.arn, None)

    def place_waiting(self, task: Task) -> Put:
        """A waiting task was bound to an instance (launch.bind): claim its resources there."""
        self._put_on_instance(task)
        self._claim(task, +1)
        return self.save_task(task)

    def _put_on_instance(self, task: Task) -> None:
        self.tasks_on[task.instance_arn].add(task.arn)
        if task.service:
            self.tasks_of_service[(task.cluster, task.service)].add(task.arn)

    def task_stopped(self, task: Task) -> None:
        """A task reached STOPPED: release what it held on its instance."""
        if task.instance_arn in self.views:
            self._claim(task, -1)

    def forget_on_instance(self, task: Task) -> None:
        self.tasks_on[task.instance_arn].discard(task.arn)
        if task.service:
            self.tasks_of_service[(task.cluster, task.service)].discard(task.arn)

    def take_changes(self) -> tuple[set[tuple[str, str]], set[str]]:
        """(services whose tasks changed, clusters whose instances changed) since the last
        call: the services' scheduler plans again only what these (or time) can affect."""
        changes = (self.changed_services, self.changed_clusters)
        self.changed_services, self.changed_clusters = set(), set()
        return changes

    # ------------------------------------------------------------------ accounting

    def _claim(self, task: Task, sign: int) -> None:
        view = self.views.get(task.instance_arn)
        if view is None:
            return
        self.view_changes.append(view.arn)
        view.cpu_free -= sign * task.cpu
        view.memory_free -= sign * task.memory
        gpus = self._gpus_of(task) if sign > 0 else self._task_gpus.pop(task.arn, 0)
        view.gpu_free -= sign * gpus
        view.running_tasks_count += sign
        if task.group:
            count = view.task_groups.get(task.group, 0) + sign
            if count > 0:
                view.task_groups[task.group] = count
            else:
                view.task_groups.pop(task.group, None)
        tcp, udp = task_ports(task)
        if sign > 0:
            view.tcp_ports_used |= tcp
            view.udp_ports_used |= udp
        else:
            inst = self.instances[task.instance_arn]
            view.tcp_ports_used -= tcp - set(inst.reserved_tcp)
            view.udp_ports_used -= udp - set(inst.reserved_udp)

    def _gpus_of(self, task: Task) -> int:
        """GPUs a task holds (resourceRequirements), remembered until it releases them."""
        td = self.taskdefs.get(task.family, {}).get(task.revision)
        gpus = taskdef_host.task_gpus(td.doc) if td is not None else 0
        if gpus:
            self._task_gpus[task.arn] = gpus
        return gpus

    def refresh_view(self, instance_arn: str) -> InstanceView:
        """Rebuild an instance's placement view from its totals and its active tasks."""
        inst = self.instances[instance_arn]
        view = InstanceView(
            arn=inst.arn,
            instance_id=inst.id,
            status=inst.status,
            connected=inst.connected and inst.docker_healthy,
            attributes=inst.all_attributes,
            agent_version=inst.agent_version,
            registered_at=inst.registered_at,
            cpu_free=inst.cpu_total,
            memory_free=inst.memory_total,
            tcp_ports_used=set(inst.reserved_tcp),
            udp_ports_used=set(inst.reserved_udp),
            running_tasks_count=0,
            task_groups={},
            cpu_total=inst.cpu_total,
            memory_total=inst.memory_total,
            gpu_free=len(inst.gpu_ids),
        )
        self.views[instance_arn] = view
        self._cluster_views.pop(inst.cluster, None)
        for arn in self.tasks_on.get(instance_arn, ()):
            task = self.tasks[arn]
            if task.active:
                self._claim(task, +1)
        return view

    # ------------------------------------------------------------------ queries

    def cluster_tasks(self, cluster: str) -> list[Task]:
        return [self.tasks[a] for a in self.tasks_in_cluster.get(cluster, ())]

    def cluster_views(self, cluster: str) -> LiveViews:
        """Placement views of a cluster's instances; the list is cached (views update in
        place as tasks claim and release resources, and are replaced by refresh_view)."""
        views = self._cluster_views.get(cluster)
        if views is None:
            arns = self.instances_in_cluster.get(cluster, {})
            views = LiveViews([self.views[a] for a in arns if a in self.views], self.view_changes)
            self._cluster_views[cluster] = views
        return views

    def cluster_instances(self, cluster: str) -> list[Instance]:
        return [self.instances[a] for a in self.instances_in_cluster.get(cluster, ())]

    def instance_tasks(self, instance_arn: str) -> list[Task]:
        return [self.tasks[a] for a in self.tasks_on.get(instance_arn, ())]

    def instance_by_id(self, cluster: str, instance_id: str) -> Instance | None:
        arn = self.instance_ids.get((cluster, instance_id))
        return self.instances.get(arn) if arn else None

    def waiting_tasks(self) -> list[Task]:
        """PROVISIONING tasks waiting for a capacity provider's room, oldest first."""
        return [self.tasks[a] for a in self.waiting]

    def service_tasks(self, cluster: str, service: str) -> list[Task]:
        """The service's tasks its agents still know about (not yet STOPPED and reported)."""
        return [self.tasks[a] for a in self.tasks_of_service.get((cluster, service), ())]

    def validate(self) -> None:
        """Invariants: accounting matches the tasks, no instance is overcommitted."""
        for arn, view in self.views.items():
            expect = ClusterState._expected_usage(self, arn)
            got = (view.cpu_free, view.memory_free, view.running_tasks_count)
            assert got == expect, f"{arn}: accounting {got} != {expect}"
            assert view.cpu_free >= 0 and view.memory_free >= 0, f"{arn} overcommitted"

    def _expected_usage(self, arn: str) -> tuple[int, int, int]:
        inst = self.instances[arn]
        active = [t for t in self.instance_tasks(arn) if t.active]
        return (
            inst.cpu_total - sum(t.cpu for t in active),
            inst.memory_total - sum(t.memory for t in active),
            len(active),
        )

    def load(self, kind: str, obj: Any) -> None:
        """Insert an object read back from the store (startup)."""
        if kind == "cluster":
            self.clusters[obj.name] = obj
        elif kind == "taskdef":
            self.taskdefs[obj.family][obj.revision] = obj
        elif kind == "instance":
            obj.connected = False  # nobody is connected to a controller that just started
            self._index_instance(obj)
        elif kind == "task":
            self.tasks[obj.arn] = obj
            self.tasks_in_cluster[obj.cluster].add(obj.arn)
            self._index_waiting(obj)
            if obj.token_key:
                self.client_tokens.setdefault(obj.token_key, []).append(obj.arn)
            if obj.instance_arn and not (
                obj.last_status == "STOPPED" and obj.desired_status == "STOPPED"
            ):
                self._put_on_instance(obj)
