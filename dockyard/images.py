"""Build Dockyard's sample images locally: no public registry is reachable from these hosts.

The base is a busybox rootfs made from Debian's busybox-static and `docker import`ed; the
samples are small Dockerfiles on top of it. `build_all(docker_host)` is idempotent and
returns the local tags; `push_all` re-tags and pushes them to a registry.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
BASE = "dockyard/busybox:latest"

# name -> Dockerfile body (after FROM base). Keep them tiny: they are pulled in tests.
SAMPLES: dict[str, str] = {
    # An HTTP server on :8080 that answers with its hostname.
    "dockyard/httpd:latest": (
        "RUN mkdir -p /www && echo ok > /www/index.html\n"
        'CMD ["sh", "-c", "hostname > /www/host; trap \'exit 0\' TERM; '
        'httpd -f -v -p 8080 -h /www & wait"]\n'
    ),
    # Sleeps until told to stop; exits 0 on SIGTERM.
    "dockyard/sleeper:latest": ('CMD ["sh", "-c", "trap \'exit 0\' TERM; sleep 86400 & wait"]\n'),
    # Exits with $EXIT_CODE (default 3) after $DELAY seconds (default 2).
    "dockyard/crasher:latest": (
        'CMD ["sh", "-c", "sleep ${DELAY:-2}; echo crashing; exit ${EXIT_CODE:-3}"]\n'
    ),
    # Ignores SIGTERM: only SIGKILL stops it.
    "dockyard/stubborn:latest": (
        'CMD ["sh", "-c", "trap \'echo ignoring TERM\' TERM; while true; do sleep 1; done"]\n'
    ),
}


def _docker(docker_host: str | None, *args: str, stdin: bytes | None = None) -> str:
    env = dict(os.environ)
    if docker_host:
        env["DOCKER_HOST"] = docker_host
    out = subprocess.run(["docker", *args], input=stdin, capture_output=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {out.stderr.decode().strip()}")
    return out.stdout.decode()


def image_exists(tag: str, docker_host: str | None = None, digest: str = "") -> bool:
    """True if `tag` exists (and, given `digest`, was built from that Dockerfile)."""
    try:
        out = _docker(
            docker_host,
            "image",
            "inspect",
            "--format",
            '{{index .Config.Labels "dockyard.sample-digest"}}',
            tag,
        )
    except RuntimeError:
        return False
    return not digest or out.strip() == digest


def busybox_rootfs_tar() -> bytes:
    """A tar of a minimal rootfs: busybox-static and a symlink per applet."""
    if not BUSYBOX.exists():
        raise RuntimeError("busybox not found: apt-get install -y busybox-static")
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], capture_output=True, check=True, text=True
    ).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "tmp", "etc", "proc", "sys", "dev", "root", "www"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(str(BUSYBOX), arcname="bin/busybox")
        for name in applets:
            if name == "busybox":
                continue
            link = tarfile.TarInfo(f"bin/{name}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        for name, body in (
            ("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
            ("etc/group", b"root:x:0:\n"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def build_base(docker_host: str | None = None) -> str:
    if not image_exists(BASE, docker_host):
        _docker(
            docker_host,
            "import",
            "--change",
            'CMD ["sh"]',
            "--change",
            "ENV PATH=/bin",
            "-",
            BASE,
            stdin=busybox_rootfs_tar(),
        )
    return BASE


def build_all(docker_host: str | None = None) -> list[str]:
    """Build the base and every sample (skipping those present); returns the tags."""
    build_base(docker_host)
    tags = [BASE]
    for tag, body in SAMPLES.items():
        digest = hashlib.sha256(body.encode()).hexdigest()[:16]
        if not image_exists(tag, docker_host, digest):
            with tempfile.TemporaryDirectory() as ctx:
                Path(ctx, "Dockerfile").write_text(
                    f"FROM {BASE}\n{body}LABEL dockyard.sample-digest={digest}\n"
                )
                _docker(docker_host, "build", "-q", "-t", tag, ctx)
        tags.append(tag)
    return tags


def push_all(registry: str, docker_host: str | None = None) -> list[str]:
    """Tag every sample as `<registry>/<name>` and push it; returns the pushed refs."""
    pushed = []
    for tag in build_all(docker_host):
        ref = f"{registry}/{tag}"
        _docker(docker_host, "tag", tag, ref)
        _docker(docker_host, "push", ref)
        pushed.append(ref)
    return pushed


def have_docker_cli() -> bool:
    return shutil.which("docker") is not None
