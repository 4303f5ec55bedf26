"""Scheduled tasks across a failover (issue 22): two controllers on one real etcd, the leader
SIGKILLed before a rule's firing; the standby, elected, fires it once (the rule and its next
firing are in the shared store), on a simulated agent (`dockyard sim`, no Docker)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from dockyard import auth
from tests.etcd_fixture import EtcdCluster
from tests.support import BOTO_DEFAULT_RETRIES, aws_client, wait_for
from tests.test_events_rules import TD, next_minute, once_at
from tests.test_ha import Ctl, controllers, etcd, leader_and_standby, simulated_agents  # noqa: F401


def _client(ctl: Ctl, api: str) -> Any:
    """boto3 on a controller's HTTP endpoint (--auth off: the signature is not checked)."""
    return aws_client(
        api,
        f"http://127.0.0.1:{ctl.http_port}",
        auth.Credentials("test", "test"),
        retries=BOTO_DEFAULT_RETRIES,
    )


@pytest.mark.timeout(240)
def test_the_new_leader_fires_a_rule_once_after_a_failover(
    etcd: EtcdCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    with controllers(etcd, tmp_path, "a", "b", tls=False) as ctls:
        a, b = leader_and_standby(ctls)
        a.client().call("CreateCluster", {"clusterName": "default"})
        a.client().call("RegisterTaskDefinition", TD)
        with simulated_agents([a, b], tmp_path, 1):
            wait_for(lambda: a.client().call("ListContainerInstances", {"cluster": "default"}))
            at = next_minute(margin=20)
            events = _client(a, "events")
            events.put_rule(Name="failover", ScheduleExpression=once_at(at))
            target = {
                "Id": "run",
                "Arn": "arn:aws:ecs:us-east-1:000000000000:cluster/default",
                "EcsParameters": {"TaskDefinitionArn": "nightly"},
            }
            events.put_targets(Rule="failover", Targets=[target])
            a.signal(signal.SIGKILL)  # the leader dies before the firing
            wait_for(b.serving, 30, what="b leading")
            ecs = _client(b, "ecs")

            def started() -> list[str]:
                return list(
                    ecs.list_tasks(cluster="default", startedBy="events-rule/failover")["taskArns"]
                )

            [arn] = wait_for(started, 90, 0.5, what="the rule's task on the new leader")
            rule = b.client().call("DescribeSchedules", {})["schedules"][0]
            assert rule["lastFiring"] == at.timestamp() and rule["nextFiring"] is None
            assert started() == [arn]
