"""The task runner's plan: which tasks should exist where, as a pure function.

A service run by netfabric's small task runner has a :class:`RunSpec` (replicas and the
command each task runs). The manager keeps one record per task (:class:`Task`: service,
slot, node, desired state); the node that runs a task reports its :class:`TaskState`.
:func:`plan_tasks` turns specs, tasks, states and nodes into the task records to write:

- a running-desired task whose service is gone, whose slot is above the replica count,
  whose node is down or drained, or whose process ended, is set to ``shutdown`` (it stays
  as history, as ``docker service ps`` shows it);
- every slot without a live task gets a new one, on the ready, active node with the
  fewest live tasks (ties by name), so a drained node's tasks land on the others;
- at most :data:`HISTORY` ended tasks are kept per slot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from netfabric.errors import InvalidArgument

__all__ = [
    "HISTORY",
    "Desired",
    "FailureAction",
    "NodeSlot",
    "RunSpec",
    "State",
    "Task",
    "TaskPlan",
    "TaskState",
    "UpdateState",
    "plan_tasks",
]

HISTORY = 5


class Desired(StrEnum):
    RUNNING = "running"
    SHUTDOWN = "shutdown"


class State(StrEnum):
    """A task's current state as its node reports it (Docker's names)."""

    STARTING = "starting"
    RUNNING = "running"
    FAILED = "failed"
    COMPLETE = "complete"
    SHUTDOWN = "shutdown"
    REJECTED = "rejected"


ENDED = frozenset({State.FAILED, State.COMPLETE, State.SHUTDOWN, State.REJECTED})


class UpdateState(StrEnum):
    """Docker's ``UpdateStatus.State``."""

    NONE = ""
    UPDATING = "updating"
    PAUSED = "paused"
    COMPLETED = "completed"
    ROLLBACK_STARTED = "rollback_started"
    ROLLBACK_COMPLETED = "rollback_completed"


class FailureAction(StrEnum):
    PAUSE = "pause"
    CONTINUE = "continue"
    ROLLBACK = "rollback"


@dataclass(frozen=True, slots=True)
class RunSpec:
    """What the runner runs for one service: ``replicas`` tasks of ``command``.

    An update (a new ``command``; ``previous`` the one before) rolls one slot at a time,
    start-first: the new task of a slot must run before the slot's old task stops, so no
    request fails during an update that succeeds. A new task that fails applies
    ``failure_action``: pause (the old tasks keep serving), continue, or roll back.
    """

    service: str
    replicas: int
    command: tuple[str, ...]
    previous: tuple[str, ...] = ()
    failure_action: FailureAction = FailureAction.PAUSE
    update: UpdateState = UpdateState.NONE
    updated: float = 0.0
    message: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.replicas, int) or not 0 <= self.replicas <= 1000:
            raise InvalidArgument(f"replicas must be 0..1000, got {self.replicas!r}")
        if not self.command or not all(isinstance(a, str) for a in self.command):
            raise InvalidArgument("a service run by netfabric needs a command")


@dataclass(frozen=True, slots=True)
class Task:
    id: str
    service: str
    slot: int
    node: str
    command: tuple[str, ...]
    desired: Desired
    created: float


@dataclass(frozen=True, slots=True)
class TaskState:
    id: str
    state: State
    since: float
    error: str = ""


@dataclass(frozen=True, slots=True)
class NodeSlot:
    id: str
    name: str
    ready: bool
    active: bool


@dataclass(frozen=True, slots=True)
class TaskPlan:
    """Task records to write (new or changed), task ids to forget, and specs whose update
    state changed."""

    upserts: tuple[Task, ...]
    deletes: tuple[str, ...]
    specs: tuple[RunSpec, ...] = ()


def plan_tasks(specs: Mapping[str, RunSpec], tasks: Iterable[Task],
               states: Mapping[str, TaskState], nodes: Iterable[NodeSlot], *,
               new_id: Callable[[], str], now: float) -> TaskPlan:
    usable = {n.id: n for n in nodes if n.ready and n.active}
    upserts: dict[str, Task] = {}
    current = {t.id: t for t in tasks}
    spec_changes: dict[str, RunSpec] = {}

    def is_ended(t: Task) -> bool:
        st = states.get(t.id)
        return st is not None and st.state in ENDED

    for t in current.values():
        if t.desired is not Desired.RUNNING:
            continue
        spec = specs.get(t.service)
        if spec is None or t.slot > spec.replicas or t.node not in usable or is_ended(t):
            upserts[t.id] = replace(t, desired=Desired.SHUTDOWN)
    live = [t for t in current.values()
            if t.desired is Desired.RUNNING and t.id not in upserts]
    load = {node: 0 for node in usable}
    for t in live:
        load[t.node] = load.get(t.node, 0) + 1

    def create(spec: RunSpec, slot: int) -> None:
        if not load:
            return
        node = min(load, key=lambda n: (load[n], usable[n].name))
        load[node] += 1
        task = Task(new_id(), spec.service, slot, node, spec.command, Desired.RUNNING, now)
        upserts[task.id] = task

    for name, spec in sorted(specs.items()):
        mine = [t for t in live if t.service == name]
        spec = _update_state(spec, mine, current.values(), states, now)
        if spec != specs[name]:
            spec_changes[name] = spec
        new = {t.slot: t for t in mine if t.command == spec.command}
        old = [t for t in mine if t.command != spec.command]
        # Slots with no live task at all get one (first start, scale, replacement).
        for slot in range(1, spec.replicas + 1):
            if slot not in new and not any(t.slot == slot for t in old):
                create(spec, slot)
        # A slot whose new task runs: its old tasks stop.
        for t in old:
            nt = new.get(t.slot)
            st = states.get(nt.id) if nt else None
            if st is not None and st.state is State.RUNNING:
                upserts[t.id] = replace(t, desired=Desired.SHUTDOWN)
        # One slot at a time, start-first, unless paused or a new task is still starting.
        starting = any(states.get(t.id) is None or states[t.id].state is State.STARTING
                       for t in new.values())
        if spec.update in (UpdateState.UPDATING, UpdateState.ROLLBACK_STARTED) and \
                not starting:
            waiting = sorted({t.slot for t in old if t.slot not in new})
            if waiting:
                create(spec, waiting[0])
    # History: the newest HISTORY ended tasks of each slot stay.
    deletes: list[str] = []
    merged = {**current, **upserts}
    by_slot: dict[tuple[str, int], list[Task]] = {}
    for t in merged.values():
        if t.desired is Desired.SHUTDOWN:
            by_slot.setdefault((t.service, t.slot), []).append(t)
    for (service, _), ended in by_slot.items():
        ended.sort(key=lambda t: t.created, reverse=True)
        keep = HISTORY if service in specs else 0
        deletes.extend(t.id for t in ended[keep:]
                       if states.get(t.id) is None or states[t.id].state in ENDED)
    return TaskPlan(tuple(upserts[k] for k in sorted(upserts) if k not in deletes),
                    tuple(sorted(deletes)), tuple(spec_changes[k] for k in sorted(spec_changes)))


def _update_state(spec: RunSpec, live: list[Task], every: Iterable[Task],
                  states: Mapping[str, TaskState], now: float) -> RunSpec:
    """The spec with its update state moved on: a failed new task pauses, rolls back or
    is ignored; no old task left completes the update."""
    if spec.update not in (UpdateState.UPDATING, UpdateState.ROLLBACK_STARTED):
        return spec
    failed = [t for t in every if t.service == spec.service and t.command == spec.command
              and t.created >= spec.updated and t.id in states
              and states[t.id].state in (State.FAILED, State.REJECTED)]
    if failed and spec.update is UpdateState.UPDATING:
        why = f"update paused due to failure or early termination of task {failed[0].id}"
        if spec.failure_action is FailureAction.PAUSE:
            return replace(spec, update=UpdateState.PAUSED, message=why)
        if spec.failure_action is FailureAction.ROLLBACK and spec.previous:
            return replace(spec, command=spec.previous, previous=spec.command,
                           update=UpdateState.ROLLBACK_STARTED, updated=now,
                           message="update rolled back due to failure of task "
                                   f"{failed[0].id}")
    if all(t.command == spec.command for t in live) and \
            len({t.slot for t in live}) >= spec.replicas:
        done = UpdateState.COMPLETED if spec.update is UpdateState.UPDATING else \
            UpdateState.ROLLBACK_COMPLETED
        return replace(spec, update=done, message="update completed"
                       if done is UpdateState.COMPLETED else "rollback completed")
    return spec
