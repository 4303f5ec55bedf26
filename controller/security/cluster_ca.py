"""The one cluster CA, kept in the store: every controller of a cluster serves and signs with it.

The CA's key is sealed like the other secrets (controller.security.sealing, kind "ca"), so
any controller sharing the store (etcd) and the secrets key serves TLS under the same CA and
agents pinned to it (`--ca-hash`) accept every controller. At start: the store's CA if it
holds one; else the data dir's `ca.key`/`ca.crt` of an earlier version, moved into the store;
else a new one (a lone SQLite controller also keeps its files, as before). The public
`ca.crt` is (re)written into every controller's data dir, for `dockyard env` and clients.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from controller.security.pki import CertificateAuthority
from controller.security.sealing import Sealer
from controller.store_api import Store

if TYPE_CHECKING:
    from controller.ops.core import Core

KIND, KEY = "ca", "cluster"
CERT_FILE = "ca.crt"


async def load(
    service: Core, sealer: Sealer, data_dir: Path | None, shared: bool
) -> CertificateAuthority:
    """The cluster CA (stored on first start); `shared`: the store is shared by several
    controllers, so the CA's key is kept in no data dir."""
    rows = service.record.take(KIND)
    if rows:
        doc = sealer.open_doc(KIND, KEY, rows[0][2])
        ca = CertificateAuthority.from_pem(doc["key"].encode(), doc["cert"].encode())
    else:
        ca = _first_start(data_dir, shared)
        doc = {"key": ca.key_pem.decode(), "cert": ca.pem.decode()}
        await service.commit([sealer.put(KIND, KEY, doc)])
    if data_dir is not None:
        publish(ca, Path(data_dir))
    return ca


async def stored(store: Store, sealer: Sealer) -> CertificateAuthority | None:
    """The CA the store holds (None before the first leader made it), read only."""
    rows = await store.load_rows(KIND)
    if not rows:
        return None
    doc = sealer.open_doc(KIND, KEY, rows[0][2])
    return CertificateAuthority.from_pem(doc["key"].encode(), doc["cert"].encode())


def _first_start(data_dir: Path | None, shared: bool) -> CertificateAuthority:
    if data_dir is None:
        return CertificateAuthority.create()
    found = CertificateAuthority.from_files(data_dir)
    if found is not None:  # an earlier version's CA: the store holds it from now on
        return found
    if shared:
        return CertificateAuthority.create()
    return CertificateAuthority.load_or_create(data_dir)


def publish(ca: CertificateAuthority, data_dir: Path) -> None:
    """Write the public CA certificate into the data dir when it is missing or another."""
    path = data_dir / CERT_FILE
    if not path.exists() or path.read_bytes() != ca.pem:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_bytes(ca.pem)
