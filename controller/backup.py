"""Backup and restore of a controller's whole state, for either store backend.

One backend-neutral format, read and written through the Store interface
(controller/store_api.py), so a backup of a SQLite controller restores onto etcd and back:
a JSON document holding every stored object (each kind of `StateOfRecord.KINDS` and the
sealing record) as `[kind, key, cluster, document]`, every event, and the files of the data
dir that are not in the store yet (the CA's `ca.key`/`ca.crt`, `admin-credentials`).

What it holds, and what not:
- Sealed values (secrets, role keys, access keys) stay sealed: the backup does not hold the
  secrets key file, so a restored controller needs the same `--secrets-key-file` (keep it
  apart from the backups, as the README says).
- The CA private key and the admin key are in it **in clear** (they are plain files of the
  data dir): the file is written 0600 and the CLI says so.

Consistency: an etcd store is read at one revision (EtcdStore loads its prefix at once);
a live SQLite database is first copied with SQLite's online backup API
(`SqliteStore.snapshot_to`) and the copy is read, so a controller writing meanwhile
never yields a backup mixing two moments.

Restore refuses a store that holds anything (unless `force`: it is emptied first) and one
a controller has open. It writes a marker object first and deletes it last; a controller
refuses to start on a store still marked (`StateOfRecord.load`), and a failed restore
empties the store again, so no controller ever runs on half a restore.
"""

from __future__ import annotations

import base64
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from controller.records import Delete, EventRow, Op, Put
from controller.security.sealing import STATE_KIND
from controller.state_of_record import KINDS, RESTORE_MARKER
from controller.store_api import Store

FORMAT, VERSION = "dockyard-backup", 1
DATA_FILES = ("ca.key", "ca.crt", "admin-credentials")  # data-dir files not in the store
STORED_KINDS = (STATE_KIND, *KINDS)  # the sealing record first: the others need it
CHUNK = 500  # ops per write while restoring (one etcd transaction each)


class BackupError(Exception):
    """A backup or restore that cannot be done, with the reason for the operator."""


@dataclass
class Backup:
    """A whole state: objects as (kind, key, cluster, document), events, data-dir files."""

    source: str
    objects: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    created: float = field(default_factory=time.time)

    def counts(self) -> dict[str, int]:
        """Objects per kind (and events), for the operator's summary."""
        out: dict[str, int] = {}
        for kind, *_ in self.objects:
            out[kind] = out.get(kind, 0) + 1
        out["event"] = len(self.events)
        return out


async def take(store: Store) -> Backup:
    """Everything `store` (open) holds, plus the data dir's files that are not in it."""
    backup = Backup(store.location)
    for kind in STORED_KINDS:
        for key, cluster, doc in await store.load_rows(kind):
            backup.objects.append((kind, key, cluster, doc))
    last = await store.last_event_seq()
    backup.events = await store.load_events(limit=max(last, 1)) if last else []
    backup.files = read_data_files(store.data_dir)
    return backup


def read_data_files(data_dir: Path) -> dict[str, bytes]:
    return {
        name: (Path(data_dir) / name).read_bytes()
        for name in DATA_FILES
        if (Path(data_dir) / name).is_file()
    }


def save(backup: Backup, path: Path) -> None:
    """Write the backup to `path` atomically (a temporary file renamed), mode 0600."""
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "created": backup.created,
        "source": backup.source,
        "objects": backup.objects,
        "events": [
            [e.seq, e.at, e.cluster, e.kind, e.subject, e.message, e.detail] for e in backup.events
        ],
        "files": {name: base64.b64encode(data).decode() for name, data in backup.files.items()},
    }
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or Path("."))
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(orjson.dumps(doc))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> Backup:
    """Read a backup file; a file that is not one gets an error saying what is wrong."""
    try:
        doc = orjson.loads(Path(path).read_bytes())
    except OSError as err:
        raise BackupError(f"cannot read {path}: {err.strerror}") from None
    except orjson.JSONDecodeError as err:
        raise BackupError(f"{path} is not a Dockyard backup (not JSON: {err})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BackupError(f"{path} is not a Dockyard backup (no format {FORMAT!r})")
    if doc.get("version") != VERSION:
        raise BackupError(f"{path}: backup version {doc.get('version')!r}; expected {VERSION}")
    try:
        return Backup(
            source=str(doc["source"]),
            created=float(doc["created"]),
            objects=[(str(k), str(key), str(c), dict(d)) for k, key, c, d in doc["objects"]],
            events=[EventRow(*row) for row in doc["events"]],
            files={n: base64.b64decode(v) for n, v in doc["files"].items() if n in DATA_FILES},
        )
    except (KeyError, TypeError, ValueError) as err:
        raise BackupError(f"{path}: damaged backup ({type(err).__name__}: {err})") from None


async def held(store: Store) -> tuple[int, int, bool]:
    """(objects, events, marked half-restored) that `store` (open) holds."""
    objects = sum([len(await store.load_rows(kind)) for kind in STORED_KINDS])
    marked = bool(await store.load_rows(RESTORE_MARKER))
    return objects, await store.last_event_seq(), marked


async def restore(backup: Backup, store: Store, force: bool = False) -> None:
    """Write `backup` into `store` (open, exclusively): all of it, or nothing."""
    objects, events, marked = await held(store)
    if (objects or events or marked) and not force:
        what = (
            "holds a restore that did not finish"
            if marked
            else f"is not empty ({objects} objects, {events} events)"
        )
        raise BackupError(f"{store.location} {what}: rerun with --force to replace it")
    if objects or events or marked:
        await store.erase()
    marker = Put(RESTORE_MARKER, "marker", "", {"source": backup.source, "at": time.time()})
    await store.write([marker])
    try:
        for ops in _chunks(backup):
            await store.write(ops)
    except Exception as err:
        undone = await _undo(store)
        raise BackupError(f"restore into {store.location} failed: {err}; {undone}") from err
    await store.write([Delete(RESTORE_MARKER, "marker")])
    write_data_files(store.data_dir, backup.files)


async def _undo(store: Store) -> str:
    """Empty the store after a failed restore; what became of it, for the message."""
    try:
        await store.erase()
    except Exception as err:
        return (
            f"emptying it again failed too ({err}): it stays marked as half-restored, and "
            "controllers refuse it until `dockyard restore --force` succeeds"
        )
    return "the store was emptied again"


def _chunks(backup: Backup) -> Iterator[list[Op]]:
    ops: list[Op] = [Put(kind, key, cluster, doc) for kind, key, cluster, doc in backup.objects]
    ops += backup.events
    for start in range(0, len(ops), CHUNK):
        yield ops[start : start + CHUNK]


def write_data_files(data_dir: Path, files: dict[str, bytes]) -> None:
    """The backup's CA and admin key into the data dir (0700), each file 0600."""
    data_dir = Path(data_dir)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, data in files.items():
        target = data_dir / name
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(target, 0o600)
