"""The agent's task endpoint: ECS's credentials API and task metadata v4, on --credentials-listen.

`GET /v2/credentials/<id>` answers what botocore's ContainerProvider expects (RoleArn,
AccessKeyId, SecretAccessKey, Token, Expiration in ISO 8601); no id, an unknown id or a
revoked one get ECS's 400 body. Credentials live in memory only, exactly while their task
runs here. `GET /v4/<id>` and `/v4/<id>/task` are the metadata documents of
ECS_CONTAINER_METADATA_URI_V4, which every task gets, role or not: so the agent routes
169.254.170.2 here at start (agent/netconfig.py), as ECS's agent does, retrying with backoff
until it holds, and a task starts once that is done (or the attempt failed: logged).
Nothing secret is logged.

Every request is first tied to its caller (agent/callers.py): the container of this agent's
tasks that opened the connection. Then, stricter than ECS (whose agent lets any container
that knows an id read it, in bridge mode):
- a connection that is not from a container this agent started gets 403, whatever it asks;
- a task reads only its own credentials and metadata: an id of another task's gets 403. The
  id (>= 192 random bits made by the controller, seen only by the task's containers) stays
  the second lock: a caller must be the task AND know the id.
- the rate limit is per caller (per container), with ECS's agent's limits for its task
  endpoint: 40 requests/s steady, 60 burst (aws/amazon-ecs-agent agent/config/config.go,
  DefaultTaskMetadataSteadyStateRate = 40 and DefaultTaskMetadataBurstRate = 60, applied in
  agent/handlers/task_server_setup.go through a tollbooth limiter, which keys on the
  request's remote address). A container flooding the endpoint gets 429s; the others never
  notice.
In bridge mode the forwarder container relays connections: the caller of one it relays is
found behind it (agent/callers.py), from the forwarder's own sockets, never from anything the
caller sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from tenacity import AsyncRetrying, retry_if_exception_type, wait_random_exponential

from agent import netconfig
from agent.callers import Caller, Callers, Lister, relayed_source
from agent.docker_driver import docker_name
from agent.protection import ProtectionError, ProtectionForwarder, parse_put, protection_doc
from dockyard.v1 import agent_pb2

log = logging.getLogger("dockyard.agent.credentials")

RATE_PER_S = 40.0
BURST = 60
ROUTE_ATTEMPT_S = 30.0  # one attempt at routing 169.254.170.2 (iptables waits 5 s a lock)
ROUTE_RETRY_CAP_S = 15.0  # the longest wait between attempts after a failure
ENDPOINT = f"http://{netconfig.ENDPOINT_IP}"
CALLER = web.RequestKey("caller", Caller)  # who sent the request (set by _gate)
Inspect = Callable[[str], Awaitable[dict[str, Any] | None]]
StatsOf = Callable[[str, str], dict[str, Any] | None]  # (task ARN, container) -> Docker stats
TaskStats = Callable[[str], dict[str, dict[str, Any]]]  # task ARN -> {docker id: stats}


class TokenBucket:
    """`rate` tokens per second up to `burst`; take() says whether a request may pass."""

    def __init__(self, rate: float = RATE_PER_S, burst: int = BURST) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.at = float(burst), time.monotonic()

    def take(self, at: float | None = None) -> bool:
        at = time.monotonic() if at is None else at
        self.tokens = min(self.burst, self.tokens + (at - self.at) * self.rate)
        self.at = at
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def iso8601(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(status: int, code: str, message: str) -> web.Response:
    """ECS's error body: {"code": ..., "message": ...}."""
    return web.json_response({"code": code, "message": message}, status=status)


def credentials_doc(c: agent_pb2.Credentials) -> dict[str, str]:
    return {
        "RoleArn": c.role_arn,
        "AccessKeyId": c.access_key_id,
        "SecretAccessKey": c.secret_access_key,
        "Token": c.session_token,
        "Expiration": iso8601(c.expiration),
    }


def next_credentials(
    old: agent_pb2.Credentials | None, task: agent_pb2.DesiredTask, status: str
) -> agent_pb2.Credentials | None:
    """What to serve for a task after new desired state (pure).

    Stopped tasks lose theirs (revocation); a running task the controller sent without
    credentials (it is still fetching them, e.g. after its restart) keeps the old ones."""
    if status == "STOPPED":
        return None
    if task.HasField("credentials") and task.credentials.id:
        return task.credentials
    if task.desired_status == "RUNNING" and old is not None and old.id:
        return old
    return None


@dataclass
class _Container:
    task_arn: str
    name: str


def _load_key(state_dir: Path) -> bytes:
    """A per-agent key for metadata ids: stable across restarts, unguessable."""
    path = state_dir / "endpoint.key"
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    state_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex())
    return key


class TaskEndpoint:
    """The HTTP server plus the redirect that makes 169.254.170.2 reach it."""

    def __init__(
        self,
        listen: str,
        mode: str,
        state_dir: Path,
        docker_host: str,
        inspect: Inspect,
        lister: Lister,
    ) -> None:
        host, _, port = listen.rpartition(":")
        self.host, self.port = host or "127.0.0.1", int(port)
        self.inspect = inspect
        self.redirect = netconfig.Redirect(mode, self.host, self.port, docker_host)
        self.mode = self.redirect.mode
        self.serving = False
        self.creds: dict[str, agent_pb2.Credentials] = {}  # credentials id -> credentials
        self.by_task: dict[str, agent_pb2.Credentials] = {}
        self.desired: dict[str, agent_pb2.DesiredTask] = {}
        self.statuses: dict[str, agent_pb2.TaskStatus] = {}
        self.containers: dict[str, _Container] = {}  # metadata id -> container
        self.callers = Callers(lister)  # who is calling: our containers only
        self.buckets: dict[str, TokenBucket] = {}  # docker id -> its rate limit
        self.task_of: dict[str, str] = {}  # credentials id -> its task ARN
        self._key = _load_key(state_dir)
        self._runner: web.AppRunner | None = None
        self._gateway_site: web.TCPSite | None = None
        self._ready: asyncio.Task[None] | None = None  # the current routing attempt
        self._router: asyncio.Task[None] | None = None  # retries it from start until it holds
        self.stats_of: StatsOf = lambda _arn, _name: None  # the runtime's sampler (agent/stats.py)
        self.task_stats: TaskStats = lambda _arn: {}
        self.protection: ProtectionForwarder | None = None  # the runtime's (agent/protection.py)

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        app = web.Application(middlewares=[self._gate])
        app.router.add_get("/v2/credentials", self._no_id)
        app.router.add_get("/v2/credentials/", self._no_id)
        app.router.add_get("/v2/credentials/{id}", self._credentials)
        app.router.add_get("/v4/{mid}", self._container_doc)
        app.router.add_get("/v4/{mid}/task", self._task_doc)
        app.router.add_get("/v4/{mid}/taskWithTags", self._task_doc)
        app.router.add_get("/v4/{mid}/stats", self._container_stats)
        app.router.add_get("/v4/{mid}/task/stats", self._task_stats)
        state = "/api/{mid}/task-protection/v1/state"  # ECS_AGENT_URI's (issue 22)
        app.router.add_get(state, self._protection)
        app.router.add_put(state, self._protection)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            sock = _listen(self.host, self.port)
        except OSError as err:
            await runner.cleanup()
            log.warning(
                "task credentials endpoint disabled: cannot listen on %s:%d (%s)",
                self.host,
                self.port,
                err.strerror,
            )
            self.mode = "unavailable"
            return
        await web.SockSite(runner, sock).start()
        self._runner, self.serving = runner, True
        self.port = self.redirect.port = sock.getsockname()[1]
        log.info(
            "task credentials endpoint on %s:%d, credentials mode %s (%s)",
            self.host,
            self.port,
            self.mode,
            self.redirect.why,
        )
        # as ECS's agent does at start: every task gets ECS_CONTAINER_METADATA_URI_V4, and
        # tasks still running from before a restart need 169.254.170.2 again at once
        self._router = asyncio.create_task(self._route_until_done(), name="route-endpoint")

    async def stop(self) -> None:
        """Clean stop: the redirect rules go, then the server."""
        for attempt in (self._router, self._ready):
            if attempt is not None:
                attempt.cancel()
                await asyncio.gather(attempt, return_exceptions=True)
        if self.serving:
            with contextlib.suppress(Exception):
                await self.redirect.remove()
        if self._runner is not None:
            await self._runner.cleanup()
        self.serving = False

    async def _ensure_redirect_in_time(self) -> None:
        async with asyncio.timeout(ROUTE_ATTEMPT_S):  # a stuck attempt must not hold tasks
            await self._ensure_redirect()

    async def _ensure_redirect(self) -> None:
        await self.redirect.apply()
        wildcard = self.host in ("0.0.0.0", "::")  # already listening on the gateway too
        if self.redirect.gateway and not wildcard and self._runner and not self._gateway_site:
            # bridge mode: the forwarder container reaches us on the bridge's gateway
            site = web.TCPSite(self._runner, self.redirect.gateway, self.port)
            await site.start()
            self._gateway_site = site

    async def _route_until_done(self) -> None:
        """Retry the start-time routing with backoff until it holds (Docker down, the
        xtables lock busy): tasks already running here need it without waiting for a new one."""
        retrying = AsyncRetrying(
            wait=wait_random_exponential(multiplier=0.5, max=ROUTE_RETRY_CAP_S),
            retry=retry_if_exception_type(Exception),
        )
        async for attempt in retrying:
            with attempt:
                await asyncio.shield(self._route())

    def _route(self) -> asyncio.Task[None]:
        """The attempt to route 169.254.170.2 to us: started at start, again after a failure
        (e.g. Docker was down), shared by everyone waiting meanwhile."""
        last = self._ready
        if last is None or (last.done() and (last.cancelled() or last.exception())):
            last = self._ready = asyncio.create_task(self._ensure_redirect_in_time())
            last.add_done_callback(_log_failure)
        return last

    async def ready(self) -> None:
        """Wait until 169.254.170.2 reaches us; a failure is logged, not raised: the task
        still starts and its SDK reports the unreachable endpoint."""
        if self.serving:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._route())

    # ------------------------------------------------------------ state from the runtime

    def update(
        self, desired: dict[str, agent_pb2.DesiredTask], statuses: dict[str, agent_pb2.TaskStatus]
    ) -> None:
        """Serve exactly the credentials of tasks that are here and not stopped."""
        by_task = {}
        for arn, task in desired.items():
            status = statuses[arn].last_status if arn in statuses else ""
            creds = next_credentials(self.by_task.get(arn), task, status)
            if creds is not None:
                by_task[arn] = creds
        self.by_task = by_task
        self.creds = {c.id: c for c in by_task.values()}
        self.task_of = {c.id: arn for arn, c in by_task.items()}
        self.desired, self.statuses = desired, statuses
        self.containers = {
            self.metadata_id(arn, c.name): _Container(arn, c.name)
            for arn, t in desired.items()
            for c in t.containers
        }

    def metadata_id(self, task_arn: str, container: str) -> str:
        mac = hmac.new(self._key, f"{task_arn}/{container}".encode(), hashlib.sha256)
        return mac.hexdigest()[:32]

    async def prepare(
        self, task: agent_pb2.DesiredTask, spec: agent_pb2.ContainerSpec
    ) -> agent_pb2.ContainerSpec:
        """The spec with ECS_CONTAINER_METADATA_URI_V4, once 169.254.170.2 reaches us: every
        task gets the URI, with or without a role."""
        if not self.serving:
            return spec
        await self.ready()
        out = agent_pb2.ContainerSpec()
        out.CopyFrom(spec)
        mid = self.metadata_id(task.task_arn, spec.name)
        out.environment.append(
            agent_pb2.KeyValue(name="ECS_CONTAINER_METADATA_URI_V4", value=f"{ENDPOINT}/v4/{mid}")
        )  # and ECS_AGENT_URI, as ECS's agent sets it, for task scale-in protection (issue 22)
        out.environment.append(
            agent_pb2.KeyValue(name="ECS_AGENT_URI", value=f"{ENDPOINT}/api/{mid}")
        )
        return out

    def networks(self, task: agent_pb2.DesiredTask) -> list[str]:
        """Docker networks the task's containers join besides their own (bridge mode)."""
        return self.redirect.networks(task.network_mode or "bridge") if self.serving else []

    # ------------------------------------------------------------ HTTP

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Who calls (403 for anyone but our containers), then that caller's rate limit."""
        caller = await self._caller(request)
        if caller is None:
            return _error(
                403, "AccessDeniedException", "the caller is not a task container of this host"
            )
        if not self._bucket(caller.docker_id).take():
            return _error(429, "ThrottlingException", "Rate exceeded")
        request[CALLER] = caller
        return await handler(request)  # type: ignore[no-any-return]

    async def _caller(self, request: web.Request) -> Caller | None:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if not peer:
            return None
        source: tuple[str, int] | None = (str(peer[0]), int(peer[1]))
        if self.mode == "bridge" and peer[0] == netconfig.ENDPOINT_IP:
            source = await self._relayed(int(peer[1]))  # through the forwarder
        if source is None:
            return None
        return await self.callers.resolve(*source, conn=id(request.transport))

    async def _relayed(self, port: int) -> tuple[str, int] | None:
        """The caller behind a connection the bridge-mode forwarder opened from port."""
        data = await self.inspect(netconfig.FORWARDER)
        pid = int(((data or {}).get("State") or {}).get("Pid") or 0)
        if not pid:
            return None
        return await asyncio.to_thread(relayed_source, pid, netconfig.ENDPOINT_IP, port)

    def _bucket(self, docker_id: str) -> TokenBucket:
        if len(self.buckets) > 4 * len(self.callers.by_id) + 64:  # forget gone containers'
            self.buckets = {k: b for k, b in self.buckets.items() if k in self.callers.by_id}
        return self.buckets.setdefault(docker_id, TokenBucket())

    @staticmethod
    def _denied() -> web.Response:
        return _error(403, "AccessDeniedException", "a task may read only its own credentials")

    async def _no_id(self, _: web.Request) -> web.Response:
        return _error(400, "NoIdInRequest", "CredentialsV2Request: No ID in the request")

    async def _credentials(self, request: web.Request) -> web.Response:
        cid = request.match_info["id"]
        creds = self.creds.get(cid)
        if creds is None or creds.expiration <= time.time():
            return _error(400, "InvalidIdInRequest", "CredentialsV2Request: Credentials not found")
        caller: Caller = request[CALLER]
        if self.task_of.get(cid) != caller.task_arn:
            log.warning(
                "refused container %s of task %s: it asked for another task's credentials",
                caller.container,
                caller.task_arn,
            )
            return self._denied()
        return web.json_response(credentials_doc(creds))

    def _lookup(self, request: web.Request) -> tuple[agent_pb2.DesiredTask, str] | None:
        found = self.containers.get(request.match_info["mid"])
        if found is None or found.task_arn not in self.desired:
            return None
        return self.desired[found.task_arn], found.name

    async def _container_doc(self, request: web.Request) -> web.Response:
        found = self._lookup(request)
        if found is None:
            return _error(400, "InvalidIdInRequest", "V4 metadata: unknown container id")
        task, name = found
        if task.task_arn != request[CALLER].task_arn:
            return self._denied()
        spec = next(c for c in task.containers if c.name == name)
        return web.json_response(await self._container(task, spec))

    def _callers_own(
        self, request: web.Request
    ) -> tuple[agent_pb2.DesiredTask, str] | web.Response:
        """The (task, container) a metadata id names, if it is the caller's own task; else
        the error answer (400 unknown id, 403 another task's)."""
        found = self._lookup(request)
        if found is None:
            return _error(400, "InvalidIdInRequest", "V4 stats: unknown container id")
        if found[0].task_arn != request[CALLER].task_arn:
            return self._denied()
        return found

    async def _container_stats(self, request: web.Request) -> web.Response:
        """ECS's /stats: the container's Docker stats, as sampled every few seconds; {} before
        the first sample, as ECS's agent answers for a container it has no stats of yet."""
        found = self._callers_own(request)
        if isinstance(found, web.Response):
            return found
        return web.json_response(self.stats_of(found[0].task_arn, found[1]) or {})

    async def _task_stats(self, request: web.Request) -> web.Response:
        """ECS's /task/stats: every container of the task, by Docker id."""
        found = self._callers_own(request)
        if isinstance(found, web.Response):
            return found
        return web.json_response(self.task_stats(found[0].task_arn))

    async def _protection(self, request: web.Request) -> web.Response:
        """ECS's `${ECS_AGENT_URI}/task-protection/v1/state`: GET reads, PUT sets the caller's
        own task's scale-in protection, through the controller (agent/protection.py)."""
        found = self._lookup(request)
        if found is None:
            return _error(400, "InvalidIdInRequest", "task protection: unknown container id")
        task_arn = found[0].task_arn
        if task_arn != request[CALLER].task_arn:
            return self._denied()
        if self.protection is None:
            return _error(503, "ServerException", "task protection is not served here")
        try:
            if request.method == "PUT":
                try:
                    body = await request.json()
                except ValueError:
                    body = None
                enabled, minutes = parse_put(body)
                reply = await self.protection.ask(task_arn, True, enabled, minutes)
            else:
                reply = await self.protection.ask(task_arn, False)
        except ProtectionError as e:
            return web.json_response(
                {"error": {"Arn": task_arn, "Code": e.code, "Message": e.message}}, status=e.status
            )
        return web.json_response(protection_doc(reply))

    async def _task_doc(self, request: web.Request) -> web.Response:
        found = self._lookup(request)
        if found is None:
            return _error(400, "InvalidIdInRequest", "V4 metadata: unknown container id")
        task = found[0]
        if task.task_arn != request[CALLER].task_arn:
            return self._denied()
        status = self.statuses.get(task.task_arn)
        doc: dict[str, Any] = {
            "Cluster": task.cluster,
            "TaskARN": task.task_arn,
            "Family": task.family,
            "Revision": str(task.revision),
            "DesiredStatus": task.desired_status,
            "KnownStatus": status.last_status if status else "PENDING",
            "Limits": {
                "CPU": sum(c.cpu for c in task.containers) / 1024,
                "Memory": sum(c.memory_mib or c.memory_reservation_mib for c in task.containers),
            },
            "LaunchType": "EC2",
            "Containers": [await self._container(task, c) for c in task.containers],
        }
        if status and status.pull_started_at:
            doc["PullStartedAt"] = iso8601(status.pull_started_at)
        if status and status.pull_stopped_at:
            doc["PullStoppedAt"] = iso8601(status.pull_stopped_at)
        if request.path.endswith("taskWithTags"):
            doc["TaskTags"] = {}
        return web.json_response(doc)

    async def _container(
        self, task: agent_pb2.DesiredTask, spec: agent_pb2.ContainerSpec
    ) -> dict[str, Any]:
        status = self.statuses.get(task.task_arn)
        cstatus = (
            next((c for c in status.containers if c.name == spec.name), None) if status else None
        )
        doc: dict[str, Any] = {
            "Name": spec.name,
            "Image": spec.image,
            "DesiredStatus": task.desired_status,
            "KnownStatus": cstatus.last_status if cstatus else "PENDING",
            "Limits": {"CPU": spec.cpu, "Memory": spec.memory_mib or spec.memory_reservation_mib},
            "Type": "NORMAL",
        }
        if cstatus is not None and cstatus.has_exit_code:
            doc["ExitCode"] = cstatus.exit_code
        if cstatus is not None and cstatus.health in ("HEALTHY", "UNHEALTHY"):
            doc["Health"] = {"status": cstatus.health}
        if spec.restart_policy.enabled:  # ECS's metadata v4 field, with a restart policy
            doc["RestartCount"] = cstatus.restart_count if cstatus else 0
        data = await self.inspect(docker_name(task, spec))
        if data is not None:
            doc.update(_from_inspect(data, task.network_mode or "bridge"))
        return doc


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket, bound here so a port taken by another agent on this host is a
    plain OSError: handed to the loop, a bind lost to a concurrent agent surfaced under
    uvloop as a server without a socket, and the agent died (AttributeError)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    return socket.create_server((host, port), family=family)


def _log_failure(attempt: asyncio.Task[None]) -> None:
    if not attempt.cancelled() and attempt.exception() is not None:
        log.warning("cannot route %s to the task endpoint: %s", ENDPOINT, attempt.exception())


def _from_inspect(data: dict[str, Any], mode: str) -> dict[str, Any]:
    """Docker's inspect JSON -> the v4 container fields Docker knows."""
    state = data.get("State") or {}
    config = data.get("Config") or {}
    nets = (data.get("NetworkSettings") or {}).get("Networks") or {}
    out: dict[str, Any] = {
        "DockerId": data.get("Id", ""),
        "DockerName": data.get("Name", "").lstrip("/"),
        "ImageID": data.get("Image", ""),
        "Labels": config.get("Labels") or {},
        "CreatedAt": data.get("Created", ""),
        "Networks": [
            {"NetworkMode": mode if name == "bridge" else name, "IPv4Addresses": [n["IPAddress"]]}
            for name, n in nets.items()
            if n.get("IPAddress") and name != netconfig.NETWORK  # bridge mode's, not the task's
        ]
        or [{"NetworkMode": mode, "IPv4Addresses": []}],
        "Ports": [
            {
                "ContainerPort": int(key.split("/")[0]),
                "Protocol": key.partition("/")[2] or "tcp",
                "HostPort": int(b["HostPort"]),
                "HostIp": b.get("HostIp", ""),
            }
            for key, binds in ((data.get("NetworkSettings") or {}).get("Ports") or {}).items()
            for b in binds or []
            if b.get("HostPort")
        ],
    }
    if state.get("StartedAt", "").startswith("0001") is False and state.get("StartedAt"):
        out["StartedAt"] = state["StartedAt"]
    if state.get("FinishedAt") and not state["FinishedAt"].startswith("0001"):
        out["FinishedAt"] = state["FinishedAt"]
    return out
