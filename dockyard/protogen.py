"""Generate the Python gRPC stubs from proto/ (the one source of truth for the wire).

`python -m dockyard.protogen` rewrites dockyard/v1/*_pb2*.py; tests call `generate(tmp)`
and compare, so stale stubs fail CI.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"


def proto_files() -> list[Path]:
    return sorted(PROTO_DIR.glob("dockyard/v1/*.proto"))


def generate(out_dir: Path) -> None:
    """Write stubs for every .proto under proto/ into out_dir (package dirs included)."""
    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(p.relative_to(PROTO_DIR)) for p in proto_files()],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


if __name__ == "__main__":
    generate(ROOT)
    (ROOT / "dockyard" / "v1" / "__init__.py").touch()
    sys.exit(0)
