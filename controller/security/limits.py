"""ECS's input limits on the native API too: the same model the ECS endpoint enforces.

The ECS endpoint checks every body against botocore's ECS model (lengths, counts, types).
Native calls (the CLI) reach the service layer directly; this applies the model's
constraints to them as well, ignoring members the model does not know (the native API
accepts Dockyard extensions, and the CLI sends `cluster` everywhere).
"""

from __future__ import annotations

from controller.ecs_shapes import _REQUEST_VALIDATOR, operation_model, strip_nulls
from controller.request_limits import MAX_NATIVE_BODY, parse_json_object
from dockyard.errors import ApiError

MAX_PROBLEMS = 5


def check_native(operation: str, body_text: str) -> None:
    """InvalidParameterException if an ECS operation's body breaks the model's limits."""
    op = operation_model(operation)
    if op is None or op.input_shape is None or len(body_text) > MAX_NATIVE_BODY:
        return  # the servicer refuses an oversized body
    try:
        body = parse_json_object(body_text)
    except ApiError:
        return  # the servicer answers SerializationException
    lines = _REQUEST_VALIDATOR.validate(strip_nulls(body), op.input_shape).lines
    problems = [p for p in lines if "unknown member" not in p and "Unknown parameter" not in p]
    if problems:
        text = "; ".join(problems[:MAX_PROBLEMS])
        more = len(problems) - MAX_PROBLEMS
        raise ApiError(
            "InvalidParameterException", text + (f"; and {more} more" if more > 0 else "")
        )
