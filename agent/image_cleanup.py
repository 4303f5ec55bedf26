"""Image cleanup like the ECS agent's: every interval, remove up to N images this agent
pulled that no container uses and that no task has used for a minimum age.

The ledger of pulled images and their last use lives in the state dir, so an agent restart
keeps the ages; images someone else pulled or built are never touched.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from agent.docker_driver import DockerDriver, DriverError, normalize_image

log = logging.getLogger("dockyard.agent.images")


@dataclass(frozen=True)
class CleanupPolicy:
    """ECS's defaults: ECS_IMAGE_CLEANUP_INTERVAL 30 min, ECS_IMAGE_MINIMUM_CLEANUP_AGE 1 h,
    ECS_NUM_IMAGES_DELETE_PER_CYCLE 5."""

    interval_s: float = 1800.0
    min_age_s: float = 3600.0
    per_cycle: int = 5


class ImageLedger:
    """Images this agent pulled -> when a task last used them (epoch seconds)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / "images.json"
        try:
            self.last_used: dict[str, float] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.last_used = {}

    def used(self, image: str, now: float | None = None) -> None:
        self.last_used[normalize_image(image)] = now or time.time()
        self._save()

    def forget(self, image: str) -> None:
        self.last_used.pop(normalize_image(image), None)
        self._save()

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.last_used))
        os.replace(tmp, self.path)


def choose(
    last_used: dict[str, float], in_use: set[str], now: float, policy: CleanupPolicy
) -> list[str]:
    """The images to remove this cycle: unused, old enough, least recently used first."""
    candidates = [
        (t, image)
        for image, t in last_used.items()
        if image not in in_use and now - t >= policy.min_age_s
    ]
    return [image for _, image in sorted(candidates)[: policy.per_cycle]]


async def cleanup_once(
    driver: DockerDriver, ledger: ImageLedger, policy: CleanupPolicy, now: float | None = None
) -> list[str]:
    """One cycle; returns the images removed."""
    now = now or time.time()
    try:
        in_use = await driver.images_in_use()
    except DriverError as err:
        log.debug("image cleanup skipped: %s", err)
        return []
    removed = []
    for image in choose(ledger.last_used, in_use, now, policy):
        if await driver.remove_image(image):
            removed.append(image)
            log.info("removed unused image %s", image)
        ledger.forget(image)  # gone, or no longer ours to track (re-tagged, in use elsewhere)
    return removed
