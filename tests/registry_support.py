"""Throwaway registries and images for pull tests on the machine's dockerd.

Debian's docker-registry on 127.0.0.1:<free port>: dockerd treats 127.0.0.0/8 as an
insecure registry, so plain HTTP works, with or without an htpasswd login. Everything is
removed when the context ends, even after a failed test.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from dockyard import images


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_up(addr: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://{addr}/v2/", timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # 401: up, and asking for the login
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"docker-registry on {addr} did not start within {timeout:.0f} s")


def docker(*args: str, config: Path | None = None, stdin: str | None = None) -> str:
    env = dict(os.environ, DOCKER_CONFIG=str(config)) if config else None
    out = subprocess.run(
        ["docker", *args], input=stdin, env=env, capture_output=True, text=True, timeout=300
    )
    if out.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


@contextlib.contextmanager
def local_registry(login: tuple[str, str] | None = None) -> Iterator[str]:
    """A registry's address; with `login` (user, password) it wants that htpasswd login."""
    addr = f"127.0.0.1:{_free_port()}"
    with tempfile.TemporaryDirectory() as tmp:
        config = (
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {tmp}/data\nhttp:\n  addr: {addr}\n"
        )
        if login:
            htpasswd = subprocess.run(
                ["htpasswd", "-Bbn", *login], check=True, capture_output=True, text=True
            ).stdout
            Path(tmp, "htpasswd").write_text(htpasswd)
            config += f"auth:\n  htpasswd:\n    realm: test\n    path: {tmp}/htpasswd\n"
        Path(tmp, "config.yml").write_text(config)
        proc = subprocess.Popen(
            ["docker-registry", "serve", f"{tmp}/config.yml"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_up(addr)
            yield addr
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def push(source: str, ref: str, login: tuple[str, str] | None = None) -> None:
    """Push local image `source` as `ref`, then untag `ref` so only the registry has it."""
    with tempfile.TemporaryDirectory() as config:
        cfg = Path(config)
        if login:
            registry = ref.split("/", 1)[0]
            docker(
                "login", "-u", login[0], "--password-stdin", registry, config=cfg, stdin=login[1]
            )
        docker("tag", source, ref)
        try:
            docker("push", ref, config=cfg)
        finally:
            docker("rmi", ref)


def build_layered(tag: str, layers: int, layer_bytes: int) -> None:
    """An image of `layers` layers of random (incompressible) bytes on the busybox base."""
    images.build_base()
    with tempfile.TemporaryDirectory() as ctx:
        lines = [f"FROM {images.BASE}"]
        for n in range(layers):
            Path(ctx, f"blob{n}").write_bytes(os.urandom(layer_bytes))
            lines.append(f"COPY blob{n} /blob{n}")
        Path(ctx, "Dockerfile").write_text("\n".join(lines) + "\n")
        docker("build", "-q", "-t", tag, ctx)
