"""The web console's routes under /ui/ on the controller's HTTP port.

Open without a session: the sign-in page, its stylesheet, and the sign-in POST. Everything
else (the console page, its script, every /ui/api/ read, the live stream, the logs, the
actions) answers 401 (or, for the page, a redirect to sign-in) without a live session, and
every POST but the sign-in one must carry the session's CSRF token. Reads and actions go
through the operations chain with the signed-in key's role (`authorize`), so the console can
do exactly what that key could do with the ECS API, validated the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from html import escape
from importlib import resources
from typing import Any, Protocol

from aiohttp import web

from controller.api_grpc import LogQuery, task_logs
from controller.console import data
from controller.console.sessions import Session, Sessions, csrf_matches
from controller.events import EventLog
from controller.feed import TASK_DESIRED, TASK_STOPPED, Change, ChangeFeed
from controller.security.apiauth import authorize
from controller.security.keys import AccessKey, AccessKeys
from dockyard.errors import ApiError, invalid

log = logging.getLogger(__name__)

COOKIE = "dockyard_console"
CSRF_HEADER = "X-CSRF-Token"
LIVE_DEBOUNCE_S = 0.3  # changes arriving together make one snapshot
LIVE_KEEPALIVE_S = 15.0  # a comment line this often keeps proxies from closing the stream
LOG_TAIL_MAX = 2000
LOG_WAIT_S = 10.0  # an agent that does not answer a logs tail in this long: an error, not a hang
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no-referrer would make POSTs say Origin: null
    "Cache-Control": "no-store",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Call = Callable[..., Awaitable[dict[str, Any]]]
Guarded = Callable[[web.Request, AccessKey], Awaitable[web.StreamResponse]]


UsageSeries = list[tuple[float, float | None, float | None]]  # (t, CPU %, memory %)
USAGE_WINDOW_S = 3600.0


class UsageSource(Protocol):
    """What the chart reads (controller/usage.py's `UsageHistory`): a service's CPU and
    memory utilisation (percent of its tasks' reservation) per bucket over the last hour,
    oldest first, None where nothing is reserved."""

    def service_history(self, cluster: str, service: str) -> UsageSeries: ...


def usage_series(history: UsageSeries, now: float) -> dict[str, list[tuple[float, float]]]:
    """The chart's two lines: the last hour's points, a gap where there was no value."""
    recent = [p for p in history if p[0] >= now - USAGE_WINDOW_S]
    return {
        "cpu": [(t, cpu) for t, cpu, _ in recent if cpu is not None],
        "memory": [(t, mem) for t, _, mem in recent if mem is not None],
    }


@dataclass
class ConsoleDeps:
    """What the console needs from the controller (controller.server wires it)."""

    call: Call  # OperationChain.call
    keys: AccessKeys
    service: Any  # the operations' context (controller.ops.core.Core): task lookups for logs
    dispatcher: Any  # Dispatcher: logs from agents
    events: EventLog
    feed: ChangeFeed
    secure_cookie: bool  # the HTTP port serves TLS
    usage: UsageSource | None = None  # the controller's usage history (controller/usage.py)
    streams: set[asyncio.Event] = field(default_factory=set)
    closing: bool = False


def _asset(name: str) -> bytes:
    return resources.files("controller.console").joinpath("static", name).read_bytes()


_TYPES = {".css": "text/css", ".js": "text/javascript", ".html": "text/html"}


def _static(name: str) -> web.Response:
    suffix = name[name.rfind(".") :]
    return web.Response(body=_asset(name), content_type=_TYPES[suffix], charset="utf-8")


def _refuse(status: int, name: str, message: str) -> web.Response:
    return web.json_response({"error": name, "message": message}, status=status)


class Console:
    def __init__(self, deps: ConsoleDeps) -> None:
        self.deps = deps
        self.sessions = Sessions(deps.keys.get)
        deps.feed.subscribe((TASK_DESIRED, TASK_STOPPED), self._changed)

    # ------------------------------------------------------------ sessions

    def _session(self, request: web.Request) -> tuple[Session, AccessKey] | None:
        return self.sessions.find(request.cookies.get(COOKIE, ""))

    def _same_origin(self, request: web.Request) -> bool:
        """A POST's Origin (browsers send it on every POST) must be this console's own."""
        origin = request.headers.get("Origin")
        return origin is None or origin == f"{request.scheme}://{request.host}"

    async def signin_page(self, request: web.Request) -> web.StreamResponse:
        if self._session(request) is not None:
            raise web.HTTPSeeOther("/ui/")
        return self._signin(200, "")

    def _signin(self, status: int, message: str) -> web.Response:
        page = _asset("signin.html").decode().replace("{{message}}", escape(message))
        return web.Response(text=page, status=status, content_type="text/html")

    async def signin(self, request: web.Request) -> web.StreamResponse:
        if not self._same_origin(request):
            return self._signin(403, "Sign-in refused: the form was posted from another site.")
        form = await request.post()
        key_id, secret = form.get("accessKeyId", ""), form.get("secretAccessKey", "")
        if not isinstance(key_id, str) or not isinstance(secret, str):
            return self._signin(400, "Give an access key id and its secret.")
        if not key_id or not secret or len(key_id) > 64 or len(secret) > 256:
            return self._signin(400, "Give an access key id and its secret.")
        made = self.sessions.sign_in(key_id.strip(), secret.strip())
        if made is None:
            log.warning("console sign-in refused for %s from %s", key_id[:32], request.remote)
            return self._signin(401, "Unknown access key or wrong secret.")
        token, session = made
        log.info("console: %s signed in from %s", session.key_id, request.remote)
        response = web.HTTPSeeOther("/ui/")
        response.set_cookie(
            COOKIE,
            token,
            max_age=int(self.sessions.ttl),
            path="/ui",
            httponly=True,
            secure=self.deps.secure_cookie,
            samesite="Strict",
        )
        raise response

    async def signout(self, request: web.Request, key: AccessKey) -> web.StreamResponse:
        self.sessions.sign_out(request.cookies.get(COOKIE, ""))
        response = web.json_response({"ok": True})
        response.del_cookie(COOKIE, path="/ui")
        return response

    # ------------------------------------------------------------ pages and reads

    async def page(self, request: web.Request) -> web.StreamResponse:
        found = self._session(request)
        if found is None:
            raise web.HTTPSeeOther("/ui/signin")
        session, key = found
        may_act = key.role == "admin"
        page = (
            _asset("console.html")
            .decode()
            .replace("{{csrf}}", escape(session.csrf))
            .replace("{{key}}", escape(key.access_key_id))
            .replace("{{role}}", escape(key.role))
            .replace("{{mayAct}}", "true" if may_act else "false")
        )
        return web.Response(text=page, content_type="text/html")

    def _call(self, key: AccessKey) -> data.Call:
        """The chain, as the ECS endpoint calls it (the model in full), with `key`'s rights."""

        async def ecs(operation: str, body: dict[str, Any]) -> dict[str, Any]:
            return await self.deps.call(operation, body, native=False)

        return data.caller(ecs, key)

    async def snapshot(self, request: web.Request, key: AccessKey) -> web.StreamResponse:
        snap = await data.snapshot(self._call(key), self.deps.events, _cluster(request))
        return web.json_response(snap)

    async def logs(self, request: web.Request, key: AccessKey) -> web.StreamResponse:
        authorize(key, "Logs")  # the same right as `dockyard logs`
        query = LogQuery(
            _cluster(request),
            _text(request, "task", required=True),
            _text(request, "container"),
            follow=False,
            tail=_tail(request),
        )
        lines = await asyncio.wait_for(self._read_logs(query), LOG_WAIT_S)
        return web.json_response({"task": query.task, "lines": lines})

    async def _read_logs(self, query: LogQuery) -> list[dict[str, str]]:
        lines: list[dict[str, str]] = []
        async for chunk in task_logs(self.deps.service, self.deps.dispatcher, query):
            text = chunk.data.decode("utf-8", errors="replace")
            lines.extend({"container": chunk.container, "text": t} for t in text.splitlines())
        return lines[-query.tail :] if query.tail else lines

    async def usage(self, request: web.Request, key: AccessKey) -> web.StreamResponse:
        """Per-service CPU and memory over the last hour (`available: false` only for a
        console wired without a usage history)."""
        authorize(key, "DescribeServices")
        service = _text(request, "service", required=True)
        cluster = self.deps.service.cluster(_cluster(request) or None).name
        source = self.deps.usage
        history = source.service_history(cluster, service) if source is not None else []
        return web.json_response(
            {
                "service": service,
                "available": source is not None,
                "unit": "percent",
                **usage_series(history, time.time()),
            }
        )

    # ------------------------------------------------------------ live updates

    def _changed(self, changes: list[Change]) -> None:
        """Change-feed subscriber: wake every open stream (they re-read and coalesce)."""
        for wake in self.deps.streams:
            wake.set()

    async def live(self, request: web.Request, key: AccessKey) -> web.StreamResponse:
        """Server-sent events: a `snapshot` now, and a new one after each burst of changes
        (the change feed, and every event-log line: task status, services, instances)."""
        cluster = _cluster(request)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        wake = asyncio.Event()
        self.deps.streams.add(wake)
        pump = asyncio.create_task(self._pump_events(wake))
        try:
            await self._stream(request, response, key, cluster, wake)
        except (ConnectionResetError, ConnectionError):
            pass  # the browser went away
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            self.deps.streams.discard(wake)
        return response

    async def _pump_events(self, wake: asyncio.Event) -> None:
        follower = self.deps.events.follow("", "")
        try:
            async for _ in follower:
                wake.set()
        finally:
            await follower.aclose()  # type: ignore[attr-defined]  # an async generator

    async def _stream(
        self,
        request: web.Request,
        response: web.StreamResponse,
        key: AccessKey,
        cluster: str,
        wake: asyncio.Event,
    ) -> None:
        call = self._call(key)
        dirty = True
        while not self.deps.closing:
            if self._session(request) is None:
                await response.write(_sse("signedout", {}))
                return
            if dirty:
                await response.write(await self._snapshot_event(call, cluster))
            try:
                await asyncio.wait_for(wake.wait(), LIVE_KEEPALIVE_S)
                dirty = True
                await asyncio.sleep(LIVE_DEBOUNCE_S)  # what follows in this window comes too
            except TimeoutError:
                dirty = False
                await response.write(b": keepalive\n\n")
            wake.clear()

    async def _snapshot_event(self, call: data.Call, cluster: str) -> bytes:
        """A `snapshot` event, or a `problem` one when a read is refused mid-way (a cluster
        deleted between two reads): the stream goes on and tries again at the next change."""
        try:
            return _sse("snapshot", await data.snapshot(call, self.deps.events, cluster))
        except ApiError as err:
            return _sse("problem", {"error": err.name, "message": err.message})

    async def on_shutdown(self, _: web.Application) -> None:
        """End open streams so a stopping controller does not wait on browsers."""
        self.deps.closing = True
        for wake in self.deps.streams:
            wake.set()

    # ------------------------------------------------------------ actions

    async def act(self, request: web.Request, key: AccessKey) -> web.StreamResponse:
        action = request.match_info["action"]
        build = ACTIONS.get(action)
        if build is None:
            raise web.HTTPNotFound()
        body = await _json_body(request)
        operation, ecs_body = build(body, key)
        result = await self._call(key)(operation, ecs_body)
        log.info("console: %s called %s (%s)", key.access_key_id, operation, action)
        failures = result.get("failures", [])
        return web.json_response({"ok": not failures, "operation": operation, "failures": failures})

    # ------------------------------------------------------------ wiring

    def guarded(self, handler: Guarded) -> Handler:
        """`handler` behind the session (401 without one) and, for POSTs, the CSRF token."""

        async def guard(request: web.Request) -> web.StreamResponse:
            found = self._session(request)
            if found is None:
                return _refuse(401, "SignedOut", "sign in at /ui/signin")
            session, key = found
            if request.method == "POST":
                sent = request.headers.get(CSRF_HEADER, "")
                if not self._same_origin(request) or not csrf_matches(session, sent):
                    return _refuse(403, "CsrfRefused", f"missing or wrong {CSRF_HEADER}")
            try:
                return await handler(request, key)
            except ApiError as err:
                status = err.status if 400 <= err.status <= 599 else 400
                return _refuse(status, err.name, err.message)
            except TimeoutError:
                return _refuse(504, "Timeout", "the agent did not answer in time")

        return guard

    async def script(self, request: web.Request, key: AccessKey) -> web.StreamResponse:
        return _static("console.js")

    async def stylesheet(self, request: web.Request) -> web.StreamResponse:
        return _static("console.css")


def _sse(event: str, payload: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


def _text(request: web.Request, name: str, required: bool = False) -> str:
    value = request.query.get(name, "")
    if len(value) > 2048:
        raise invalid(name, "at most 2048 characters")
    if required and not value:
        raise invalid(name, "required")
    return value


def _cluster(request: web.Request) -> str:
    return _text(request, "cluster")


def _tail(request: web.Request) -> int:
    raw = request.query.get("tail", "200")
    if not raw.isdigit() or not 1 <= int(raw) <= LOG_TAIL_MAX:
        raise invalid("tail", f"a whole number from 1 to {LOG_TAIL_MAX}")
    return int(raw)


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise invalid("Content-Type", "application/json")
    try:
        body = json.loads(await request.read())
    except ValueError:
        raise invalid("body", "a JSON object") from None
    if not isinstance(body, dict):
        raise invalid("body", "a JSON object")
    return body


def _field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise invalid(name, "required: a non-empty string")
    return value


def _stop_task(body: dict[str, Any], key: AccessKey) -> tuple[str, dict[str, Any]]:
    reason = f"Stopped from the web console by {key.access_key_id}"
    return "StopTask", {
        "cluster": _field(body, "cluster"),
        "task": _field(body, "task"),
        "reason": reason,
    }


def _scale(body: dict[str, Any], key: AccessKey) -> tuple[str, dict[str, Any]]:
    count = body.get("desiredCount")
    if not isinstance(count, int) or isinstance(count, bool):
        raise invalid("desiredCount", "a whole number")
    ecs = {"cluster": _field(body, "cluster"), "service": _field(body, "service")}
    return "UpdateService", {**ecs, "desiredCount": count}


def _instance_state(body: dict[str, Any], key: AccessKey) -> tuple[str, dict[str, Any]]:
    status = _field(body, "status")
    if status not in ("DRAINING", "ACTIVE"):
        raise invalid("status", "DRAINING or ACTIVE")
    ecs = {"cluster": _field(body, "cluster"), "containerInstances": [_field(body, "instance")]}
    return "UpdateContainerInstancesState", {**ecs, "status": status}


ACTIONS: dict[str, Callable[[dict[str, Any], AccessKey], tuple[str, dict[str, Any]]]] = {
    "stop-task": _stop_task,
    "scale": _scale,
    "instance-state": _instance_state,
}


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path.startswith("/ui"):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)


def install(app: web.Application, deps: ConsoleDeps) -> Console:
    """Add the console's routes to the controller's HTTP app."""
    console = Console(deps)
    g = console.guarded
    app.router.add_get("/ui", _to_console)
    app.router.add_get("/ui/", console.page)
    app.router.add_get("/ui/signin", console.signin_page)
    app.router.add_post("/ui/signin", console.signin)
    app.router.add_post("/ui/signout", g(console.signout))
    app.router.add_get("/ui/static/console.css", console.stylesheet)
    app.router.add_get("/ui/static/console.js", g(console.script))
    app.router.add_get("/ui/api/snapshot", g(console.snapshot))
    app.router.add_get("/ui/api/live", g(console.live))
    app.router.add_get("/ui/api/logs", g(console.logs))
    app.router.add_get("/ui/api/usage", g(console.usage))
    app.router.add_post("/ui/api/{action}", g(console.act))
    app.on_response_prepare.append(_headers)
    app.on_shutdown.append(console.on_shutdown)
    return console


async def _to_console(_: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/ui/")
