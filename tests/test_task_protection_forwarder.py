"""The agent half of a task's own scale-in protection (issue 22), pure: the PUT body ECS's
agent accepts, its answer's shape, and requests matched to the controller's replies by id."""

from __future__ import annotations

import asyncio

import pytest

from agent.protection import ProtectionError, ProtectionForwarder, parse_put, protection_doc
from dockyard.v1 import agent_pb2


def test_put_body_is_ecs_agents() -> None:
    assert parse_put({"ProtectionEnabled": True}) == (True, None)
    assert parse_put({"ProtectionEnabled": False, "ExpiresInMinutes": 60}) == (False, 60)
    bads: list[object] = [None, [], {"ExpiresInMinutes": 5}, {"ProtectionEnabled": "yes"}]
    for bad in bads:
        with pytest.raises(ProtectionError) as err:
            parse_put(bad)
        assert err.value.status == 400
    with pytest.raises(ProtectionError, match="ExpiresInMinutes"):
        parse_put({"ProtectionEnabled": True, "ExpiresInMinutes": "60"})


def test_answer_shape() -> None:
    on = agent_pb2.TaskProtectionReply(
        task_arn="arn:t", protection_enabled=True, expiration_date=1767225600.0
    )
    assert protection_doc(on) == {
        "protection": {
            "ProtectionEnabled": True,
            "TaskArn": "arn:t",
            "ExpirationDate": "2026-01-01T00:00:00Z",
        }
    }
    off = agent_pb2.TaskProtectionReply(task_arn="arn:t")
    assert protection_doc(off) == {"protection": {"ProtectionEnabled": False, "TaskArn": "arn:t"}}


async def test_requests_are_matched_to_replies_and_errors_come_back() -> None:
    sent: list[agent_pb2.AgentMessage] = []

    def send(m: agent_pb2.AgentMessage) -> bool:
        sent.append(m)
        return True

    fwd = ProtectionForwarder(send)
    first = asyncio.ensure_future(fwd.ask("arn:a", True, True, 30))
    second = asyncio.ensure_future(fwd.ask("arn:b", False))
    await asyncio.sleep(0)
    a, b = (m.protection for m in sent)
    assert (a.task_arn, a.update, a.protection_enabled, a.expires_in_minutes) == (
        "arn:a",
        True,
        True,
        30,
    )
    assert not b.update and not b.HasField("expires_in_minutes")
    fwd.reply(agent_pb2.TaskProtectionReply(request_id=b.request_id, task_arn="arn:b"))
    fwd.reply(
        agent_pb2.TaskProtectionReply(
            request_id=a.request_id, error_code="InvalidParameterException", error_message="no"
        )
    )
    assert (await second).task_arn == "arn:b"
    with pytest.raises(ProtectionError) as err:
        await first
    assert (err.value.status, err.value.code) == (400, "InvalidParameterException")

    offline = ProtectionForwarder(lambda _m: False)  # the stream is down: 503, nothing waits
    with pytest.raises(ProtectionError) as err:
        await offline.ask("arn:a", False)
    assert err.value.status == 503 and not offline._waiting
