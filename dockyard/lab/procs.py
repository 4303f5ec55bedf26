"""Start, find and stop the lab's daemons by pid, from any process.

Daemons are started in their own session with output to a log file, so they outlive the
`dockyard lab up` that started them. A ProcRef carries the start time from /proc, so a
recycled pid is never taken for ours. `down` also finds processes the state file does not
know (after a half-failed `up`): by network namespace, by cgroup and by command line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from dockyard.lab.state import LabError, ProcRef

# Executables of the lab's daemons: only these are matched by command line, so a user's
# shell that merely mentions the lab dir is never killed.
DAEMON_NAMES = {
    "dockerd",
    "containerd",
    "containerd-shim",
    "containerd-shim-runc-v2",
    "docker-proxy",
    "docker-registry",
    "registry",
    "runc",
    "nsenter",
}


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def alive(ref: ProcRef | None) -> bool:
    """True while the recorded process runs (zombies count as dead)."""
    if ref is None:
        return False
    fields = _stat_fields(ref.pid)
    if fields is None or int(fields[19]) != ref.start:
        return False
    return fields[0] != "Z" or _threads(ref.pid) > 1  # a zombie leader may still have threads


def _threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError:
        return 0


def spawn(cmd: Sequence[str], log: Path, env: dict[str, str] | None = None) -> ProcRef:
    """Start a daemon detached from us; a thread reaps it if it dies while we still run."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=env,
        )
    threading.Thread(target=proc.wait, daemon=True, name=f"reap-{proc.pid}").start()
    start = start_time(proc.pid)
    if start is None:
        raise LabError(f"{cmd[0]} exited at once; see {log}")
    return ProcRef(proc.pid, start)


def signal_ref(ref: ProcRef | None, sig: int) -> bool:
    if not alive(ref):
        return False
    assert ref is not None
    try:
        os.kill(ref.pid, sig)
    except ProcessLookupError:
        return False
    return True


def wait_gone(refs: Iterable[ProcRef | None], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    pending = [r for r in refs if r is not None]
    while pending and time.monotonic() < deadline:
        pending = [r for r in pending if alive(r)]
        if pending:
            time.sleep(0.05)
    return not pending


def stop(ref: ProcRef | None, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`; returns once the process is gone."""
    if signal_ref(ref, signal.SIGTERM) and not wait_gone([ref], timeout):
        kill(ref)


def kill(ref: ProcRef | None) -> None:
    if signal_ref(ref, signal.SIGKILL):
        wait_gone([ref], 10.0)


def log_tail(log: Path, lines: int = 8) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return "(no log)"
    return "\n    ".join(text)


# ---- discovery, for `down` ---------------------------------------------------------------


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _ancestors() -> set[int]:
    """Our pid and our parents': never killed, whatever their command line says."""
    out, pid = set(), os.getpid()
    while pid > 1:
        out.add(pid)
        fields = _stat_fields(pid)
        if not fields:
            break
        pid = int(fields[1])
    return out


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def pids_in_netns(netns_path: str) -> list[int]:
    try:
        inode = os.stat(netns_path).st_ino
    except FileNotFoundError:
        return []
    found = []
    for pid in _pids():
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino == inode:
                found.append(pid)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


def pids_of_lab_daemons(lab_dir: str) -> list[int]:
    """Daemons (dockerd, containerd, shims, registry, our python daemons) using `lab_dir`."""
    marker = lab_dir.rstrip("/") + "/"
    found = []
    for pid in _pids():
        args = _cmdline(pid)
        if not args or not any(marker in a for a in args):
            continue
        exe = os.path.basename(args[0])
        ours = exe in DAEMON_NAMES or (
            "dockyard" in " ".join(args[:4]) and ("agent" in args or "controller" in args)
        )
        if ours:
            found.append(pid)
    return found


def cgroup_dirs(name: str) -> list[Path]:
    """Every /sys/fs/cgroup/<hierarchy>/<name> that exists (v1 hierarchies or v2 root)."""
    root = Path("/sys/fs/cgroup")
    dirs = [root / name] if (root / name).is_dir() else []
    try:
        dirs += [d / name for d in root.iterdir() if (d / name).is_dir()]
    except FileNotFoundError:
        pass
    return dirs


def pids_in_cgroups(name: str) -> list[int]:
    found: set[int] = set()
    for top in cgroup_dirs(name):
        for procs in top.rglob("cgroup.procs"):
            try:
                found.update(int(p) for p in procs.read_text().split())
            except (FileNotFoundError, OSError):
                continue
    return sorted(found)


def remove_cgroups(name: str) -> None:
    for top in cgroup_dirs(name):
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            try:
                d.rmdir()
            except OSError:
                pass
        try:
            top.rmdir()
        except OSError:
            pass


def kill_pids(pids: Iterable[int]) -> None:
    spare = _ancestors()
    for pid in pids:
        if pid in spare:
            continue
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
