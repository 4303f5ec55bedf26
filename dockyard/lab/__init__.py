"""A multi-host Dockyard lab on one Linux machine: namespaces, a dockerd per host, a registry,
the controller and agents; chaos verbs to break it; and `verify` to audit a cluster."""

from dockyard.lab.lab import Lab, preflight
from dockyard.lab.state import DEFAULT_DIR, Host, LabError

__all__ = ["DEFAULT_DIR", "Host", "Lab", "LabError", "preflight"]
