"""The managed scaling loop (issue 22): every `period` seconds, for each capacity provider
with managed scaling ENABLED and a group-size command, gather its hosts (connected
instances whose `dockyard.capacity-provider` attribute names it) and the tasks waiting for
it (services' tasks its strategy share has not placed), let the pure decision
(`reservation.decide`) pick the group size, and run the operator's command with it.

The command is a shell command with `{desired}` replaced by the size; the hosts it should
remove (idle ones, already set DRAINING so nothing lands on them) are in the environment,
`DOCKYARD_REMOVE_HOSTS` (hostnames, space-separated) and `DOCKYARD_REMOVE_INSTANCES` (ids).
It runs with a timeout; a failure or timeout is recorded as an event and retried next turn,
never raised. The group is not asked again while the hosts asked for are still joining
(for instanceWarmupPeriod, at least JOIN_GRACE seconds, after the ask).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from controller import launch
from controller.capacity import reservation as rsv
from controller.capacity import strategy
from controller.ops import container_instances
from controller.ops.capacity_providers import command_of, scaling_of
from dockyard.errors import ApiError

if TYPE_CHECKING:
    from controller.model import Instance
    from controller.ops.context import OpContext

log = logging.getLogger("dockyard.controller.capacity")
COMMAND_TIMEOUT = 120.0
JOIN_GRACE = 30.0  # seconds a scale-out's hosts get to join before the group is asked again


@dataclass
class Ask:
    desired: int
    at: float


class ScalingDriver:
    def __init__(self, cs: OpContext, services: Any, period: float = 10.0) -> None:
        self.cs = cs
        self.services = services  # the services' scheduler: its Service objects
        self.period = period
        self.asked: dict[str, Ask] = {}

    async def run(self) -> None:
        log.info("capacity providers' managed scaling: a turn every %.1fs", self.period)
        while True:
            await asyncio.sleep(self.period)
            try:
                await self.turn()
            except Exception:  # never take the controller down: log, next turn
                log.exception("capacity scaling turn failed")

    def hosts(self, name: str) -> list[Instance]:
        return [
            i
            for i in self.cs.state.instances.values()
            if i.connected
            and i.status in ("ACTIVE", "DRAINING")
            and i.all_attributes.get(strategy.PROVIDER_ATTRIBUTE) == name
        ]

    def waiting(self, name: str) -> list[rsv.Waiting]:
        """Tasks waiting for this provider: RunTask's PROVISIONING ones, and those of
        services whose strategy gives it a share not yet placed."""
        out = [
            rsv.Waiting(t.cpu, t.memory)
            for t in self.cs.state.waiting_tasks()
            if t.capacity_provider == name
        ]
        for svc in list(self.services.services.values()):
            if svc.status != "ACTIVE" or not any(
                s["capacityProvider"] == name for s in svc.capacity_strategy
            ):
                continue
            tasks = [
                t
                for t in self.cs.state.service_tasks(svc.cluster, svc.name)
                if t.desired_status == "RUNNING"
            ]
            missing = svc.desired_count - len(tasks)
            td = self.services.taskdef(svc.task_definition)
            if missing <= 0 or td is None:
                continue
            already = Counter(
                self.cs.state.instances[t.instance_arn].all_attributes.get(
                    strategy.PROVIDER_ATTRIBUTE, ""
                )
                for t in tasks
                if t.instance_arn in self.cs.state.instances
            )
            share = strategy.split(strategy.parse(svc.capacity_strategy), missing, already)
            demand = launch.demand_of(td, {}, "")
            out += [rsv.Waiting(demand.cpu, demand.memory)] * share.get(name, 0)
        return out

    async def turn(self) -> None:
        at = time.time()
        for doc in list(self.cs.capacity.providers.values()):
            asg = doc["autoScalingGroupProvider"]
            if asg["managedScaling"]["status"] != "ENABLED" or not command_of(doc):
                continue
            await self.scale(doc, at)

    async def scale(self, doc: dict[str, Any], at: float) -> None:
        name = doc["name"]
        warmup = doc["autoScalingGroupProvider"]["managedScaling"]["instanceWarmupPeriod"]
        insts = self.hosts(name)
        hosts = [
            rsv.Host(
                i.id,
                i.cpu_total,
                i.memory_total,
                len(
                    [
                        t
                        for t in self.cs.state.instance_tasks(i.arn)
                        if t.desired_status == "RUNNING"
                    ]
                ),
                warming=at - i.registered_at < warmup,
            )
            for i in insts
        ]
        decision = rsv.decide(hosts, self.waiting(name), scaling_of(doc))
        log.debug("capacity provider %s: %s", name, decision)
        last = self.asked.get(name)
        if decision.desired == len(hosts) and not decision.remove:
            return
        if last and len(hosts) < last.desired and at - last.at < max(warmup, JOIN_GRACE):
            return  # the hosts asked for are still joining: do not ask again yet
        gone = [i for i in insts if i.id in decision.remove]
        for inst in gone:  # managed draining: nothing new lands on a host about to go
            await self._drain(inst)
        self.asked[name] = Ask(decision.desired, at)
        await self.run_command(doc, decision, gone)

    async def _drain(self, inst: Instance) -> None:
        if inst.status == "DRAINING":
            return
        try:
            await container_instances.update_state(
                self.cs,
                {"cluster": inst.cluster, "containerInstances": [inst.arn], "status": "DRAINING"},
            )
        except ApiError as err:
            log.warning("could not drain %s: %s", inst.id, err)

    async def run_command(
        self, doc: dict[str, Any], decision: rsv.Decision, gone: list[Instance]
    ) -> None:
        """Run the group-size command; its outcome is an event, never an exception."""
        name = doc["name"]
        command = command_of(doc).replace("{desired}", str(decision.desired))
        env = {
            **os.environ,
            "DOCKYARD_CAPACITY_PROVIDER": name,
            "DOCKYARD_DESIRED": str(decision.desired),
            "DOCKYARD_REMOVE_HOSTS": " ".join(i.hostname for i in gone),
            "DOCKYARD_REMOVE_INSTANCES": " ".join(i.id for i in gone),
        }
        what = (
            f"capacity provider {name}: CapacityProviderReservation {decision.reservation:.0f} "
            f"(M={decision.needed}, N={decision.current}), {decision.reason}: "
            f"group size {decision.desired}"
        )
        outcome = await _run(command, env)
        message = f"{what}; {shlex.quote(command)} {outcome}"
        log.info("%s", message)
        await self.cs.commit(
            [self.cs.event("", "capacity-provider", doc["capacityProviderArn"], message)]
        )


def capacity_period() -> float:
    """Seconds between scaling turns: DOCKYARD_CAPACITY_PERIOD (default 10)."""
    raw = os.environ.get("DOCKYARD_CAPACITY_PERIOD", "10")
    try:
        period = float(raw)
    except ValueError:
        period = 0.0
    if not 0.1 <= period <= 3600:
        raise SystemExit(f"DOCKYARD_CAPACITY_PERIOD must be 0.1 to 3600 seconds, not {raw!r}")
    return period


async def _run(command: str, env: dict[str, str], limit: float = COMMAND_TIMEOUT) -> str:
    """Run a shell command; a sentence saying how it ended (with its stderr's tail)."""
    try:
        proc = await asyncio.create_subprocess_shell(
            command,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as err:
        return f"could not start: {err}"
    try:
        _, err_out = await asyncio.wait_for(proc.communicate(), limit)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return f"timed out after {limit:.0f}s"
    if proc.returncode:
        tail = err_out.decode(errors="replace").strip()[-300:]
        return f"failed with exit code {proc.returncode}: {tail}"
    return "succeeded"
