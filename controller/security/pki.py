"""The controller's certificate authority: agent client certificates and the server's own.

Created on first start in the data dir (`ca.key` 0600, `ca.crt`), EC P-256. Agents pin it
by `sha256:<hex of SHA-256 over the CA's SubjectPublicKeyInfo>` (kubeadm's
--discovery-token-ca-cert-hash). Client certificates carry the instance id as CN and are
short-lived (renewed by the agent before expiry); the server certificate is re-issued at
every start for the fixed name agents verify (SERVER_NAME) plus the listen host.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dockyard import auth
from dockyard.pki import cert_pem, key_pem, spki_hash

SERVER_NAME = auth.SERVER_NAME  # agents verify this name (grpc.ssl_target_name_override)
CA_LIFETIME = datetime.timedelta(days=3650)
SERVER_LIFETIME = datetime.timedelta(days=365)


class CsrRejected(Exception):
    """The CSR is unreadable, badly signed, or names another instance."""


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass
class CertificateAuthority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def load_or_create(cls, data_dir: Path) -> CertificateAuthority:
        """The CA of the data dir's files, created there (`ca.key` 0600) on first start."""
        found = cls.from_files(data_dir)
        if found is not None:
            return found
        ca = cls.create()
        _write_private(Path(data_dir) / "ca.key", key_pem(ca.key))
        (Path(data_dir) / "ca.crt").write_bytes(ca.pem)
        return ca

    @classmethod
    def from_files(cls, data_dir: Path) -> CertificateAuthority | None:
        """The CA kept in a data dir's `ca.key` and `ca.crt` (None if either is missing)."""
        key_path, cert_path = Path(data_dir) / "ca.key", Path(data_dir) / "ca.crt"
        if not (key_path.exists() and cert_path.exists()):
            return None
        return cls.from_pem(key_path.read_bytes(), cert_path.read_bytes())

    @classmethod
    def from_pem(cls, key: bytes, cert: bytes) -> CertificateAuthority:
        loaded = serialization.load_pem_private_key(key, None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        return cls(loaded, x509.load_pem_x509_certificate(cert))

    @classmethod
    def create(cls) -> CertificateAuthority:
        """A new cluster CA (kept nowhere yet: the caller stores it)."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Dockyard cluster CA")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5))
            .not_valid_after(_now() + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @property
    def key_pem(self) -> bytes:
        return key_pem(self.key)

    @property
    def pem(self) -> bytes:
        return cert_pem(self.cert)

    @property
    def fingerprint(self) -> str:
        return spki_hash(self.cert)

    def _issue(
        self,
        public_key: ec.EllipticCurvePublicKey,
        cn: str,
        sans: list[x509.GeneralName],
        usage: x509.ObjectIdentifier,
        lifetime: datetime.timedelta,
        not_before: datetime.datetime | None = None,
    ) -> x509.Certificate:
        if not_before is None:  # allow some clock skew, never more than a tenth of the life
            skew = min(datetime.timedelta(minutes=5), lifetime / 10)
            not_before, lifetime = _now() - skew, lifetime + skew
        start = not_before
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + lifetime)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def server_pair(self, hosts: list[str]) -> tuple[bytes, bytes]:
        """(key PEM, cert chain PEM incl. the CA) for the controller's TLS listeners."""
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = [x509.DNSName(SERVER_NAME), x509.DNSName("localhost")]
        for host in {*hosts, "127.0.0.1"}:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                if host:
                    sans.append(x509.DNSName(host))
        cert = self._issue(
            key.public_key(), SERVER_NAME, sans, ExtendedKeyUsageOID.SERVER_AUTH, SERVER_LIFETIME
        )
        return key_pem(key), cert_pem(cert) + self.pem

    def sign_csr(
        self,
        csr_pem: bytes,
        instance_id: str,
        lifetime: datetime.timedelta,
        not_before: datetime.datetime | None = None,
        check_cn: bool = True,
    ) -> x509.Certificate:
        """A client certificate for `instance_id` from its CSR. With `check_cn` (renewal) a
        CSR's CN must be that id; a new instance gets the id the CA assigned, whatever its
        CSR asked for (a new agent does not know its id yet and sends none)."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as err:
            raise CsrRejected(f"unreadable CSR: {err}") from None
        if not csr.is_signature_valid:
            raise CsrRejected("the CSR's signature does not verify")
        cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if check_cn and cns and [a.value for a in cns] != [instance_id]:
            raise CsrRejected(f"the CSR's CN must be the instance id {instance_id}")
        public = csr.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey):
            raise CsrRejected("the CSR's key must be an EC key")
        sans: list[x509.GeneralName] = [x509.DNSName(instance_id)]
        usage = ExtendedKeyUsageOID.CLIENT_AUTH
        return self._issue(public, instance_id, sans, usage, lifetime, not_before)
