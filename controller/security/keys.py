"""Access keys for API callers (ECS SigV4 and the native API): id, secret, role.

The controller needs each secret to recompute HMAC signatures (as AWS does), so secrets are
kept in the store, sealed (controller.security.sealing); no operation returns a secret except
the CreateAccessKey call that made it. On first start an admin key is written to
`<data-dir>/admin-credentials` (0600) so the operator can bootstrap.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.model import now
from controller.security.sealing import Sealer
from controller.store_api import Delete
from dockyard.auth import Credentials, write_credentials
from dockyard.errors import ApiError

if TYPE_CHECKING:
    from controller.ops.core import Core

KIND = "accesskey"
ROLES = ("admin", "operator", "readonly")  # operator: readonly + exec (issue 20)
KEY_ID_RE = re.compile(r"^DYAK[A-Z0-9]{16}$")
MAX_KEYS = 1000
ADMIN_FILE = "admin-credentials"
BOOTSTRAP = "bootstrap admin key (admin-credentials)"
_ALPHABET = string.ascii_uppercase + string.digits


@dataclass
class AccessKey:
    access_key_id: str
    secret_access_key: str
    role: str
    description: str = ""
    created_at: float = 0.0

    def view(self) -> dict[str, Any]:
        return {
            "accessKeyId": self.access_key_id,
            "role": self.role,
            "description": self.description,
            "createdAt": self.created_at,
        }


class AccessKeys:
    def __init__(self, service: Core) -> None:
        self.service = service
        self.keys = service.record.access_keys  # the state of record holds them
        self.sealer: Sealer | None = None  # set by load(): secrets are stored sealed

    async def load(self, data_dir: Path | None, sealer: Sealer, shared: bool = False) -> None:
        """Load keys; on first start create an admin key and write it to admin-credentials.
        `shared` (several controllers on one store): every controller's data dir gets that
        first start's admin key, so any of them bootstraps the operator."""
        self.sealer = sealer
        for key in stored_keys(sealer, self.service.record.take(KIND)):
            self.keys[key.access_key_id] = key
        if not self.keys:
            key = await self.create("admin", BOOTSTRAP)
            if data_dir is not None:
                write_credentials(Path(data_dir) / ADMIN_FILE, _credentials(key))
        elif shared and data_dir is not None:
            publish_admin(Path(data_dir), self.keys.values())

    def get(self, key_id: str) -> AccessKey | None:
        return self.keys.get(key_id)

    async def create(self, role: str, description: str = "") -> AccessKey:
        if len(self.keys) >= MAX_KEYS:
            raise ApiError("LimitExceededException", f"at most {MAX_KEYS} access keys")
        key_id = "DYAK" + "".join(secrets.choice(_ALPHABET) for _ in range(16))
        key = AccessKey(key_id, secrets.token_urlsafe(30), role, description, now())
        self.keys[key_id] = key
        assert self.sealer is not None, "load() first"
        await self.service.commit([self.sealer.put(KIND, key_id, asdict(key))])
        return key

    async def delete(self, key_id: str) -> None:
        """Forget a key (DeleteAccessKey, controller/ops/security.py, checks it may go)."""
        del self.keys[key_id]
        await self.service.commit([Delete(KIND, key_id)])


def _credentials(key: AccessKey) -> Credentials:
    return Credentials(key.access_key_id, key.secret_access_key)


def publish_admin(data_dir: Path, keys: Iterable[AccessKey]) -> None:
    """Write the cluster's first start's admin key to `data_dir`'s admin-credentials if that
    file is missing (several controllers on one store: each data dir gets it)."""
    made = [k for k in keys if k.description == BOOTSTRAP and k.role == "admin"]
    path = Path(data_dir) / ADMIN_FILE
    if made and not path.exists():
        write_credentials(path, _credentials(min(made, key=lambda k: k.created_at)))


def stored_keys(sealer: Sealer, rows: list[tuple[str, str, dict[str, Any]]]) -> list[AccessKey]:
    """The access keys of stored rows, opened (a standby reads them without loading them)."""
    return [AccessKey(**doc) for doc in sealer.open_rows(KIND, rows)]
