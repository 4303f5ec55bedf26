"""A fresh clone at any path, on a machine that never ran the suite, must pass `make test`.

Two ways that broke before: a test ran the aws CLI from one checkout's venv by absolute path,
and tests called `htpasswd`, which nothing installed. These checks keep both from coming back:
no absolute path into a checkout, venv or home in any tracked file, and every external command
the code and tests run is installed by the install step (`deploy/ensure-docker.sh`, which
`make test` runs) or by the venv (pyproject's dev extras).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tests.check_paths import ROOT, findings, offending, tracked_files

# argv[0] of a subprocess call, when it is a literal: run(["htpasswd", ...]), Popen(["x" ...
SPAWN = re.compile(
    r"(?:\brun|\bPopen|create_subprocess_exec|check_output)\(\s*\[?\s*\"([A-Za-z0-9_.-]+)\""
)
# Commands spawned from a variable, which SPAWN cannot see (dockyard/lab, tests/support.py).
SPAWNED_INDIRECTLY = {"dockerd", "nsenter", "busybox"}
# Commands every machine that can clone the project has (bash, coreutils, git itself).
BASE_SYSTEM = {"bash", "git", "rm"}


def installed_by_the_install_step() -> set[str]:
    """The commands deploy/ensure-docker.sh makes sure of (its `command:package` pairs)."""
    script = (ROOT / "deploy" / "ensure-docker.sh").read_text()
    return set(re.findall(r"\b([a-z][a-z0-9-]*):[a-z0-9][a-z0-9.+-]*\b", script))


def spawned_commands() -> dict[str, str]:
    """Each literal command the project's Python runs, with one file that runs it."""
    found: dict[str, str] = {}
    for path in tracked_files():
        if path.suffix == ".py" and path.name != Path(__file__).name:
            for name in SPAWN.findall(path.read_text()):
                found.setdefault(name, str(path.relative_to(ROOT)))
    return found


def test_no_tracked_file_names_a_path_into_a_checkout_venv_or_home() -> None:
    assert findings(tracked_files()) == []


def test_the_path_lint_flags_checkouts_and_venvs_but_not_system_paths() -> None:
    venv_aws = "/" + "/".join(["work", "main", ".venv", "bin", "aws"])  # not a literal: lint
    flagged = [
        f'AWS = Path("{venv_aws}")',
        "python=/opt/ci/.venv/bin/python",  # abs-path: ok
        "see /home/alice/dockyard/README.md",  # abs-path: ok
        "/usr/lib/python3/site-packages/dockyard",  # abs-path: ok
    ]
    for line in flagged:
        assert list(offending(line)), line
    fine = [
        "--docker-host unix:///var/run/docker.sock",
        "ExecStart=/usr/local/bin/dockyard agent --state-dir /var/lib/dockyard/agent",
        "EnvironmentFile=/etc/dockyard/agent.env",
        ".venv/bin/python -m bench.bench_services",
        "cp admin-credentials ~/.dockyard/credentials",
        f"{venv_aws}  # abs-path: ok",
    ]
    for line in fine:
        assert not list(offending(line)), line


def test_every_command_the_code_runs_is_installed_by_make_test() -> None:
    venv_bin = Path(sys.executable).parent
    provided = installed_by_the_install_step() | BASE_SYSTEM
    missing = {
        name: where
        for name, where in spawned_commands().items()
        if name not in provided and not (venv_bin / name).is_file()
    }
    missing.update({n: "(spawned indirectly)" for n in SPAWNED_INDIRECTLY - provided})
    assert missing == {}, "add these to deploy/ensure-docker.sh (command:debian-package)"


def test_the_venv_tools_the_tests_run_come_from_the_dev_extras() -> None:
    venv_bin = Path(sys.executable).parent
    for name in ("aws", "moto_server"):
        assert (venv_bin / name).is_file(), f"{name}: pip install -e '.[dev]' provides it"
