"""The state of record (controller/state_of_record.py): one loader reads every stored kind once
at startup, whatever the backend, and each committed change is published once on the feed.

The restart test runs a controller with security on over real gRPC, writes an object of
every stored kind through the API, restarts it, and finds them all again; it runs on real
SQLite and on the in-memory fake Store, which the operations cannot tell apart.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from controller.feed import Change, ChangeFeed
from controller.model import Cluster
from controller.state_of_record import KINDS, RESTORE_MARKER, StateOfRecord
from controller.store import SqliteStore
from controller.store_api import Delete, EventRow, Put, Store
from tests import memory_store
from tests.memory_store import MemoryStore
from tests.security_support import RawAgent, SecureController, register_msg, running
from tests.support import cloud_map

TD = {
    "family": "rec",
    "containerDefinitions": [
        {"name": "main", "image": "dockyard/sleeper:latest", "memory": 32, "essential": True}
    ],
}
ROLE = {"roleName": "rec-role", "accessKeyId": "AKIARECORD", "secretAccessKey": "s3cr3t"}

# ------------------------------------------------------------------ the feed (unit)


async def test_each_committed_change_is_published_once_after_its_commit(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path)
    record = StateOfRecord(store, ChangeFeed())
    seen: list[tuple[Change, bool]] = []

    def subscriber(changes: list[Change]) -> None:  # and whether the store has it already
        for c in changes:
            stored = c.key in {key for key, _, _ in memory_rows(store, c.kind)}
            seen.append((c, stored == (c.new is not None)))

    record.feed.subscribe(("cluster", "role"), subscriber)
    await store.open()
    first, second = Cluster("a", "arn:a"), Cluster("a", "arn:a", status="INACTIVE")
    await record.commit(
        [
            Put("cluster", "a", "a", None, obj=first),
            Put("cluster", "a", "a", None, obj=second),  # the same key twice: published once
            Put("task", "t", "a", {"unwatched": True}),  # nobody subscribed to tasks
            EventRow(1, 1.0, "a", "cluster", "a", "created", {}),
        ]
    )
    await record.commit([Delete("role", "r")])
    assert seen == [(Change("cluster", "a", second), True), (Change("role", "r", None), True)]


async def test_a_failed_commit_publishes_nothing(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path)
    record = StateOfRecord(store, ChangeFeed())
    seen: list[Change] = []
    record.feed.subscribe(("cluster",), seen.extend)
    bad = [Put("cluster", "a", "a", {"name": "a"}), EventRow(1, None, "", "", "", "", {})]  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await record.commit(bad)
    assert seen == [] and memory_rows(store, "cluster") == []


def memory_rows(store: MemoryStore, kind: str) -> list[tuple[str, str, dict[str, Any]]]:
    objects = memory_store._DIRS.get(store.data_dir, memory_store._Contents()).objects
    return [(key, cluster, doc) for (k, key), (cluster, doc) in objects.items() if k == kind]


# ------------------------------------------------------------------ one loader, any backend


def _counting_sqlite(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Real SQLite, with each kind the controller reads noted."""
    loads: list[str] = []
    real = SqliteStore.load_rows

    async def load_rows(self: SqliteStore, kind: str) -> list[tuple[str, str, dict[str, Any]]]:
        loads.append(kind)
        return await real(self, kind)

    monkeypatch.setattr(SqliteStore, "load_rows", load_rows)
    return loads


def _memory(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The in-memory fake as the controller's backend (the operations do not know it)."""
    loads: list[str] = []

    def open_store(spec: str, data_dir: Path) -> Store:
        store = MemoryStore(data_dir)
        store.loads = loads
        return store

    monkeypatch.setattr("controller.server.open_store", open_store)
    return loads


BACKENDS: dict[str, Callable[[pytest.MonkeyPatch], list[str]]] = {
    "sqlite": _counting_sqlite,
    "memory": _memory,
}


def _stored_kinds(data_dir: Path, backend: str) -> set[str]:
    if backend == "memory":
        return {kind for kind, _ in memory_store._DIRS[data_dir].objects}
    with sqlite3.connect(data_dir / "dockyard.db") as db:
        return {row[0] for row in db.execute("SELECT DISTINCT kind FROM objects")}


_REC_PROVIDERS = {
    "cluster": "rec",
    "capacityProviders": ["rec-cp"],
    "defaultCapacityProviderStrategy": [{"capacityProvider": "rec-cp", "weight": 1}],
}


def _write_every_kind(sc: SecureController) -> dict[str, Any]:
    """An object of every stored kind, through the API; what to find after a restart."""
    c = sc.client()
    c.call("CreateCluster", {"clusterName": "rec"})
    td = c.call("RegisterTaskDefinition", TD)["taskDefinition"]["taskDefinitionArn"]
    c.call("TagResource", {"resourceArn": td, "tags": [{"key": "team", "value": "a"}]})
    agent = RawAgent(sc.address).connect(register_msg("i-rec", _token(sc)))
    try:
        assert agent.next("registered")
        task = c.call("RunTask", {"taskDefinition": "rec"})["tasks"][0]["taskArn"]
    finally:
        agent.close()
    c.call("CreateService", {"serviceName": "svc", "taskDefinition": "rec", "desiredCount": 0})
    c.call("CreateRole", ROLE)
    c.call("PutSecret", {"name": "rec-secret", "value": "v"})
    c.call("PutAccountSetting", {"name": "containerInsights", "value": "enabled"})
    _autoscaling(sc)
    group = {"autoScalingGroupArn": "rec-hosts"}  # issue 22: a provider, a cluster's use of it
    c.call("CreateCapacityProvider", {"name": "rec-cp", "autoScalingGroupProvider": group})
    c.call("PutClusterCapacityProviders", _REC_PROVIDERS)
    key = c.call("CreateAccessKey", {"role": "readonly"})["accessKey"]["accessKeyId"]
    _token(sc)
    c.call("RevokeInstance", {"containerInstance": "i-rec"})
    sd = _cloud_map(sc)  # issue 21: namespaces, services, instances, operations
    sd.create_private_dns_namespace(Name="rec.local", Vpc="v")
    ns = sd.list_namespaces()["Namespaces"][0]["Id"]
    srv = sd.create_service(Name="rec", NamespaceId=ns)["Service"]["Id"]
    sd.register_instance(ServiceId=srv, InstanceId="r1", Attributes={"k": "v"})
    assert sc.ctl is not None
    return {"td": td, "task": task, "key": key, "binding": sc.ctl.service.roles._key}


AAS = {
    "ServiceNamespace": "ecs",
    "ScalableDimension": "ecs:service:DesiredCount",
    "ResourceId": "service/default/svc2",
}


def _aas(sc: SecureController, operation: str, body: dict[str, Any]) -> dict[str, Any]:
    """An Application Auto Scaling operation through the chain, in process (the native gRPC
    API serves ECS's and Dockyard's operations only)."""
    assert sc.ctl is not None
    ctl = sc.ctl
    return sc.on_loop(lambda: ctl.api.call(operation, body))


def _autoscaling(sc: SecureController) -> None:
    """A scalable target, a policy, a scheduled action and (its maximum lowering the desired
    count) a scaling activity."""
    c = sc.client()
    c.call("CreateService", {"serviceName": "svc2", "taskDefinition": "rec", "desiredCount": 1})
    _aas(sc, "RegisterScalableTarget", {**AAS, "MinCapacity": 0, "MaxCapacity": 0})
    tracking = {
        "TargetValue": 50.0,
        "PredefinedMetricSpecification": {
            "PredefinedMetricType": "ECSServiceAverageCPUUtilization"
        },
    }
    _aas(
        sc,
        "PutScalingPolicy",
        {
            **AAS,
            "PolicyName": "cpu",
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": tracking,
        },
    )
    _aas(sc, "PutScheduledAction", {**AAS, "ScheduledActionName": "s", "Schedule": "rate(1 day)"})
    # issue 22's scheduled tasks: an EventBridge rule (same chain, in process)
    _aas(sc, "PutRule", {"Name": "rec-rule", "ScheduleExpression": "rate(1 day)"})


def _found_autoscaling(sc: SecureController) -> None:
    ns = {"ServiceNamespace": "ecs"}
    assert len(_aas(sc, "DescribeScalableTargets", ns)["ScalableTargets"]) == 1
    assert len(_aas(sc, "DescribeScalingPolicies", ns)["ScalingPolicies"]) == 1
    assert len(_aas(sc, "DescribeScheduledActions", ns)["ScheduledActions"]) == 1
    [act] = _aas(sc, "DescribeScalingActivities", ns)["ScalingActivities"]
    assert act["Cause"] == "maximum capacity was set to 0"
    assert [r["Name"] for r in _aas(sc, "ListRules", {})["Rules"]] == ["rec-rule"]


def _token(sc: SecureController) -> str:
    return str(sc.client().call("CreateJoinToken", {"description": "rec"})["joinToken"]["token"])


def _find_every_kind(sc: SecureController, made: dict[str, Any]) -> None:
    c = sc.client()
    assert [x["status"] for x in c.call("DescribeClusters", {"clusters": ["rec"]})["clusters"]] == [
        "ACTIVE"
    ]
    assert c.call("DescribeTaskDefinition", {"taskDefinition": "rec:1"})["taskDefinition"]
    tags = c.call("ListTagsForResource", {"resourceArn": made["td"]})["tags"]
    assert tags == [{"key": "team", "value": "a"}]
    assert len(c.call("ListContainerInstances", {})["containerInstanceArns"]) == 1
    assert [t["taskArn"] for t in c.call("DescribeTasks", {"tasks": [made["task"]]})["tasks"]] == [
        made["task"]
    ]
    svc = c.call("DescribeServices", {"services": ["svc"]})["services"]
    assert [s["status"] for s in svc] == ["ACTIVE"]
    _found_autoscaling(sc)
    assert [r["roleName"] for r in c.call("ListRoles", {})["roles"]] == ["rec-role"]
    assert [s["name"] for s in c.call("ListSecrets", {})["secrets"]] == ["rec-secret"]
    settings = c.call("ListAccountSettings", {"name": "containerInsights"})["settings"]
    assert [s["value"] for s in settings] == ["enabled"]
    found = c.call("DescribeCapacityProviders", {})["capacityProviders"]
    assert [p["name"] for p in found] == ["rec-cp"]
    rec = c.call("DescribeClusters", {"clusters": ["rec"]})["clusters"][0]
    assert rec["capacityProviders"] == ["rec-cp"]
    keys = [k["accessKeyId"] for k in c.call("ListAccessKeys", {})["accessKeys"]]
    assert made["key"] in keys and len(keys) == 2  # and the bootstrap admin key
    assert len(c.call("ListJoinTokens", {})["joinTokens"]) == 2
    assert sc.ctl is not None
    gate = sc.ctl.security.gate
    assert gate is not None and "i-rec" in gate.revoked and "i-rec" in gate.secrets
    assert sc.ctl.service.roles._key == made["binding"]  # tasks keep their credentials ids
    sd = _cloud_map(sc)
    [srv] = sd.list_services()["Services"]
    assert [i["Id"] for i in sd.list_instances(ServiceId=srv["Id"])["Instances"]] == ["r1"]
    assert len(sd.list_operations()["Operations"]) == 2  # the namespace, the registration


def _cloud_map(sc: SecureController) -> Any:
    """boto3's Cloud Map client, signed with the admin key."""
    creds = sc.admin()
    return cloud_map(sc.http, creds.access_key_id, creds.secret_access_key)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_a_restart_loads_every_kind_once_through_the_one_loader(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = BACKENDS[backend](monkeypatch)
    data = tmp_path / "controller"
    with running(data, open_loopback=False) as sc:
        made = _write_every_kind(sc)
    assert _stored_kinds(data, backend) <= {*KINDS, "sealing"}  # every stored kind is listed
    assert _stored_kinds(data, backend) >= set(KINDS)  # and the test wrote each one
    loads.clear()
    with running(data) as sc:
        # each kind read once, at start (and the restore marker looked for, once)
        assert Counter(loads) == Counter([*KINDS, "sealing", RESTORE_MARKER])
        _find_every_kind(sc, made)
