"""The host's GPUs, as the agent reports them (resourceRequirements GPU, issue 18).

From `nvidia-smi --query-gpu=uuid` when the NVIDIA driver is installed. `--gpus-from FILE`
(one id per line) declares GPUs instead: for tests and simulations of placement only, since
Docker cannot start a container with a GPU the host does not have.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger("dockyard.agent")


def detect(gpus_from: str = "") -> list[str]:
    """GPU ids of this host: the declared file's lines, else nvidia-smi's UUIDs, else none."""
    if gpus_from:
        lines = Path(gpus_from).read_text().splitlines()
        return [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=uuid", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as err:
        log.warning("nvidia-smi failed (%s): reporting no GPUs", err)
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def pick(total: list[str], in_use: set[str], count: int) -> list[str]:
    """`count` free GPUs in the host's order, or [] when there are not enough."""
    free = [g for g in total if g not in in_use]
    return free[:count] if len(free) >= count else []
