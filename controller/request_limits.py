"""Input limits: how request JSON is parsed, how big a task definition may be.

- Every request body (ECS HTTP, native gRPC) is parsed by `parse_json_object`, which refuses
  nesting deeper than MAX_JSON_DEPTH *before* a recursive parser or validator walks it:
  100,000 levels used to end in RecursionError (HTTP 500 with a traceback, gRPC UNKNOWN).
- A registered task definition is capped at ECS's 64 KiB, its image names at ECS's 255
  characters, RunTask/StartTask overrides at ECS's 8 KiB, so an admin key cannot grow the
  controller's memory without bound.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from controller.ecs_shapes import json_type
from dockyard.errors import ApiError

MAX_NATIVE_BODY = 1 << 20  # a native API request body, as the ECS endpoint's client_max_size
# ECS requests nest about 6 levels (containerDefinitions[].linuxParameters.capabilities.add[]);
# 32 leaves room and keeps every recursive walk (json, strip_nulls, botocore) far from
# Python's recursion limit.
MAX_JSON_DEPTH = 32
TASK_DEFINITION_MAX_BYTES = 64 * 1024  # ECS's quota "task definition size", 65,536 bytes
MAX_OVERRIDES_BYTES = 8192  # ECS: RunTask/StartTask overrides, JSON formatting included
IMAGE_RE = re.compile(r"[A-Za-z0-9_\-:./#]{1,255}(@sha256:[A-Fa-f0-9]{64})?")

_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def serialization_error(message: str) -> ApiError:
    return ApiError("SerializationException", message)


def json_depth(text: str) -> int:
    """How deep arrays and objects nest in JSON `text`, found without recursing.

    Brackets inside strings do not count; the running balance of the others is the depth
    at each point. Splitting on quotes (C speed) finds the strings: 5x faster than a
    regex over every character on a 60 KiB definition.
    """
    brackets = _NOT_BRACKET.sub("", "".join(_outside_strings(text)))
    return max(accumulate(1 if c in "[{" else -1 for c in brackets), default=0)


def _outside_strings(text: str) -> list[str]:
    """The stretches of `text` outside JSON string literals."""
    outside: list[str] = []
    inside = False
    previous = ""
    for i, piece in enumerate(text.split('"')):
        if i and not (inside and _escapes_next(previous)):
            inside = not inside  # an unescaped quote opens or closes a string
        if not inside:
            outside.append(piece)
        previous = piece
    return outside


def _escapes_next(piece: str) -> bool:
    """Whether a string's piece ends in an odd run of backslashes (the quote is escaped)."""
    return (len(piece) - len(piece.rstrip("\\"))) % 2 == 1


def parse_json_object(raw: bytes | str) -> dict[str, Any]:
    """A request body as a JSON object (`{}` when empty); SerializationException otherwise.

    The one parser for request JSON on both APIs: refuses deep nesting before anything
    recursive sees the document.
    """
    if not raw.strip():
        return {}
    try:
        text = raw.decode(json.detect_encoding(raw)) if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise serialization_error(f"request body is not valid JSON: {exc}") from None
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise serialization_error(
            f"request body nests {depth} levels deep; at most {MAX_JSON_DEPTH} are accepted"
        )
    try:
        body = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise serialization_error(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise serialization_error(f"request body must be a JSON object, not {json_type(body)}")
    return body


def encoded_size(value: Any) -> int:
    """Bytes of `value` as compact UTF-8 JSON: how ECS measures a definition's length."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def check_task_definition_size(body: dict[str, Any]) -> None:
    """ClientException, as ECS answers, when a definition (tags aside) is over 64 KiB."""
    size = encoded_size({k: v for k, v in body.items() if k != "tags"})
    if size > TASK_DEFINITION_MAX_BYTES:
        raise ApiError(
            "ClientException",
            f"task definition: Actual length: '{size}'. "
            f"Max allowed length is '{TASK_DEFINITION_MAX_BYTES}' bytes.",
        )


def check_image(value: str, field: str) -> str:
    """ECS's image rule: up to 255 letters, digits, `-_:./#`, then an optional sha256 digest."""
    if not IMAGE_RE.fullmatch(value):
        raise ApiError(
            "ClientException",
            f"{field}: up to 255 letters, digits, hyphens, underscores, colons, periods, "
            "forward slashes and number signs, then optionally @sha256:<64 hex digits> "
            f"(got {len(value)} characters)",
        )
    return value


def check_overrides_size(overrides: Any) -> None:
    """ECS allows 8,192 bytes of RunTask/StartTask overrides, JSON formatting included."""
    size = encoded_size(overrides)
    if size > MAX_OVERRIDES_BYTES:
        raise ApiError(
            "InvalidParameterException",
            f"overrides: {size} bytes of JSON; at most {MAX_OVERRIDES_BYTES} are allowed",
        )
