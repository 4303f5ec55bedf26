"""API credentials and request signing, shared by the client (CLI, lab, tests) and the controller.

The native gRPC API is authenticated like AWS's: each call carries the caller's access key id,
a timestamp and an HMAC-SHA256 over (method, timestamp, SHA-256 of the serialised request),
in metadata. The secret never travels. Credentials come from DOCKYARD_ACCESS_KEY_ID /
DOCKYARD_SECRET_ACCESS_KEY, else from ~/.dockyard/credentials (the AWS credentials-file
format, so `aws --profile` can read it too), else there are none.
"""

from __future__ import annotations

import configparser
import hashlib
import hmac
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from dockyard.errors import ApiError

ACCESS_KEY_ENV = "DOCKYARD_ACCESS_KEY_ID"
SECRET_KEY_ENV = "DOCKYARD_SECRET_ACCESS_KEY"
CREDENTIALS_ENV = "DOCKYARD_CREDENTIALS_FILE"
ALGORITHM = "DOCKYARD-HMAC-SHA256"
KEY_ID_MD = "dockyard-access-key-id"
TIMESTAMP_MD = "dockyard-timestamp"
SIGNATURE_MD = "dockyard-signature"
CA_CERT_ENV = "DOCKYARD_CA_CERT"  # path of the controller's ca.crt: the client speaks TLS
SERVER_NAME = "dockyard-controller"  # the name the controller's certificate is issued for
MAX_SKEW_S = 300  # a signed call is valid this long either side of the controller's clock


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    source: str = field(default="", compare=False)  # where it was read, for error messages

    def __repr__(self) -> str:  # never print the secret
        return f"Credentials({self.access_key_id!r}, ****)"


def default_credentials_file() -> Path:
    return Path(os.environ.get(CREDENTIALS_ENV) or Path.home() / ".dockyard" / "credentials")


def parse_credentials(text: str, profile: str = "default") -> Credentials | None:
    """[profile] with aws_access_key_id / aws_secret_access_key, as AWS's file has them."""
    parser = configparser.ConfigParser()
    try:
        parser.read_string(text)
        section = parser[profile]
        return Credentials(section["aws_access_key_id"], section["aws_secret_access_key"])
    except (configparser.Error, KeyError):
        return None


def format_credentials(creds: Credentials, profile: str = "default") -> str:
    return (
        f"[{profile}]\naws_access_key_id = {creds.access_key_id}\n"
        f"aws_secret_access_key = {creds.secret_access_key}\n"
    )


def write_credentials(path: Path, creds: Credentials) -> None:
    """Write a credentials file readable by its owner only (0600, parent 0700)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(format_credentials(creds))
    os.replace(tmp, path)


def load_credentials(
    env: Mapping[str, str] | None = None, path: Path | None = None
) -> Credentials | None:
    """The caller's credentials: environment first, then the credentials file, else None."""
    env = os.environ if env is None else env
    key_id, secret = env.get(ACCESS_KEY_ENV, ""), env.get(SECRET_KEY_ENV, "")
    if key_id and secret:
        return Credentials(key_id, secret, f"${ACCESS_KEY_ENV}")
    path = path or default_credentials_file()
    try:
        creds = parse_credentials(path.read_text())
    except OSError:
        return None
    return replace(creds, source=f"the credentials file {path}") if creds else None


def string_to_sign(method: str, timestamp: str, body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    return f"{ALGORITHM}\n{method}\n{timestamp}\n{digest}".encode()


def signature(secret: str, method: str, timestamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), string_to_sign(method, timestamp, body), "sha256").hexdigest()


def signed_metadata(
    creds: Credentials, method: str, body: bytes, at: float | None = None
) -> tuple[tuple[str, str], ...]:
    """gRPC metadata authenticating one call of `method` (e.g. /dockyard.v1.ClusterApi/RunTask)."""
    ts = f"{time.time() if at is None else at:.3f}"
    sig = signature(creds.secret_access_key, method, ts, body)
    return ((KEY_ID_MD, creds.access_key_id), (TIMESTAMP_MD, ts), (SIGNATURE_MD, sig))


def load_ca_cert(env: Mapping[str, str] | None = None) -> bytes | None:
    """The controller's CA certificate if $DOCKYARD_CA_CERT names one (TLS), else None."""
    path = (os.environ if env is None else env).get(CA_CERT_ENV, "")
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise ApiError(
            "ClientException", f"{CA_CERT_ENV}={path}: cannot read it ({err.strerror})"
        ) from None
