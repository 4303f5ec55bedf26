"""DescribeUsage on an in-process controller (no Docker): bad input is refused naming the
member, an unknown cluster is ECS's ClusterNotFoundException, and before any report the
answer is empty (what `dockyard top` tells the user)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.server import Controller, ControllerConfig
from dockyard.errors import ApiError


async def test_describe_usage_refuses_bad_input_and_starts_empty(tmp_path: Path) -> None:
    ctl = Controller(ControllerConfig(data_dir=tmp_path, listen="127.0.0.1:0", http="127.0.0.1:0"))
    await ctl.start()
    try:
        await ctl.api.call("CreateCluster", {"clusterName": "default"})
        with pytest.raises(ApiError) as err:
            await ctl.api.call("DescribeUsage", {"cluster": "default", "task": "x"})
        assert err.value.name == "InvalidParameterException" and "task:" in err.value.message
        with pytest.raises(ApiError) as err:
            await ctl.api.call("DescribeUsage", {"service": 3})
        assert "service: must be a string" in err.value.message
        with pytest.raises(ApiError) as err:
            await ctl.api.call("DescribeUsage", {"cluster": "nope"})
        assert err.value.name == "ClusterNotFoundException"
        out = await ctl.api.call("DescribeUsage", {})
        assert out == {"cluster": "default", "tasks": [], "services": [], "instances": []}
        assert ctl.usage.service_history("default", "web") == []
    finally:
        await ctl.stop()
