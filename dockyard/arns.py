"""ARNs in ECS's formats, with a configurable region and account."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class ArnFactory:
    region: str = os.environ.get("DOCKYARD_REGION", "us-east-1")
    account: str = os.environ.get("DOCKYARD_ACCOUNT", "000000000000")

    def _arn(self, resource: str) -> str:
        return f"arn:aws:ecs:{self.region}:{self.account}:{resource}"

    def cluster(self, name: str) -> str:
        return self._arn(f"cluster/{name}")

    def task_definition(self, family: str, revision: int) -> str:
        return self._arn(f"task-definition/{family}:{revision}")

    def task(self, cluster: str, task_id: str) -> str:
        return self._arn(f"task/{cluster}/{task_id}")

    def container_instance(self, cluster: str, instance_id: str) -> str:
        return self._arn(f"container-instance/{cluster}/{instance_id}")

    def container(self, cluster: str, task_id: str, container_id: str) -> str:
        return self._arn(f"container/{cluster}/{task_id}/{container_id}")

    def service(self, cluster: str, name: str) -> str:
        return self._arn(f"service/{cluster}/{name}")

    def short_service(self, name: str) -> str:
        """The old short format, `service/<name>`: how ECS names a service it did not find."""
        return self._arn(f"service/{name}")

    def service_deployment(self, cluster: str, service: str, deployment_id: str) -> str:
        return self._arn(f"service-deployment/{cluster}/{service}/{deployment_id}")

    def service_revision(self, cluster: str, service: str, revision_id: str) -> str:
        return self._arn(f"service-revision/{cluster}/{service}/{revision_id}")


def last_part(ref: str) -> str:
    """`arn:...:task/default/abc` -> `abc`; a bare id or name is returned as it is."""
    return ref.rsplit("/", 1)[-1] if ref.startswith("arn:") else ref


def resource_name(ref: str) -> str:
    """Cluster or family name from an ARN or a name: `arn:...:cluster/x` -> `x`."""
    if not ref.startswith("arn:"):
        return ref
    return ref.split(":", 5)[-1].split("/", 1)[-1]
