"""The lab's image registry (Debian's docker-registry) and the sample images pushed to it.

The registry listens on the bridge address in the root namespace, so every host reaches
it and nothing outside the lab does. Images are built on the first host's engine, which
already has this registry's address as an insecure (plain HTTP) registry (the root engine
does not), and pushed once; every host then pulls `<gateway>:5000/dockyard/<name>:latest`.
"""

from __future__ import annotations

import socket
import time

from dockyard import images
from dockyard.lab import procs
from dockyard.lab.state import Host, LabError, LabState, ProcRef

CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: {addr}
"""


def start(state: LabState, timeout: float = 20.0) -> ProcRef:
    base = state.path("registry")
    base.mkdir(parents=True, exist_ok=True)
    config = base / "config.yml"
    config.write_text(CONFIG.format(root=base / "data", addr=state.registry))
    log = state.path("logs", "registry.log")
    ref = procs.spawn(["docker-registry", "serve", str(config)], log)
    wait_tcp(state.registry, ref, timeout, f"registry ({log})")
    return ref


def wait_tcp(address: str, ref: ProcRef | None, timeout: float, what: str) -> None:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=0.5).close()
            return
        except OSError:
            if ref is not None and not procs.alive(ref):
                raise LabError(f"{what} exited before listening on {address}") from None
            time.sleep(0.05)
    raise LabError(f"{what} did not listen on {address} within {timeout:.0f} s")


def publish_images(state: LabState, builder: Host) -> list[str]:
    """Build the sample images on `builder`'s engine and push them to the lab registry."""
    try:
        return images.push_all(state.registry, docker_host=builder.docker_host)
    except RuntimeError as err:
        raise LabError(f"sample images: {err}") from None


def image_ref(state: LabState, name: str) -> str:
    """`httpd` -> `10.77.0.1:5000/dockyard/httpd:latest`."""
    return f"{state.registry}/dockyard/{name}:latest"
