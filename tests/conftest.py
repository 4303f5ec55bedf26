"""Shared fixtures. Docker tests need a running engine; they are skipped only when the
engine is missing on a developer machine, never in CI (.ci/run installs and starts it)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard import images
from tests.lab_fixture import lab  # noqa: F401  (the 3-host lab, one per test session)
from tests.support import ENGINE_TEST, STARTED, LocalCluster


def _docker_up() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _docker_up() or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(reason="no Docker engine running (make test starts one)")
    for item in items:
        if "docker" in item.keywords or "lab" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    STARTED.clear()  # the clusters a test makes, fixtures included, for its failure report
    ENGINE_TEST["allowed"] = "docker" in item.keywords or "lab" in item.keywords


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test that ran daemons shows the end of their logs: in CI that is all there is
    to tell why an agent never connected."""
    report = yield
    if report.failed:
        for lc in STARTED:
            report.sections.append(("dockyard daemon logs", lc.log_tails()))
    return report


@pytest.fixture(scope="session")
def sample_images() -> list[str]:
    return images.build_all()


@pytest.fixture
def cluster(tmp_path: Path, sample_images: list[str]) -> Iterator[LocalCluster]:
    """A controller and one agent ("a1") as real processes; everything removed after."""
    lc = LocalCluster(tmp_path)
    try:
        lc.start_controller()
        lc.start_agent("a1", "--attribute", "zone=a")
        lc.wait_connected("a1")
        yield lc
    finally:
        lc.stop()


@pytest.fixture
def bare_cluster(tmp_path: Path, sample_images: list[str]) -> Iterator[LocalCluster]:
    """A LocalCluster with nothing started: the test starts and kills daemons itself."""
    lc = LocalCluster(tmp_path)
    try:
        yield lc
    finally:
        lc.stop()
