"""The task runner's pure plan: spread, replacement, drain, scale, history."""

from __future__ import annotations

import itertools

import pytest

from netfabric.errors import InvalidArgument
from netfabric.services.tasks import (
    HISTORY,
    Desired,
    FailureAction,
    NodeSlot,
    RunSpec,
    State,
    Task,
    TaskState,
    UpdateState,
    plan_tasks,
)

CMD = ("busybox", "httpd", "-f")
NODES = [NodeSlot("n1", "node1", True, True), NodeSlot("n2", "node2", True, True),
         NodeSlot("n3", "node3", True, True)]


def ids() -> itertools.count[int]:
    return itertools.count(1)


def run(specs: dict[str, RunSpec], tasks: dict[str, Task], states: dict[str, TaskState],
        nodes: list[NodeSlot], counter: itertools.count[int]) -> dict[str, Task]:
    plan = plan_tasks(specs, tasks.values(), states, nodes,
                      new_id=lambda: f"t{next(counter)}", now=float(next(counter)))
    out = dict(tasks)
    out.update({t.id: t for t in plan.upserts})
    for d in plan.deletes:
        out.pop(d, None)
    return out


def live(tasks: dict[str, Task]) -> list[Task]:
    return [t for t in tasks.values() if t.desired is Desired.RUNNING]


def test_spread_scale_drain_and_replacement() -> None:
    c = ids()
    specs = {"app": RunSpec("app", 6, CMD)}
    tasks = run(specs, {}, {}, NODES, c)
    assert sorted(t.slot for t in live(tasks)) == [1, 2, 3, 4, 5, 6]
    assert sorted(t.node for t in live(tasks)) == ["n1", "n1", "n2", "n2", "n3", "n3"]
    assert run(specs, tasks, {}, NODES, c) == tasks   # stable
    # Drain node2: its two tasks shut down, replaced on node1 and node3.
    drained = [NODES[0], NodeSlot("n2", "node2", True, False), NODES[2]]
    tasks = run(specs, tasks, {}, drained, c)
    assert sorted(t.node for t in live(tasks)) == ["n1", "n1", "n1", "n3", "n3", "n3"]
    assert sum(t.desired is Desired.SHUTDOWN and t.node == "n2" for t in tasks.values()) == 2
    # A task whose process failed is replaced in its slot; the failed one stays as history.
    victim = live(tasks)[0]
    states = {victim.id: TaskState(victim.id, State.FAILED, 1.0, "exit 1")}
    tasks = run(specs, tasks, states, drained, c)
    assert tasks[victim.id].desired is Desired.SHUTDOWN
    assert sorted(t.slot for t in live(tasks)) == [1, 2, 3, 4, 5, 6]
    # Scale down to 2: slots 3..6 shut down.
    tasks = run({"app": RunSpec("app", 2, CMD)}, tasks, states, drained, c)
    assert sorted(t.slot for t in live(tasks)) == [1, 2]
    # Service removed: everything shuts down and the history goes once ended.
    tasks = run({}, tasks, states, drained, c)
    assert live(tasks) == []
    ended = {t.id: TaskState(t.id, State.SHUTDOWN, 9.0) for t in tasks.values()}
    assert run({}, tasks, ended, drained, c) == {}


def test_history_is_bounded_and_nothing_runs_without_nodes() -> None:
    c = ids()
    specs = {"app": RunSpec("app", 1, CMD)}
    tasks: dict[str, Task] = {}
    states: dict[str, TaskState] = {}
    for _ in range(HISTORY + 4):
        tasks = run(specs, tasks, states, NODES, c)
        (t,) = live(tasks)
        states[t.id] = TaskState(t.id, State.FAILED, 0.0, "exit 1")
    assert sum(t.desired is Desired.SHUTDOWN for t in tasks.values()) <= HISTORY + 1
    assert run(specs, {}, {}, [], c) == {}
    with pytest.raises(InvalidArgument):
        RunSpec("app", -1, CMD)
    with pytest.raises(InvalidArgument):
        RunSpec("app", 1, ())


def step(specs: dict[str, RunSpec], tasks: dict[str, Task], states: dict[str, TaskState],
         counter: itertools.count[int]) -> tuple[dict[str, RunSpec], dict[str, Task]]:
    plan = plan_tasks(specs, tasks.values(), states, NODES,
                      new_id=lambda: f"t{next(counter)}", now=float(next(counter)))
    out = dict(tasks)
    out.update({t.id: t for t in plan.upserts})
    for d in plan.deletes:
        out.pop(d, None)
    return {**specs, **{s.service: s for s in plan.specs}}, out


def settle(states: dict[str, TaskState], tasks: dict[str, Task], ok: object) -> None:
    """Every live task without a state reports running (or failed if ``ok(task)`` is
    false); every shut-down one reports shutdown."""
    for t in tasks.values():
        if t.desired is Desired.RUNNING and t.id not in states:
            good = ok(t)  # type: ignore[operator]
            states[t.id] = TaskState(t.id, State.RUNNING if good else State.FAILED, 0.0,
                                     "" if good else "task: non-zero exit (1)")
        elif t.desired is Desired.SHUTDOWN and t.id in states and \
                states[t.id].state is State.RUNNING:
            states[t.id] = TaskState(t.id, State.SHUTDOWN, 0.0)


V2 = ("busybox", "httpd", "-f", "-p", "81")


def test_rolling_update_is_start_first_one_slot_at_a_time() -> None:
    c = ids()
    specs = {"app": RunSpec("app", 3, CMD)}
    states: dict[str, TaskState] = {}
    specs, tasks = step(specs, {}, states, c)
    settle(states, tasks, lambda t: True)
    specs = {"app": RunSpec("app", 3, V2, previous=CMD, update=UpdateState.UPDATING,
                            updated=0.0)}
    for i in range(40):
        specs, tasks = step(specs, tasks, states, c)
        # Never fewer than 3 slots with a running task: old ones stop only after new run.
        serving = {t.slot for t in live(tasks)
                   if states.get(t.id) and states[t.id].state is State.RUNNING}
        assert serving == {1, 2, 3}
        # At most one new task starting at a time.
        assert sum(t.id not in states for t in live(tasks)) <= 1
        if i % 2:   # tasks take a while to start: a step passes before they report
            settle(states, tasks, lambda t: True)
    assert all(t.command == V2 for t in live(tasks)) and len(live(tasks)) == 3
    assert specs["app"].update is UpdateState.COMPLETED


@pytest.mark.parametrize("action", [FailureAction.PAUSE, FailureAction.ROLLBACK])
def test_a_failing_update_pauses_or_rolls_back_and_old_tasks_keep_serving(
        action: FailureAction) -> None:
    c = ids()
    specs = {"app": RunSpec("app", 3, CMD)}
    states: dict[str, TaskState] = {}
    specs, tasks = step(specs, {}, states, c)
    settle(states, tasks, lambda t: True)
    specs = {"app": RunSpec("app", 3, V2, previous=CMD, failure_action=action,
                            update=UpdateState.UPDATING, updated=0.0)}
    for _ in range(10):
        specs, tasks = step(specs, tasks, states, c)
        settle(states, tasks, lambda t: t.command != V2)   # the new command fails
    old = [t for t in live(tasks) if t.command == CMD]
    assert len(old) == 3, tasks   # nothing stopped: the old tasks still serve every slot
    if action is FailureAction.PAUSE:
        assert specs["app"].update is UpdateState.PAUSED
        assert "paused due to failure" in specs["app"].message
        # --rollback: back to the previous command, which is what runs already.
        spec = specs["app"]
        specs = {"app": RunSpec("app", 3, spec.previous, previous=spec.command,
                                update=UpdateState.ROLLBACK_STARTED, updated=200.0)}
        specs, tasks = step(specs, tasks, states, c)
    assert specs["app"].update is UpdateState.ROLLBACK_COMPLETED or \
        specs["app"].command == CMD
    assert all(t.command == CMD for t in live(tasks))
