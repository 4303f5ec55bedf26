"""Wiring of the controller process: store, state, service layer, dispatcher, gRPC and HTTP.

`Controller` starts and stops everything in one event loop (tests run it in-process);
`run(args)` is `dockyard controller`, on uvloop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import grpc
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Gauge, generate_latest

from controller import console, ha, loop_lag, usage_metrics
from controller.api_grpc import ApiServicer
from controller.capacity.driver import ScalingDriver, capacity_period
from controller.discovery import ServiceDiscovery
from controller.discovery_dns import DnsPusher
from controller.discovery_ecs import EcsRegistrations
from controller.dispatcher import Dispatcher
from controller.ecs_region import region_middleware
from controller.events import EventLog
from controller.feed import ChangeFeed
from controller.http_timeouts import runner_options
from controller.liveness import DEFAULT_HEARTBEAT_BUDGET
from controller.ops import bind
from controller.ops.autoscaling import AutoScaling
from controller.ops.chain import OperationChain
from controller.ops.context import OpContext
from controller.ops.events_rules import ScheduledRules
from controller.ops.usage import UsageOps
from controller.orchestrator import wiring as orchestrator
from controller.security import Security, SecurityConfig, sealing, tls_wanted
from controller.state import ClusterState
from controller.state_of_record import StateOfRecord
from controller.store_api import StoreBusy
from controller.store_factory import DEFAULT_STORE, UnknownStore, open_store
from controller.usage import UsageHistory
from dockyard import endpoints
from dockyard.arns import ArnFactory
from dockyard.v1 import agent_pb2_grpc, api_pb2_grpc

log = logging.getLogger("dockyard.controller")

# Sized for registration storms: gRPC core cancels calls the app has not picked up yet
# beyond max_pending_requests (1000 by default was seen to drop streams in a 5,000 burst).
GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", 8 << 20),
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_concurrent_streams", 100_000),
    ("grpc.server.max_pending_requests", 20_000),
    # A connection must finish TLS and the HTTP/2 preface in 15 s (grpc's default is 60 s),
    # and one with no call open for 5 minutes is closed (GOAWAY; clients reconnect).
    ("grpc.server_handshake_timeout_ms", 15_000),
    ("grpc.max_connection_idle_ms", 300_000),
]


GC_THRESHOLD = 50_000


@dataclass
class ControllerConfig:
    data_dir: Path
    listen: str = "127.0.0.1:7070"
    http: str = "127.0.0.1:7080"
    heartbeat_period: float = 1.0
    heartbeat_budget: float = DEFAULT_HEARTBEAT_BUDGET  # heartbeats/s; 0: no limit
    disconnect_grace: float = 10.0
    region: str = "us-east-1"
    account: str = "000000000000"
    # API keys + join tokens (controller.security). `dockyard controller` defaults to on;
    # in-process controllers (tests, benches) opt in.
    auth: bool = False
    open_loopback_agents: bool = False
    tls: bool = False  # `dockyard controller --tls auto`: on unless listening on loopback
    agent_listen: str = ""
    secrets_key_file: Path | None = None  # seals the store's secrets; None: <data-dir>.key
    http_tls: bool = False  # --tls auto: HTTPS on --http unless it is loopback
    advertise: tuple[str, ...] = ()  # --advertise-address: certificate SANs, `dockyard env`
    store: str = DEFAULT_STORE  # --store: the state store backend (controller.store_factory)
    metrics_per_task: bool = False  # --metrics-per-task: /metrics has a series per task
    autoscaling_period: float = 60.0  # --autoscaling-period: target tracking's metric period

    @property
    def key_file(self) -> Path:
        return self.secrets_key_file or sealing.default_key_file(self.data_dir)


class Controller:
    def __init__(self, config: ControllerConfig) -> None:
        self.config = config
        self.store = open_store(config.store, config.data_dir)  # --store: the backend
        self.feed = ChangeFeed()  # committed changes: the dispatcher, the orchestrator listen
        self.record = StateOfRecord(self.store, self.feed)  # every stored kind; one loader
        self.state = self.record.cluster
        self.arns = ArnFactory(config.region, config.account)
        self.events = EventLog()
        self.sealer: sealing.Sealer  # opened at start: the store's secrets are sealed
        self.service: OpContext  # what every operation is a function of (controller/ops)
        self.dispatcher: Dispatcher
        self.usage: UsageHistory  # the agents' usage reports: top, /metrics, the console
        self.services: orchestrator.ServiceScheduler
        self.api: OperationChain  # the one way into an operation (HTTP, gRPC, in-process)
        self._grpc: grpc.aio.Server | None = None
        self._http: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.grpc_port = 0
        self.http_port = 0

    async def start(self) -> None:
        await self.store.open()
        self.sealer = await sealing.open_sealer(self.store, self.config.key_file)
        await self.record.load()
        self.events.seq = await self.store.last_event_seq()
        self.service = OpContext(self.record, self.events, self.arns)
        await self.service.roles.load(self.sealer)
        self.services = orchestrator.install(self.service, self.config.disconnect_grace)
        self.services.load()
        self.dispatcher = Dispatcher(
            self.service, self.config.heartbeat_period, self.config.heartbeat_budget
        )
        self.services.departures = self.dispatcher.departures  # disconnect bursts go first
        self.usage = self.dispatcher.usage  # tasks' CPU and memory (controller/usage.py)
        self.security = Security(
            self.service,
            SecurityConfig(
                self.config.auth,
                self.config.open_loopback_agents,
                self.config.data_dir,
                tls=self.config.tls,
                agent_listen=self.config.agent_listen,
                advertise=self.config.advertise,
                shared_store=ha.is_etcd(self.config.store),
            ),
            self.sealer,
        )
        await self.security.install(self.dispatcher)
        self.discovery = ServiceDiscovery(self.record, self.arns)
        self.services.discovery = self.discovery.state  # serviceRegistries (issue 21)
        self.registrations = EcsRegistrations(self.services, self.discovery)
        dns = DnsPusher(self.record.discovery, self.feed, self.dispatcher.push_dns)
        if self.record.discovery.get("sd_namespace"):
            self.dispatcher.dns = dns.snapshot()
        self.autoscaling = AutoScaling(  # issue 22: controller/ops/autoscaling.py
            self.record, self.arns, self.services, self.usage, self.config.autoscaling_period
        )
        self.autoscaling.load()
        # issue 22: EventBridge scheduled rules (controller/ops/events_rules.py)
        self.schedules = ScheduledRules(
            self.record, self.arns, self.events, settle=self.config.disconnect_grace
        )
        self.schedules.load()
        # every operation, bound once: controller/ops/table.py lists them
        self.api = OperationChain(
            {
                **bind.handlers(self.service),
                **orchestrator.handlers(self.services),
                **self.security.handlers(),
                **UsageOps(self.service, self.usage).handlers(),
                **self.discovery.handlers(),  # Cloud Map (issue 21)
                **self.autoscaling.handlers(),
                **self.schedules.handlers(),
            },
            after=self.security.after_steps(),
        )
        self.autoscaling.bind(self.api.call)
        self.schedules.bind(self.api.call)
        await self._start_grpc()
        await self._start_http()
        self._tasks.append(asyncio.create_task(self.dispatcher.watch_heartbeats()))
        self._tasks.append(asyncio.create_task(self.service.roles.run()))
        self._tasks.append(asyncio.create_task(self.services.run()))
        self._tasks.append(asyncio.create_task(loop_lag.watch()))  # its lag, in /metrics
        self._tasks.append(asyncio.create_task(self.registrations.run()))
        self._tasks.append(asyncio.create_task(self.autoscaling.run()))
        self._tasks.append(asyncio.create_task(self.schedules.run()))  # fires due rules
        # issue 22: capacity providers' managed scaling (DOCKYARD_CAPACITY_PERIOD seconds)
        scaling = ScalingDriver(self.service, self.services, capacity_period())
        self._tasks.append(asyncio.create_task(scaling.run()))
        log.info(
            "controller ready: gRPC %s%s, ECS API %s, data %s",
            self.config.listen,
            " (TLS)" if self.config.tls else "",
            ("https://" if self.config.http_tls else "http://") + self.config.http,
            self.config.data_dir,
        )

    async def _start_grpc(self) -> None:
        server = grpc.aio.server(options=GRPC_OPTIONS, interceptors=self.security.interceptors())
        agent_pb2_grpc.add_AgentServiceServicer_to_server(self.security.agent_servicer(), server)
        api_pb2_grpc.add_ClusterApiServicer_to_server(
            ApiServicer(self.api, self.service, self.events, self.dispatcher), server
        )
        self.grpc_port = self.security.add_ports(server, self.config.listen)
        if not self.grpc_port:
            raise SystemExit(f"cannot listen on {self.config.listen} (gRPC)")
        await server.start()
        self._grpc = server

    async def _start_http(self) -> None:
        app = make_http_app(self)
        runner = web.AppRunner(app, access_log=None, **runner_options())
        await runner.setup()
        host, _, port = self.config.http.rpartition(":")
        tls = self.security.http_ssl_context(self.config.http) if self.config.http_tls else None
        site = web.TCPSite(runner, host or "0.0.0.0", int(port), ssl_context=tls)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.http_port = sockets[0].getsockname()[1] if sockets else int(port)
        self._http = runner
        endpoints.write(self.config.data_dir, self._endpoints())

    def _endpoints(self) -> endpoints.Endpoints:
        """Where clients reach this controller, for `dockyard env --data-dir`."""
        cfg = self.config
        grpc_host = endpoints.dial_host(cfg.listen, cfg.advertise)
        http_host = endpoints.dial_host(cfg.http, cfg.advertise)
        scheme = "https" if cfg.http_tls else "http"
        return endpoints.Endpoints(
            f"{grpc_host}:{self.grpc_port}",
            f"{scheme}://{http_host}:{self.http_port}",
            cfg.region,
            tls=cfg.tls,
        )

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._grpc:
            await self._grpc.stop(grace=1)
        if self._http:
            await self._http.cleanup()
        await self.store.close()


_GAUGES: dict[str, Gauge] = {}


def _gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
    if name not in _GAUGES:
        _GAUGES[name] = Gauge(name, doc, labels)
    return _GAUGES[name]


def _task_counts(state: ClusterState) -> tuple[dict[str, int], int]:
    """How many tasks per lastStatus (kept by the state as tasks are saved), and how many
    desired RUNNING on instances whose agent is disconnected (what the disconnect grace is
    watching). Walking all 50,000 tasks per scrape was 4 % of a busy controller's CPU."""
    on_disconnected = sum(
        state.tasks[arn].desired_status == "RUNNING"
        for inst in state.instances.values()
        if not inst.connected
        for arn in state.tasks_on.get(inst.arn, ())
    )
    return dict(state.status_counts), on_disconnected  # zeros too: a gauge must fall to 0


def make_http_app(ctl: Controller) -> web.Application:
    usage_registry = usage_metrics.registry(ctl.usage, ctl.config.metrics_per_task)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "instances": len(ctl.state.instances),
                "connected": len(ctl.dispatcher.sessions),
                "heartbeatPeriodMs": int(ctl.dispatcher.heartbeat_period() * 1000),
            }
        )

    async def metrics(_: web.Request) -> web.Response:
        _gauge("dockyard_agents_connected", "agent streams open").set(len(ctl.dispatcher.sessions))
        by_status = _gauge("dockyard_tasks", "tasks by lastStatus", ("status",))
        counts, on_disconnected = _task_counts(ctl.state)
        for status, n in counts.items():
            by_status.labels(status).set(n)
        _gauge(
            "dockyard_tasks_on_disconnected_instances",
            "tasks desired RUNNING on instances whose agent is disconnected (the grace watches)",
        ).set(on_disconnected)
        body = generate_latest(REGISTRY) + generate_latest(usage_registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    try:
        from controller.ecs_http import make_app
    except ImportError:
        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/metrics", metrics)
        return app
    check = os.environ.get("DOCKYARD_CHECK_RESPONSES") == "1"  # tests: bad bodies become 500s
    app = make_app(ctl.api, metrics_handler=metrics, health_handler=healthz, check_responses=check)
    ctl.security.protect_http(app)
    console.install(  # /ui/: its own sessions; the SigV4 check covers POST / only
        app,
        console.ConsoleDeps(
            ctl.api.call,
            ctl.security.keys,
            ctl.service,
            ctl.dispatcher,
            ctl.events,
            ctl.feed,
            secure_cookie=ctl.config.http_tls,
            usage=ctl.usage,
        ),
    )
    app.middlewares.append(region_middleware(ctl.arns.region))  # after the signature check
    return app


def config_from_args(args: argparse.Namespace) -> ControllerConfig:
    return ControllerConfig(
        data_dir=Path(args.data_dir),
        listen=args.listen,
        http=args.http,
        heartbeat_period=args.heartbeat_period,
        heartbeat_budget=getattr(args, "heartbeat_budget", DEFAULT_HEARTBEAT_BUDGET),
        disconnect_grace=args.disconnect_grace,
        region=args.region,
        account=args.account,
        auth=getattr(args, "auth", "on") == "on",
        open_loopback_agents=getattr(args, "open_loopback_agents", False),
        tls=tls_wanted(getattr(args, "tls", "never"), args.listen),
        agent_listen=getattr(args, "agent_listen", ""),
        secrets_key_file=Path(args.secrets_key_file)
        if getattr(args, "secrets_key_file", "")
        else None,
        http_tls=tls_wanted(getattr(args, "tls", "never"), args.http),
        advertise=tuple(getattr(args, "advertise_address", None) or ()),
        store=getattr(args, "store", DEFAULT_STORE),
        metrics_per_task=getattr(args, "metrics_per_task", False),
        autoscaling_period=getattr(args, "autoscaling_period", 60.0),
    )


async def serve(config: ControllerConfig) -> None:
    ctl = Controller(config)
    try:
        await ctl.start()
    except BaseException:
        await ctl.stop()  # a refused start (say, a wrong secrets key) leaves no thread behind
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("controller stopping")
    await ctl.stop()


def run(args: argparse.Namespace) -> int:
    import uvloop

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # The state is tens of thousands of long-lived objects: the default gen-0 threshold
    # (700 allocations) ran the cyclic collector thousands of times a second under load.
    gc.set_threshold(GC_THRESHOLD, 20, 20)
    config = config_from_args(args)
    try:
        if getattr(args, "rotate_secrets_key", False):
            store = open_store(config.store, config.data_dir)
            print(uvloop.run(sealing.rotate(store, config.key_file)))
        elif ha.is_etcd(config.store):
            uvloop.run(ha.serve(config, config.store))  # several controllers on etcd: one leads
        else:
            uvloop.run(serve(config))
    except (sealing.SealingError, StoreBusy, UnknownStore) as err:
        raise SystemExit(f"dockyard controller: {err}") from None
    return 0
