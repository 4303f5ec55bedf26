"""The names a controller's server certificates cover.

A client verifying `https://HOST:7080` (the aws CLI, boto3) needs HOST in the certificate:
the bound host, every --advertise-address, and for a wildcard bind (0.0.0.0, the
deployment example) this machine's hostname and interface addresses.
"""

from __future__ import annotations

import fcntl
import socket
import struct

from controller.security import pki
from dockyard.endpoints import WILDCARDS

SIOCGIFADDR = 0x8915  # Linux ioctl: an interface's IPv4 address


def _interface_addresses() -> list[str]:
    """This machine's IPv4 interface addresses (Linux; empty elsewhere)."""
    out = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                req = struct.pack("256s", name.encode()[:15])
                out.append(socket.inet_ntoa(fcntl.ioctl(s.fileno(), SIOCGIFADDR, req)[20:24]))
            except OSError:
                continue  # no IPv4 address on it
    return out


def certificate_names(bind: str, advertise: tuple[str, ...]) -> list[str]:
    """Names a server certificate for `bind` must cover: its host and the advertised names;
    for a wildcard bind also this machine's hostname and addresses, so that
    `https://VM-ADDRESS:7080` verifies without --advertise-address."""
    host = bind.rpartition(":")[0].strip("[]")
    names = [host, *advertise]
    if host in WILDCARDS:
        names += [socket.gethostname(), socket.getfqdn(), *_interface_addresses()]
    fixed = (*WILDCARDS, "localhost", pki.SERVER_NAME)  # server_pair always has these
    return [n for n in dict.fromkeys(names) if n not in fixed]
