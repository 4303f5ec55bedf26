"""The agent process: keeps the desired state, runs the reconcile loop, reports status.

Three loops share one event loop: the controller session (agent.session), the reconcile loop
(woken by new desired state, Docker events, finished actions, or a periodic tick) and the
Docker event watcher. The plan itself is pure (agent.reconcile); this module executes it.
Containers outlive the agent: a restart rebuilds its view from Docker labels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent import (
    __version__,
    dns_server,
    engine_claim,
    enroll,
    gpus,
    host,
    host_config,
    identity,
    image_cleanup,
    reconcile,
    restart_ledger,
)
from agent.credentials import TaskEndpoint
from agent.dns_server import DnsUnavailable, Resolver
from agent.docker_driver import DockerDriver, DockerUnavailable, DriverError, PullError
from agent.execs import ExecSessions
from agent.image_cleanup import CleanupPolicy
from agent.protection import ProtectionForwarder
from agent.reconcile import LocalTask, Remove, Restart, Start, Stop
from agent.session import Handlers, Session
from agent.stats import Sampler
from dockyard.v1 import agent_pb2

log = logging.getLogger("dockyard.agent")
RESOLV_CONF = Path("/etc/resolv.conf")  # the host's resolvers: where other names go


@dataclass
class AgentConfig:
    controller: str
    state_dir: Path
    docker_host: str = "unix:///var/run/docker.sock"
    cluster: str = "default"
    attributes: dict[str, str] = field(default_factory=dict)
    address: str = ""
    hostname: str = field(default_factory=platform.node)
    pull_behavior: str = "default"
    reserved_memory: int = 0
    join_token: str = ""
    tls: str = "auto"  # auto | always | never (auto: TLS unless the controller is loopback)
    ca_hash: str = ""  # sha256:... of the controller's CA, from `dockyard tokens create`
    retention_s: float = 3600.0
    tick_s: float = 2.0
    credentials_listen: str = "127.0.0.1:51679"
    credentials_mode: str = "auto"
    allow_shared_engine: bool = False  # tests and simulations only (agent/engine_claim.py)
    allow_awslogs: bool = False  # the operator vouches the engine can reach CloudWatch Logs
    image_cleanup: CleanupPolicy = field(default_factory=CleanupPolicy)
    disable_privileged: bool = False  # ECS_DISABLE_PRIVILEGED
    disable_host_devices: bool = False  # refuse linuxParameters.devices
    gpus_from: str = ""  # tests: declare GPUs (one id per line) instead of nvidia-smi
    stats_source: str = "auto"  # auto | cgroup | engine (agent/stats.py)
    stats_interval_s: float = 5.0  # sampling period of containers' CPU and memory; 0: off
    usage_report_s: float = 15.0  # how often the aggregates go to the controller
    dns_listen: str = "auto"  # auto (bridge gateway:53) | off | ADDR[:PORT] (agent/dns_server)


def _auth(spec: agent_pb2.ContainerSpec) -> dict[str, str] | None:
    """repositoryCredentials (resolved by the controller) -> Docker's X-Registry-Auth fields."""
    a = spec.registry_auth
    if not spec.HasField("registry_auth") or not a.username:
        return None
    return {"username": a.username, "password": a.password, "serveraddress": a.server}


def _reason(kind: str, err: Exception) -> str:
    """ECS-style reason: the driver's messages already carry their Cannot...Error kind."""
    text = str(err)
    return text if text.startswith("Cannot") else f"{kind}: {text}"


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.identity = identity.load_or_create(config.state_dir)
        self.driver = DockerDriver(config.docker_host)
        self.images = image_cleanup.ImageLedger(config.state_dir)
        self.endpoint = TaskEndpoint(  # task credentials + metadata (agent/credentials.py)
            config.credentials_listen,
            config.credentials_mode,
            config.state_dir,
            self.driver.docker_host,
            self.driver._get,
            lambda: self.driver.running_of(self.identity.instance_id),
        )
        self.stats = Sampler(
            lambda: self.driver.running_of(self.identity.instance_id),
            self.driver._get,
            self.driver.stats,
            config.stats_source,
            config.stats_interval_s,
        )
        self.endpoint.stats_of = self.stats.stats_of  # task metadata v4 /stats, /task/stats
        self.endpoint.task_stats = self.stats.task_stats
        self.session = Session(
            config.controller,
            Handlers(
                register=self._register,
                registered=self._registered,
                desired=self._desired,
                log_request=self._log_request,
                log_cancel=self._log_cancel,
                heartbeat=self._heartbeat,
                exec_start=lambda m: self.execs.start(m),
                exec_input=lambda m: self.execs.input(m),
                disconnected=lambda: self.execs.drop_all(),
                dns=self.dns_snapshot,
                protection_reply=lambda m: self.protection.reply(m),
            ),
            channel_factory=enroll.channel_factory(config, self.identity),
        )
        self.execs = ExecSessions(  # issue 20: `dockyard exec`
            self.driver, self.session.send, self._running_container, config.state_dir
        )
        self.dns = Resolver()  # issue 21: the cluster's names, for this host's tasks
        self.protection = ProtectionForwarder(self.session.send)  # issue 22
        self.endpoint.protection = self.protection
        self.desired: dict[str, agent_pb2.DesiredTask] = {}
        self.version = 0
        self.have_full = False
        self.local: dict[str, LocalTask] = {
            arn: LocalTask(restarts=counts)
            for arn, counts in restart_ledger.load(config.state_dir).items()
        }
        self.reported: dict[str, bytes] = {}
        self.docker_healthy = True
        self.wake = asyncio.Event()
        self._inflight: dict[tuple[str, str, str], asyncio.Task[None]] = {}
        self._log_tasks: dict[int, asyncio.Task[None]] = {}
        self._loops: list[asyncio.Task[None]] = []
        self.claim: engine_claim.Claim | None = None
        self.gpus = gpus.detect(config.gpus_from)
        self._gpus_claimed: set[str] = set()  # picked for containers being created

    async def claim_engine(self) -> None:
        """Hold this Docker engine before touching its host's settings; raises
        EngineClaimed when another live agent holds it. Waits for the engine to answer."""
        while True:
            try:
                info = await self.driver.info()
                break
            except DockerUnavailable as err:
                log.warning("Docker engine unreachable (%s); retrying", err)
                await asyncio.sleep(2)
        self.claim = engine_claim.acquire(
            info.engine_id,
            self.driver.docker_host,
            self.identity.instance_id,
            self.config.state_dir,
            shared=self.config.allow_shared_engine,
        )

    async def run(self) -> None:
        try:
            await self.claim_engine()  # before anything on the host is touched
        except BaseException:  # refused, or stopped while waiting for the engine
            await self.driver.close()
            raise
        await self.endpoint.start()
        await self.start_dns()
        await self.execs.reap_leftovers()  # commands of sessions a previous run left
        self._loops = [
            asyncio.create_task(self.session.run_forever(), name="session"),
            asyncio.create_task(self._reconcile_loop(), name="reconcile"),
            asyncio.create_task(self._docker_events(), name="docker-events"),
            asyncio.create_task(self._image_cleanup(), name="image-cleanup"),
        ]
        if self.config.stats_interval_s > 0:
            self._loops.append(asyncio.create_task(self.stats.run(), name="stats"))
            self._loops.append(asyncio.create_task(self._usage_reports(), name="usage"))
        try:
            await asyncio.gather(*self._loops)
        except Exception:
            log.exception("agent loop failed; exiting so the supervisor restarts the agent")
            raise
        finally:
            await self.close()

    async def close(self) -> None:
        for t in [*self._loops, *self._inflight.values(), *self._log_tasks.values()]:
            t.cancel()
        await asyncio.gather(*self._loops, *self._inflight.values(), return_exceptions=True)
        await self.endpoint.stop()
        await self.dns.stop()
        await self.driver.close()
        if self.claim is not None:  # last: the host settings are restored by now
            self.claim.release()
            self.claim = None

    async def start_dns(self) -> None:
        """The resolver tasks use (agent/dns_server.py): `auto` on the bridge's gateway,
        port 53, and without DNS (logged) when another agent of the engine holds it."""
        listen = self.config.dns_listen
        if listen == "off":
            return
        auto = listen == "auto"
        try:
            host, port = dns_server.parse_listen(
                await self.driver.bridge_gateway() if auto else listen
            )
        except ValueError as err:
            if not auto:
                raise DnsUnavailable(str(err)) from None
            log.warning("no DNS for tasks: the engine has no IPv4 bridge gateway")
            return
        self.dns.upstream = dns_server.upstreams(RESOLV_CONF, {host})
        try:
            await self.dns.start(host, port)
        except OSError as err:
            why = f"cannot serve DNS on {host}:{port}: {err.strerror or err}"
            if not auto:
                raise DnsUnavailable(f"--dns-listen {listen}: {why}") from None
            log.warning("%s (another agent on this engine?); tasks keep Docker's DNS", why)

    # ------------------------------------------------------------------ session handlers

    async def _register(self) -> agent_pb2.Register:
        """Identity, resources, attributes and a snapshot of what runs (from Docker)."""
        info = None
        while info is None:
            try:
                info = await self.driver.info()
            except DockerUnavailable as err:
                log.warning("Docker engine unreachable (%s); retrying", err)
                await asyncio.sleep(2)
        observed = await self._observe()
        reserved_tcp, reserved_udp = await self._reserved_ports(observed)
        attrs = {
            "ecs.os-type": info.os,
            "ecs.cpu-architecture": info.arch,
            "ecs.docker-version": info.server_version,
            "ecs.capability.network.bridge": "true",
            "ecs.capability.network.host": "true",
            "dockyard.hostname": self.config.hostname,
            "dockyard.credentials-mode": self.endpoint.mode,
            **(
                {"ecs.capability.logging-driver.awslogs": "true"}
                if self.config.allow_awslogs
                else {}
            ),
            **self.config.attributes,
            **self._policy,
        }
        return agent_pb2.Register(
            instance_id=self.identity.instance_id,
            cluster=self.config.cluster,
            hostname=self.config.hostname,
            agent_version=__version__,
            total=agent_pb2.Resources(
                cpu=info.cpus * 1024,
                memory_mib=max(0, info.memory_mib - self.config.reserved_memory),
                reserved_tcp_ports=reserved_tcp,
                reserved_udp_ports=reserved_udp,
                gpu_ids=self.gpus,
            ),
            attributes=attrs,
            tasks=reconcile.snapshot(observed),
            join_token=self.config.join_token,
            address=self.config.address,
            # plaintext only: over mutual TLS the certificate proves who we are
            instance_secret=self.identity.secret if self.session.channel_factory is None else "",
        )

    @property
    def _policy(self) -> dict[str, str]:
        c = self.config
        return host_config.policy_attributes(c.disable_privileged, c.disable_host_devices)

    async def _reserved_ports(self, observed: list) -> tuple[list[int], list[int]]:
        docker_tcp, docker_udp = await self.driver.host_ports_in_use()
        ours_tcp = {b[1] for o in observed for b in o.bindings if b[2] == "tcp"}
        ours_udp = {b[1] for o in observed for b in o.bindings if b[2] == "udp"}
        # a task's port is "ours" even before its container publishes it
        for t in self.desired.values():
            for c in t.containers:
                for p in c.port_mappings:
                    (ours_udp if p.protocol == "udp" else ours_tcp).add(p.host_port)
        return host.reserved_ports(docker_tcp, docker_udp, ours_tcp, ours_udp)

    async def _registered(self, msg: agent_pb2.Registered) -> None:
        log.info("registered as %s (epoch %d)", msg.instance_arn, msg.epoch)
        if msg.instance_arn != self.identity.instance_arn:
            self.identity.instance_arn = msg.instance_arn
            identity.save(self.config.state_dir, self.identity)
        self.have_full = False
        self.reported.clear()

    async def _desired(self, msg: agent_pb2.DesiredState) -> bool:
        if msg.full:
            self.desired = {t.task_arn: t for t in msg.tasks}
            self.have_full = True
        elif not self.have_full or msg.base_version != self.version:
            log.info(
                "desired-state gap (have %d, delta on %d): resync", self.version, msg.base_version
            )
            return False
        else:
            for t in msg.tasks:
                self.desired[t.task_arn] = t
            forgotten = [self.local.pop(arn, None) for arn in msg.forget]
            for arn in msg.forget:
                self.desired.pop(arn, None)
                self.reported.pop(arn, None)
            if any(loc is not None and loc.restarts for loc in forgotten):
                self._save_restarts()
        self.version = msg.version
        self.wake.set()
        return True

    async def _observe(self) -> list[reconcile.ObservedContainer]:
        """This instance's containers: the agent never touches what another instance made."""
        return await self.driver.list_managed(self.config.cluster, self.identity.instance_id)

    def _heartbeat(self) -> agent_pb2.Heartbeat:
        return agent_pb2.Heartbeat(desired_version=self.version, docker_healthy=self.docker_healthy)

    # ------------------------------------------------------------------ reconcile

    async def _reconcile_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.config.tick_s)
            self.wake.clear()
            if not self.have_full:
                continue
            try:
                await self.reconcile_once()
            except DockerUnavailable as err:
                if self.docker_healthy:
                    log.warning("Docker engine unreachable: %s", err)
                self.docker_healthy = False
            except Exception:
                log.exception("reconcile pass failed")

    async def reconcile_once(self) -> None:
        observed = await self._observe()
        self.docker_healthy = True
        plan = reconcile.plan(
            self.desired, observed, self.local, time.time(), self.config.retention_s
        )
        for arn, (code, reason) in plan.local_stops.items():
            loc = self.local.setdefault(arn, LocalTask())
            loc.stop_code, loc.stopped_reason = code, reason
            log.info("stopping %s: %s", arn, reason)
        self.endpoint.update(self.desired, plan.statuses)
        for action in plan.actions:
            self._launch(action)
        self._report(plan.statuses)

    def _launch(self, action: reconcile.Action) -> None:
        if isinstance(action, Start):
            key, coro = ("start", action.task_arn, action.container), self._start(action)
        elif isinstance(action, Stop):
            key, coro = ("stop", action.docker_id, ""), self._stop(action)
        elif isinstance(action, Restart):
            key, coro = ("restart", action.docker_id, ""), self._restart(action)
        else:
            key, coro = ("remove", action.docker_id, ""), self._remove(action)
        if key in self._inflight:
            coro.close()
            return
        task = asyncio.create_task(coro)
        self._inflight[key] = task

        def done(_: asyncio.Task[None]) -> None:
            self._inflight.pop(key, None)
            self.wake.set()

        task.add_done_callback(done)

    async def _start(self, action: Start) -> None:
        task = self.desired.get(action.task_arn)
        if task is None or task.desired_status != "RUNNING":
            return
        spec = next(c for c in task.containers if c.name == action.container)
        loc = self.local.setdefault(action.task_arn, LocalTask())
        if spec.log_config.driver == "awslogs" and not self.config.allow_awslogs:
            reason = (
                "CannotStartContainerError: logConfiguration awslogs is not allowed on this "
                "instance (its agent runs without --allow-awslogs; use local or json-file)"
            )
            self._fail(loc, action, reason)
            return
        refusal = host_config.refused_by_policy(spec, self._policy)
        if refusal:
            self._fail(loc, action, refusal)
            return
        try:
            loc.pull_started_at = loc.pull_started_at or time.time()
            await self.driver.ensure_image(
                spec.image,
                self.config.pull_behavior,
                _auth(spec),
                progress=lambda line: self._task_event(action.task_arn, loc, line),
            )
            loc.pull_stopped_at = loc.pull_stopped_at or time.time()
            if self.driver.was_pulled(spec.image):
                self.images.used(spec.image)
            spec = await self.endpoint.prepare(task, spec)
            spec = host_config.with_resolver(task, spec, self._resolver_ip())
            spec = await self._with_gpus(spec)
            try:
                await self.driver.create_and_start(
                    task, spec, self.identity.instance_id, self.endpoint.networks(task)
                )
            finally:
                self._gpus_claimed.difference_update(spec.gpu_ids)
        except PullError as err:
            self._fail(loc, action, _reason("CannotPullContainerError", err))
        except DockerUnavailable:
            self.docker_healthy = False  # not the task's fault: retried on the next pass
        except DriverError as err:
            self._fail(loc, action, _reason("CannotStartContainerError", err))

    async def _restart(self, action: Restart) -> None:
        """restartPolicy: start the exited container again and count it."""
        loc = self.local.setdefault(action.task_arn, LocalTask())
        try:
            await self.driver.restart(action.docker_id)
        except DockerUnavailable:
            self.docker_healthy = False
            return
        except DriverError as err:
            self._fail(loc, action, _reason("CannotStartContainerError", err))
            return
        loc.restarts[action.container] = loc.restarts.get(action.container, 0) + 1
        self._save_restarts()
        log.info("restarted %s of %s (restart policy)", action.container, action.task_arn)

    def dns_snapshot(self, msg: agent_pb2.DnsSnapshot) -> None:
        """ControllerMessage.dns: the newest snapshot wins, kept across disconnects."""
        self.dns.update(msg)

    def _resolver_ip(self) -> str:
        """The agent's resolver for tasks, while the cluster has namespaces ("" if not):
        only on port 53, the one a container's resolv.conf can reach."""
        addr = self.dns.address
        return addr[0] if self.dns.has_zones and addr and addr[1] == 53 else ""

    def _save_restarts(self) -> None:
        counts = {arn: loc.restarts for arn, loc in self.local.items() if loc.restarts}
        try:
            restart_ledger.save(self.config.state_dir, counts)
        except OSError as err:  # the count is a report, never a reason to stop
            log.warning("cannot save restart counts: %s", err)

    async def _with_gpus(self, spec: agent_pb2.ContainerSpec) -> agent_pb2.ContainerSpec:
        """A copy of the spec naming free GPUs of this host (resourceRequirements GPU).
        In use: those on our containers' labels and those being created now."""
        if not spec.gpus:
            return spec
        if spec.gpu_ids:  # picked already: nothing to do
            return spec
        observed = await self._observe()
        in_use = {g for o in observed if o.state not in ("exited", "dead") for g in o.gpu_ids}
        picked = gpus.pick(self.gpus, in_use | self._gpus_claimed, spec.gpus)
        if not picked:
            raise DriverError(
                f"CannotStartContainerError: {spec.name}: {spec.gpus} GPU(s) asked, "
                f"{len(self.gpus) - len(in_use | self._gpus_claimed)} free on this instance"
            )
        self._gpus_claimed.update(picked)
        out = agent_pb2.ContainerSpec()
        out.CopyFrom(spec)
        out.gpu_ids[:] = picked
        return out

    @staticmethod
    def _fail(loc: LocalTask, action: Start | Restart, reason: str) -> None:
        log.warning(
            "task %s container %s failed to start: %s", action.task_arn, action.container, reason
        )
        loc.stop_code, loc.stopped_reason = "TaskFailedToStart", reason

    def _task_event(self, arn: str, loc: LocalTask, line: str) -> None:
        """A line for the task's events (pull progress), sent now with the status last
        reported for the task; before any report, or while disconnected, the next report
        carries it. The driver rate-limits progress lines."""
        loc.events.append(line)
        sent = self.reported.get(arn)
        if sent is None:
            return
        status = agent_pb2.TaskStatus.FromString(sent)
        status.event = "; ".join(loc.events[-5:])
        status.updated_at = time.time()
        if self.session.send(agent_pb2.AgentMessage(status=agent_pb2.StatusBatch(tasks=[status]))):
            loc.events.clear()

    async def _stop(self, action: Stop) -> None:
        with contextlib.suppress(DriverError):
            await self.driver.stop(action.docker_id, action.timeout_s)

    async def _remove(self, action: Remove) -> None:
        with contextlib.suppress(DriverError):
            await self.driver.remove(action.docker_id)

    def _report(self, statuses: dict[str, agent_pb2.TaskStatus]) -> None:
        """Send statuses that changed since last sent (all of them after a reconnect)."""
        batch, keys = [], {}
        for arn, status in statuses.items():
            key = status.SerializeToString(deterministic=True)
            loc = self.local.get(arn)
            if loc is not None and loc.events:
                status.event = "; ".join(loc.events[-5:])
            if self.reported.get(arn) != key or status.event:
                batch.append(status)
                keys[arn] = key
        if not batch:
            return
        for status in batch:
            status.updated_at = time.time()
        msg = agent_pb2.AgentMessage(status=agent_pb2.StatusBatch(tasks=batch))
        if self.session.send(msg):
            self.reported.update(keys)
            for arn in keys:
                if arn in self.local:
                    self.local[arn].events.clear()

    async def _image_cleanup(self) -> None:
        policy = self.config.image_cleanup
        if policy.interval_s <= 0:
            return
        while True:
            await asyncio.sleep(policy.interval_s)
            await image_cleanup.cleanup_once(self.driver, self.images, policy)

    async def _usage_reports(self) -> None:
        """The containers' CPU and memory aggregates to the controller, at a low rate; a
        report missed while disconnected is dropped (the next one covers a longer window)."""
        while True:
            await asyncio.sleep(self.config.usage_report_s)
            report = self.stats.report()
            if report.tasks:
                self.session.send(agent_pb2.AgentMessage(usage=report))

    async def _docker_events(self) -> None:
        while True:
            try:
                async for _ in self.driver.events():
                    self.endpoint.callers.invalidate()  # a container of ours came or went
                    self.docker_healthy = True
                    self.wake.set()
            except Exception as err:  # a dying engine breaks the stream in many ways
                log.debug("Docker events ended: %s", err)
            self.docker_healthy = await self.driver.ping()
            await asyncio.sleep(1)

    async def _running_container(self, task_arn: str, name: str) -> str | None:
        """The docker id of a task's running container (exec), None if it does not run."""
        for o in await self._observe():
            if o.task_arn == task_arn and o.container_name == name and o.state == "running":
                return o.docker_id
        return None

    # ------------------------------------------------------------------ logs

    def _log_request(self, req: agent_pb2.LogRequest) -> None:
        self._log_tasks[req.request_id] = asyncio.create_task(self._stream_logs(req))

    def _log_cancel(self, request_id: int) -> None:
        task = self._log_tasks.pop(request_id, None)
        if task:
            task.cancel()

    async def _stream_logs(self, req: agent_pb2.LogRequest) -> None:
        def chunk(**kw: Any) -> agent_pb2.AgentMessage:
            return agent_pb2.AgentMessage(
                log_chunk=agent_pb2.LogChunk(request_id=req.request_id, **kw)
            )

        try:
            observed = [
                o
                for o in await self._observe()
                if o.task_arn == req.task_arn
                and (not req.container or o.container_name == req.container)
            ]
            if not observed:
                self.session.send(
                    chunk(
                        eof=True,
                        error="no containers of that task on "
                        "this host (not started yet, or removed)",
                    )
                )
                return

            async def one(o: reconcile.ObservedContainer) -> None:
                async for data in self.driver.logs(o.docker_id, req.follow, req.tail):
                    self.session.send(chunk(container=o.container_name, data=data))

            await asyncio.gather(*(one(o) for o in observed))
            self.session.send(chunk(eof=True))
        except DriverError as err:
            self.session.send(chunk(eof=True, error=str(err)))
        finally:
            self._log_tasks.pop(req.request_id, None)
