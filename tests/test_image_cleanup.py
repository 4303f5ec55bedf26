"""Image cleanup: only images the agent pulled, unused, old enough, N per cycle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.docker_driver import DockerDriver
from agent.image_cleanup import CleanupPolicy, ImageLedger, choose, cleanup_once
from tests.support import docker

POLICY = CleanupPolicy(interval_s=1, min_age_s=100, per_cycle=2)


def test_choose_oldest_unused_first_and_bounded() -> None:
    ledger = {"a:1": 0.0, "b:1": 10.0, "c:1": 20.0, "d:1": 950.0, "e:1": 5.0}
    assert choose(ledger, in_use={"e:1"}, now=1000.0, policy=POLICY) == ["a:1", "b:1"]
    assert choose(ledger, in_use=set(), now=50.0, policy=POLICY) == []


def test_ledger_survives_a_restart(tmp_path: Path) -> None:
    ImageLedger(tmp_path).used("dockyard/x:1", now=5.0)
    assert ImageLedger(tmp_path).last_used == {"dockyard/x:1": 5.0}
    assert json.loads((tmp_path / "images.json").read_text())


@pytest.mark.docker
async def test_cleanup_removes_only_old_unused_pulled_images(
    tmp_path: Path, sample_images: list[str]
) -> None:
    old, busy, foreign = (
        "dockyard/cleanup-old:1",
        "dockyard/cleanup-busy:1",
        "dockyard/cleanup-foreign:1",
    )
    for tag in (old, busy, foreign):
        docker("tag", "dockyard/busybox:latest", tag)
    container = docker("create", busy, "true")
    driver = DockerDriver()
    try:
        ledger = ImageLedger(tmp_path)
        ledger.used(old, now=1.0)
        ledger.used(busy, now=1.0)  # `foreign` was never pulled by the agent: not ours
        removed = await cleanup_once(driver, ledger, POLICY, now=1000.0)
        assert removed == [old]
        assert docker("image", "inspect", "--format", "{{.Id}}", old) == ""
        assert docker("image", "inspect", "--format", "{{.Id}}", busy)
        assert docker("image", "inspect", "--format", "{{.Id}}", foreign)
        assert set(ledger.last_used) == {"dockyard/cleanup-busy:1"}
    finally:
        await driver.close()
        docker("rm", "-f", container)
        docker("rmi", old, busy, foreign)
