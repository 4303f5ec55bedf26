"""The README is executed: its shell and Python examples run against a real cluster.

Every fenced block a user might paste (info string `sh`, `bash`, `shell`, `console`,
`python`, or none) must be preceded by a marker comment, so no example can be added
unchecked:

    <!-- readme-test: run -->                      run it against a real cluster
    <!-- readme-test: run (given: app.env) -->     ... with files/variables a user would have
    <!-- readme-test: skip REASON -->              not run, and why (a synopsis, the lab, ...)

A `run` block is executed as one `bash -euo pipefail` script (`python` blocks by the venv's
python) in a scratch directory that shows the checkout's files, with the environment a user
has after `make up` (tests/support.py's LocalCluster: a real controller and agent):
the venv's bin dir first on PATH, a HOME whose ~/.dockyard/credentials holds the admin key
(as `make up` writes it), and what `dockyard env` exports (see `dockyard_env`). What the
harness changes, and nothing else:

- the README's default addresses 127.0.0.1:7070 / :7080 become the test cluster's ports;
- what a `(given: ...)` marker lists is provided: files a user would have written (GIVEN_FILES),
  variables their shell would hold (GIVEN_ENV), and local stand-ins for what lies outside
  this machine (STANDINS: moto's server for AWS's STS, a script for a credential helper);
- `dockyard controller ...` / `dockyard agent ...` lines (daemons that run until stopped) are
  checked with the CLI's own argument parser instead of run: the harness runs the daemons;
- a `dockyard ... -f` (follow) line must still be following after FOLLOW_SECONDS; it is then
  interrupted, as a user's Ctrl-C would.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dockyard import auth
from dockyard.cli.main import build_parser
from tests.check_paths import ROOT
from tests.support import LocalCluster, moto_server

README = ROOT / "README.md"
MARKER = re.compile(r"<!--\s*readme-test:\s*(run|skip)\b(.*?)-->")
GIVEN = re.compile(r"^\(given:\s*(.*)\)$")
PASTEABLE = {"", "sh", "bash", "shell", "console", "python"}
FOLLOW_SECONDS = 4
HIDDEN = {".git", ".venv", ".data", ".mypy_cache", ".ruff_cache", ".pytest_cache"}

# What a `(given: ...)` marker may ask for: files a user would have written beforehand, and
# variables their shell would hold. AWS's documented example keys: nothing is called with them.
GIVEN_FILES = {
    "app.env": "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n"
    "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
    "login.json": '{"username": "puller", "password": "example-password"}\n',
}
GIVEN_ENV = {
    "AWS keys": {
        "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    },
}
# Stand-ins for what a user's example reaches outside this machine: AWS's STS is played by
# moto's server, a user's credential_process helper by a script printing AWS's JSON.
STANDINS = {"STS": "https://sts.amazonaws.com", "creds": "/usr/local/bin/creds"}
CREDS_HELPER = (
    '#!/bin/sh\necho \'{"Version": 1, "AccessKeyId": "AKIAIOSFODNN7EXAMPLE", '
    '"SecretAccessKey": "example"}\'\n'
)
STDIN = "example-value\n"  # what a user types at a command that reads stdin


@dataclass(frozen=True)
class Example:
    line: int  # of the opening fence, 1-based
    info: str
    body: str
    mode: str | None  # "run", "skip", or None when unmarked
    note: str  # the skip reason, or the run's "(given: ...)"

    @property
    def given(self) -> list[str]:
        m = GIVEN.match(self.note)
        return [g.strip() for g in m.group(1).split(",")] if m else []


def examples(text: str) -> list[Example]:
    """The README's fenced blocks, each with the marker comment just above it (if any)."""
    lines = text.splitlines()
    found, i = [], 0
    while i < len(lines):
        if not lines[i].startswith("```"):
            i += 1
            continue
        start, info = i, lines[i][3:].strip()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), len(lines))
        above = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER.search(above)
        mode, note = (marker.group(1), marker.group(2).strip()) if marker else (None, "")
        found.append(Example(start + 1, info, "\n".join(lines[start + 1 : end]), mode, note))
        i = end + 1
    return found


def commands(example: Example) -> list[str]:
    """The block's shell commands, continuation lines joined; a `console` block's are the
    `$ ` lines (its other lines are output)."""
    out, current = [], ""
    for raw in example.body.splitlines():
        if example.info == "console" and not current:
            if not raw.startswith("$ "):
                continue
            raw = raw[2:]
        current = f"{current}\n{raw}" if current else raw
        if _complete(current):
            out.append(current)
            current = ""
    return [*out, current] if current else out


def _complete(command: str) -> bool:
    if command.rstrip().endswith("\\"):
        return False
    try:
        shlex.split(command, comments=True)
    except ValueError:  # an open quote: the command goes on on the next line
        return False
    return True


def rewrite(command: str) -> str:
    """The command as the harness runs it (see the module docstring)."""
    argv = shlex.split(command, comments=True)
    if argv[:1] != ["dockyard"]:
        return command
    if argv[1:2] in (["controller"], ["agent"]):
        check_daemon_line(argv)
        return f": 'the {argv[1]} line parses, the harness runs that daemon'"
    if {"-f", "--follow"} & set(argv):  # newlines: the command may end with a comment
        return (
            f"if timeout -s INT {FOLLOW_SECONDS} {command}\nthen :; else rc=$?\n"
            '  [ "$rc" = 124 ] || { echo "follow ended early: exit $rc" >&2; exit "$rc"; }\nfi'
        )
    return command


def check_daemon_line(argv: list[str]) -> None:
    """A daemon line's flags as the CLI parses them: a renamed flag fails here."""
    try:
        build_parser().parse_args(argv[1:])
    except SystemExit as exit_:
        raise AssertionError(f"README: `{shlex.join(argv)}` does not parse") from exit_


def dockyard_env(lc: LocalCluster) -> dict[str, str]:
    """What a shell needs to reach this cluster before any example runs.

    DOCKYARD_QUICKSTART_DIR makes the test cluster "the `make up` cluster" for everything that
    looks for that one (its data dir is `controller/` below it, as under `.data/`): so an
    example starting with `eval "$(dockyard env)"` (issue 16, item 2) finds this cluster.
    DOCKYARD_CONTROLLER stands for the CLI's default address, which the test cluster cannot
    use; once the README's examples all begin with that eval, it can go.
    """
    return {"DOCKYARD_QUICKSTART_DIR": str(lc.root), "DOCKYARD_CONTROLLER": lc.address}


def user_env(lc: LocalCluster, home: Path, given: list[str]) -> dict[str, str]:
    """A user's shell after `make up`: nothing inherited from the test run but PATH."""
    venv_bin = str(Path(sys.executable).parent)
    env = {
        "PATH": os.pathsep.join([venv_bin, os.environ.get("PATH", os.defpath)]),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "AWS_EC2_METADATA_DISABLED": "true",  # no instance-metadata probe off EC2
        **dockyard_env(lc),
    }
    for name in given:
        env.update(GIVEN_ENV.get(name, {}))
    return env


def workdir(tmp: Path, given: list[str]) -> Path:
    """A scratch directory that shows the checkout's files (examples name deploy/... paths)
    and its venv, plus the given files, so an example never writes into the checkout."""
    work = tmp / "work"
    work.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in HIDDEN:
            (work / entry.name).symlink_to(entry)
    (work / ".venv").symlink_to(sys.prefix)  # `.venv/bin/dockyard` as `make up` tells users
    for name in given:
        if name in GIVEN_FILES:
            (work / name).write_text(GIVEN_FILES[name])
    return work


@contextlib.contextmanager
def standins(given: list[str], tmp: Path) -> Iterator[dict[str, str]]:
    """{what the README names: its local stand-in} for the given outside services/helpers."""
    found: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        if "STS" in given:
            found[STANDINS["STS"]] = stack.enter_context(moto_server())
        if "creds" in given:
            helper = tmp / "creds"
            helper.write_text(CREDS_HELPER)
            helper.chmod(0o755)
            found[STANDINS["creds"]] = str(helper)
        yield found


def script(example: Example, lc: LocalCluster, replace: dict[str, str]) -> str:
    """The text the harness runs for a `run` block."""
    if example.info == "python":
        text = example.body
    else:
        text = "\n".join(rewrite(c) for c in commands(example))
    defaults = {"127.0.0.1:7070": lc.address, "127.0.0.1:7080": f"127.0.0.1:{lc.http_port}"}
    for readme_text, test_text in {**defaults, **replace}.items():
        text = text.replace(readme_text, test_text)
    return text


def run_example(example: Example, lc: LocalCluster, tmp: Path) -> subprocess.CompletedProcess[str]:
    home = tmp / "home"
    auth.write_credentials(home / ".dockyard" / "credentials", _admin(lc))  # as `make up` does
    env = user_env(lc, home, example.given)
    with standins(example.given, tmp) as replace:
        text = script(example, lc, replace)
        if example.info == "python":
            argv = [str(Path(sys.executable).parent / "python"), "-c", text]
        else:
            argv = ["bash", "-euo", "pipefail", "-xc", text]
        return subprocess.run(
            argv,
            cwd=workdir(tmp, example.given),
            env=env,
            input=STDIN,
            capture_output=True,
            text=True,
            timeout=300,
        )


def _admin(lc: LocalCluster) -> auth.Credentials:
    creds = lc.credentials()
    assert creds is not None, "the controller wrote no admin-credentials"
    return creds


def readme_examples() -> list[Example]:
    return examples(README.read_text())


def runnable() -> list[Example]:
    return [e for e in readme_examples() if e.mode == "run"]


def _id(example: Example) -> str:
    first = next(iter(commands(example)), example.body.strip()) or "empty"
    return f"L{example.line}:{' '.join(first.split()[:3])[:40]}"


# ---------------------------------------------------------------- the markers (no Docker)


def test_every_pasteable_readme_block_is_marked_run_or_skip_with_a_reason() -> None:
    problems = []
    for e in readme_examples():
        if e.info not in PASTEABLE:
            continue
        if e.mode is None:
            problems.append(f"README.md:{e.line}: no <!-- readme-test: run|skip REASON -->")
        elif e.mode == "skip" and not e.note:
            problems.append(f"README.md:{e.line}: a skipped example needs its reason")
        elif unknown := set(e.given) - GIVEN_FILES.keys() - GIVEN_ENV.keys() - STANDINS.keys():
            problems.append(f"README.md:{e.line}: unknown given {sorted(unknown)}")
    assert problems == []
    assert runnable(), "no README example is run"


def test_the_harness_splits_console_blocks_and_rewrites_daemons_and_follows() -> None:
    block = Example(
        1,
        "console",
        "$ dockyard run web \\\n    --count 2\nTASK  STATUS\n$ echo 'a\nb'\nab\n",
        "run",
        "",
    )
    assert commands(block) == ["dockyard run web \\\n    --count 2", "echo 'a\nb'"]
    assert rewrite("dockyard agent --controller C:7070 --state-dir d").startswith(":")
    with pytest.raises(AssertionError, match="does not parse"):
        rewrite("dockyard agent --no-such-flag")
    assert rewrite('dockyard logs "$T" -f  # Ctrl-C').startswith("if timeout -s INT")


# ---------------------------------------------------------------- the examples, run


@pytest.fixture(scope="module")
def readme_cluster(
    tmp_path_factory: pytest.TempPathFactory, sample_images: list[str]
) -> Iterator[LocalCluster]:
    """The cluster a user has after `make up`: a controller and one agent."""
    lc = LocalCluster(tmp_path_factory.mktemp("readme"))
    try:
        lc.start_controller()
        lc.start_agent("a1")
        lc.wait_connected("a1")
        yield lc
    finally:
        lc.stop()


@pytest.mark.docker
@pytest.mark.parametrize("example", runnable(), ids=_id)
def test_readme_example_runs(
    example: Example, readme_cluster: LocalCluster, tmp_path: Path
) -> None:
    done = run_example(example, readme_cluster, tmp_path)
    assert done.returncode == 0, (
        f"README.md:{example.line} failed (exit {done.returncode})\n"
        f"--- stdout\n{done.stdout}\n--- stderr (bash -x trace)\n{done.stderr}"
    )


@pytest.mark.docker
def test_a_broken_example_fails(readme_cluster: LocalCluster, tmp_path: Path) -> None:
    """The harness is not a rubber stamp: a command that fails midway fails the example."""
    broken = Example(
        1, "sh", "dockyard tasks list\ndockyard tasks list --no-such-flag\n", "run", ""
    )
    done = run_example(broken, readme_cluster, tmp_path)
    assert done.returncode != 0 and "--no-such-flag" in done.stderr
