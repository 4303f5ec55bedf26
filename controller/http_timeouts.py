"""Timeouts for the HTTP port (ECS API, /healthz, /metrics): a client that connects and
then stalls loses its connection instead of holding it forever.

- HEADERS_TIMEOUT_S: a connection must deliver a request's complete headers within this
  many seconds of connecting, and an idle keep-alive connection is closed this long after
  its last response. aiohttp's keep-alive timer does both: it starts when the connection
  opens, restarts after each response, and closes the connection if no complete request
  has arrived by then (its default is 3,630 s, which let 1,000 half-open sockets sit).
- BODY_TIMEOUT_S: once the headers are in, the whole body (at most the 1 MiB the endpoint
  accepts) must arrive within this many seconds, else 408 RequestTimeoutException and
  the connection is closed. aiohttp has no body timeout; `body_deadline` is one.
- LINGER_S: how long aiohttp keeps draining an unread body after answering (default 10 s).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

HEADERS_TIMEOUT_S = 15.0
BODY_TIMEOUT_S = 15.0
LINGER_S = 2.0
CONTENT_TYPE = "application/x-amz-json-1.1"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def runner_options() -> dict[str, Any]:
    """Keyword arguments for web.AppRunner that apply the connection timeouts above."""
    return {"keepalive_timeout": HEADERS_TIMEOUT_S, "lingering_time": LINGER_S}


def _refusal(name: str, message: str, status: int) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps({"__type": name, "message": message}).encode(),
        content_type=CONTENT_TYPE,
    )


@web.middleware
async def body_deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Read the whole body within BODY_TIMEOUT_S before any handler (or the signature
    check) waits on it; aiohttp caches it, so later `request.read()` calls are free."""
    if request.body_exists:
        try:
            await asyncio.wait_for(request.read(), BODY_TIMEOUT_S)
        except TimeoutError:
            response = _refusal(
                "RequestTimeoutException",
                f"the request body did not arrive within {BODY_TIMEOUT_S:g} s",
                408,
            )
            response.force_close()
            return response
        except web.HTTPRequestEntityTooLarge:
            return _refusal("ClientException", "request body is too large", 413)
    return await handler(request)
