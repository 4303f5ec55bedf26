"""ECS request and response bodies checked against botocore's own ECS model (API 2014-11-13).

The model is the contract boto3 and `aws ecs` were generated from, so validating with it
means a request the endpoint accepts is one the clients could have sent, and a response it
returns is one they can parse. Pure functions; shared by the HTTP endpoint and its tests
(and usable by any other surface that takes ECS JSON, e.g. the native gRPC API).
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import json
import math
import re
from typing import Any

import botocore.session
from botocore.exceptions import ParamValidationError
from botocore.model import OperationModel, ServiceModel, Shape
from botocore.parsers import create_parser
from botocore.validate import ParamValidator, ValidationErrors, validate_parameters

from dockyard.errors import ApiError

TARGET_PREFIX = "AmazonEC2ContainerServiceV20141113"
ECS = "ecs"  # botocore's name of the model; Cloud Map's is "servicediscovery" (issue 21)
AAS = "application-autoscaling"  # Application Auto Scaling's (issue 22)
MAX_PROBLEMS = 5  # problems named in one error message; the rest are counted


class ResponseShapeError(ValueError):
    """A response body that boto3 could not have parsed, or that breaks the model."""

    def __init__(self, operation: str, problems: list[str]) -> None:
        super().__init__(f"{operation} response: " + "; ".join(problems))
        self.operation = operation
        self.problems = problems


@functools.cache
def service_model(api: str = ECS) -> ServiceModel:
    """botocore's model of `api` (ECS unless named); loaded once (it takes ~100 ms)."""
    return botocore.session.get_session().get_service_model(api)


def operation_model(operation: str, api: str = ECS) -> OperationModel | None:
    """The model of `operation`, or None when `api` has no such operation."""
    if operation not in service_model(api).operation_names:
        return None
    return service_model(api).operation_model(operation)


# ---------------------------------------------------------------- JSON values


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | decimal.Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def strip_nulls(value: Any) -> Any:
    """Drop null object members: in AWS's JSON protocols a null member means an absent one."""
    if isinstance(value, dict):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nulls(v) for v in value]
    return value


def epoch(value: dt.datetime) -> float:
    """Epoch seconds, the JSON protocol's timestamp format; naive datetimes are UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return epoch(value)
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dump_json(body: dict[str, Any]) -> bytes:
    """Serialise a response body: datetimes as epoch seconds, null members left out."""
    return json.dumps(strip_nulls(body), default=_json_default, separators=(",", ":")).encode()


# ---------------------------------------------------------------- requests


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


class _Problems(ValidationErrors):
    """Collects the validator's findings as `path: problem` lines (ECS's style)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def report(self, name: str, reason: str, **kwargs: Any) -> None:
        super().report(name, reason, **kwargs)
        self.lines.append(_describe(name.lstrip(".") or "input", reason, kwargs))


_EXPECTED = {
    "<class 'str'>": "string",
    "<class 'int'>": "integer",
    "<class 'bool'>": "boolean",
    "<class 'float'>": "number",
    "<class 'dict'>": "object",
    "<class 'list'>": "array",
}


def _describe(path: str, reason: str, info: dict[str, Any]) -> str:
    """One problem in words, naming the member path."""
    if reason == "missing required field":
        prefix = "" if path == "input" else path + "."
        return f"{prefix}{info['required_name']}: required member is missing"
    if reason == "unknown field":
        prefix = "" if path == "input" else path + "."
        valid = ", ".join(info["valid_names"])
        return f"{prefix}{info['unknown_param']}: unknown member (expected one of: {valid})"
    if reason == "invalid type":
        names = [_EXPECTED.get(t, t) for t in info["valid_types"]]
        wanted = next((n for n in names if n in _EXPECTED.values()), names[0])
        param = info["param"]
        return f"{path}: expected {wanted}, got {json_type(param)} {_short(param)}"
    if reason in ("invalid range", "invalid length"):
        what = "value" if reason == "invalid range" else "length"
        bound = "minimum" if "min_allowed" in info else "maximum"
        limit = info.get("min_allowed", info.get("max_allowed"))
        return f"{path}: {what} {_short(info['param'])} is out of range ({bound} {limit})"
    if reason == "invalid enum":
        return f"{path}: {_short(info['param'])} is not one of {', '.join(info['allowed'])}"
    if reason in ("more than one input", "empty input"):
        return f"{path}: set exactly one of {', '.join(info['members'])}"
    return f"{path}: {reason}"


# past it a timestamp is no date Python can hold (datetime's year 9999)
_LATEST_EPOCH_S = 253402300800


class _RequestValidator(ParamValidator):
    """botocore's validator, made as strict as a server must be.

    botocore checks what a Python caller passes; a server gets raw JSON. So: booleans are
    not numbers, timestamps arrive as epoch seconds, enum values and maxima are checked.
    """

    def validate(self, params: Any, shape: Shape) -> _Problems:
        errors = _Problems()
        self._validate(params, shape, errors, name="")
        return errors

    def _shape_has_constraints(self, shape: Shape) -> bool:
        # botocore only type-checks list items without constraints; enums and maxima count too
        return super()._shape_has_constraints(shape) or bool(
            getattr(shape, "enum", None) or "max" in shape.metadata
        )

    def _not_bool(self, param: Any, errors: Any, name: str, wanted: str) -> bool:
        if isinstance(param, bool):
            errors.report(name, "invalid type", param=param, valid_types=[wanted])
            return False
        return True

    def _check_max(self, measure: Any, shape: Shape, errors: Any, name: str, why: str) -> None:
        limit = shape.metadata.get("max")
        if limit is not None and isinstance(measure, int | float) and measure > limit:
            errors.report(name, why, param=measure, max_allowed=limit)

    def _validate_integer(self, param: Any, shape: Shape, errors: Any, name: str) -> None:
        if self._not_bool(param, errors, name, "integer"):
            super()._validate_integer(param, shape, errors, name)
            self._check_max(param, shape, errors, name, "invalid range")

    _validate_long = _validate_integer

    def _validate_double(self, param: Any, shape: Shape, errors: Any, name: str) -> None:
        if self._not_bool(param, errors, name, "number"):
            super()._validate_double(param, shape, errors, name)
            self._check_max(param, shape, errors, name, "invalid range")

    _validate_float = _validate_double

    def _validate_string(self, param: Any, shape: Shape, errors: Any, name: str) -> None:
        super()._validate_string(param, shape, errors, name)
        if not isinstance(param, str):
            return
        self._check_max(len(param), shape, errors, name, "invalid length")
        if shape.enum and param not in enum_values(shape):
            errors.report(name, "invalid enum", param=param, allowed=enum_values(shape))

    def _validate_list(self, param: Any, shape: Shape, errors: Any, name: str) -> None:
        super()._validate_list(param, shape, errors, name)
        if isinstance(param, list | tuple):
            self._check_max(len(param), shape, errors, name, "invalid length")

    def _validate_timestamp(self, param: Any, shape: Shape, errors: Any, name: str) -> None:
        # botocore and the aws CLI send a JSON protocol's timestamps as epoch numbers; a
        # string ("inf", an ISO date) would reach the handlers' arithmetic, and botocore's
        # own string check raises on some ("inf": RuntimeError), so only finite numbers pass
        numeric = isinstance(param, int | float) and not isinstance(param, bool)
        if not (numeric and math.isfinite(param) and abs(param) < _LATEST_EPOCH_S):
            errors.report(name, "invalid type", param=param, valid_types=["epoch seconds"])


_REQUEST_VALIDATOR = _RequestValidator()

# Values Dockyard adds to ECS's enums: Docker's `local` and `none` log drivers exist on every
# engine (ECS's API lists only the drivers its agents ship); botocore sends them unchecked.
ENUM_EXTENSIONS: dict[str, tuple[str, ...]] = {"LogDriver": ("local", "none")}


def enum_values(shape: Shape) -> list[str]:
    """ECS's enum of a string shape, with Dockyard's additions."""
    return [*shape.enum, *ENUM_EXTENSIONS.get(shape.name, ())]


def validate_request(
    operation: str, body: dict[str, Any], api: str = ECS, error: str = "InvalidParameterException"
) -> None:
    """Check an ECS request body against the operation's input shape (nulls already stripped).

    Raises ApiError(InvalidParameterException) whose message names each offending member.
    """
    op = operation_model(operation, api)
    if op is None:
        raise ApiError("UnknownOperationException", f"{api} has no operation {operation}")
    if op.input_shape is None:
        return
    if api == ECS:
        _check_launch_type(operation, body)
    problems = request_problems(operation, body, api)
    if problems:
        raise ApiError(error, join_problems(problems))


def request_problems(operation: str, body: dict[str, Any], api: str = ECS) -> list[str]:
    """What botocore's model finds wrong with a request body, one line per member (none for
    an operation the model does not know)."""
    op = operation_model(operation, api)
    if op is None or op.input_shape is None:
        return []
    lines: list[str] = _REQUEST_VALIDATOR.validate(body, op.input_shape).lines
    return lines


# ECS's own answers to a launchType it does not know (clients match the words)
_LAUNCH_TYPE_ERRORS = {
    "CreateService": ("ClientException", "launch type should be one of [EC2,FARGATE]"),
    "RunTask": ("InvalidParameterException", "launch type should be one of [EC2,FARGATE,EXTERNAL]"),
}


def _check_launch_type(operation: str, body: dict[str, Any]) -> None:
    """ECS's exception and words for an unknown launchType of CreateService or RunTask."""
    value = body.get("launchType")
    if operation not in _LAUNCH_TYPE_ERRORS or not isinstance(value, str):
        return
    if value not in service_model().shape_for("LaunchType").enum:
        raise ApiError(*_LAUNCH_TYPE_ERRORS[operation])


def join_problems(problems: list[str]) -> str:
    text = "; ".join(problems[:MAX_PROBLEMS])
    extra = len(problems) - MAX_PROBLEMS
    return text + (f"; and {extra} more" if extra > 0 else "")


# ---------------------------------------------------------------- responses


def _prepare(value: Any, shape: Shape, path: str, problems: list[str]) -> Any:
    """A copy of a decoded response for botocore's validator: epoch timestamps become
    datetimes (the validator wants Python types); enum values and bools-as-numbers are
    checked here because the validator does not."""
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        return {
            k: _prepare(v, shape.members[k], f"{path}.{k}", problems) if k in shape.members else v
            for k, v in value.items()
        }
    if kind == "list" and isinstance(value, list):
        return [_prepare(v, shape.member, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    if kind == "map" and isinstance(value, dict):
        return {k: _prepare(v, shape.value, f"{path}.{k}", problems) for k, v in value.items()}
    if kind == "timestamp" and isinstance(value, int | float) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    if kind == "timestamp" and not isinstance(value, bool):
        problems.append(f"{path.lstrip('.')}: timestamp must be epoch seconds, got {_short(value)}")
    if kind in ("integer", "long", "double", "float") and isinstance(value, bool):
        problems.append(f"{path.lstrip('.')}: expected {kind}, got boolean")
    if kind == "string" and shape.enum and isinstance(value, str):
        if value not in enum_values(shape):
            allowed = ", ".join(enum_values(shape))
            problems.append(f"{path.lstrip('.')}: {value!r} is not one of {allowed}")
    return value


def check_response(
    operation: str, body: dict[str, Any] | bytes | str, api: str = ECS
) -> dict[str, Any]:
    """Check a response body as boto3 would meet it; return botocore's parse of it.

    `body` is the service's dict (serialised here as the endpoint does) or the raw bytes.
    Checks the output shape with botocore.validate.validate_parameters, enum values
    recursively, and that botocore's JSON parser accepts it. Raises ResponseShapeError.
    """
    op = operation_model(operation, api)
    if op is None:
        raise ResponseShapeError(operation, [f"{api} has no such operation"])
    raw = dump_json(body) if isinstance(body, dict) else body
    raw = raw.encode() if isinstance(raw, str) else raw
    try:
        decoded = json.loads(raw)
    except ValueError as exc:
        raise ResponseShapeError(operation, [f"not JSON: {exc}"]) from None
    if not isinstance(decoded, dict):
        raise ResponseShapeError(operation, [f"expected an object, got {json_type(decoded)}"])
    if op.output_shape is None:
        return {}
    problems: list[str] = []
    prepared = _prepare(decoded, op.output_shape, "", problems)
    try:
        validate_parameters(prepared, op.output_shape)
    except ParamValidationError as exc:
        problems.extend(str(exc.kwargs.get("report", exc)).splitlines())
    try:
        parsed = create_parser("json").parse(
            {"body": raw, "headers": {}, "status_code": 200}, op.output_shape
        )
    except Exception as exc:  # any parser failure is a finding, not a crash
        problems.append(f"botocore's JSON parser failed: {exc!r}")
        parsed = {}
    if problems:
        raise ResponseShapeError(operation, problems)
    parsed.pop("ResponseMetadata", None)
    return parsed


def pattern_problems(operation: str, body: dict[str, Any], api: str = ECS) -> list[str]:
    """The members whose strings break their shape's `pattern` (botocore does not check
    them; Cloud Map's names are defined by theirs), one line each."""
    op = operation_model(operation, api)
    problems: list[str] = []
    if op is not None and op.input_shape is not None:
        _patterns(body, op.input_shape, "", problems)
    return problems


def _patterns(value: Any, shape: Shape, path: str, problems: list[str]) -> None:
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        for k, v in value.items():
            if k in shape.members:
                _patterns(v, shape.members[k], f"{path}.{k}", problems)
    elif kind == "list" and isinstance(value, list):
        for i, v in enumerate(value):
            _patterns(v, shape.member, f"{path}[{i}]", problems)
    elif kind == "map" and isinstance(value, dict):
        for k, v in value.items():
            _patterns(k, shape.key, f"{path} key", problems)
            _patterns(v, shape.value, f"{path}.{k}", problems)
    elif kind == "string" and isinstance(value, str):
        pattern = shape.metadata.get("pattern")
        if pattern and re.search(pattern, value) is None:
            problems.append(f"{path.lstrip('.')}: {_short(value)} does not match {pattern}")
