"""The decision cores are pure when they actually run, not only in the import graph.

`lint-imports` (make lint) checks the import statements; it does not see that importing
`controller.orchestrator.planner` first runs `controller/orchestrator/__init__.py`. This
imports each core listed in the pyproject contract in a fresh interpreter and looks at what
got loaded, so a core used by a tool or a test does not drag in the network, Docker or SQLite.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = "Decision cores are pure: no network, Docker, SQLite, processes or event loop"
# Dockyard's I/O; the standard library's socket is left out: cryptography loads it (email.utils)
IO_MODULES = ("grpc", "aiohttp", "aiodocker", "aiosqlite", "sqlite3", "subprocess", "asyncio")


def cores() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    return next(c["source_modules"] for c in contracts if c["name"] == CONTRACT)


def loaded(module: str, watched: tuple[str, ...]) -> list[str]:
    """Which of `watched` a fresh interpreter has loaded once it imported `module`."""
    probe = (
        f"import importlib, sys; importlib.import_module({module!r}); "
        f"print(' '.join(m for m in {watched!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@pytest.mark.parametrize("module", cores())
def test_a_decision_core_loads_no_io_module(module: str) -> None:
    assert loaded(module, IO_MODULES) == []


def test_the_in_memory_state_loads_no_sqlite() -> None:
    assert loaded("controller.state", ("aiosqlite", "sqlite3", "controller.store")) == []
