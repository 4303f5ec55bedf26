"""The agent's identity, kept in its state dir so that a restart is the same instance."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Identity:
    instance_id: str
    instance_arn: str = ""


def _path(state_dir: Path) -> Path:
    return Path(state_dir) / "identity.json"


def load_or_create(state_dir: Path) -> Identity:
    """Read identity.json, or create it (0600) with a fresh instance id."""
    path = _path(state_dir)
    if path.exists():
        try:
            data = json.loads(path.read_text())
            return Identity(
                instance_id=str(data["instance_id"]), instance_arn=str(data.get("instance_arn", ""))
            )
        except (ValueError, KeyError) as err:
            raise SystemExit(
                f"{path} is corrupt ({err}): move it away to join as a new instance"
            ) from None
    ident = Identity(instance_id=f"i-{uuid.uuid4().hex[:17]}")
    save(state_dir, ident)
    return ident


def save(state_dir: Path, ident: Identity) -> None:
    path = _path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(ident), f)
    os.replace(tmp, path)
