"""Lint: no absolute path into a checkout, a venv or a home directory in tracked files.

Such a path works only on the machine that wrote it (a test that ran the aws CLI from one
checkout's venv by its absolute path failed on every other clone). Use the running
interpreter's environment instead (`Path(sys.executable).parent`, `shutil.which`, paths
relative to the repository).
System paths a deployment really uses (`/var/run/docker.sock`, `/usr/local/bin/dockyard` in
the systemd units, `/var/lib/dockyard`, `/etc/dockyard`) are fine and not flagged.

`python -m tests.check_paths` (run by `make lint`) prints each offending line and exits 1.
A line that must name such a path on purpose carries the marker `abs-path: ok`.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALLOW_MARKER = "abs-path: ok"

# An absolute path starts at the beginning of a token: not after a word character, a dot
# (`.venv/bin`) or another path character (`deploy/x`), nor after `~` or `$VAR`.
_START = r"(?<![\w.~/$}-])"
_STOP = r"\s\"'`()<>,;"
_PATH_CHARS = f"[^{_STOP}]*"
FORBIDDEN = re.compile(
    _START
    + "(?:"
    # a home or a workspace: /home/NAME, /root, /Users/NAME, /work/NAME  # abs-path: ok
    + r"/(?:home|root|Users|work|workspace)/" + _PATH_CHARS
    # any absolute path through a virtualenv or an installed package tree
    + r"|/" + _PATH_CHARS + r"/(?:\.?venv|\.tox|site-packages)" + f"(?=/|[{_STOP}]|$)" + _PATH_CHARS
    + ")"
)  # fmt: skip


def offending(text: str) -> Iterator[tuple[int, str]]:
    """(line number, path) for each absolute checkout/venv/home path in `text`."""
    for number, line in enumerate(text.splitlines(), 1):
        if ALLOW_MARKER in line:
            continue
        for match in FORBIDDEN.finditer(line):
            yield number, match.group(0)


def tracked_files(root: Path = ROOT) -> list[Path]:
    """The files a clone would get: tracked ones, and new ones not ignored (about to be)."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [root / name for name in out.split("\0") if name]


def findings(files: Iterable[Path], root: Path = ROOT) -> list[str]:
    """`path:line: path-found` for every offending path in `files`."""
    found = []
    for path in files:
        try:
            text = path.read_text()
        except (UnicodeDecodeError, FileNotFoundError):
            continue  # binary, or deleted in the work tree
        for number, hit in offending(text):
            found.append(f"{path.relative_to(root)}:{number}: {hit}")
    return found


def main() -> int:
    found = findings(tracked_files())
    for line in found:
        print(line)
    if found:
        print(
            f"{len(found)} absolute path(s) into a checkout, venv or home: use "
            "Path(sys.executable).parent, shutil.which or repository-relative paths",
            file=sys.stderr,
        )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
