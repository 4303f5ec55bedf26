"""Secrets at rest: every secret field in the store is AES-GCM sealed under a data key kept
outside the database, so a copied database or backup reveals nothing.

The key file (`--secrets-key-file`, default `<data-dir>.key`, 0600) holds one base64 key per
line: the first seals, the others only open (they exist during a rotation). A sealed value is
`dy1:<key id>:<base64(nonce + ciphertext)>`; the key id names the key that sealed it, and the
record's identity (kind, key, field) is the associated data, so a value copied into another
record does not open. `SEALED_FIELDS` lists what is sealed; `open_sealer` refuses a missing or
wrong key file and seals a database of an earlier version in place; `rotate` re-seals every
value under a new key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from controller.store_api import Op, Put, Store

log = logging.getLogger(__name__)

# kind -> its sealed fields (roles.py: secrets, roles, the credentials-id key; keys.py: keys;
# cluster_ca.py: the CA's key)
SEALED_FIELDS: dict[str, tuple[str, ...]] = {
    "secret": ("value",),
    "role": ("config",),
    "rolekey": ("key",),
    "accesskey": ("secret_access_key",),
    "ca": ("key",),  # the cluster CA's private key (security/cluster_ca.py)
}
STATE_KIND, STATE_KEY = "sealing", "state"
CHECK_TEXT = "dockyard sealed store"
PREFIX = "dy1"
SEALED_RE = re.compile(r"^dy1:[0-9a-f]{16}:[A-Za-z0-9_=-]+$")
KEY_BYTES = 32
NONCE_BYTES = 12
KEY_FILE_HEADER = (
    "# Dockyard secrets key (AES-256-GCM). Keep it out of backups of the data dir.\n"
    "# One base64 key per line: the first seals, any others only open (during a rotation).\n"
)


class SealingError(Exception):
    """Why the controller cannot open or seal its secrets; str() names the file and the fix."""


def default_key_file(data_dir: Path) -> Path:
    """`<data-dir>.key`: beside the data dir, so a copy of the data dir leaves it behind."""
    data_dir = Path(data_dir).absolute()
    return data_dir.with_name(data_dir.name + ".key")


def key_id(key: bytes) -> str:
    """A key's public name (16 hex digits), carried in each value it sealed."""
    return hashlib.sha256(b"dockyard-secrets-key-id\0" + key).hexdigest()[:16]


@dataclass
class Keyring:
    path: Path
    keys: list[bytes]
    ids: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.ids = [key_id(k) for k in self.keys]


def read_keyring(path: Path) -> Keyring:
    """The keys in `path`; refused when the file is readable by others or malformed."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text()
    except OSError as err:
        raise SealingError(f"cannot read secrets key file {path}: {err.strerror}") from None
    if mode & 0o077:
        raise SealingError(
            f"secrets key file {path} is readable by others (mode {mode:04o}): chmod 600 {path}"
        )
    keys = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            keys.append(_decode_key(line, path, n))
    if not keys:
        raise SealingError(f"secrets key file {path} holds no key")
    return Keyring(path, keys)


def _decode_key(line: str, path: Path, n: int) -> bytes:
    try:
        key = base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise SealingError(
            f"secrets key file {path}, line {n}: not a base64 {KEY_BYTES}-byte key "
            f"(make one with: head -c {KEY_BYTES} /dev/urandom | base64)"
        )
    return key


def write_keyring(path: Path, keys: list[bytes], exclusive: bool = False) -> Keyring:
    """Write the key file 0600, atomically (temp file, fsync, rename); `exclusive` refuses
    to replace an existing file (first start: never a new key over an old one)."""
    text = KEY_FILE_HEADER + "".join(base64.b64encode(k).decode() + "\n" for k in keys)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        _write_private(tmp, text.encode())
        if exclusive:
            os.link(tmp, path)  # fails if path exists
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)
    except FileExistsError:
        raise SealingError(
            f"secrets key file {path} appeared meanwhile: not replacing it"
        ) from None
    except OSError as err:
        raise SealingError(
            f"cannot write secrets key file {path}: {err.strerror} (--secrets-key-file names "
            "where it goes: a writable place outside the data dir)"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return Keyring(path, keys)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Sealer:
    """Seals and opens the secret fields of store documents with one keyring."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self._aead = {kid: AESGCM(k) for kid, k in zip(keyring.ids, keyring.keys, strict=True)}

    @property
    def key_id(self) -> str:
        return self.keyring.ids[0]

    def seal(self, value: Any, aad: str) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        data = json.dumps(value, separators=(",", ":")).encode()
        sealed = nonce + self._aead[self.key_id].encrypt(nonce, data, aad.encode())
        return f"{PREFIX}:{self.key_id}:{base64.urlsafe_b64encode(sealed).decode()}"

    def open(self, sealed: Any, aad: str) -> Any:
        """The value sealed under `aad`; SealingError when it is not a sealed value, names a
        key the key file lacks, or does not open (tampered, or moved from another record)."""
        if not isinstance(sealed, str) or not SEALED_RE.match(sealed):
            raise SealingError(f"{aad}: not a sealed value")
        _, kid, text = sealed.split(":", 2)
        aead = self._aead.get(kid)
        if aead is None:
            raise SealingError(
                f"{aad}: sealed with key {kid}, which secrets key file {self.keyring.path} "
                f"does not hold (it holds {', '.join(self.keyring.ids)})"
            )
        try:
            raw = base64.urlsafe_b64decode(text)
            data = aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad.encode())
        except (InvalidTag, ValueError):  # binascii.Error is a ValueError
            raise SealingError(
                f"{aad}: the sealed value does not open with key {kid} "
                "(altered, or copied from another record)"
            ) from None
        return json.loads(data)

    def seal_doc(self, kind: str, key: str, doc: dict[str, Any]) -> dict[str, Any]:
        """A copy of `doc` with the kind's secret fields sealed to this record."""
        out = dict(doc)
        for name in SEALED_FIELDS[kind]:
            out[name] = self.seal(doc[name], _aad(kind, key, name))
        return out

    def open_doc(self, kind: str, key: str, doc: dict[str, Any]) -> dict[str, Any]:
        out = dict(doc)
        for name in SEALED_FIELDS[kind]:
            out[name] = self.open(doc.get(name), _aad(kind, key, name))
        return out

    def put(self, kind: str, key: str, doc: dict[str, Any]) -> Put:
        """The store write of a document whose secret fields are sealed."""
        return Put(kind, key, "", self.seal_doc(kind, key, doc))

    def open_rows(
        self, kind: str, rows: list[tuple[str, str, dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        """The documents of loaded rows (key, cluster, document) of `kind`, opened (each
        bound to the store key it is kept under)."""
        return [self.open_doc(kind, key, doc) for key, _, doc in rows]


def _aad(kind: str, key: str, name: str) -> str:
    return f"{kind}/{key}/{name}"


def _check_put(sealer: Sealer, scrub_pending: bool = False) -> Put:
    """The record that says this store is sealed, and with which key (checked at start);
    `scrub_pending` until old pages (plaintext, or a retired key's) are scrubbed away."""
    check = sealer.seal(CHECK_TEXT, _aad(STATE_KIND, "", ""))
    doc = {"keyId": sealer.key_id, "check": check, "scrubPending": scrub_pending}
    return Put(STATE_KIND, STATE_KEY, "", doc)


async def _scrub(store: Store, sealer: Sealer) -> None:
    """Scrub old pages, then clear the pending mark (a crash in between scrubs at next start)."""
    await store.scrub()
    await store.write([_check_put(sealer)])


async def open_sealer(store: Store, key_file: Path) -> Sealer:
    """The sealer of an opened store. A sealed store needs its key file (never replaced by a
    new key); a new store, or one of an earlier version (plaintext), gets a key (the file
    given, or a new one) and is sealed now, in place."""
    _warn_if_inside(key_file, store.data_dir)
    state = await store.load_rows(STATE_KIND)
    if state:
        sealer = _existing(store, key_file, state[0][2])
        if state[0][2].get("scrubPending"):
            await _scrub(store, sealer)  # a migration or rotation was cut short
        return sealer
    sealer = Sealer(_new_store_keyring(key_file))
    await _seal_plaintext(store, sealer)
    return sealer


async def open_sealed(store: Store, key_file: Path) -> Sealer | None:
    """The sealer of a store sealed already (None: not yet), writing nothing: what a
    follower, which must not write, opens the shared CA with."""
    state = await store.load_rows(STATE_KIND)
    return _existing(store, key_file, state[0][2]) if state else None


def _new_store_keyring(key_file: Path) -> Keyring:
    """The operator's key file if there is one, else a new key, written 0600."""
    if key_file.exists():
        return read_keyring(key_file)
    keyring = write_keyring(key_file, [secrets.token_bytes(KEY_BYTES)], exclusive=True)
    log.info("created secrets key file %s (key %s)", key_file, keyring.ids[0])
    return keyring


def _warn_if_inside(key_file: Path, data_dir: Path) -> None:
    if key_file.absolute().is_relative_to(data_dir.absolute()):
        log.warning(
            "secrets key file %s is inside the data dir: a copy of the data dir then holds the "
            "key and every secret it seals; keep it elsewhere (--secrets-key-file)",
            key_file,
        )


def _existing(store: Store, key_file: Path, state: dict[str, Any]) -> Sealer:
    kid = state.get("keyId", "?")
    if not key_file.exists():
        raise SealingError(
            f"secrets key file {key_file} is missing, and {store.location} "
            f"is sealed with key {kid}: restore that file (or pass --secrets-key-file); "
            "refusing to start (a new key would not open the stored secrets)"
        )
    sealer = Sealer(read_keyring(key_file))
    try:
        sealer.open(state.get("check"), _aad(STATE_KIND, "", ""))
    except SealingError as err:
        raise SealingError(
            f"secrets key file {key_file} does not open {store.location} "
            f"(sealed with key {kid}; the file holds {', '.join(sealer.keyring.ids)}): wrong "
            f"key file? refusing to start ({err})"
        ) from None
    return sealer


async def _seal_plaintext(store: Store, sealer: Sealer) -> None:
    """Seal, in one transaction, the secret fields an earlier version kept in plaintext, and
    scrub the database and its WAL of the old pages."""
    ops: list[Op] = []
    for kind, names in SEALED_FIELDS.items():
        for key, _, doc in await store.load_rows(kind):
            if any(isinstance(doc.get(n), str) and SEALED_RE.match(doc[n]) for n in names):
                raise SealingError(
                    f"{kind} {key!r} in {store.location} is already sealed but it has no "
                    "sealing record: refusing to seal it twice"
                )
            ops.append(sealer.put(kind, key, doc))
    await store.write([*ops, _check_put(sealer, scrub_pending=bool(ops))])
    if ops:
        await _scrub(store, sealer)
        log.warning(
            "sealed %d records that an earlier version kept in plaintext, under key %s (%s)",
            len(ops),
            sealer.key_id,
            sealer.keyring.path,
        )


async def rotate(store: Store, key_file: Path) -> str:
    """Re-seal every value of a (not yet opened) store under a new key, with the controller
    stopped. The key file holds the new and the old keys while the values change (a crash
    leaves a file that opens everything), then only the new one. Returns what was done, for
    the operator."""
    await store.open(exclusive=True)
    try:
        old = await open_sealer(store, key_file)
        new_key = secrets.token_bytes(KEY_BYTES)
        sealer = Sealer(write_keyring(key_file, [new_key, *old.keyring.keys]))
        ops: list[Op] = [_check_put(sealer, scrub_pending=True)]
        for kind in SEALED_FIELDS:
            rows = await store.load_rows(kind)
            ops += [sealer.put(kind, k, old.open_doc(kind, k, doc)) for k, _, doc in rows]
        await store.write(ops)
        await _scrub(store, sealer)
        write_keyring(key_file, [new_key])
    finally:
        await store.close()
    retired = ", ".join(old.keyring.ids)
    return (
        f"re-sealed {len(ops) - 1} records under key {sealer.key_id}; {key_file} now holds only "
        f"that key (retired: {retired}; backups taken before now need the old key file)"
    )
