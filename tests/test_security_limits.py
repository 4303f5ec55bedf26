"""Issue 15 item 4: what an admin key (or anyone who can open a socket) could make unbounded.

Against a real in-process controller (auth on), over real HTTP (boto3, raw sockets,
requests) and real gRPC:
- task definitions over ECS's 64 KiB, more than 10 containers, image names over 255
  characters and RunTask overrides over 8 KiB are refused with the field named;
- JSON nested 1,000 or 100,000 deep is a 400 SerializationException / INVALID_ARGUMENT,
  with no traceback in the log;
- an unexpected exception anywhere is a clean 500 / INTERNAL and one log line;
- half-open HTTP connections (nothing sent, part of the request line, of the headers, of
  the body) and idle keep-alive ones are closed by the server while the API keeps answering.
"""

from __future__ import annotations

import base64
import json
import logging
import resource
import selectors
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.http_timeouts import BODY_TIMEOUT_S, HEADERS_TIMEOUT_S, LINGER_S
from controller.request_limits import json_depth
from controller.server import GRPC_OPTIONS
from dockyard import auth
from dockyard.client import API_METHOD, ERROR_TYPE_KEY
from dockyard.errors import ApiError
from dockyard.v1 import api_pb2, api_pb2_grpc
from tests.security_support import RawAgent, SecureController, register_msg, running
from tests.support import aws_client

IMAGE = "dockyard/sleeper"


@pytest.fixture
def sc(tmp_path: Path) -> Iterator[SecureController]:
    with running(tmp_path / "controller") as c:
        yield c


def boto_ecs(sc: SecureController) -> Any:
    """A real boto3 ECS client signed with the controller's admin key; no retries."""
    return aws_client("ecs", sc.http, sc.admin())


def native_raw(sc: SecureController, operation: str, body: str) -> grpc.RpcError:
    """Send `body` verbatim (signed) as a native API call; return the error it must raise."""
    channel = grpc.insecure_channel(sc.address)
    try:
        request = api_pb2.JsonRequest(body=body)
        md = auth.signed_metadata(sc.admin(), API_METHOD + operation, request.SerializeToString())
        with pytest.raises(grpc.RpcError) as caught:
            getattr(api_pb2_grpc.ClusterApiStub(channel), operation)(
                request, timeout=20, metadata=md
            )
        return caught.value
    finally:
        channel.close()


def error_type(err: grpc.RpcError) -> str:
    return dict(err.trailing_metadata() or ()).get(ERROR_TYPE_KEY, "")  # type: ignore[attr-defined]


def definition(family: str, env_kib: int = 0, **container: Any) -> dict[str, Any]:
    """A definition whose one container carries about `env_kib` KiB of environment."""
    env = [{"name": f"V{i}", "value": "x" * 1000} for i in range(env_kib)]
    c = {"name": "app", "image": IMAGE, "memory": 8, "environment": env, **container}
    return {"family": family, "containerDefinitions": [c]}


def families(sc: SecureController) -> list[str]:
    return sc.client().call("ListTaskDefinitionFamilies")["families"]


# ---------------------------------------------------------------- sizes and per-field limits


def test_task_definition_over_64_kib_is_refused_on_both_apis(sc: SecureController) -> None:
    ecs = boto_ecs(sc)
    ecs.register_task_definition(**definition("fits", env_kib=60))  # ~61 KiB: ECS accepts it
    for _ in range(30):  # the attack: 30 definitions of 653 KiB
        with pytest.raises(ClientError) as caught:
            ecs.register_task_definition(**definition("huge", env_kib=653))
        err = caught.value.response["Error"]
        assert err["Code"] == "ClientException", err
        assert "Max allowed length is '65536' bytes" in err["Message"], err
    with pytest.raises(ApiError) as native:
        sc.client().call("RegisterTaskDefinition", definition("huge", env_kib=70))
    assert native.value.name == "ClientException"
    assert "task definition" in native.value.message and "65536" in native.value.message
    assert families(sc) == ["fits"]  # nothing of the refused ones was stored
    sc.validate()


def test_container_count_image_and_overrides_limits_name_the_field(sc: SecureController) -> None:
    ecs = boto_ecs(sc)
    eleven = definition("many")
    eleven["containerDefinitions"] = [
        {"name": f"c{i}", "image": IMAGE, "memory": 8} for i in range(11)
    ]
    cases: list[tuple[dict[str, Any], str]] = [
        (eleven, "containerDefinitions"),
        (definition("longimage", image="r/" + "a" * 254), "containerDefinitions[0].image"),
        (definition("badimage", image="busybox latest"), "containerDefinitions[0].image"),
    ]
    for body, member in cases:
        with pytest.raises(ClientError) as caught:
            ecs.register_task_definition(**body)
        err = caught.value.response["Error"]
        assert err["Code"] == "ClientException" and err["Message"].startswith(member + ":"), err
        with pytest.raises(ApiError) as native:
            sc.client().call("RegisterTaskDefinition", body)
        assert native.value.name == "ClientException" and member in native.value.message
    digest = "registry.lab:5000/team/app:1.2@sha256:" + "ab" * 32
    ecs.register_task_definition(**definition("pinned", image=digest))
    ecs.register_task_definition(**definition("small"))
    big = {"containerOverrides": [{"name": "app", "command": ["echo", "y" * 9000]}]}
    token = sc.client().call("CreateJoinToken", {})["joinToken"]["token"]
    agent = RawAgent(sc.address).connect(register_msg("i-limits", token))
    try:
        assert agent.next("registered")
        with pytest.raises(ClientError) as caught:
            ecs.run_task(taskDefinition="small", overrides=big)
    finally:
        agent.close()
    err = caught.value.response["Error"]
    assert err["Code"] == "InvalidParameterException" and "overrides" in err["Message"], err
    assert "8192" in err["Message"]
    assert sorted(families(sc)) == ["pinned", "small"]


# ---------------------------------------------------------------- deep JSON


def nested(depth: int, inner: str = "1") -> str:
    return '{"a":' * depth + inner + "}" * depth


def assert_quiet_log(caplog: pytest.LogCaptureFixture) -> None:
    """No traceback and nothing at ERROR: deep JSON is the client's problem, not ours."""
    assert not [r for r in caplog.records if r.exc_info], caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert "RecursionError" not in caplog.text


tricky_text = st.text(st.sampled_from('"\\[]{}a é\n'), max_size=8)
json_docs = st.recursive(
    st.one_of(st.none(), st.integers(), tricky_text),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(tricky_text, inner, max_size=3)
    ),
    max_leaves=30,
)


def parsed_depth(value: Any) -> int:
    if isinstance(value, dict | list):
        items = value.values() if isinstance(value, dict) else value
        return 1 + max((parsed_depth(v) for v in items), default=0)
    return 0


@settings(max_examples=500, deadline=None)
@given(value=json_docs, indent=st.sampled_from([None, 1]), ascii_only=st.booleans())
def test_json_depth_scan_agrees_with_the_parser(value: Any, indent: Any, ascii_only: bool) -> None:
    """The linear scan that guards the parsers counts what they would: strings with
    quotes, backslashes and brackets inside do not fool it."""
    text = json.dumps(value, indent=indent, ensure_ascii=ascii_only)
    assert json_depth(text) == parsed_depth(value)


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_deep_json_is_a_serialization_error_over_http(
    sc: SecureController, caplog: pytest.LogCaptureFixture, depth: int
) -> None:
    bodies = [
        nested(depth),
        '{"family": "deep", "containerDefinitions": [' + "[" * depth + "]" * depth + "]}",
    ]
    with caplog.at_level(logging.DEBUG):
        for op, body in zip(["ListClusters", "RegisterTaskDefinition"], bodies, strict=True):
            resp = sc.ecs(op, body.encode())
            assert resp.status_code == 400, resp.text
            doc = resp.json()
            assert doc["__type"] == "SerializationException", doc
            assert "levels deep; at most 32 are accepted" in doc["message"], doc
    assert_quiet_log(caplog)
    assert boto_ecs(sc).list_clusters()["clusterArns"] is not None  # the endpoint carries on


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_deep_json_is_invalid_argument_over_grpc(
    sc: SecureController, caplog: pytest.LogCaptureFixture, depth: int
) -> None:
    with caplog.at_level(logging.DEBUG):
        for op, body in [
            ("ListClusters", nested(depth)),
            ("RegisterTaskDefinition", '{"family": "deep", "volumes": ' + nested(depth) + "}"),
        ]:
            err = native_raw(sc, op, body)
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err  # type: ignore[attr-defined]
            assert error_type(err) == "SerializationException"
            details = err.details()  # type: ignore[attr-defined]
            assert "levels deep; at most 32" in details and "Recursion" not in details
    assert_quiet_log(caplog)
    assert "clusterArns" in sc.client().call("ListClusters")


def test_deep_next_token_is_a_clean_refusal(sc: SecureController) -> None:
    token = base64.urlsafe_b64encode(nested(100_000).encode()).decode()
    with pytest.raises(ClientError) as caught:
        boto_ecs(sc).list_clusters(nextToken=token)
    assert caught.value.response["Error"]["Code"] == "InvalidParameterException"
    assert "nextToken" in caught.value.response["Error"]["Message"]


# ---------------------------------------------------------------- unexpected exceptions


def one_error_line(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, caplog.text
    assert not errors[0].exc_info and "\n" not in errors[0].getMessage()
    assert "kaboom" in errors[0].getMessage()  # the operator still learns what failed


def kaboom(*_: Any, **__: Any) -> Any:
    raise RuntimeError("kaboom: internal detail")


def test_unexpected_exception_in_http_middleware_is_a_clean_500(
    sc: SecureController, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("controller.security.apiauth.verify_sigv4", kaboom)
    with caplog.at_level(logging.ERROR):
        resp = sc.ecs("ListClusters", {})
    assert resp.status_code == 500
    doc = resp.json()
    assert doc["__type"] == "ServerException" and "kaboom" not in doc["message"], doc
    one_error_line(caplog)


def test_unexpected_exception_in_healthz_is_a_clean_500(
    sc: SecureController, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sc.ctl is not None
    monkeypatch.setattr(sc.ctl.dispatcher, "heartbeat_period", kaboom)
    with caplog.at_level(logging.ERROR):
        resp = requests.get(sc.http + "healthz", timeout=10)
    assert resp.status_code == 500 and resp.json()["__type"] == "ServerException"
    assert "kaboom" not in resp.text
    one_error_line(caplog)


def test_unexpected_exception_in_grpc_interceptor_is_internal_not_unknown(
    sc: SecureController, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("controller.security.apiauth.authorize", kaboom)
    with caplog.at_level(logging.ERROR):
        err = native_raw(sc, "ListClusters", "{}")
    assert err.code() == grpc.StatusCode.INTERNAL, err  # type: ignore[attr-defined]
    assert "kaboom" not in err.details()  # type: ignore[attr-defined]
    assert error_type(err) == "ServerException"
    one_error_line(caplog)


def test_unexpected_exception_in_grpc_stream_is_internal_not_unknown(
    sc: SecureController, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sc.ctl is not None
    monkeypatch.setattr(sc.ctl.service.store, "load_events", kaboom)
    req = api_pb2.WatchEventsRequest()
    md = auth.signed_metadata(sc.admin(), API_METHOD + "WatchEvents", req.SerializeToString())
    channel = grpc.insecure_channel(sc.address)
    try:
        with caplog.at_level(logging.ERROR), pytest.raises(grpc.RpcError) as caught:
            list(api_pb2_grpc.ClusterApiStub(channel).WatchEvents(req, timeout=10, metadata=md))
    finally:
        channel.close()
    assert caught.value.code() == grpc.StatusCode.INTERNAL  # type: ignore[attr-defined]
    assert "kaboom" not in caught.value.details()  # type: ignore[attr-defined]
    one_error_line(caplog)


# ---------------------------------------------------------------- slow and idle connections

FLOOD = {  # what each group of sockets sends, then it stalls
    "nothing": b"",
    "partial request line": b"POST / HT",
    "partial headers": b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: Amazo",
    "partial body": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-amz-json-1.1\r\n"
        b'Content-Length: 5000\r\n\r\n{"clusters": ['
    ),
    "idle keep-alive": b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
}
PER_GROUP = 160  # 800 sockets in all


def _need_fds(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        if hard != resource.RLIM_INFINITY and hard < n:
            pytest.skip(f"needs {n} file descriptors, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))


@dataclass
class Flood:
    """Stalled sockets, each tagged with its group, and what the server did with them."""

    socks: dict[socket.socket, str]
    opened: float = field(default_factory=time.monotonic)
    received: dict[socket.socket, bytes] = field(default_factory=dict)
    closed_after: dict[str, float] = field(default_factory=dict)  # first close per group

    @classmethod
    def open(cls, port: int, stalls: dict[str, bytes], per_group: int) -> Flood:
        _need_fds(4 * len(stalls) * per_group + 512)  # both ends live in this process
        flood = cls({})
        for group, data in stalls.items():
            for _ in range(per_group):
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                flood.socks[s] = group
                flood.received[s] = b""
                if data:
                    s.sendall(data)
        return flood

    def wait_closed(self, seconds: float, meanwhile: Callable[[], None]) -> list[str]:
        """Read every socket until the server closes it or `seconds` since opening pass,
        calling `meanwhile` between rounds; the groups with sockets still open."""
        sel = selectors.DefaultSelector()
        try:
            for s in self.socks:
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ)
            while sel.get_map() and time.monotonic() - self.opened < seconds:
                for key, _ in sel.select(timeout=0.5):
                    self._read(sel, key.fileobj)  # type: ignore[arg-type]
                meanwhile()
            return sorted({self.socks[k.fileobj] for k in sel.get_map().values()})  # type: ignore[index]
        finally:
            sel.close()

    def _read(self, sel: selectors.BaseSelector, s: socket.socket) -> None:
        try:
            data = s.recv(65536)
        except ConnectionResetError:
            data = b""
        self.received[s] += data
        if not data:  # the server closed it
            sel.unregister(s)
            self.closed_after.setdefault(self.socks[s], time.monotonic() - self.opened)

    def close(self) -> None:
        for s in self.socks:
            s.close()


def test_half_open_and_idle_connections_are_closed_while_the_api_answers(
    sc: SecureController,
) -> None:
    assert sc.ctl is not None
    ecs = boto_ecs(sc)
    latencies: list[float] = []

    def api_answers() -> None:
        """A /healthz and a signed boto3 call both succeed; how long they took together."""
        started = time.monotonic()
        assert requests.get(sc.http + "healthz", timeout=5).json()["status"] == "ok"
        assert ecs.list_clusters()["clusterArns"] is not None
        latencies.append(time.monotonic() - started)

    flood = Flood.open(sc.ctl.http_port, FLOOD, PER_GROUP)
    try:
        api_answers()
        limit = max(HEADERS_TIMEOUT_S, BODY_TIMEOUT_S) + LINGER_S + 10  # the margin
        still_open = flood.wait_closed(limit, api_answers)
    finally:
        flood.close()
    assert not still_open, f"still open after {limit:g} s: {still_open}"
    assert max(latencies) < 5, latencies  # the API kept answering during the flood
    for s, group in flood.socks.items():
        first = flood.received[s].split(b"\r\n", 1)[0]
        if group == "partial body":
            assert first == b"HTTP/1.1 408 Request Timeout", flood.received[s][:200]
        elif group == "idle keep-alive":
            assert first == b"HTTP/1.1 200 OK", flood.received[s][:200]
    # none was closed before its timeout (give the event loop's timer 1 s of slack)
    assert flood.closed_after["nothing"] > HEADERS_TIMEOUT_S - 1, flood.closed_after
    assert flood.closed_after["partial body"] > BODY_TIMEOUT_S - 1, flood.closed_after
    sc.validate()


GRPC_STALLS = {  # nothing, part of the HTTP/2 preface, the preface and no SETTINGS
    "nothing": b"",
    "partial preface": b"PRI * HTTP/2.0\r\n",
    "preface only": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
}


def test_half_open_grpc_connections_are_closed_while_the_api_answers(
    sc: SecureController,
) -> None:
    assert sc.ctl is not None
    handshake_s = dict(GRPC_OPTIONS)["grpc.server_handshake_timeout_ms"] / 1000
    client = sc.client()

    def api_answers() -> None:
        started = time.monotonic()
        assert "clusterArns" in client.call("ListClusters")
        assert time.monotonic() - started < 5

    flood = Flood.open(sc.ctl.grpc_port, GRPC_STALLS, 100)
    try:
        still_open = flood.wait_closed(handshake_s + 10, api_answers)
    finally:
        flood.close()
        client.close()
    assert not still_open, f"still open after {handshake_s + 10:g} s: {still_open}"
    assert min(flood.closed_after.values()) > handshake_s - 1, flood.closed_after
