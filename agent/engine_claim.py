"""One agent per Docker engine: a second one refuses to start, naming the first.

Two agents on one engine fight over what the engine's host has only once: 169.254.170.2 (the
later agent's redirect captures every container's credentials traffic), docker0's
`route_localnet`, the bridge-mode forwarder container. So an agent claims its engine before
it touches any of them, and keeps the claim for its whole life.

The claim is an flock on `<lock dir>/engine-<ID>.lock`, where ID is the engine's own id from
`docker info` (one per engine and data root: the lab's engines each have theirs, however they
are reached), held open by the agent process. The kernel drops an flock when its holder dies,
however it dies (SIGKILL, OOM, power), so a dead agent never blocks the next one and there is
no stale marker to clean. Beside it each holder keeps `engine-<ID>.<pid>.holder`, also
flocked while it lives, naming its instance id, state dir and pid for the refusal message;
a holder file whose flock is free is a dead agent's and is removed.

`--allow-shared-engine` (tests and simulations that run several agents on one engine) takes
the lock shared: such agents coexist with each other, never with an agent that claims the
engine alone, which stays the only way a user starts an agent. The lock dir is
/run/dockyard/engines for root (DOCKYARD_ENGINE_LOCK_DIR overrides it): agents on other
machines reaching the same engine over TCP are not seen (their host settings are not this
host's either).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("dockyard.agent.engine")


class EngineClaimed(Exception):
    """Another live agent holds the engine; str() names it."""


def lock_dir() -> Path:
    if "DOCKYARD_ENGINE_LOCK_DIR" in os.environ:
        return Path(os.environ["DOCKYARD_ENGINE_LOCK_DIR"])
    if os.geteuid() == 0:
        return Path("/run/dockyard/engines")
    return Path(tempfile.gettempdir()) / f"dockyard-engines-{os.geteuid()}"


def engine_key(engine_id: str, docker_host: str) -> str:
    """A file-name-safe key of the engine (its docker-info ID; the address if it has none)."""
    if engine_id:
        return re.sub(r"[^A-Za-z0-9_-]", "-", engine_id)
    return "host-" + hashlib.sha256(docker_host.encode()).hexdigest()[:16]


def describe(holders: list[dict[str, Any]]) -> str:
    """Pure: the holders, as the refusal message names them."""
    return "; ".join(
        f"instance {h.get('instance_id', '?')} (state dir {h.get('state_dir', '?')}, "
        f"pid {h.get('pid', '?')}{', shared' if h.get('shared') else ''})"
        for h in holders
    )


@dataclass
class Claim:
    """An engine held by this process; release() (or the process's death) gives it back."""

    lock: IO[bytes]
    holder: IO[bytes]
    holder_path: Path

    def release(self) -> None:
        with contextlib.suppress(OSError):
            self.holder_path.unlink()
        self.holder.close()
        self.lock.close()


def _live_holders(directory: Path, key: str) -> list[dict[str, Any]]:
    """Holder files of live agents; dead agents' are removed on the way."""
    out = []
    for path in sorted(directory.glob(f"engine-{key}.*.holder")):
        try:
            with path.open("rb") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    out.append(json.loads(fh.read() or b"{}"))
                    continue
            path.unlink()  # its agent is gone
        except (OSError, ValueError):
            continue
    return out


def acquire(
    engine_id: str, docker_host: str, instance_id: str, state_dir: Path, shared: bool = False
) -> Claim:
    """Claim the engine, or raise EngineClaimed naming who holds it."""
    directory = lock_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o755)
    key = engine_key(engine_id, docker_host)
    lock = (directory / f"engine-{key}.lock").open("ab")
    try:
        fcntl.flock(lock, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        holders = _live_holders(directory, key) or [{}]
        raise EngineClaimed(
            f"another Dockyard agent already runs on this Docker engine ({docker_host}, "
            f"engine ID {engine_id}): {describe(holders)}. One agent per engine: stop it, "
            "or point this one at another engine with --docker-host"
        ) from None
    _live_holders(directory, key)  # dead agents' holder files go
    holder_path = directory / f"engine-{key}.{os.getpid()}.holder"
    holder = holder_path.open("wb")
    fcntl.flock(holder, fcntl.LOCK_EX)
    info = {
        "instance_id": instance_id,
        "state_dir": str(state_dir.resolve()),
        "pid": os.getpid(),
        "shared": shared,
    }
    holder.write(json.dumps(info).encode())
    holder.flush()
    log.info("claimed Docker engine %s%s", engine_id, " (shared)" if shared else "")
    return Claim(lock, holder, holder_path)
