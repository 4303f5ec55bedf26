"""The agent's reconcile plan and the controller's lifecycle rules, as pure functions."""

from __future__ import annotations

from agent.docker_driver import ObservedContainer
from agent.reconcile import LocalTask, Remove, Start, Stop, plan, snapshot
from controller import lifecycle
from controller.model import ContainerState, Task
from dockyard.v1 import agent_pb2

ARN = "arn:aws:ecs:us-east-1:0:task/default/t1"


def desired(
    status: str = "RUNNING", known: str = "PROVISIONING", essential: tuple[bool, ...] = (True,)
) -> agent_pb2.DesiredTask:
    return agent_pb2.DesiredTask(
        task_arn=ARN,
        family="f",
        revision=1,
        desired_status=status,
        known_status=known,
        containers=[
            agent_pb2.ContainerSpec(name=f"c{i}", image="x", essential=e, stop_timeout_s=7)
            for i, e in enumerate(essential)
        ],
    )


def observed(
    name: str = "c0",
    state: str = "running",
    exit_code: int | None = None,
    arn: str = ARN,
    finished_at: float | None = None,
) -> ObservedContainer:
    return ObservedContainer(
        docker_id=f"id-{name}",
        docker_name=name,
        task_arn=arn,
        container_name=name,
        cluster="default",
        family="f",
        revision=1,
        state=state,
        exit_code=exit_code,
        started_at=1.0,
        finished_at=finished_at,
        health="UNKNOWN",
        oom_killed=False,
        error="",
    )


def run(
    d: list[agent_pb2.DesiredTask],
    o: list[ObservedContainer],
    local: dict[str, LocalTask] | None = None,
):  # type: ignore[no-untyped-def]
    return plan({t.task_arn: t for t in d}, o, local or {}, now=100.0, retention_s=60)


def test_missing_container_is_started_and_task_pending() -> None:
    p = run([desired()], [])
    assert p.actions == [Start(ARN, "c0")]
    assert p.statuses[ARN].last_status == "PENDING"


def test_running_container_needs_nothing() -> None:
    p = run([desired()], [observed()])
    assert p.actions == []
    assert p.statuses[ARN].last_status == "RUNNING"


def test_stop_uses_container_timeout_and_reports_stopped_when_exited() -> None:
    assert run([desired("STOPPED")], [observed()]).actions == [Stop(ARN, "id-c0", 7)]
    p = run([desired("STOPPED")], [observed(state="exited", exit_code=0)])
    assert p.actions == [] and p.statuses[ARN].last_status == "STOPPED"
    assert p.statuses[ARN].containers[0].exit_code == 0


def test_essential_exit_stops_the_task() -> None:
    task = desired(essential=(True, False), known="RUNNING")
    p = run([task], [observed("c0", "exited", 3), observed("c1")])
    assert p.local_stops[ARN][0] == "EssentialContainerExited"
    assert Stop(ARN, "id-c1", 7) in p.actions


def test_non_essential_exit_keeps_the_task_running() -> None:
    task = desired(essential=(True, False), known="RUNNING")
    p = run([task], [observed("c0"), observed("c1", "exited", 1)])
    assert p.actions == [] and not p.local_stops
    assert p.statuses[ARN].last_status == "RUNNING"


def test_vanished_container_of_a_started_task_is_not_restarted() -> None:
    p = run([desired(known="RUNNING")], [])
    assert not any(isinstance(a, Start) for a in p.actions)
    assert p.local_stops[ARN] == ("EssentialContainerExited", "Container c0 vanished")


def test_failed_start_stops_the_task_with_its_reason() -> None:
    local = {ARN: LocalTask(stop_code="TaskFailedToStart", stopped_reason="CannotPull")}
    p = run([desired()], [], local)
    assert p.actions == []
    assert p.statuses[ARN].last_status == "STOPPED"
    assert p.statuses[ARN].stop_code == "TaskFailedToStart"


def test_unwanted_containers_are_stopped_then_removed_after_retention() -> None:
    other = "arn:aws:ecs:us-east-1:0:task/default/zz"
    assert run([], [observed(arn=other)]).actions == [Stop(other, "id-c0", 30)]
    fresh = observed(arn=other, state="exited", exit_code=0, finished_at=90.0)
    assert run([], [fresh]).actions == []
    old = observed(arn=other, state="exited", exit_code=0, finished_at=10.0)
    assert run([], [old]).actions == [Remove("id-c0")]


def test_snapshot_reports_what_docker_runs() -> None:
    snap = snapshot([observed()])
    assert [(s.task_arn, s.last_status) for s in snap] == [(ARN, "RUNNING")]


def make_task() -> Task:
    return Task(
        arn=ARN,
        id="t1",
        cluster="default",
        family="f",
        revision=1,
        task_definition_arn="td",
        instance_arn="i",
        cpu=0,
        memory=32,
        group="g",
        containers=[ContainerState(name="c0", image="x")],
    )


def test_lifecycle_only_moves_forward_and_stopped_is_final() -> None:
    task = make_task()
    running = agent_pb2.TaskStatus(
        task_arn=ARN,
        last_status="RUNNING",
        containers=[agent_pb2.ContainerStatus(name="c0", last_status="RUNNING", docker_id="d")],
    )
    assert lifecycle.apply_report(task, running, 1.0) is not None
    stale = agent_pb2.TaskStatus(task_arn=ARN, last_status="PENDING")
    lifecycle.apply_report(task, stale, 2.0)
    assert task.last_status == "RUNNING"
    stopped = agent_pb2.TaskStatus(
        task_arn=ARN,
        last_status="STOPPED",
        containers=[
            agent_pb2.ContainerStatus(
                name="c0", last_status="STOPPED", has_exit_code=True, exit_code=3
            )
        ],
    )
    change = lifecycle.apply_report(task, stopped, 3.0)
    assert change is not None and change.stopped
    assert task.desired_status == "STOPPED" and task.containers[0].exit_code == 3
    assert lifecycle.apply_report(task, running, 4.0) is None


def test_lifecycle_refuses_garbage() -> None:
    bad = agent_pb2.TaskStatus(task_arn=ARN, last_status="EXPLODED")
    try:
        lifecycle.apply_report(make_task(), bad, 1.0)
    except lifecycle.BadReport as err:
        assert "EXPLODED" in str(err)
    else:
        raise AssertionError("garbage status accepted")
