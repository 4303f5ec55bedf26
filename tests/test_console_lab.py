"""The web console on the 3-host lab, in a real browser: each host its own network namespace
and dockerd, the controller off loopback and so on HTTPS (its own CA, which the browser is
told to trust, as `aws --ca-bundle` is). The same walk-through as against local agents,
plus the session cookie's attributes under TLS."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from dockyard.errors import ApiError
from dockyard.lab import Lab
from dockyard.lab import control as lab_control
from tests.console_support import browser_sign_in, chromium
from tests.support import wait_for
from tests.test_console_browser import (
    TASKS_FOR_PAINT,
    Site,
    assert_signed_out,
    check_paint,
    paint_timing,
    walk_through,
)

pytestmark = pytest.mark.lab

SERVICE = "console-lab"
PAINT_SERVICE = "console-paint"  # a deleted service's name is taken while it drains


def _instance_id(lab: Lab, host: str) -> str:
    for inst in lab_control.instances(lab.state):
        attrs = {a["name"]: a.get("value") for a in inst["attributes"]}
        if attrs.get("dockyard.hostname") == host:
            return str(inst["ec2InstanceId"])
    raise AssertionError(f"no instance for lab host {host}")


@pytest.fixture
def lab_site(lab: Lab) -> Iterator[Site]:
    if not lab.has_control_plane:
        pytest.skip("the lab has no control plane")
    site = Site(
        lab.controller_http,
        lab.client,
        lab.cluster,
        {h.name: h.zone for h in lab.hosts},
        lab.image("busybox"),
        lambda host: _instance_id(lab, host),
    )
    try:
        yield site
    finally:  # the lab is the session's: leave it as found
        _restore(lab, site)


def _restore(lab: Lab, site: Site) -> None:
    client = lab.client()
    ids = [site.instance_id(h) for h in site.hosts]
    client.call(
        "UpdateContainerInstancesState",
        {"cluster": lab.cluster, "containerInstances": ids, "status": "ACTIVE"},
    )
    for name in (SERVICE, PAINT_SERVICE):
        with contextlib.suppress(ApiError):  # not made by this test
            client.call("DeleteService", {"cluster": lab.cluster, "service": name, "force": True})

    def gone() -> bool:
        return all(
            not client.call("ListTasks", {"cluster": lab.cluster, "serviceName": name})["taskArns"]
            for name in (SERVICE, PAINT_SERVICE)
        )

    wait_for(gone, 120, 0.5, what="the console tests' services' tasks stopped")


def test_console_on_the_lab(lab: Lab, lab_site: Site) -> None:
    creds = lab_control.admin_credentials(lab.state)
    ca = lab_control.ca_cert(lab.state)
    assert creds is not None and ca is not None
    assert lab_site.base.startswith("https://")
    address = urlsplit(lab_site.base).hostname or ""
    with chromium(also_reach=address, trust_ca=ca) as driver:
        browser_sign_in(driver, lab_site.base, creds)
        cookie = next(c for c in driver.get_cookies() if c["name"] == "dockyard_console")
        assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert cookie["expiry"] > 0 and cookie["path"] == "/ui"
        walk_through(driver, lab_site, SERVICE)
    with chromium(also_reach=address, trust_ca=ca) as stranger:
        assert_signed_out(stranger, lab_site.base)


def test_first_paint_on_the_lab_with_100_tasks(lab: Lab, lab_site: Site) -> None:
    """Issue 20's figure: first paint within 1 s on the lab with 100 running tasks."""
    creds = lab_control.admin_credentials(lab.state)
    ca = lab_control.ca_cert(lab.state)
    assert creds is not None and ca is not None
    client = lab.client()
    container = {"name": "app", "image": lab.image("sleeper"), "memory": 8, "stopTimeout": 2}
    client.call(
        "RegisterTaskDefinition", {"family": "console-paint", "containerDefinitions": [container]}
    )
    client.call(
        "CreateService",
        {
            "cluster": lab.cluster,
            "serviceName": PAINT_SERVICE,
            "taskDefinition": "console-paint",
            "desiredCount": TASKS_FOR_PAINT,
        },
    )
    body = {"cluster": lab.cluster, "services": [PAINT_SERVICE]}
    wait_for(
        lambda: (
            client.call("DescribeServices", body)["services"][0]["runningCount"] == TASKS_FOR_PAINT
        ),
        300,
        1.0,
        what=f"{TASKS_FOR_PAINT} tasks running on the lab",
    )
    address = urlsplit(lab_site.base).hostname or ""
    with chromium(also_reach=address, trust_ca=ca) as driver:
        browser_sign_in(driver, lab_site.base, creds)
        figures = paint_timing(driver, f"{lab_site.base}/ui/?cluster={lab.cluster}")
    check_paint(figures, "the 3-host lab")
