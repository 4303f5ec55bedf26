"""What the agent sees of its containers: plain data, no I/O.

The Docker driver builds these from `docker inspect`; the reconcile plan (agent/reconcile.py,
pure) reads them. Kept apart from the driver so the plan does not import aiodocker.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ObservedContainer:
    """What Docker says about one Dockyard-managed container."""

    docker_id: str
    docker_name: str
    task_arn: str
    container_name: str
    cluster: str
    family: str
    revision: int
    state: str
    exit_code: int | None
    started_at: float | None
    finished_at: float | None
    health: str
    oom_killed: bool
    error: str
    bindings: list[tuple[int, int, str, str]] = field(default_factory=list)
    image_id: str = ""  # the image the container was created from (sha256:...)
    image: str = ""  # the reference it was created with
    image_digest: str = ""  # filled by the driver: registry digest, else image id
    gpu_ids: list[str] = field(default_factory=list)  # from the dockyard.gpu-ids label
