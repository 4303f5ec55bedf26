"""The web console in a real browser: Debian's Chromium, headless, driven by Selenium.

- With real agents (three on the machine's one engine, zones a, b, c): sign in through the
  form, see the three hosts, scale a service from the page and watch its running count
  change without a reload, stop a task and drain a host from the page, open a task's logs,
  and check that a POST without the CSRF token is refused and a signed-out browser gets
  nothing.
- With 100 tasks on simulated agents (the real protocol, no Docker): first paint and the
  first data drawn, from the browser's own Navigation and Paint Timing, within 1 s.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By

from dockyard import auth
from dockyard.client import Client
from tests.console_support import browser_sign_in, chromium, live_badge, table_rows
from tests.support import (
    LocalCluster,
    Proc,
    start_sim,
    wait_for,
)

HOSTS = {"h1": "a", "h2": "b", "h3": "c"}
GREETING = "console-hello-from-the-task"
FIRST_PAINT_BUDGET_MS = 1000
TASKS_FOR_PAINT = 100


def _admin(lc: LocalCluster) -> auth.Credentials:
    creds = lc.credentials()
    assert creds is not None
    return creds


@dataclass
class Site:
    """Where the walk-through runs: a LocalCluster here, the 3-host lab in test_console_lab."""

    base: str  # the controller's HTTP(S) URL
    client: Callable[[], Client]
    cluster: str
    hosts: dict[str, str]  # host name -> zone
    image: str  # a busybox image the hosts can run
    instance_id: Callable[[str], str]  # host name -> its instance id


def _register(site: Site, family: str, command: list[str]) -> None:
    container = {
        "name": "app",
        "image": site.image,
        "memory": 16,
        "essential": True,
        "stopTimeout": 2,
        "command": command,
    }
    site.client().call(
        "RegisterTaskDefinition", {"family": family, "containerDefinitions": [container]}
    )


def _api_service(site: Site, name: str) -> dict[str, Any]:
    body = {"cluster": site.cluster, "services": [name]}
    return dict(site.client().call("DescribeServices", body)["services"][0])


def _service_row(driver: Any, name: str) -> dict[str, str] | None:
    return next((r for r in table_rows(driver, "#services") if r["name"] == name), None)


def _click(driver: Any, selector: str) -> None:
    driver.find_element(By.CSS_SELECTOR, selector).click()


@pytest.fixture
def three_hosts(tmp_path: Path, sample_images: list[str]) -> Iterator[LocalCluster]:
    lc = LocalCluster(tmp_path, shared_engine=True)  # three hosts on the machine's engine
    try:
        lc.start_controller()
        for name, zone in HOSTS.items():
            lc.start_agent(name, "--attribute", f"zone={zone}")
        for name in HOSTS:
            lc.wait_connected(name)
        yield lc
    finally:
        lc.stop()


@pytest.mark.docker
def test_console_in_a_browser_against_real_agents(three_hosts: LocalCluster) -> None:
    lc = three_hosts
    site = Site(lc.http, lc.client, "default", HOSTS, "dockyard/busybox:latest", lc.instance_id)
    with chromium() as driver:
        browser_sign_in(driver, site.base, _admin(lc))
        walk_through(driver, site, service="web")
    with chromium() as stranger:  # a browser that never signed in
        assert_signed_out(stranger, site.base)


def walk_through(driver: Any, site: Site, service: str) -> None:
    """Everything a person does on the signed-in console, checked against the API as it
    goes; ends signed out."""
    _register(site, "console-web", ["sh", "-c", f"echo {GREETING}; exec sleep 600"])
    site.client().call(
        "CreateService",
        {
            "cluster": site.cluster,
            "serviceName": service,
            "taskDefinition": "console-web",
            "desiredCount": 1,
        },
    )
    driver.get(f"{site.base}/ui/?cluster={site.cluster}")
    wait_for(lambda: live_badge(driver) == "live", 20, what="the live stream")
    _see_the_hosts(driver, site)
    _scale_and_watch(driver, site, service)

    # a task's logs
    _click(driver, "#tasks tbody tr button.logs")
    wait_for(
        lambda: GREETING in driver.find_element(By.ID, "logs").text,
        30,
        what="the task's logs on the page",
    )
    _stop_a_task(driver)
    _drain(driver, site, sorted(site.hosts)[-1])
    assert driver.execute_script("return window.dockyardNoReload") == "still-the-same-page"

    # a POST without the CSRF token is refused, even from the signed-in page
    status = driver.execute_async_script(
        """const done = arguments[arguments.length - 1];
           fetch('/ui/api/scale', {method: 'POST',
             headers: {'Content-Type': 'application/json'},
             body: JSON.stringify({cluster: arguments[0], service: arguments[1], desiredCount: 0})})
           .then(r => done(r.status), e => done(String(e)));""",
        site.cluster,
        service,
    )
    assert status == 403
    assert _api_service(site, service)["desiredCount"] == 3

    # signed out: the page and its data are gone
    _click(driver, "#signout")
    wait_for(lambda: driver.current_url.endswith("/ui/signin"), 20, what="sign-in page")
    assert_signed_out(driver, site.base)


def _see_the_hosts(driver: Any, site: Site) -> None:
    hosts = wait_for(
        lambda: (lambda rows: rows if len(rows) == len(site.hosts) else None)(
            table_rows(driver, "#instances")
        ),
        20,
        what=f"{len(site.hosts)} instances on the page",
    )
    assert sorted(r["host"].split("\n")[0] for r in hosts) == sorted(site.hosts)
    assert sorted(r["zone"] for r in hosts) == sorted(site.hosts.values())
    assert all(r["agent"] == "connected" for r in hosts)


def _scale_and_watch(driver: Any, site: Site, service: str) -> None:
    """Scale 1 -> 3 from the page; the running count changes live, without a reload."""
    wait_for(
        lambda: (_service_row(driver, service) or {}).get("running") == "1",
        60,
        what=f"{service} running 1",
    )
    driver.execute_script("window.dockyardNoReload = 'still-the-same-page';")
    field = driver.find_element(By.CSS_SELECTOR, f'tr[data-key="{service}"] input.count')
    field.clear()
    field.send_keys("3")
    _click(driver, f'tr[data-key="{service}"] button.scale')
    wait_for(
        lambda: (_service_row(driver, service) or {}).get("desired") == "3",
        20,
        what="desired 3 shown",
    )
    seen = set()

    def running_3() -> bool:
        running = (_service_row(driver, service) or {}).get("running", "")
        seen.add(running)
        return running == "3"

    wait_for(running_3, 90, what="running 3 shown live")
    assert driver.execute_script("return window.dockyardNoReload") == "still-the-same-page"
    api = _api_service(site, service)
    assert api["desiredCount"] == 3 and api["runningCount"] == 3
    assert "1" in seen or "2" in seen  # it was seen moving, not only at the end


def _stop_a_task(driver: Any) -> None:
    """Stop a task from the page: it shows STOPPED with the console's reason."""
    victim = next(r["key"] for r in table_rows(driver, "#tasks") if r["status"].startswith("RUN"))
    _click(driver, f'#tasks tr[data-key="{victim}"] button.stop')
    stopped = wait_for(
        lambda: next(
            (
                r
                for r in table_rows(driver, "#tasks")
                if r["key"] == victim and r["status"].startswith("STOPPED")
            ),
            None,
        ),
        60,
        what="the stopped task shown STOPPED",
    )
    assert "Stopped from the web console" in stopped["stop reason"]


def _drain(driver: Any, site: Site, host: str) -> None:
    """Drain a host from the page, then activate it again."""
    iid = site.instance_id(host)
    button = f'#instances tr[data-key$="/{iid}"] button.drain'
    for action, status in (("Drain", "DRAINING"), ("Activate", "ACTIVE")):
        assert driver.find_element(By.CSS_SELECTOR, button).text == action
        _click(driver, button)
        wait_for(
            lambda status=status: any(
                r["key"].endswith(iid) and r["status"] == status
                for r in table_rows(driver, "#instances")
            ),
            20,
            what=f"{host} shown {status}",
        )


def assert_signed_out(driver: Any, base: str) -> None:
    driver.get(base + "/ui/")
    assert driver.current_url == base + "/ui/signin"
    assert driver.find_elements(By.ID, "instances") == []
    for path in ("/ui/api/snapshot", "/ui/static/console.js", "/ui/api/live"):
        driver.get(base + path)
        text = driver.find_element(By.TAG_NAME, "body").text
        assert json.loads(text)["error"] == "SignedOut", path


# ---------------------------------------------------------------- first paint, 100 tasks


@pytest.fixture
def simulated(tmp_path: Path) -> Iterator[LocalCluster]:
    """A controller and simulated agents (`dockyard sim`) holding 100 tasks: no Docker."""
    lc = LocalCluster(tmp_path)
    sim: Proc | None = None
    try:
        lc.start_controller()
        sim = start_sim(lc, 4, "--containers-per-agent", "30", "--start-latency-ms", "20")
        yield lc
    finally:
        if sim is not None:
            sim.kill(signal.SIGKILL)
        lc.stop()


def test_first_paint_with_100_tasks_is_under_a_second(simulated: LocalCluster) -> None:
    lc = simulated
    c = lc.client()
    wait_for(
        lambda: len(c.call("ListContainerInstances", {}).get("containerInstanceArns", [])) == 4,
        30,
        what="4 simulated instances",
    )
    c.call(
        "RegisterTaskDefinition",
        {
            "family": "paint",
            "containerDefinitions": [
                {"name": "app", "image": "dockyard/sleeper", "cpu": 128, "memory": 128}
            ],
        },
    )
    c.call(
        "CreateService",
        {"serviceName": "paint", "taskDefinition": "paint", "desiredCount": TASKS_FOR_PAINT},
    )
    wait_for(
        lambda: (
            c.call("DescribeServices", {"services": ["paint"]})["services"][0]["runningCount"]
            == TASKS_FOR_PAINT
        ),
        90,
        0.5,
        what=f"{TASKS_FOR_PAINT} tasks running",
    )
    with chromium() as driver:
        browser_sign_in(driver, lc.http, _admin(lc))
        figures = paint_timing(driver, lc.http + "/ui/")
    check_paint(figures, "simulated agents")


def check_paint(figures: list[dict[str, float]], where: str) -> None:
    """Print the figures (the report quotes them) and hold them to the 1 s budget."""
    print(f"console paint timing (ms), {TASKS_FOR_PAINT} tasks, {where}:", json.dumps(figures))
    for f in figures:
        assert f["firstContentfulPaint"] <= FIRST_PAINT_BUDGET_MS, figures
        assert f["firstData"] <= FIRST_PAINT_BUDGET_MS, figures


def paint_timing(driver: Any, url: str, loads: int = 3) -> list[dict[str, float]]:
    """Load the signed-in console `loads` times (the first also warms the browser's
    caches) and read each load's timings once all TASKS_FOR_PAINT tasks are drawn."""
    figures = []
    for _ in range(loads):
        driver.get(url)
        wait_for(
            lambda: len(table_rows(driver, "#tasks")) >= TASKS_FOR_PAINT,
            20,
            what=f"{TASKS_FOR_PAINT} task rows",
        )
        assert live_badge(driver) == "live"
        # Chromium records paint entries after the frame is presented, which can come
        # after the rows are in the DOM: wait for the entry rather than read a null.
        wait_for(
            lambda: driver.execute_script(
                "return performance.getEntriesByName('first-contentful-paint').length > 0"
            ),
            10,
            what="the browser's first-contentful-paint entry",
        )
        figures.append(_paint_timing(driver))
    return figures


def _paint_timing(driver: Any) -> dict[str, float]:
    """Milliseconds since navigation start: first paint, first contentful paint, DOM
    content loaded, and the console's own mark when the first snapshot was drawn."""
    return dict(
        driver.execute_script(
            """const nav = performance.getEntriesByType('navigation')[0];
               const paint = n => (performance.getEntriesByName(n)[0] || {}).startTime;
               const data = performance.getEntriesByName('dockyard:first-data')[0];
               return {firstPaint: paint('first-paint'),
                       firstContentfulPaint: paint('first-contentful-paint'),
                       domContentLoaded: nav.domContentLoadedEventEnd,
                       firstData: data ? data.startTime : null,
                       transferBytes: nav.transferSize};"""
        )
    )
