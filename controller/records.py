"""What the state of record writes: plain records, no I/O.

`ClusterState` (pure, in memory) builds them; a `controller.store_api.Store` backend commits
them. They live here, not in a backend, so the in-memory state imports no database client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from controller.model import to_doc


@dataclass
class Put:
    """Upsert a document. With `obj` instead of `doc`, the document is built at commit
    time: a task saved at PENDING and again at RUNNING before the writer runs is serialised
    once (to_doc + json were the controller's top cost at 2,000 task starts/s)."""

    kind: str
    key: str
    cluster: str
    doc: dict[str, Any] | None
    obj: Any = None

    def document(self) -> dict[str, Any]:
        return self.doc if self.doc is not None else to_doc(self.obj)

    def encoded(self) -> str:
        """The stored JSON. orjson serialises a dataclass (and its nested ones) straight to
        the same document to_doc builds, several times faster than to_doc + json.dumps."""
        return dumps(self.doc if self.doc is not None else self.obj)


def dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


@dataclass
class Delete:
    kind: str
    key: str


@dataclass
class EventRow:
    seq: int
    at: float
    cluster: str
    kind: str
    subject: str
    message: str
    detail: dict[str, Any]


Op = Put | Delete | EventRow
