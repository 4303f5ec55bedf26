"""Scheduled tasks (issue 22): EventBridge's rules API through boto3's `events` client
against a real controller process (every response checked against botocore's model: the
controller runs with DOCKYARD_CHECK_RESPONSES=1), the refusals, firings with an injected
clock in an in-process controller, and a real-time firing across a controller restart.
Tasks run on `dockyard sim` agents (the real agent protocol, no Docker)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from dockyard import shellenv
from tests import test_autoscaling_api as aas_tests
from tests.security_support import SecureController, running
from tests.support import LocalCluster, Proc, wait_for
from tests.test_autoscaling_api import client

lc = aas_tests.lc  # its fixture: a controller process answering with checked responses
CLUSTER_ARN = "arn:aws:ecs:us-east-1:000000000000:cluster/sched"
TD = {
    "family": "nightly",
    "containerDefinitions": [{"name": "job", "image": "sim", "cpu": 64, "memory": 32}],
}


def sim(root: Path, address: str, name: str = "sim") -> Proc:
    """One simulated agent (`dockyard sim`), joined to cluster `sched`."""
    argv = [sys.executable, "-m", "dockyard.cli.main", "sim", "--controller", address]
    extra = ["--agents", "1", "--report-every", "0", "--cluster", "sched"]
    proc = Proc(name, [*argv, *extra], root / f"{name}.log")
    proc.start()
    return proc


def target(**ecs: Any) -> dict[str, Any]:
    return {
        "Id": "run",
        "Arn": CLUSTER_ARN,
        "EcsParameters": {"TaskDefinitionArn": "nightly", "TaskCount": 1, **ecs},
    }


def cli(lc: LocalCluster, *args: str) -> str:
    argv = [sys.executable, "-m", "dockyard.cli.main", *args, "--controller", lc.address]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_operation_through_boto3(lc: LocalCluster) -> None:
    ecs, events = client(lc, "ecs"), client(lc, "events")
    ecs.create_cluster(clusterName="sched")
    ecs.register_task_definition(**TD)
    arn = events.put_rule(Name="nightly", ScheduleExpression="cron(0 3 * * ? *)")["RuleArn"]
    assert arn == "arn:aws:events:us-east-1:000000000000:rule/nightly"
    events.put_rule(
        Name="often", ScheduleExpression="rate(5 minutes)", State="DISABLED", Description="d"
    )
    rule = events.describe_rule(Name="nightly")
    assert (rule["State"], rule["ScheduleExpression"]) == ("ENABLED", "cron(0 3 * * ? *)")
    assert rule["EventBusName"] == "default"
    page = events.list_rules(Limit=1)
    assert [r["Name"] for r in page["Rules"]] == ["nightly"] and page["NextToken"]
    rest = events.list_rules(Limit=1, NextToken=page["NextToken"])
    assert [(r["Name"], r["State"]) for r in rest["Rules"]] == [("often", "DISABLED")]
    assert [r["Name"] for r in events.list_rules(NamePrefix="of")["Rules"]] == ["often"]

    full = target(
        TaskCount=2,
        LaunchType="EC2",
        Group="batch",
        PlacementConstraints=[{"type": "distinctInstance"}],
        PlacementStrategy=[{"type": "spread", "field": "instanceId"}],
        Tags=[{"Key": "team", "Value": "ops"}],
    )
    put = events.put_targets(Rule="nightly", Targets=[full])
    assert put["FailedEntryCount"] == 0
    [got] = events.list_targets_by_rule(Rule="nightly")["Targets"]
    assert got["EcsParameters"]["PlacementStrategy"] == [{"type": "spread", "field": "instanceId"}]
    assert got["EcsParameters"]["TaskCount"] == 2

    events.enable_rule(Name="often")
    events.disable_rule(Name="nightly")
    states = {r["Name"]: r["State"] for r in events.list_rules()["Rules"]}
    assert states == {"nightly": "DISABLED", "often": "ENABLED"}
    table = cli(lc, "schedules", "list")
    assert "often" in table and "rate(5 minutes)" in table and "sched" in table
    listed = json.loads(cli(lc, "schedules", "list", "--output", "json"))["schedules"]
    often = next(s for s in listed if s["name"] == "often")
    assert 0 < often["nextFiring"] - time.time() <= 300

    with pytest.raises(ClientError, match="has targets"):
        events.delete_rule(Name="nightly")
    removed = events.remove_targets(Rule="nightly", Ids=["run", "nope"])
    assert removed["FailedEntryCount"] == 1 and removed["FailedEntries"][0]["TargetId"] == "nope"
    assert events.list_targets_by_rule(Rule="nightly").get("Targets", []) == []
    events.delete_rule(Name="nightly")
    assert [r["Name"] for r in events.list_rules()["Rules"]] == ["often"]
    with pytest.raises(ClientError) as err:
        events.describe_rule(Name="nightly")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"


REFUSALS: list[tuple[str, dict[str, Any], str]] = [
    ("put_rule", {"Name": "p", "EventPattern": '{"source": ["aws.ec2"]}'}, "EventPattern"),
    ("put_rule", {"Name": "p", "ScheduleExpression": "rate(1 minutes)"}, "ScheduleExpression"),
    ("put_rule", {"Name": "p", "ScheduleExpression": "cron(0 3 L * ? *)"}, "L, W and #"),
    (
        "put_rule",
        {"Name": "p", "ScheduleExpression": "rate(1 day)", "EventBusName": "other"},
        "EventBusName",
    ),
    (
        "put_rule",
        {"Name": "p", "ScheduleExpression": "rate(1 day)", "Tags": [{"Key": "k", "Value": "v"}]},
        "Tags",
    ),
    ("put_targets", {"Targets": [{**target(), "Arn": "arn:aws:lambda:x"}]}, "Targets[0].Arn"),
    ("put_targets", {"Targets": [{"Id": "x", "Arn": CLUSTER_ARN}]}, "EcsParameters is required"),
    (
        "put_targets",
        {"Targets": [{**target(), "SqsParameters": {"MessageGroupId": "g"}}]},
        "SqsParameters",
    ),
    ("put_targets", {"Targets": [{**target(), "RetryPolicy": {}}]}, "RetryPolicy"),
    ("put_targets", {"Targets": [target(LaunchType="FARGATE")]}, "LaunchType"),
    ("put_targets", {"Targets": [target(PlatformVersion="LATEST")]}, "PlatformVersion"),
    ("put_targets", {"Targets": [target(TaskCount=11)]}, "TaskCount"),
    (
        "put_targets",
        {"Targets": [target(NetworkConfiguration={"awsvpcConfiguration": {"Subnets": ["s"]}})]},
        "NetworkConfiguration",
    ),
    ("put_targets", {"Targets": [{**target(), "Input": "not json"}]}, "Input"),
    ("put_targets", {"Targets": [{**target(), "InputPath": "$.detail"}]}, "InputPath"),
]


def test_refusals_name_the_field(lc: LocalCluster) -> None:
    events = client(lc, "events")
    events.put_rule(Name="r", ScheduleExpression="rate(1 hour)")
    for call, kwargs, words in REFUSALS:
        body = {"Rule": "r", **kwargs} if call == "put_targets" else kwargs
        with pytest.raises(ClientError) as err:
            getattr(events, call)(**body)
        assert err.value.response["Error"]["Code"] == "ValidationException", (call, kwargs)
        assert words in err.value.response["Error"]["Message"], (call, kwargs)
    assert events.list_targets_by_rule(Rule="r").get("Targets", []) == []  # nothing half-stored
    assert [r["Name"] for r in events.list_rules()["Rules"]] == ["r"]
    with pytest.raises(ClientError) as err:
        events.put_targets(Rule="missing", Targets=[target()])
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"


# ---------------------------------------------------------------- firing, injected clock


def _call(sc: SecureController, operation: str, body: dict[str, Any]) -> dict[str, Any]:
    assert sc.ctl is not None
    ctl = sc.ctl
    return sc.on_loop(lambda: ctl.api.call(operation, body))


def _started(sc: SecureController, rule: str) -> list[str]:
    body = {"cluster": "sched", "startedBy": f"events-rule/{rule}"}
    arns = [*_call(sc, "ListTasks", body)["taskArns"]]
    arns += _call(sc, "ListTasks", {**body, "desiredStatus": "STOPPED"})["taskArns"]
    return arns


def _fired(sc: SecureController, rule: str) -> list[str]:
    assert sc.ctl is not None
    return [e.message for e in sc.ctl.events.recent if e.subject == f"events-rule/{rule}"]


def test_a_late_firing_runs_once_and_a_repeat_is_deduplicated(tmp_path: Path) -> None:
    with running(tmp_path / "c", open_loopback=True, disconnect_grace=1.0) as sc:
        assert sc.ctl is not None
        rules = sc.ctl.schedules
        now = [1_800_000_000.0]
        rules.clock = lambda: now[0]
        agent = sim(tmp_path, sc.address)
        try:
            _call(sc, "CreateCluster", {"clusterName": "sched"})
            _call(sc, "RegisterTaskDefinition", TD)
            wait_for(
                lambda: _call(sc, "ListContainerInstances", {"cluster": "sched"})[
                    "containerInstanceArns"
                ],
                30,
                what="the simulated agent joined",
            )
            _call(sc, "PutRule", {"Name": "every5", "ScheduleExpression": "rate(5 minutes)"})
            overrides = {
                "containerOverrides": [
                    {"name": "job", "environment": [{"name": "REPORT", "value": "daily"}]}
                ]
            }
            full = {
                **target(Group="reports", Tags=[{"Key": "team", "Value": "ops"}]),
                "Input": json.dumps(overrides),
            }
            _call(sc, "PutTargets", {"Rule": "every5", "Targets": [full]})
            sc.on_loop(rules.tick)
            assert _started(sc, "every5") == []  # not due yet

            now[0] += 17 * 60  # three periods came due (5, 10, 15 min): one firing
            wait_for(lambda: _started(sc, "every5"), 10, what="the late firing's task")
            sc.on_loop(rules.tick)
            assert len(_started(sc, "every5")) == 1
            assert len(_fired(sc, "every5")) == 1
            assert "started 1 task(s)" in _fired(sc, "every5")[0]
            rule = rules.rules["every5"]
            assert rule["_next"] == 1_800_000_000 + 20 * 60  # the next period, none skipped
            # PutRule again with the same expression (a description added) keeps the firing
            again = {"Name": "every5", "ScheduleExpression": "rate(5 minutes)", "Description": "d"}
            _call(sc, "PutRule", again)
            assert rules.rules["every5"]["_next"] == rule["_next"]

            # a firing whose rule update was lost (a crash after RunTask) fires the same due
            # time again: RunTask's client token answers with the task it already started
            sc.on_loop(lambda: rules._save({**rule, "_next": rule["_last"]}))
            sc.on_loop(rules.tick)
            assert len(_started(sc, "every5")) == 1

            _call(sc, "DisableRule", {"Name": "every5"})
            now[0] += 10 * 60
            sc.on_loop(rules.tick)
            assert len(_started(sc, "every5")) == 1  # disabled: not fired
            _call(sc, "EnableRule", {"Name": "every5"})
            sc.on_loop(rules.tick)
            assert len(_started(sc, "every5")) == 1  # what fell due while disabled is not run
            now[0] += 5 * 60
            wait_for(lambda: len(_started(sc, "every5")) == 2, 10, what="the next firing")
            [task] = _call(
                sc,
                "DescribeTasks",
                {"cluster": "sched", "tasks": _started(sc, "every5")[:1], "include": ["TAGS"]},
            )["tasks"]
            assert task["startedBy"] == "events-rule/every5"
            assert task["taskDefinitionArn"].endswith("task-definition/nightly:1")
            assert task["group"] == "reports"  # the target's EcsParameters, as RunTask's
            assert task["tags"] == [{"key": "team", "value": "ops"}]
            env = task["overrides"]["containerOverrides"][0]["environment"]
            assert env == [{"name": "REPORT", "value": "daily"}]  # the target's Input
        finally:
            agent.kill(signal.SIGKILL)


def test_a_firing_without_capacity_is_an_event_not_a_retry(tmp_path: Path) -> None:
    with running(tmp_path / "c") as sc:
        assert sc.ctl is not None
        rules = sc.ctl.schedules
        now = [1_800_000_000.0]
        rules.clock = lambda: now[0]
        _call(sc, "CreateCluster", {"clusterName": "sched"})
        _call(sc, "RegisterTaskDefinition", TD)
        _call(sc, "PutRule", {"Name": "daily", "ScheduleExpression": "cron(0 3 * * ? *)"})
        _call(sc, "PutTargets", {"Rule": "daily", "Targets": [target()]})
        now[0] += 86400
        sc.on_loop(rules.tick)
        sc.on_loop(rules.tick)
        [message] = _fired(sc, "daily")
        assert "started no task" in message and "No Container Instances" in message


# ---------------------------------------------------------------- real time, across a restart


def next_minute(margin: float) -> dt.datetime:
    """The first whole minute (UTC) at least `margin` seconds from now."""
    at = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    while (at - dt.datetime.now(dt.UTC)).total_seconds() < margin:
        at += dt.timedelta(minutes=1)
    return at


def once_at(at: dt.datetime) -> str:
    """A cron expression that fires once only, at `at` (UTC, a whole minute)."""
    return f"cron({at.minute} {at.hour} {at.day} {at.month} ? {at.year})"


def test_a_firing_due_while_the_controller_is_down_runs_once_after(tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOCKYARD_CHECK_RESPONSES", "1")
        lc = LocalCluster(tmp_path, grace=15.0)  # the sim's agent reconnects in that time
        agent: Proc | None = None
        try:
            lc.start_controller()
            agent = sim(tmp_path, lc.address)
            _fire_across_a_restart(lc)
        finally:
            if agent is not None:
                agent.kill(signal.SIGKILL)
            lc.stop()


def _fire_across_a_restart(lc: LocalCluster) -> None:
    ecs, events = client(lc, "ecs"), client(lc, "events")
    ecs.create_cluster(clusterName="sched")
    ecs.register_task_definition(**TD)
    wait_for(lambda: ecs.list_container_instances(cluster="sched")["containerInstanceArns"], 30)
    at = next_minute(margin=10)
    events.put_rule(Name="once", ScheduleExpression=once_at(at))
    events.put_targets(Rule="once", Targets=[target()])
    assert lc.controller is not None
    lc.controller.kill(signal.SIGTERM)  # down across the firing
    wait_for(lambda: dt.datetime.now(dt.UTC) > at + dt.timedelta(seconds=2), 80, 0.5)
    lc.start_controller()
    ecs = client(lc, "ecs")

    def started() -> list[str]:
        return list(ecs.list_tasks(cluster="sched", startedBy="events-rule/once")["taskArns"])

    [arn] = wait_for(started, 20, what="the missed firing's task")
    wait_for(
        lambda: (
            ecs.describe_tasks(cluster="sched", tasks=[arn])["tasks"][0]["lastStatus"] == "RUNNING"
        ),
        20,
        what="the task RUNNING",
    )
    # the firing is recorded as done (stored: nothing left to fire) and ran one task
    [once_row] = json.loads(cli(lc, "schedules", "list", "--output", "json"))["schedules"]
    assert once_row["lastFiring"] == at.timestamp() and once_row["nextFiring"] is None
    assert started() == [arn]
    fired = cli(lc, "events", "--cluster", "sched")
    assert fired.count("scheduled rule once fired") == 1, fired


def test_dockyard_env_points_boto3_events_at_the_controller(
    lc: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """boto3's `events` client with nothing but what `dockyard env` exports."""
    creds = lc.credentials()
    assert creds is not None
    target_ = shellenv.Target(lc.address, lc.http, "us-east-1", None, creds)
    for line in shellenv.exports(target_).splitlines():
        verb, *pairs = shlex.split(line)
        for name, value in (kv.split("=", 1) for kv in pairs if verb == "export"):
            monkeypatch.setenv(name, value)
    assert os.environ["AWS_ENDPOINT_URL_EVENTS"] == lc.http
    assert os.environ["AWS_ENDPOINT_URL_EVENTBRIDGE"] == lc.http  # the one botocore reads
    events = boto3.Session().client("events")
    events.put_rule(Name="from-env", ScheduleExpression="rate(1 hour)")
    assert [r["Name"] for r in events.list_rules()["Rules"]] == ["from-env"]
