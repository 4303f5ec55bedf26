"""The credential refresh loop: it touches tasks only when a role is due, and after a
controller restart it issues credentials again for the tasks that still use a role."""

from __future__ import annotations

import time
from pathlib import Path

from bench.bench_placement import add_instances
from controller.server import Controller, ControllerConfig

ROLE = {
    "roleName": "app",
    "source": "static",
    "accessKeyId": "AKIDREFRESH",
    "secretAccessKey": "refresh-secret",
}


def _controller(data: Path) -> Controller:
    return Controller(ControllerConfig(data_dir=data, listen="127.0.0.1:0", http="127.0.0.1:0"))


async def test_refresh_is_idle_until_due_and_reissues_after_a_restart(tmp_path: Path) -> None:
    ctl = _controller(tmp_path)
    await ctl.start()
    try:
        role = (await ctl.api.call("CreateRole", ROLE))["role"]["roleArn"]
        await add_instances(ctl, 2)
        await ctl.api.call(
            "RegisterTaskDefinition",
            {
                "family": "app",
                "taskRoleArn": role,
                "containerDefinitions": [{"name": "a", "image": "x", "memory": 64}],
            },
        )
        out = await ctl.api.call("RunTask", {"taskDefinition": "app"})
        assert len(out["tasks"]) == 1
        roles = ctl.service.roles
        assert await roles.refresh_once() == []  # just issued: nothing due
        expires = roles.cache[role].expiration
        assert await roles.refresh_once(at=expires) == [role]  # at expiry: fetched again
    finally:
        await ctl.stop()
    again = _controller(tmp_path)
    await again.start()
    try:
        roles = again.service.roles
        assert role not in roles.cache
        assert await roles.refresh_once(at=time.time()) == [role]  # its task still runs
        assert role in roles.cache
        assert await roles.refresh_once(at=time.time()) == []
    finally:
        await again.stop()
