"""check_response and validate_request: the model checks every ECS body goes through."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.ecs_http import check_response
from controller.ecs_shapes import (
    ResponseShapeError,
    dump_json,
    service_model,
    strip_nulls,
    validate_request,
)
from dockyard.errors import ApiError

TASK = {
    "taskArn": "arn:aws:ecs:us-east-1:000000000000:task/default/abc",
    "lastStatus": "RUNNING",
    "desiredStatus": "RUNNING",
    "launchType": "EC2",
    "createdAt": 1700000000.25,
    "containers": [{"name": "web", "lastStatus": "RUNNING", "exitCode": 0}],
    "attributes": [{"name": "ecs.os-type", "value": "linux"}],
}


def _problems(operation: str, body: Any) -> str:
    with pytest.raises(ResponseShapeError) as caught:
        check_response(operation, body)
    return str(caught.value)


def test_valid_response_returns_botocores_parse() -> None:
    parsed = check_response("DescribeTasks", {"tasks": [TASK], "failures": []})
    assert parsed["tasks"][0]["createdAt"] == dt.datetime(
        2023, 11, 14, 22, 13, 20, 250000, tzinfo=dt.UTC
    )
    assert check_response("DescribeTasks", dump_json({"tasks": [TASK]}))["tasks"][0]["taskArn"]


def test_datetimes_and_nulls_are_serialised_as_the_protocol_wants() -> None:
    body = {"tasks": [{**TASK, "createdAt": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)}], "x": None}
    assert b'"createdAt":1704067200.0' in dump_json(body) and b'"x"' not in dump_json(body)
    assert check_response("DescribeTasks", body)["tasks"][0]["createdAt"].year == 2024


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"healthStatus": "GREAT"}, "tasks[0].healthStatus: 'GREAT' is not one of"),
        ({"launchType": "SUBMARINE"}, "tasks[0].launchType: 'SUBMARINE'"),
        ({"taskArn": 7}, "tasks[0].taskArn"),
        ({"createdAt": "yesterday"}, "tasks[0].createdAt: timestamp must be epoch seconds"),
        ({"containers": [{"name": "web", "exitCode": "0"}]}, "tasks[0].containers[0].exitCode"),
        ({"containers": [{"name": "web", "exitCode": True}]}, "exitCode: expected integer"),
        ({"attributes": [{"value": "linux"}]}, "Missing required parameter in tasks[0].attributes"),
        ({"colour": "blue"}, 'Unknown parameter in tasks[0]: "colour"'),
    ],
)
def test_response_problems_are_caught_and_named(change: dict[str, Any], expected: str) -> None:
    assert expected in _problems("DescribeTasks", {"tasks": [{**TASK, **change}]})


def test_enum_inside_a_list_of_strings_is_checked() -> None:
    body = {"family": "web", "revision": 1, "requiresCompatibilities": ["EC2", "MOON"]}
    message = _problems("DescribeTaskDefinition", {"taskDefinition": body})
    assert "taskDefinition.requiresCompatibilities[1]: 'MOON'" in message


def test_response_that_is_not_a_json_object_is_caught() -> None:
    assert "not JSON" in _problems("ListClusters", b"{nope")
    assert "expected an object, got array" in _problems("ListClusters", b"[]")
    assert "no such operation" in _problems("FlyToTheMoon", {})


def _request_error(operation: str, body: dict[str, Any]) -> str:
    with pytest.raises(ApiError) as caught:
        validate_request(operation, body)
    return f"{caught.value.name}: {caught.value.message}"


@pytest.mark.parametrize(
    ("operation", "body", "expected"),
    [
        ("RunTask", {}, "InvalidParameterException: taskDefinition: required member is missing"),
        ("RunTask", {"taskDefinition": "x", "count": True}, "count: expected integer, got boolean"),
        ("ListTasks", {"desiredStatus": "ASLEEP"}, 'desiredStatus: "ASLEEP" is not one of'),
        ("PutAttributes", {"cluster": "c", "attributes": [{"name": 1}]}, "attributes[0].name"),
        ("PutAttributes", {"attributes": [{}]}, "attributes[0].name: required member is missing"),
        ("CreateCluster", {"tags": [{"key": "k", "value": "v"}] * 51}, "tags: length 51"),
        ("CreateCluster", {"tags": "k=v"}, "tags: expected array, got string"),
        ("UnheardOf", {}, "UnknownOperationException"),
    ],
)
def test_request_problems_name_the_member(
    operation: str, body: dict[str, Any], expected: str
) -> None:
    assert expected in _request_error(operation, body)


def test_many_problems_are_summarised() -> None:
    body = {f"bogus{i}": 1 for i in range(8)}
    message = _request_error("ListClusters", body)
    assert "bogus0: unknown member" in message and "and 3 more" in message


def test_valid_requests_pass() -> None:
    validate_request("ListClusters", {})
    validate_request(
        "RunTask",
        {
            "taskDefinition": "web:1",
            "count": 2,
            "overrides": {"containerOverrides": [{"name": "web", "command": ["sh", "-c", "x"]}]},
            "placementStrategy": [{"type": "binpack", "field": "memory"}],
        },
    )


_SCALAR = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5)
)
_JSON = st.recursive(
    _SCALAR,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


def _value(shape: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """Mostly well-formed values for `shape`, sometimes anything at all, down to depth 4."""
    kind = shape.type_name
    if depth > 4:
        return _SCALAR
    fitting: st.SearchStrategy[Any]
    if kind == "structure":
        members = list(shape.members.items())
        fitting = (
            st.fixed_dictionaries({}, optional={n: _value(m, depth + 1) for n, m in members})
            if members
            else st.just({})
        )
    elif kind == "list":
        fitting = st.lists(_value(shape.member, depth + 1), max_size=3)
    elif kind == "map":
        fitting = st.dictionaries(st.text(max_size=4), _value(shape.value, depth + 1), max_size=2)
    elif kind == "string" and shape.enum:
        fitting = st.one_of(st.sampled_from(shape.enum), st.text(max_size=5))
    else:
        fitting = _SCALAR
    return st.one_of(fitting, fitting, fitting, _JSON)


@st.composite
def _requests(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """An operation and a body shaped like its input, with arbitrary values mixed in."""
    operation = draw(st.sampled_from(service_model().operation_names))
    shape = service_model().operation_model(operation).input_shape
    body = draw(_value(shape)) if shape is not None else {}
    return operation, strip_nulls(body if isinstance(body, dict) else {"x": body})


@settings(max_examples=500, deadline=None)
@given(_requests())
def test_no_request_body_crashes_validation(request: tuple[str, dict[str, Any]]) -> None:
    operation, body = request
    try:
        validate_request(operation, body)
    except ApiError as exc:
        # ECS's validation exceptions (ClientException where ECS raises it, e.g. CreateService's
        # launch type), never a crash
        assert exc.name in ("InvalidParameterException", "ClientException") and exc.message


@pytest.mark.parametrize("value", ["INF", "1e400", "2024-01-01T00:00:00Z", float("inf"), 1e300])
def test_a_timestamp_that_is_not_epoch_seconds_is_refused_by_name(value: Any) -> None:
    """botocore sends a JSON protocol's timestamps as epoch numbers: anything else (a string
    botocore's own check crashes on, an infinite or far-future number) is refused, naming the
    member, before a handler compares it with a date."""
    body = {"service": "web", "createdAt": {"before": value}}
    with pytest.raises(ApiError) as refused:
        validate_request("ListServiceDeployments", body)
    assert refused.value.name == "InvalidParameterException"
    assert "createdAt.before" in refused.value.message and "epoch seconds" in refused.value.message
