"""PutAttributes: ECS's limit of 10 custom attributes per container instance, and a refused
call changes nothing (in-process controller, real SQLite)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.bench_placement import add_instances
from controller.server import Controller, ControllerConfig
from dockyard.errors import ApiError


def _attrs(target: str, names: list[str], value: str = "v") -> dict:
    return {"attributes": [{"name": n, "value": value, "targetId": target} for n in names]}


async def _custom(ctl: Controller, target: str) -> dict[str, str]:
    out = await ctl.api.call("ListAttributes", {"targetType": "container-instance"})
    return {
        a["name"]: a["value"]
        for a in out["attributes"]
        if a["targetId"].endswith(target) and a["name"] not in ("zone", "ecs.os-type")
    }


async def test_custom_attribute_limit_and_atomic_refusals(tmp_path: Path) -> None:
    ctl = Controller(ControllerConfig(data_dir=tmp_path, listen="127.0.0.1:0", http="127.0.0.1:0"))
    await ctl.start()
    try:
        await add_instances(ctl, 2)
        first, second = "i-00000000", "i-00000001"
        await ctl.api.call("PutAttributes", _attrs(first, [f"a{i}" for i in range(8)]))
        with pytest.raises(ApiError) as err:
            await ctl.api.call("PutAttributes", _attrs(first, ["a0", "b1", "b2", "b3"]))
        assert err.value.name == "AttributeLimitExceededException"
        assert "11 custom attributes" in err.value.message
        assert len(await _custom(ctl, first)) == 8  # nothing of the refused call was applied
        # a bad value in the middle refuses the whole call, naming the attribute
        bad = _attrs(second, ["x", "y", "z"])
        bad["attributes"][1]["value"] = "v" * 129
        with pytest.raises(ApiError) as err:
            await ctl.api.call("PutAttributes", bad)
        assert "attributes[1].value" in err.value.message
        assert await _custom(ctl, second) == {}
        # replacing values of attributes it has does not count twice; 10 is fine
        await ctl.api.call("PutAttributes", _attrs(first, ["a0", "a8", "a9"], "new"))
        held = await _custom(ctl, first)
        assert len(held) == 10 and held["a0"] == "new"
    finally:
        await ctl.stop()
