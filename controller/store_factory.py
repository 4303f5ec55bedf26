"""Picks the Store backend from the `--store` setting: the one place that names backends.

`sqlite` (the default) keeps the state in the data dir. A new backend adds its branch here
(say `etcd://host:2379,host:2379/prefix`) and nothing else changes: every caller gets a
`controller.store_api.Store`.
"""

from __future__ import annotations

from pathlib import Path

from controller.store_api import Store

DEFAULT_STORE = "sqlite"
BACKENDS = (  # what `--store` accepts, for its help and its error
    "sqlite",
    "etcd://HOST:2379[,HOST:2379...][?prefix=/dockyard]",
)


class UnknownStore(ValueError):
    """A `--store` value no backend handles."""


def open_store(spec: str, data_dir: Path) -> Store:
    """The (not yet opened) backend `spec` names; `data_dir` holds this controller's files."""
    if spec == "sqlite":
        from controller.store import SqliteStore  # imported only when chosen

        return SqliteStore(data_dir)
    if spec.startswith(("etcd://", "etcds://")):
        from controller.store_etcd import EtcdStore  # imported only when chosen

        return EtcdStore(spec, data_dir)
    raise UnknownStore(
        f"--store {spec!r}: unknown state store; expected one of: {', '.join(BACKENDS)}"
    )
