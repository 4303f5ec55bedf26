"""A task's own scale-in protection (issue 22): `${ECS_AGENT_URI}/task-protection/v1/state`.

The agent's task endpoint (agent/credentials.py) checks the caller is the task the URI names,
then this forwards the GET or PUT to the controller over the agent's stream
(TaskProtectionRequest, field 260) and waits for the TaskProtectionReply with the same
request id: the controller is the one writer of a task's protection (it is stored on the
task). Answers are ECS's agent's: `{"protection": {...}}`, or `{"error": {...}}` with the
HTTP status ECS's agent uses (400 for bad input, 503 while the controller is unreachable).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from dockyard.v1 import agent_pb2

REPLY_TIMEOUT_S = 10.0

Send = Callable[[agent_pb2.AgentMessage], bool]


class ProtectionError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def parse_put(body: Any) -> tuple[bool, int | None]:
    """(ProtectionEnabled, ExpiresInMinutes) of a PUT body, or ProtectionError (ECS's agent
    refuses a body without ProtectionEnabled with 400)."""
    if not isinstance(body, dict):
        raise ProtectionError(400, "InvalidRequest", "the body must be a JSON object")
    enabled = body.get("ProtectionEnabled")
    if not isinstance(enabled, bool):
        raise ProtectionError(400, "InvalidRequest", "ProtectionEnabled: required, true or false")
    minutes = body.get("ExpiresInMinutes")
    if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, int)):
        raise ProtectionError(400, "InvalidRequest", "ExpiresInMinutes: a whole number")
    return enabled, minutes


def protection_doc(reply: agent_pb2.TaskProtectionReply) -> dict[str, Any]:
    """ECS's agent's answer: {"protection": {ExpirationDate?, ProtectionEnabled, TaskArn}}."""
    doc: dict[str, Any] = {"ProtectionEnabled": reply.protection_enabled, "TaskArn": reply.task_arn}
    if reply.protection_enabled and reply.expiration_date:
        when = datetime.fromtimestamp(reply.expiration_date, UTC)
        doc["ExpirationDate"] = when.isoformat(timespec="seconds").replace("+00:00", "Z")
    return {"protection": doc}


class ProtectionForwarder:
    """Requests in flight to the controller, by id."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[agent_pb2.TaskProtectionReply]] = {}

    async def ask(
        self, task_arn: str, update: bool, enabled: bool = False, minutes: int | None = None
    ) -> agent_pb2.TaskProtectionReply:
        req = agent_pb2.TaskProtectionRequest(
            request_id=next(self._ids), task_arn=task_arn, update=update, protection_enabled=enabled
        )
        if minutes is not None:
            req.expires_in_minutes = minutes
        fut = asyncio.get_running_loop().create_future()
        self._waiting[req.request_id] = fut
        try:
            if not self.send(agent_pb2.AgentMessage(protection=req)):
                raise ProtectionError(503, "ServerException", "the controller is unreachable")
            reply = await asyncio.wait_for(fut, REPLY_TIMEOUT_S)
        except TimeoutError:
            raise ProtectionError(503, "ServerException", "the controller did not answer") from None
        finally:
            self._waiting.pop(req.request_id, None)
        if reply.error_code:
            raise ProtectionError(400, reply.error_code, reply.error_message)
        return reply

    def reply(self, msg: agent_pb2.TaskProtectionReply) -> None:
        fut = self._waiting.get(msg.request_id)
        if fut is not None and not fut.done():
            fut.set_result(msg)
