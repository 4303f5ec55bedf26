"""The cluster CA lives in the store, its key sealed: an earlier version's data dir moves its
CA files in at first start, and the store's CA is served from then on, even without them."""

from __future__ import annotations

from pathlib import Path

from controller.security.pki import CertificateAuthority
from tests.security_support import running
from tests.test_secrets_at_rest import leaks


def key_body(ca: CertificateAuthority) -> bytes:
    """A line of the CA key's PEM body: what a plaintext copy would show."""
    return ca.key_pem.splitlines()[1]


def test_an_earlier_data_dirs_ca_moves_into_the_store_sealed_and_stays_the_one_served(
    tmp_path: Path,
) -> None:
    data = tmp_path / "controller"
    data.mkdir(mode=0o700)
    earlier = CertificateAuthority.load_or_create(data)  # as a previous version left it
    with running(data, tls=True) as sc:
        assert sc.ctl is not None and sc.ctl.security.ca is not None
        assert sc.ctl.security.ca.fingerprint == earlier.fingerprint
    assert leaks(data, [key_body(earlier)]) == [("ca.key", key_body(earlier))]  # sealed in db
    (data / "ca.key").unlink()
    (data / "ca.crt").unlink()
    with running(data, tls=True) as sc:  # from the store alone
        assert sc.ctl is not None and sc.ctl.security.ca is not None
        assert sc.ctl.security.ca.fingerprint == earlier.fingerprint
        assert (data / "ca.crt").read_bytes() == earlier.pem  # published for clients again
    assert not (data / "ca.key").exists()
    assert leaks(data, [key_body(earlier)]) == []
