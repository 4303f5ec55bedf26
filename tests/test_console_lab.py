"""The web console on the 3-host lab, in a real browser: each host its own network namespace
and dockerd, the controller off loopback and so on HTTPS (its own CA, which the browser is
told to trust, as `aws --ca-bundle` is). The same walk-through as against local agents,
plus the session cookie's attributes under TLS."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from dockyard.errors import ApiError
from dockyard.lab import Lab
from dockyard.lab import control as lab_control
from tests.console_support import browser_sign_in, chromium
from tests.support import wait_for
from tests.test_console_browser import Site, assert_signed_out, walk_through

pytestmark = pytest.mark.lab

SERVICE = "console-lab"


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
    try:
        client.call("DeleteService", {"cluster": lab.cluster, "service": SERVICE, "force": True})
    except ApiError:
        return

    def gone() -> bool:
        body: dict[str, Any] = {"cluster": lab.cluster, "serviceName": SERVICE}
        return not client.call("ListTasks", body)["taskArns"]

    wait_for(gone, 90, 0.5, what=f"service {SERVICE}'s tasks stopped")


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
