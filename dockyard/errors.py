"""The one error type every API surface speaks: an ECS exception name and a message.

The service layer raises ApiError; the ECS HTTP endpoint turns it into
`{"__type": name, "message": ...}` with `status`, the native gRPC API into a status code
with the name in trailing metadata, and the CLI prints `name: message` without a trace.
"""

from __future__ import annotations


class ApiError(Exception):
    """A refusal the caller can act on. `name` is ECS's exception name."""

    def __init__(self, name: str, message: str, status: int = 400) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message
        self.status = status


def invalid(field: str, problem: str) -> ApiError:
    """InvalidParameterException naming the field, e.g. `containerDefinitions[0].memory`."""
    return ApiError("InvalidParameterException", f"{field}: {problem}")


def client_error(message: str) -> ApiError:
    return ApiError("ClientException", message)


# ECS's own words for unknown resources: clients (and test suites) match them exactly
CLUSTER_NOT_FOUND = "Cluster not found."
SERVICE_NOT_FOUND = "Service not found."
TASKDEF_NOT_FOUND = "Unable to describe task definition."


def cluster_not_found() -> ApiError:
    return ApiError("ClusterNotFoundException", CLUSTER_NOT_FOUND)


def service_not_found() -> ApiError:
    return ApiError("ServiceNotFoundException", SERVICE_NOT_FOUND)


def not_found(name: str, message: str) -> ApiError:
    return ApiError(name, message)


def server_error(message: str) -> ApiError:
    return ApiError("ServerException", message, status=500)
