"""Request validation, in one place, for the ECS endpoint and the native API alike.

Every request is checked here before its handler runs (`controller.ops.chain`):
- on the ECS endpoint (HTTP), against botocore's ECS model in full (lengths, counts, types,
  enums, unknown members), so handlers get well-typed bodies;
- on the native API (gRPC, in-process), against the model's limits, letting unknown members
  through (the CLI sends `cluster` everywhere and Dockyard extensions), and in full for
  the operations the table marks STRICT;
- Dockyard's own operations (no botocore model) are checked by their modules.
The field helpers below (`text`, `texts`) are what handlers use for members whose meaning,
not shape, is theirs to check.
"""

from __future__ import annotations

from typing import Any

from controller.ecs_shapes import (
    ECS,
    join_problems,
    pattern_problems,
    request_problems,
    strip_nulls,
    validate_request,
)
from controller.ops.table import SD, STRICT, Operation
from dockyard.errors import ApiError, invalid

__all__ = ["check_limits", "text", "texts", "validate"]


def validate(op: Operation, body: Any, *, native: bool) -> None:
    """Refuse a body `op` cannot take: SerializationException / InvalidParameterException."""
    if not isinstance(body, dict):
        raise ApiError("SerializationException", "the request body must be a JSON object")
    if op.api == SD:  # Cloud Map: its model in full (names: their patterns), its error
        validate_request(op.wire_name, strip_nulls(body), op.api, error="InvalidInput")
        problems = pattern_problems(op.wire_name, strip_nulls(body), op.api)
        if problems:
            raise ApiError("InvalidInput", join_problems(problems))
        return
    if not op.ecs:
        return
    # Application Auto Scaling names it ValidationException (issue 22)
    error = "InvalidParameterException" if op.api == ECS else "ValidationException"
    if not native:
        validate_request(op.name, body, op.api, error)
        return
    check_limits(op.name, body, op.api, error)
    if op.native_check == STRICT:
        validate_request(op.name, body, op.api, error)


def check_limits(
    operation: str, body: dict[str, Any], api: str = ECS, error: str = "InvalidParameterException"
) -> None:
    """The API's input limits on a native body: the model's constraints, unknown members (the
    native API's extensions) ignored; `error` naming each problem."""
    lines = request_problems(operation, strip_nulls(body), api)
    problems = [p for p in lines if "unknown member" not in p and "Unknown parameter" not in p]
    if problems:
        raise ApiError(error, join_problems(problems))


def text(body: dict[str, Any], field: str, default: str = "") -> str:
    """A string member (default if absent), or InvalidParameterException naming it."""
    value = body.get(field, default)
    if not isinstance(value, str):
        raise invalid(field, "must be a string")
    return value


def texts(body: dict[str, Any], field: str, limit: int = 100) -> list[str]:
    """A list-of-strings member of at most `limit` items ([] if absent)."""
    value = body.get(field, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid(field, "must be a list of strings")
    if len(value) > limit:
        raise invalid(field, f"at most {limit} items")
    return value
