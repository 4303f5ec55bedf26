"""Docker's pull stream turned into short progress lines for a task's events.

`docker pull` prints a row per layer; a task's event log wants one line now and then, as
ECS shows: "3/5 layers, 12.3 MB/40.1 MB". A line comes out when a layer finishes and
otherwise at most once per `interval` seconds, so a slow pull of a big image still says
how far it is without flooding the controller. Pure: the caller passes the time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# per-layer statuses after which the layer's bytes are all downloaded
_DOWNLOADED = ("Verifying Checksum", "Download complete", "Extracting", "Pull complete")


def human_size(n: int) -> str:
    """Decimal units, as the docker CLI prints them: 12.3 MB."""
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


@dataclass
class PullProgress:
    interval: float = 1.0
    sizes: dict[str, int] = field(default_factory=dict)  # layer id -> bytes (when known)
    got: dict[str, int] = field(default_factory=dict)  # layer id -> bytes downloaded
    done: set[str] = field(default_factory=set)
    last_at: float | None = None
    last_line: str = ""

    def update(self, chunk: dict[str, Any], now: float) -> str | None:
        """Fold one stream message in; the line to show now, or None."""
        layer, status = str(chunk.get("id") or ""), str(chunk.get("status") or "")
        if not layer or not status or status.startswith("Pulling from"):
            return None  # the tag line, digest and summary carry no layer
        detail = chunk.get("progressDetail") or {}
        self.got.setdefault(layer, 0)
        if detail.get("total"):
            self.sizes[layer] = int(detail["total"])
        if status == "Downloading" and "current" in detail:
            self.got[layer] = int(detail["current"])
        elif status.startswith(_DOWNLOADED):
            self.got[layer] = self.sizes.get(layer, self.got[layer])
        completed = status == "Pull complete" and layer not in self.done  # always said
        if status in ("Pull complete", "Already exists"):
            self.done.add(layer)
        if not (completed or any(self.got.values())):
            return None  # layers still being listed or found cached: nothing to say yet
        due = self.last_at is None or now - self.last_at >= self.interval
        line = self.line()
        if line == self.last_line or not (due or completed):
            return None
        self.last_at, self.last_line = now, line
        return line

    def line(self) -> str:
        return (
            f"{len(self.done)}/{len(self.got)} layers, "
            f"{human_size(sum(self.got.values()))}/{human_size(sum(self.sizes.values()))}"
        )

    def summary(self) -> str:
        """For the done line: "5 layers, 40.1 MB" (what this pull downloaded)."""
        if not self.got:
            return "up to date"
        return f"{len(self.got)} layers, {human_size(sum(self.got.values()))}"
