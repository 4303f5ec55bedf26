"""Placement on the multi-host lab: constraints and strategies against real agents."""

from __future__ import annotations

import pytest

from dockyard.lab import Lab
from tests.test_chaos import stop_all

pytestmark = pytest.mark.lab


def test_member_of_zone_b_lands_on_a_zone_b_host(lab: Lab) -> None:
    if not lab.has_control_plane:
        pytest.skip("the lab has no control plane")
    client = lab.client()
    client.call(
        "RegisterTaskDefinition",
        {
            "family": "zoned",
            "containerDefinitions": [{"name": "s", "image": lab.image("sleeper"), "memory": 8}],
        },
    )
    out = client.call(
        "RunTask",
        {
            "cluster": lab.cluster,
            "taskDefinition": "zoned",
            "count": 3,
            "placementConstraints": [{"type": "memberOf", "expression": "attribute:zone == b"}],
        },
    )
    arns = [t["taskArn"] for t in out["tasks"]]
    try:
        assert len(arns) == 3 and not out["failures"]
        zone_b = {h.name for h in lab.hosts if h.zone == "b"}
        instances = client.call(
            "DescribeContainerInstances",
            {
                "cluster": lab.cluster,
                "containerInstances": sorted({t["containerInstanceArn"] for t in out["tasks"]}),
            },
        )
        hosts = {
            a["value"]
            for i in instances["containerInstances"]
            for a in i["attributes"]
            if a["name"] == "dockyard.hostname"
        }
        assert hosts and hosts <= zone_b, (hosts, zone_b)
        refused = client.call(
            "RunTask",
            {
                "cluster": lab.cluster,
                "taskDefinition": "zoned",
                "placementConstraints": [{"type": "memberOf", "expression": "attribute:zone == q"}],
            },
        )
        assert not refused["tasks"]
        assert refused["failures"][0]["reason"] in ("ATTRIBUTE", "MissingAttribute")
    finally:
        stop_all(lab, arns)
