"""Rendering for the operator CLI: tables via tabulate, `--output json`, short ids and ages.

Tables stay readable in a terminal: ARNs become ids, timestamps become ages ("12s ago"),
empty cells become "-". JSON output is ECS's JSON exactly as the controller returned it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TextIO

from tabulate import tabulate

from dockyard.arns import last_part

EMPTY = "-"
TASK_ID_CHARS = 12  # like `docker ps`; the CLI resolves such prefixes back to full ids


def print_json(doc: Any, stream: TextIO | None = None) -> None:
    """ECS JSON as returned: datetimes are already epoch floats."""
    print(json.dumps(doc, indent=2), file=stream or sys.stdout)


def cell(value: Any) -> str:
    if value is None or value == "" or value == [] or value == {}:
        return EMPTY
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain, left-aligned table; numbers are never reformatted (ids stay as they are)."""
    body = [[cell(v) for v in row] for row in rows]
    return tabulate(
        body,
        headers=[h.upper() for h in headers],
        tablefmt="plain",
        disable_numparse=True,
        stralign="left",
    )


def key_values(pairs: Iterable[tuple[str, Any]]) -> str:
    """A two-column "field  value" block for describe commands."""
    return tabulate(
        [[f"{k}:", cell(v)] for k, v in pairs],
        tablefmt="plain",
        disable_numparse=True,
    )


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    print(table(headers, rows))


def short_task(ref: str | None) -> str:
    """Task ARN or id -> the first 12 characters of its id."""
    return last_part(ref)[:TASK_ID_CHARS] if ref else ""


def short(ref: str | None) -> str:
    """Any ARN -> its last path part (instance id, cluster or service name)."""
    return last_part(ref) if ref else ""


def taskdef_name(arn: str | None) -> str:
    """`arn:...:task-definition/web:3` -> `web:3`."""
    return arn.rsplit("/", 1)[-1] if arn else ""


def age(at: float | None, now: float | None = None) -> str:
    """Epoch seconds -> "12s ago", "5m ago", "3h ago", "2d ago"."""
    if not at:
        return ""
    delta = max(0.0, (now if now is not None else time.time()) - float(at))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if delta >= size:
            return f"{int(delta // size)}{unit} ago"
    return f"{int(delta)}s ago"


def local_time(at: float | None, millis: bool = False) -> str:
    """Epoch seconds -> local wall-clock time, e.g. 2025-01-31 14:02:07(.123)."""
    if not at:
        return ""
    stamp = datetime.fromtimestamp(float(at))
    text = stamp.strftime("%Y-%m-%d %H:%M:%S")
    return f"{text}.{stamp.microsecond // 1000:03d}" if millis else text


def ports(bindings: Iterable[dict[str, Any]]) -> str:
    """networkBindings -> "49153->8080/tcp" (IPv4/IPv6 duplicates folded)."""
    seen: list[str] = []
    for b in bindings:
        text = f"{b.get('hostPort')}->{b.get('containerPort')}/{b.get('protocol', 'tcp')}"
        if text not in seen:
            seen.append(text)
    return ", ".join(seen)


def short_list(items: Sequence[str], limit: int = 3) -> str:
    """A few items as a comma list; many as a count with the first ones."""
    if len(items) <= limit:
        return ",".join(items)
    return f"{len(items)} ({','.join(items[:limit])},…)"


def error(message: str) -> None:
    print(message, file=sys.stderr)
