"""dependsOn in the agent's pure reconcile plan: what starts when, what fails the task, and
the reverse stop order (issue 18)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from agent import restart_ledger
from agent.docker_driver import ObservedContainer
from agent.reconcile import LocalTask, Restart, Start, Stop, plan
from agent.runtime import Agent, AgentConfig
from controller import ecs_views, lifecycle
from controller.model import ContainerState, Task
from dockyard.arns import ArnFactory
from dockyard.v1 import agent_pb2
from tests.test_reconcile import ARN, observed

NOW = 1000.0


def spec(name: str, *deps: tuple[str, str], essential: bool = True, timeout: int = 0):  # type: ignore[no-untyped-def]
    return agent_pb2.ContainerSpec(
        name=name,
        image="x",
        essential=essential,
        start_timeout_s=timeout,
        depends_on=[agent_pb2.Dependency(container=c, condition=k) for c, k in deps],
    )


def task(
    *specs: agent_pb2.ContainerSpec, status: str = "RUNNING", **kw: str
) -> agent_pb2.DesiredTask:
    return agent_pb2.DesiredTask(
        task_arn=ARN, family="f", revision=1, desired_status=status, containers=specs, **kw
    )


def obs(
    name: str,
    state: str = "running",
    exit_code: int | None = None,
    health: str = "UNKNOWN",
    started_at: float = NOW - 5,
) -> ObservedContainer:
    finished = NOW - 1 if state == "exited" else None
    o = observed(name, state, exit_code, finished_at=finished)
    return replace(o, health=health, started_at=started_at)


def starts(t: agent_pb2.DesiredTask, *seen: ObservedContainer) -> list[str]:
    p = plan({ARN: t}, list(seen), {}, now=NOW, retention_s=60)
    return sorted(a.container for a in p.actions if isinstance(a, Start))


def stops_of(t: agent_pb2.DesiredTask, *seen: ObservedContainer) -> tuple[str, str]:
    p = plan({ARN: t}, list(seen), {}, now=NOW, retention_s=60)
    return p.local_stops.get(ARN, ("", ""))


def test_start_waits_until_the_dependency_has_started() -> None:
    t = task(spec("db"), spec("app", ("db", "START")))
    assert starts(t) == ["db"]
    assert starts(t, obs("db", "created")) == ["db"]
    assert starts(t, obs("db")) == ["app"]


def test_complete_and_success_wait_for_the_exit_and_success_wants_zero() -> None:
    for condition in ("COMPLETE", "SUCCESS"):
        t = task(spec("init", essential=False), spec("app", ("init", condition)))
        assert starts(t, obs("init")) == []
        assert starts(t, obs("init", "exited", 0)) == ["app"]
    t = task(spec("init", essential=False), spec("app", ("init", "COMPLETE")))
    assert starts(t, obs("init", "exited", 3)) == ["app"]
    t = task(spec("init", essential=False), spec("app", ("init", "SUCCESS")))
    assert starts(t, obs("init", "exited", 3)) == []
    code, reason = stops_of(t, obs("init", "exited", 3))
    assert code == "TaskFailedToStart"
    assert "dependency [init] for target [app]" in reason and "exited with code 3" in reason


def test_healthy_waits_for_the_health_check_and_fails_when_it_cannot_pass() -> None:
    t = task(spec("db"), spec("app", ("db", "HEALTHY")))
    assert starts(t, obs("db", health="UNKNOWN")) == []
    assert stops_of(t, obs("db", health="UNKNOWN")) == ("", "")
    assert starts(t, obs("db", health="HEALTHY")) == ["app"]
    assert "is UNHEALTHY" in stops_of(t, obs("db", health="UNHEALTHY"))[1]


def test_start_timeout_of_the_dependency_gives_up() -> None:
    t = task(spec("db", timeout=30), spec("app", ("db", "HEALTHY")))
    assert stops_of(t, obs("db", started_at=NOW - 29)) == ("", "")
    code, reason = stops_of(t, obs("db", started_at=NOW - 31))
    assert code == "TaskFailedToStart" and "did not reach HEALTHY in 30s" in reason


def test_chains_start_one_link_at_a_time() -> None:
    t = task(spec("a"), spec("b", ("a", "START")), spec("c", ("b", "START"), ("a", "START")))
    assert starts(t) == ["a"]
    assert starts(t, obs("a")) == ["b"]
    assert starts(t, obs("a"), obs("b")) == ["c"]


def test_stops_run_in_reverse_dependency_order() -> None:
    t = task(
        spec("db"),
        spec("app", ("db", "HEALTHY")),
        spec("proxy", ("app", "START")),
        status="STOPPED",
    )
    everything = [obs("db", health="HEALTHY"), obs("app"), obs("proxy")]

    def stopped(*seen: ObservedContainer) -> list[str]:
        p = plan({ARN: t}, list(seen), {}, now=NOW, retention_s=60)
        return [a.docker_id for a in p.actions if isinstance(a, Stop)]

    assert stopped(*everything) == ["id-proxy"]
    exited_proxy = replace(everything[2], state="exited", exit_code=0)
    assert stopped(everything[0], everything[1], exited_proxy) == ["id-app"]
    assert stopped(everything[0], replace(everything[1], state="exited"), exited_proxy) == ["id-db"]


def test_links_and_a_task_namespace_imply_start_order() -> None:
    link = agent_pb2.ContainerSpec(name="web", image="x", essential=True, links=["db"])
    assert starts(task(spec("db"), link)) == ["db"]
    t = task(spec("first"), spec("second"), pid_mode="task")
    assert starts(t) == ["first"]
    assert starts(t, obs("first")) == ["second"]


# ---------------------------------------------------------------- restartPolicy


def restarting(period: int = 60, ignored: tuple[int, ...] = (), essential: bool = True):  # type: ignore[no-untyped-def]
    s = spec("app", essential=essential)
    s.restart_policy.CopyFrom(
        agent_pb2.RestartPolicy(enabled=True, ignored_exit_codes=ignored, attempt_period_s=period)
    )
    return task(s)


def test_an_exit_after_the_attempt_period_restarts_in_place_and_keeps_the_task_running() -> None:
    t = restarting(period=60)
    ran_long = obs("app", "exited", 4, started_at=NOW - 100)
    p = plan({ARN: t}, [ran_long], {}, now=NOW, retention_s=60)
    assert p.actions == [Restart(ARN, "app", "id-app")] and not p.local_stops
    [c] = p.statuses[ARN].containers
    assert (c.last_status, c.has_exit_code) == ("RUNNING", False)
    counted = plan({ARN: t}, [obs("app")], {ARN: LocalTask(restarts={"app": 2})}, NOW, 60)
    assert counted.statuses[ARN].containers[0].restart_count == 2


def test_an_early_exit_or_an_ignored_code_is_not_restarted_and_stops_the_task() -> None:
    early = obs("app", "exited", 4, started_at=NOW - 30)  # ran 29 s of the 60 asked
    code, reason = stops_of(restarting(period=60), early)
    assert code == "EssentialContainerExited" and "restartAttemptPeriod (60s)" in reason
    ignored = obs("app", "exited", 4, started_at=NOW - 100)
    code, reason = stops_of(restarting(ignored=(4,)), ignored)
    assert code == "EssentialContainerExited" and "ignoredExitCodes" in reason


def test_no_restart_while_the_task_stops() -> None:
    t = restarting()
    t.desired_status = "STOPPED"
    p = plan({ARN: t}, [obs("app", "exited", 0, started_at=NOW - 100)], {}, NOW, 60)
    assert not [a for a in p.actions if isinstance(a, Restart)]
    assert p.statuses[ARN].last_status == "STOPPED"


def test_the_controller_shows_restarts_in_the_reason_and_an_event() -> None:
    t = Task(ARN, "t1", "default", "f", 1, "td", "ci", [ContainerState("app", "x")], 0, 0, "")
    report = agent_pb2.TaskStatus(
        task_arn=ARN,
        last_status="RUNNING",
        containers=[agent_pb2.ContainerStatus(name="app", last_status="RUNNING", restart_count=2)],
    )
    change = lifecycle.apply_report(t, report, NOW)
    assert change is not None and "container app restarted by its restartPolicy" in change.messages
    view = ecs_views.task_view(t, ArnFactory())
    assert view["containers"][0]["reason"] == "Restarted 2 times by its restartPolicy"


async def test_restart_counts_survive_an_agent_restart(tmp_path: Path) -> None:
    config = AgentConfig(controller="127.0.0.1:1", state_dir=tmp_path)
    first = Agent(config)
    first.local[ARN] = LocalTask(restarts={"app": 3})
    first._save_restarts()
    await first.driver.close()
    again = Agent(config)  # the same state dir: the same instance, its counts kept
    assert again.local[ARN].restarts == {"app": 3}
    await again.driver.close()
    (tmp_path / restart_ledger.FILE).write_text("not json")
    assert restart_ledger.load(tmp_path) == {}  # unreadable: counted from 0, said in the log
