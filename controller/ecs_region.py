"""One controller serves one region, as an ECS endpoint does.

A SigV4 signature names its region in the credential scope
(`Credential=<key>/<date>/<region>/ecs/aws4_request`). ECS's regional endpoints refuse a
request scoped to another region (InvalidSignatureException, "Credential should be scoped
to a valid region"); so does Dockyard, naming both regions and the fix, instead of
answering with ARNs of a region the client did not ask for. Checked whether or not API
keys are on: an unsigned request has no region to compare and passes to the auth check.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

CONTENT_TYPE = "application/x-amz-json-1.1"
_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/([^/,\s]+)/")


def signed_region(authorization: str) -> str | None:
    """The region of a SigV4 Authorization header's credential scope (None if none)."""
    match = _SCOPE.search(authorization)
    return match.group(1) if match else None


def wrong_region(signed: str | None, served: str) -> str | None:
    """The refusal for a request signed for `signed` at a controller serving `served`."""
    if signed is None or signed == served:
        return None
    return (
        f"Credential should be scoped to a valid region: the request is signed for "
        f"{signed[:64]!r}, this Dockyard controller serves {served!r} "
        f"(use --region {served} or AWS_DEFAULT_REGION={served})"
    )


def region_middleware(region: str) -> Any:
    """aiohttp middleware refusing ECS requests (POST /) signed for another region."""

    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method == "POST" and request.path == "/":
            problem = wrong_region(signed_region(request.headers.get("Authorization", "")), region)
            if problem is not None:
                return web.json_response(
                    {"__type": "InvalidSignatureException", "message": problem},
                    status=400,
                    content_type=CONTENT_TYPE,
                )
        return await handler(request)

    return check
