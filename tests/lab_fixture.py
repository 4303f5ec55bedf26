"""The session-wide multi-host lab for integration and chaos tests.

tests/conftest.py imports `lab` from here. One lab of $DOCKYARD_LAB_HOSTS (default 3)
hosts comes up once per test session and goes down at its end, even on failure. Each
session takes a free lab index (100..199) under a file lock, so several pytest sessions on
the same machine get separate bridges, subnets (10.77.INDEX.0/24) and namespaces, and
never touch a lab started by hand with `dockyard lab up` (index 0 by default).

The controller and agents are started when their modules are importable; until then the
lab has hosts, registry and images only and `lab.has_control_plane` is False.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from typing import IO

import pytest

from dockyard.lab import Lab, LabError, preflight
from dockyard.lab.control import available

LOCK_DIR = "/run/dockyard-lab"
FIRST_INDEX, LAST_INDEX = 100, 199


def _env_float(name: str) -> float | None:
    value = os.environ.get(name)
    return float(value) if value else None


def acquire_index() -> tuple[int, IO[str]]:
    """A lab index no other live session holds; the lock lasts as long as the file is open."""
    os.makedirs(LOCK_DIR, exist_ok=True)
    for index in range(FIRST_INDEX, LAST_INDEX + 1):
        fh = open(f"{LOCK_DIR}/lab-{index}.lock", "w")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            continue
        return index, fh
    raise LabError(f"every lab index {FIRST_INDEX}..{LAST_INDEX} is in use")


@contextlib.contextmanager
def lab_session(
    hosts: int = 3, control_plane: bool | None = None, controllers: int = 1
) -> Iterator[Lab]:
    """Bring a lab up on a free index and always tear it down; skips where labs cannot run."""
    problems = preflight()
    if problems:
        pytest.skip("multi-host lab unavailable: " + "; ".join(problems))
    index, lock = acquire_index()
    lab_dir = f"/tmp/dyk-lab{index}"
    try:
        Lab.down(lab_dir, index)  # what a crashed session with this index left behind
        yield Lab.up(
            hosts=hosts,
            lab_dir=lab_dir,
            index=index,
            control_plane=available() if control_plane is None else control_plane,
            heartbeat_period=_env_float("DOCKYARD_LAB_HEARTBEAT_PERIOD"),
            disconnect_grace=_env_float("DOCKYARD_LAB_DISCONNECT_GRACE"),
            controllers=controllers,
        )
    finally:
        Lab.down(lab_dir, index)
        lock.close()


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """A running lab: .hosts (name, address, netns, docker_host, zone), .controller_address,
    .controller_http, .registry, .image(name), .docker(host, *args), .client(), and the chaos
    verbs kill_agent/start_agent/stop_docker/start_docker/partition/heal(host),
    kill_controller/start_controller()."""
    with lab_session(hosts=int(os.environ.get("DOCKYARD_LAB_HOSTS", "3"))) as running:
        yield running
