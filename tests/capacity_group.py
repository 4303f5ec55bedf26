"""A host group for tests of capacity providers' managed scaling (issue 22): the operator's
group-size command, here `python -m tests.capacity_group DIR CONTROLLER PROVIDER {desired}`,
which starts or stops simulated agents (`dockyard sim`, one process per host) that join
PROVIDER. Scale-in stops the hosts the controller names in DOCKYARD_REMOVE_HOSTS (idle,
drained), else the newest. Each host is `DIR/<index>.pid`; the sim's hostname is
sim-<seed>-<index>."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

SEED = "capgroup"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def hosts(root: Path) -> dict[int, int]:
    """index -> pid of the running hosts (stale pid files dropped)."""
    out = {}
    for f in root.glob("*.pid"):
        pid = int(f.read_text())
        if alive(pid):
            out[int(f.stem)] = pid
        else:
            f.unlink()
    return out


def main(root: Path, controller: str, provider: str, desired: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    running = hosts(root)
    named = [int(h.rsplit("-", 1)[1]) for h in os.environ.get("DOCKYARD_REMOVE_HOSTS", "").split()]
    while len(running) > desired:
        index = next((i for i in named if i in running), max(running))
        os.kill(running.pop(index), signal.SIGTERM)
        (root / f"{index}.pid").unlink()
    index = 0
    while len(running) < desired:
        while index in running:
            index += 1
        argv = [sys.executable, "-m", "dockyard.cli.main", "sim", "--controller", controller]
        argv += ["--agents", "1", "--first-index", str(index), "--seed", SEED]
        argv += ["--report-every", "0", "--containers-per-agent", "2"]
        argv += ["--attribute", f"dockyard.capacity-provider={provider}"]
        log = open(root / f"{index}.log", "ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
        (root / f"{index}.pid").write_text(str(proc.pid))
        running[index] = proc.pid


def stop_all(root: Path) -> None:
    for pid in hosts(root).values():
        os.kill(pid, signal.SIGTERM)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]))
