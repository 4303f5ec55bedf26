"""The agent's identity, kept in its state dir so that a restart is the same instance.

`secret` proves the identity in plaintext (loopback) setups: the controller binds it to the
instance id at the first registration and asks for it again on every later one, so a join
token alone never makes anyone this instance. Over TLS the certificate proves it instead,
and the controller assigns the instance id at enrollment (agent.enroll).
"""

from __future__ import annotations

import json
import os
import secrets
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path


def _new_secret() -> str:
    return secrets.token_hex(32)


@dataclass
class Identity:
    instance_id: str
    instance_arn: str = ""
    secret: str = field(default_factory=_new_secret, repr=False)


def _path(state_dir: Path) -> Path:
    return Path(state_dir) / "identity.json"


def load_or_create(state_dir: Path) -> Identity:
    """Read identity.json, or create it (0600) with a fresh instance id and secret."""
    path = _path(state_dir)
    if not path.exists():
        ident = Identity(instance_id=f"i-{uuid.uuid4().hex[:17]}")
        save(state_dir, ident)
        return ident
    try:
        data = json.loads(path.read_text())
        ident = Identity(
            instance_id=str(data["instance_id"]),
            instance_arn=str(data.get("instance_arn", "")),
            secret=str(data.get("secret", "")),
        )
    except (ValueError, KeyError) as err:
        raise SystemExit(
            f"{path} is corrupt ({err}): move it away to join as a new instance"
        ) from None
    if not ident.secret:  # written before identities had one: the next registration binds it
        ident.secret = _new_secret()
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
