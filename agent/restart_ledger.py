"""Restarts by restartPolicy, kept in the agent's state dir (issue 18).

Docker counts only its own restart policy's restarts, and the agent restarts containers
itself, so the count lives here: an agent restart keeps it, as it keeps the containers.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger("dockyard.agent")
FILE = "restarts.json"

Counts = dict[str, dict[str, int]]  # task ARN -> container -> restarts


def load(state_dir: Path) -> Counts:
    """The saved counts; none when the file is missing or unreadable (said in the log)."""
    path = state_dir / FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        log.warning("restart counts in %s unreadable (%s): starting from 0", path, err)
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        str(arn): {str(c): int(n) for c, n in per.items() if isinstance(n, int)}
        for arn, per in data.items()
        if isinstance(per, dict)
    }


def save(state_dir: Path, counts: Counts) -> None:
    """Write the counts atomically (0600, like the agent's other state)."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({arn: per for arn, per in counts.items() if per}, f)
    os.replace(tmp, path)
