"""Pull progress reaches the task's events, as `dockyard events TASK` shows them.

A real agent on the machine's dockerd pulls a five-layer image (busybox base plus four
layers of 4 MB of random bytes) from a local registry; the controller's event log for the
task shows the pull starting, "N/5 layers, X MB/Y MB" lines that only move forward, at most
one a second besides one per finished layer, and the done line.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterator

import pytest

from tests import registry_support
from tests.support import LocalCluster, docker

pytestmark = pytest.mark.docker
LAYERS, LAYER_BYTES = 4, 4_000_000
PROGRESS = re.compile(r": (\d+)/(\d+) layers, ([\d.]+) (B|kB|MB)/([\d.]+) (B|kB|MB)$")
UNIT = {"B": 1, "kB": 1e3, "MB": 1e6}


@pytest.fixture
def layered(sample_images: list[str]) -> Iterator[str]:
    """A five-layer image that only the local registry has."""
    local = f"dockyard-test/layered:{uuid.uuid4().hex[:8]}"
    with registry_support.local_registry() as addr:
        ref = f"{addr}/{local}"
        try:
            registry_support.build_layered(local, LAYERS, LAYER_BYTES)
            registry_support.push(local, ref)
            docker("rmi", local)  # its layers too: only the base layer stays cached
            yield ref
        finally:
            docker("rmi", "-f", ref, local)


def test_pull_progress_appears_in_the_task_events(layered: str, bare_cluster: LocalCluster) -> None:
    lc = bare_cluster  # set up after `layered`, so stopped before the image is removed
    lc.start_controller()
    lc.start_agent("a1", "--pull-behavior", "always")
    lc.wait_connected("a1")
    c = lc.client()
    container = {"name": "main", "image": layered, "memory": 32, "command": ["sleep", "600"]}
    c.call("RegisterTaskDefinition", {"family": "layered", "containerDefinitions": [container]})
    arn = c.call("RunTask", {"taskDefinition": "layered"})["tasks"][0]["taskArn"]
    lc.wait_status([arn], "RUNNING", timeout=60)
    lines = [
        (ev.at, line)
        for ev in c.watch_events(task=arn)
        for line in ev.message.split("; ")
        if line.startswith(f"pulling {layered}")
    ]
    said = [line for _, line in lines]
    assert said[0] == f"pulling {layered}", said
    done = re.fullmatch(
        rf"pulling {re.escape(layered)}: done \((\d+) layers, ([\d.]+) MB\)", said[-1]
    )
    assert done and int(done[1]) == LAYERS + 1, said
    progress = [PROGRESS.search(line) for line in said[1:-1]]
    assert progress and all(progress), said
    steps = [
        (int(m[1]), int(m[2]), float(m[3]) * UNIT[m[4]], float(m[5]) * UNIT[m[6]])
        for m in progress
        if m
    ]
    assert all(layers == LAYERS + 1 for _, layers, _, _ in steps)
    for column in range(4):  # layers done and bytes only move forward
        assert [step[column] for step in steps] == sorted(step[column] for step in steps)
    finished, _, got, total = steps[-1]
    assert finished == LAYERS + 1 and got == total >= LAYERS * LAYER_BYTES * 0.99
    span = lines[-1][0] - lines[0][0]
    assert len(steps) <= LAYERS + 1 + math.ceil(span) + 1, (span, said)  # rate-limited
