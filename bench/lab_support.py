"""A fresh 3-host lab for a benchmark (bench_failures, bench_discovery): brought up from
nothing, always taken down, and its logs kept when the run fails (the lab's own go with it).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from typing import Any

from dockyard.lab import Lab


@contextlib.contextmanager
def bench_lab(lab_dir: str, index: int, kept_logs: str, **up: Any) -> Iterator[Lab]:
    """`Lab.up(hosts=3, ...)` at `lab_dir`/`index` (`up`: its other arguments)."""
    Lab.down(lab_dir, index)
    lab = Lab.up(hosts=3, lab_dir=lab_dir, index=index, **up)
    try:
        yield lab
    except BaseException:
        shutil.rmtree(kept_logs, ignore_errors=True)
        shutil.copytree(f"{lab_dir}/logs", kept_logs)
        print(f"failed: the lab's logs are kept in {kept_logs}")
        raise
    finally:
        Lab.down(lab_dir, index)
