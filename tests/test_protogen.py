"""The generated stubs in dockyard/v1 must match proto/: stale stubs fail CI."""

from __future__ import annotations

from pathlib import Path

from dockyard import protogen


def test_stubs_are_up_to_date(tmp_path: Path) -> None:
    protogen.generate(tmp_path)
    generated = sorted((tmp_path / "dockyard" / "v1").glob("*.py*"))
    assert generated, "protoc produced nothing"
    committed = protogen.ROOT / "dockyard" / "v1"
    for path in generated:
        assert (committed / path.name).read_text() == path.read_text(), (
            f"dockyard/v1/{path.name} is stale: run `make proto`"
        )
