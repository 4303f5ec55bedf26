"""PEM and pinning helpers both ends of the agent's TLS use: no I/O, no controller.

The controller's CA (controller/security/pki.py) signs with them; the agent (agent/enroll.py)
writes its key and pins the controller's CA by `sha256:<hex of SHA-256 over the CA's
SubjectPublicKeyInfo>` (kubeadm's --discovery-token-ca-cert-hash), which `spki_hash` computes.
"""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def spki_hash(cert: x509.Certificate) -> str:
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(spki).hexdigest()
