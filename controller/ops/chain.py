"""The one way into an operation: table lookup -> validation -> handler -> after-steps.

The ECS endpoint (controller.ecs_http), the native gRPC API (controller.api_grpc) and
in-process callers all call `OperationChain.call`; authorisation (who may call what) is the
transport's, from the caller's key and the table's `access` (controller.security.apiauth),
before the call reaches here. Handlers are plain async functions of the request body, bound
once at startup (controller.server); an after-step is a named, explicit action that follows
an operation's success (the agent gate cutting a deregistered instance's stream), never a
patch of the handler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from controller.ops.table import OPERATIONS
from controller.validation import validate
from dockyard.errors import client_error

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
AfterStep = Callable[[dict[str, Any], dict[str, Any]], None]  # (request, response)


class OperationChain:
    def __init__(
        self,
        handlers: Mapping[str, Handler],
        after: Mapping[str, Sequence[AfterStep]] | None = None,
        *,
        require_all: bool = True,
    ) -> None:
        """`require_all=False` only for tests serving a few operations from a fake."""
        unknown = sorted(set(handlers) - set(OPERATIONS))
        missing = sorted(set(OPERATIONS) - set(handlers)) if require_all else []
        if unknown or missing:
            raise RuntimeError(
                f"controller/ops/table.py and the handlers disagree: no table entry for "
                f"{unknown}, no handler for {missing}"
            )
        self._handlers = dict(handlers)
        self._after = {name: list(steps) for name, steps in (after or {}).items()}

    def operations(self) -> set[str]:
        return set(self._handlers)

    async def call(
        self, operation: str, body: dict[str, Any], *, native: bool = True
    ) -> dict[str, Any]:
        """Answer one request; `native=False` for the ECS endpoint (the model in full)."""
        handler = self._handlers.get(operation)
        if handler is None:
            raise client_error(f"operation {operation} is not supported by Dockyard")
        validate(OPERATIONS[operation], body, native=native)
        result = await handler(body)
        for step in self._after.get(operation, ()):
            step(body, result)
        return result
