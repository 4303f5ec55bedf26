"""`dockyard backup FILE` and `dockyard restore FILE`: a controller's whole state to a file
and back, for either store backend (the format and its promises: controller/backup.py)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the controller's modules load only when a command runs
    from controller.backup import Backup
    from controller.store_api import Store

DEFAULT_DATA_DIR = "/var/lib/dockyard/controller"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    b = sub.add_parser(
        "backup",
        help="write the controller's whole state (and its CA) to a file",
        description="Write every stored object and event, and the data dir's CA and admin "
        "key, to FILE (0600). Safe while the controller runs. Sealed secrets stay sealed: "
        "keep the secrets key file too, apart from the backups.",
    )
    b.add_argument("file", type=Path, help="backup file to write (replaced atomically)")
    _store_flags(b)
    b.set_defaults(handler=_backup)
    r = sub.add_parser(
        "restore",
        help="restore a backup into an empty store (no controller running on it)",
        description="Write a backup made by `dockyard backup` into --store (and the CA and "
        "admin key into --data-dir); a SQLite backup restores onto etcd and back. Refuses a "
        "store that holds anything, unless --force.",
    )
    r.add_argument("file", type=Path, help="backup file to read")
    _store_flags(r)
    r.add_argument(
        "--force", action="store_true", help="replace whatever the store holds (it is erased)"
    )
    r.set_defaults(handler=_restore)


def _store_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("DOCKYARD_DATA_DIR", DEFAULT_DATA_DIR),
        help="the controller's data dir (its database for sqlite; its CA files for both)",
    )
    parser.add_argument(
        "--store",
        default=os.environ.get("DOCKYARD_STORE", "sqlite"),
        help="sqlite (the database in --data-dir) or etcd://HOST:2379,...[?prefix=/dockyard]",
    )


def _backup(args: argparse.Namespace) -> int:
    from controller import backup as bk

    try:
        taken = asyncio.run(_take(args.store, Path(args.data_dir)))
        bk.save(taken, args.file)
    except (bk.BackupError, OSError, ValueError) as err:
        return _fail("backup", err)
    print(f"backed up {_summary(taken.counts())} from {taken.source} to {args.file}")
    if taken.files:
        print(
            f"warning: {args.file} holds {', '.join(sorted(taken.files))} in clear (the CA's "
            "private key, the admin key): keep it as secret as the data dir",
            file=sys.stderr,
        )
    return 0


async def _take(spec: str, data_dir: Path) -> Backup:
    """The store's state; a SQLite database is read from an online copy, so a controller
    writing meanwhile never yields a backup of two moments."""
    from controller import backup as bk
    from controller.store import SqliteStore
    from controller.store_factory import open_store

    store = open_store(spec, data_dir)
    if not isinstance(store, SqliteStore):
        async with _opened(store):
            return await bk.take(store)
    if not store.path.is_file():
        raise bk.BackupError(f"no controller database in {data_dir} (is --data-dir right?)")
    scratch = Path(tempfile.mkdtemp(prefix="dockyard-backup-"))
    try:
        copy = await store.snapshot_to(scratch / "db")
        async with _opened(copy):
            taken = await bk.take(copy)
        taken.source, taken.files = store.location, bk.read_data_files(data_dir)
        return taken
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextlib.asynccontextmanager
async def _opened(store: Store, exclusive: bool = False) -> AsyncIterator[Store]:
    await store.open(exclusive)
    try:
        yield store
    finally:
        await store.close()


def _restore(args: argparse.Namespace) -> int:
    from controller import backup as bk
    from controller.store_api import StoreBusy

    try:
        taken = bk.load(args.file)
        location = asyncio.run(_put(taken, args.store, Path(args.data_dir), args.force))
    except (bk.BackupError, StoreBusy, OSError, ValueError) as err:
        return _fail("restore", err)
    print(f"restored {_summary(taken.counts())} from {args.file} into {location}")
    if taken.files:
        print(f"wrote {', '.join(sorted(taken.files))} into {args.data_dir}")
    print(
        "start the controller with the secrets key file of the backed-up one (--secrets-key-"
        "file; the backup holds no key); its agents reconnect as the same instances"
    )
    return 0


async def _put(taken: Backup, spec: str, data_dir: Path, force: bool) -> str:
    from controller import backup as bk
    from controller.store_factory import open_store

    store = open_store(spec, data_dir)
    async with _opened(store, exclusive=True):  # refused while a controller runs on it
        await bk.restore(taken, store, force)
    return store.location


def _summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in counts.items() if n) or "nothing"


def _fail(verb: str, err: Exception) -> int:
    print(f"dockyard {verb}: {err}", file=sys.stderr)
    return 1
