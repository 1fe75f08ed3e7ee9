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
    "NodeSlot",
    "RunSpec",
    "State",
    "Task",
    "TaskPlan",
    "TaskState",
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


@dataclass(frozen=True, slots=True)
class RunSpec:
    """What the runner runs for one service: ``replicas`` tasks of ``command``."""

    service: str
    replicas: int
    command: tuple[str, ...]

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
    """Task records to write (new or changed) and task ids to forget."""

    upserts: tuple[Task, ...]
    deletes: tuple[str, ...]


def plan_tasks(specs: Mapping[str, RunSpec], tasks: Iterable[Task],
               states: Mapping[str, TaskState], nodes: Iterable[NodeSlot], *,
               new_id: Callable[[], str], now: float) -> TaskPlan:
    usable = {n.id: n for n in nodes if n.ready and n.active}
    upserts: dict[str, Task] = {}
    current = {t.id: t for t in tasks}
    for t in current.values():
        if t.desired is not Desired.RUNNING:
            continue
        spec = specs.get(t.service)
        state = states.get(t.id)
        if spec is None or t.slot > spec.replicas or t.node not in usable or \
                (state is not None and state.state in ENDED) or t.command != spec.command:
            upserts[t.id] = replace(t, desired=Desired.SHUTDOWN)
    live = [t for t in current.values()
            if t.desired is Desired.RUNNING and t.id not in upserts]
    load = {node: 0 for node in usable}
    for t in live:
        load[t.node] = load.get(t.node, 0) + 1
    for name, spec in sorted(specs.items()):
        taken = {t.slot for t in live if t.service == name}
        for slot in range(1, spec.replicas + 1):
            if slot in taken or not load:
                continue
            node = min(load, key=lambda n: (load[n], usable[n].name))
            load[node] += 1
            task = Task(new_id(), name, slot, node, spec.command, Desired.RUNNING, now)
            upserts[task.id] = task
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
                    tuple(sorted(deletes)))
