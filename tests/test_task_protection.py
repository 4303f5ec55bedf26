"""Task scale-in protection (issue 22) through real boto3 against a real controller process
with simulated agents (responses checked against botocore's model): UpdateTaskProtection and
GetTaskProtection, ECS's limits, protection surviving a restart, and a service's scale-in
keeping the protected task."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support import (
    LocalCluster,
    simulated_cluster,
    wait_for,
)
from tests.test_ecs_compat import make_client, taskdef


@pytest.fixture
def lc(tmp_path: Path) -> Iterator[LocalCluster]:
    """A controller and one simulated agent in the default cluster."""
    with simulated_cluster(tmp_path, agents=1) as cluster:
        yield cluster


def running(ecs: Any, **kw: Any) -> list[str]:
    arns = ecs.list_tasks(desiredStatus="RUNNING", **kw)["taskArns"]
    if not arns:
        return []
    tasks = ecs.describe_tasks(tasks=arns)["tasks"]
    return sorted(t["taskArn"] for t in tasks if t["lastStatus"] == "RUNNING")


def test_update_and_get_task_protection(lc: LocalCluster) -> None:
    ecs = make_client(lc)
    ecs.register_task_definition(**taskdef("prot"))
    arns = [t["taskArn"] for t in ecs.run_task(taskDefinition="prot", count=2)["tasks"]]
    before = time.time()
    out = ecs.update_task_protection(
        cluster="default", tasks=[arns[0]], protectionEnabled=True, expiresInMinutes=30
    )
    (done,) = out["protectedTasks"]
    assert done["taskArn"] == arns[0] and done["protectionEnabled"] is True
    expires = done["expirationDate"].timestamp()
    assert before + 30 * 60 - 5 <= expires <= time.time() + 30 * 60 + 5

    out = ecs.update_task_protection(
        cluster="default", tasks=[arns[1]], protectionEnabled=True
    )  # ECS: 2 h
    assert out["protectedTasks"][0]["expirationDate"].timestamp() > before + 119 * 60

    missing = "arn:aws:ecs:us-east-1:000000000000:task/default/" + "0" * 32
    got = ecs.get_task_protection(cluster="default", tasks=[arns[0], missing])
    assert [t["taskArn"] for t in got["protectedTasks"]] == [arns[0]]
    assert got["protectedTasks"][0]["expirationDate"].timestamp() == pytest.approx(expires)
    assert got["failures"] == [{"arn": missing, "reason": "MISSING"}]

    for bad in (0, 2881):  # ECS: 1 minute to 48 hours
        with pytest.raises(ClientError) as err:
            ecs.update_task_protection(
                cluster="default", tasks=[arns[0]], protectionEnabled=True, expiresInMinutes=bad
            )
        assert err.value.response["Error"]["Code"] == "InvalidParameterException"
        assert "expiresInMinutes" in err.value.response["Error"]["Message"]

    ecs.update_task_protection(cluster="default", tasks=[arns[1]], protectionEnabled=False)
    assert lc.controller is not None
    lc.controller.kill(signal.SIGTERM)  # stored on the task: survives a restart
    lc.start_controller()
    ecs = make_client(lc)
    got = wait_for(
        lambda: ecs.get_task_protection(cluster="default", tasks=arns), 30, what="controller back"
    )
    states = {t["taskArn"]: t["protectionEnabled"] for t in got["protectedTasks"]}
    assert states == {arns[0]: True, arns[1]: False}


def test_service_scale_in_keeps_the_protected_task(lc: LocalCluster) -> None:
    ecs = make_client(lc)
    ecs.register_task_definition(**taskdef("prot-svc"))
    ecs.create_service(serviceName="web", taskDefinition="prot-svc", desiredCount=3)
    wait_for(lambda: len(running(ecs, serviceName="web")) == 3, 60, what="3 tasks RUNNING")
    described = ecs.describe_tasks(tasks=running(ecs, serviceName="web"))["tasks"]
    # scale-in's first choice on one instance: the newest task (ties: the highest ARN)
    keep = max(described, key=lambda t: (t["createdAt"], t["taskArn"]))["taskArn"]
    ecs.update_task_protection(
        cluster="default", tasks=[keep], protectionEnabled=True, expiresInMinutes=5
    )
    ecs.update_service(service="web", desiredCount=1)
    wait_for(lambda: running(ecs, serviceName="web") == [keep], 60, what="scaled in to 1")
    ecs.update_service(service="web", desiredCount=0)  # only the protected task is left
    time.sleep(6)  # a full planner pass (5 s) must not stop it  # noqa: sleep-ok
    assert running(ecs, serviceName="web") == [keep]
    ecs.update_task_protection(cluster="default", tasks=[keep], protectionEnabled=False)
    wait_for(lambda: not running(ecs, serviceName="web"), 60, what="unprotected, stopped")
