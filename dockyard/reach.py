"""Why a call to the controller failed before it reached the API, in words a user can act on.

gRPC reports a refused port, a TLS server dialled in plaintext, a plaintext server dialled
over TLS and a certificate from another CA all as UNAVAILABLE. A second look (a TCP
connect, then a TLS handshake) tells them apart, so the CLI never says "cannot reach" to a
server that answered.
"""

from __future__ import annotations

import os
import socket
import ssl
from dataclasses import dataclass

from dockyard import auth

PROBE_TIMEOUT_S = 3.0
SEE_ENV = "(see `dockyard env`)"


@dataclass(frozen=True)
class Probe:
    answered: bool  # something accepted a TCP connection
    tls: bool  # ... and completed a TLS handshake
    trusted: bool | None  # the handshake verified against our CA (None: no CA to try)
    detail: str = ""


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def _handshake(sock: socket.socket, ctx: ssl.SSLContext) -> str:
    """'' when the TLS handshake completes, else why not."""
    try:
        with ctx.wrap_socket(sock, server_hostname=auth.SERVER_NAME):
            return ""
    except (ssl.SSLError, OSError) as err:
        return str(err)


def probe(address: str, ca_cert: bytes | None, timeout: float = PROBE_TIMEOUT_S) -> Probe:
    """Connect to `address` and try TLS: without verification (does it speak TLS?), then
    against `ca_cert` (is it the controller of that CA?)."""
    try:
        target = _split(address)
        socket.create_connection(target, timeout).close()
    except (OSError, ValueError) as err:
        return Probe(False, False, None, str(err))
    anything = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anything.check_hostname, anything.verify_mode = False, ssl.CERT_NONE
    failed = _handshake(socket.create_connection(target, timeout), anything)
    if failed:
        return Probe(True, False, None, failed)
    if ca_cert is None:
        return Probe(True, True, None)
    ours = ssl.create_default_context(cadata=ca_cert.decode(errors="replace"))
    failed = _handshake(socket.create_connection(target, timeout), ours)
    return Probe(True, True, not failed, failed)


def explain(address: str, ca_cert: bytes | None, detail: str) -> str:
    """The message for a call to `address` that failed with UNAVAILABLE (`detail`)."""
    try:
        p = probe(address, ca_cert)
    except OSError as err:  # the server went away between the two connects
        p = Probe(False, False, None, str(err))
    ca_path = os.environ.get(auth.CA_CERT_ENV, "")
    if not p.answered:
        return (
            f"cannot reach the controller at {address} ({detail}); "
            "pass --controller ADDR or set DOCKYARD_CONTROLLER " + SEE_ENV
        )
    if p.tls and ca_cert is None:
        return (
            f"the controller at {address} serves TLS: set DOCKYARD_CA_CERT=<its ca.crt, in "
            f"the controller's data dir> {SEE_ENV}"
        )
    if p.tls and p.trusted is False:
        return (
            f"the controller at {address} serves TLS with a certificate that the CA in "
            f"DOCKYARD_CA_CERT={ca_path or '(given)'} did not sign ({p.detail}): set it to "
            f"this controller's ca.crt {SEE_ENV}"
        )
    if not p.tls and ca_cert is not None:
        return (
            f"the controller at {address} answered without TLS but DOCKYARD_CA_CERT="
            f"{ca_path or '(given)'} asks for TLS: unset DOCKYARD_CA_CERT for this "
            f"controller {SEE_ENV}"
        )
    return (
        f"something at {address} answered, but not the controller's gRPC API (is it the "
        f"--http port? the CLI needs the --listen one): {detail}"
    )
