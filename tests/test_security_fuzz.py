"""Property-based fuzzing of the controller's inputs: the ECS endpoint and the agent stream.

Random, malformed and oversized requests must leave the controller up and its state
consistent (`ClusterState.validate()`), and every answer must be a clear error: a 4xx with
an ECS `__type` and message over HTTP, a Refusal with a code over the agent stream.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard.v1 import agent_pb2
from tests.security_support import RawAgent, SecureController, register_msg

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
OPERATIONS = [
    "CreateCluster", "DescribeClusters", "ListClusters", "DeleteCluster",
    "RegisterTaskDefinition", "DescribeTaskDefinition", "DeregisterTaskDefinition",
    "RunTask", "StopTask", "DescribeTasks", "ListTasks", "ListContainerInstances",
    "DescribeContainerInstances", "UpdateContainerInstancesState", "PutAttributes",
    "DeleteAttributes", "ListAttributes", "TagResource", "UntagResource", "CreateService",
    "UpdateService", "DeleteService", "DescribeServices",
]  # fmt: skip
KEYS = [
    "cluster", "clusterName", "family", "taskDefinition", "count", "tasks", "task",
    "containerDefinitions", "name", "image", "memory", "cpu", "attributes", "tags", "key",
    "value", "resourceArn", "containerInstances", "status", "maxResults", "nextToken",
    "placementConstraints", "overrides", "serviceName", "desiredCount", "startedBy",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.sampled_from(["default", "sleepy", "x" * 300, "arn:aws:ecs:us-east-1:0:task/default/1"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=12),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=10)), inner, max_size=8),
    ),
    max_leaves=40,
)
bodies = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=8)


@pytest.fixture
def sc(tmp_path: Path) -> Iterator[SecureController]:
    c = SecureController(tmp_path / "controller")
    try:
        c.start()
        client = c.client()
        client.call(
            "RegisterTaskDefinition",
            {
                "family": "sleepy",
                "containerDefinitions": [{"name": "m", "image": "dockyard/sleeper", "memory": 8}],
            },
        )
        yield c
    finally:
        c.stop()


def _assert_clear_error(resp: Any) -> None:
    assert resp.status_code < 500, resp.text
    if resp.status_code != 200:
        doc = resp.json()
        assert doc["__type"] and doc["message"], doc


def _healthy(sc: SecureController) -> None:
    assert sc.client().call("ListClusters")["clusterArns"]
    sc.validate()


def test_fuzz_ecs_endpoint_json(sc: SecureController) -> None:
    token = sc.client().call("CreateJoinToken", {})["joinToken"]["token"]
    agent = RawAgent(sc.address).connect(register_msg("i-fuzz", token))
    agent.next("registered")

    @FUZZ
    @given(op=st.sampled_from(OPERATIONS), body=bodies)
    def one(op: str, body: dict[str, Any]) -> None:
        _assert_clear_error(sc.ecs(op, body))

    try:
        one()
    finally:
        agent.close()
    _healthy(sc)


@FUZZ
@given(
    target=st.one_of(
        st.sampled_from(OPERATIONS),
        st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60),
    ),
    raw=st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode())),
)
def test_fuzz_ecs_endpoint_malformed(sc: SecureController, target: str, raw: bytes) -> None:
    _assert_clear_error(sc.ecs(target, raw))


def test_ecs_endpoint_oversized_body(sc: SecureController) -> None:
    resp = sc.ecs("ListClusters", {"cluster": "x" * (3 << 20)})
    assert 400 <= resp.status_code < 500
    _healthy(sc)


# ---------------------------------------------------------------- agent stream

texts = st.one_of(st.text(max_size=30), st.sampled_from(["", "x" * 5000, "RUNNING", "STOPPED"]))
statuses = st.builds(
    agent_pb2.TaskStatus,
    task_arn=texts,
    last_status=st.sampled_from(["", "RUNNING", "STOPPED", "PENDING", "bogus", "x" * 300]),
    stopped_reason=texts,
    updated_at=st.floats(allow_nan=True, allow_infinity=True),
    containers=st.lists(
        st.builds(
            agent_pb2.ContainerStatus,
            name=texts,
            last_status=texts,
            exit_code=st.integers(-(2**31), 2**31 - 1),
        ),
        max_size=3,
    ),
)
messages = st.one_of(
    st.builds(
        lambda s: agent_pb2.AgentMessage(status=agent_pb2.StatusBatch(tasks=s)),
        st.lists(statuses, max_size=5),
    ),
    st.builds(
        lambda seq, v, ok: agent_pb2.AgentMessage(
            heartbeat=agent_pb2.Heartbeat(seq=seq, desired_version=v, docker_healthy=ok)
        ),
        st.integers(0, 2**64 - 1),
        st.integers(0, 2**64 - 1),
        st.booleans(),
    ),
    st.builds(
        lambda v: agent_pb2.AgentMessage(resync=agent_pb2.ResyncRequest(have_version=v)),
        st.integers(0, 2**64 - 1),
    ),
    st.builds(
        lambda rid, data: agent_pb2.AgentMessage(
            log_chunk=agent_pb2.LogChunk(request_id=rid, data=data)
        ),
        st.integers(0, 2**64 - 1),
        st.binary(max_size=100),
    ),
    st.builds(
        lambda r: agent_pb2.AgentMessage(register=r.register), st.builds(register_msg, texts)
    ),
    st.just(agent_pb2.AgentMessage()),
)


def test_fuzz_agent_stream(sc: SecureController) -> None:
    token = sc.client().call("CreateJoinToken", {})["joinToken"]["token"]
    client = sc.client()

    @FUZZ
    @given(batch=st.lists(messages, min_size=1, max_size=6))
    def one(batch: list[agent_pb2.AgentMessage]) -> None:
        agent = RawAgent(sc.address).connect(register_msg("i-agentfuzz", token))
        try:
            assert agent.next("registered")
            for msg in batch:
                agent.send(msg)
            agent.send(agent_pb2.AgentMessage(heartbeat=agent_pb2.Heartbeat(seq=424242)))
            while True:  # every answer up to our marker's ack is well-formed
                reply = agent.next()
                kind = reply.WhichOneof("body")
                if kind == "refusal":
                    assert reply.refusal.code and reply.refusal.message
                if kind == "heartbeat_ack" and reply.heartbeat_ack.seq == 424242:
                    break
        finally:
            agent.close()

    one()
    client.call("RunTask", {"taskDefinition": "sleepy"})
    _healthy(sc)


@FUZZ
@given(first=st.one_of(messages, st.builds(register_msg, texts, texts)))
def test_fuzz_agent_first_message(sc: SecureController, first: agent_pb2.AgentMessage) -> None:
    """Without a valid token, whatever comes first is refused, never registered."""
    agent = RawAgent(sc.address).connect(first)
    try:
        reply = agent.next()
        assert reply.WhichOneof("body") == "refusal" and reply.refusal.fatal
    finally:
        agent.close()
    assert sc.client().call("ListContainerInstances")["containerInstanceArns"] == []


def test_agent_stream_garbage_and_oversized(sc: SecureController) -> None:
    channel = grpc.insecure_channel(sc.address)
    connect = channel.stream_stream(
        "/dockyard.v1.AgentService/Connect",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    for payload in (b"\xff\xfe garbage \x00" * 10, b"\x0a" + b"\xff" * 64, b"x" * (9 << 20)):
        with pytest.raises(grpc.RpcError) as err:
            list(connect(iter([payload]), timeout=10))
        code = err.value.code()  # type: ignore[attr-defined]
        assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED), code
    channel.close()
    _healthy(sc)
