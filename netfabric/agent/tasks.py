"""The small task runner: services whose tasks netfabric runs itself (for the CLI, the lab).

A manager keeps, per service, a :class:`~netfabric.services.tasks.RunSpec` (table
``runspecs``) and the task records (table ``tasks``), planned by
:func:`~netfabric.services.tasks.plan_tasks` whenever specs, tasks, task states or nodes
change. Every node runs the tasks assigned to it: a sandbox on the service's networks, the
command inside it as ``exec`` runs a program (its resolv.conf, so names resolve), and, once
the process is still up after :data:`SETTLE_S`, the sandbox becomes a backend of the
service. It reports each task's state (table ``taskstates``, owned by the node: a dead
node's states go with it, and its tasks are replaced). To stop a task the node first takes
it out of the service (it leaves every VIP), waits :data:`LEAVE_S` for that to reach the
other nodes, then stops the process and removes the sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import time
from dataclasses import replace
from typing import Any, Protocol, TypeVar

import msgspec

from netfabric.agent.context import AgentContext
from netfabric.agent.endpoints import Endpoints
from netfabric.agent.ports import MeshEvent, MeshEventKind
from netfabric.agent.services import RUNSPECS, TASKS, TASKSTATES, ServiceRegistry
from netfabric.api.types import Availability
from netfabric.errors import InvalidArgument, NetfabricError, NotFound
from netfabric.netns import netns_pids
from netfabric.services.tasks import (
    ENDED,
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

__all__ = ["LEAVE_S", "SETTLE_S", "TaskRunner"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

SETTLE_S = 0.5
"""A task's process must still run this long after start before it takes connections."""
LEAVE_S = 0.5
"""After a task leaves its service, time for the other nodes to apply that before it stops."""
STOP_S = 5.0
PLAN_GRACE_S = 5.0
"""After its start, the planner takes no node for dead this long (the nodes are still being
heard of): a restarted manager moves no task off a live worker."""


_ENCODER = msgspec.json.Encoder()


def _decode(raw: bytes, kind: type[_T], what: str) -> _T:
    """A table value as ``kind`` (its dataclass is the schema); a malformed one is
    :class:`InvalidArgument` naming the field."""
    try:
        return msgspec.json.decode(raw, type=kind)
    except (msgspec.DecodeError, InvalidArgument) as exc:
        raise InvalidArgument(f"malformed {what}: {exc}") from None


def encode_task(t: Task) -> bytes:
    return _ENCODER.encode(t)


def decode_task(raw: bytes) -> Task:
    return _decode(raw, Task, "task entry")


def encode_state(state: TaskState) -> bytes:
    return _ENCODER.encode(state)


def decode_state(raw: bytes) -> TaskState:
    return _decode(raw, TaskState, "task state")


def encode_spec(spec: RunSpec) -> bytes:
    return _ENCODER.encode(spec)


def decode_spec(raw: bytes) -> RunSpec:
    return _decode(raw, RunSpec, "run spec")


class TaskRunner:
    """The runner's manager side (planning) and node side (running); subscribe
    :meth:`on_mesh_event`."""

    def __init__(self, ctx: AgentContext, services: ServiceRegistry,
                 endpoints: Endpoints) -> None:
        self._ctx = ctx
        self._services = services
        self._endpoints = endpoints
        self._procs: dict[str, _Proc] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._busy: set[str] = set()
        self._job: asyncio.Task[None] | None = None
        self._dirty = False
        self._since = time.monotonic()

    # -- tables -----------------------------------------------------------------------------

    def _decode_all(self, table: str, decode: Any) -> list[Any]:
        out = []
        for key, raw in self._services.records(table).items():
            try:
                out.append(decode(raw))
            except InvalidArgument as exc:
                log.warning("dropped %s entry %s: %s", table, key, exc)
        return out

    def specs(self) -> dict[str, RunSpec]:
        return {s.service: s for s in self._decode_all(RUNSPECS, decode_spec)}

    def tasks(self) -> dict[str, Task]:
        return {t.id: t for t in self._decode_all(TASKS, decode_task)}

    def states(self) -> dict[str, TaskState]:
        return {s.id: s for s in self._decode_all(TASKSTATES, decode_state)}

    def _report(self, task: Task, state: State, error: str = "") -> None:
        self._ctx.mesh.set_record(TASKSTATES, task.id, encode_state(
            TaskState(task.id, state, time.time(), error)))

    # -- events -----------------------------------------------------------------------------

    async def on_mesh_event(self, event: MeshEvent) -> None:
        if event.kind in (MeshEventKind.NODE_UP, MeshEventKind.NODE_DOWN) or \
                event.table in (RUNSPECS, TASKS, TASKSTATES):
            self.schedule()

    def schedule(self) -> None:
        self._dirty = True
        if self._job is None or self._job.done():
            self._job = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while self._dirty:
            self._dirty = False
            try:
                if self._ctx.is_leader:   # one planner among several managers
                    await self.plan()
                await self.execute()
            except NetfabricError as exc:
                log.warning("task runner: %s", exc)

    # -- manager: plan ------------------------------------------------------------------------

    async def plan(self) -> None:
        ctx = self._ctx
        state = ctx.ledger.state
        alive = {m.node_id for m in ctx.mesh.members() if m.alive} | {state.node_id}
        if time.monotonic() - self._since < PLAN_GRACE_S:
            # Just started: the other nodes are not heard of yet; none is taken for dead.
            alive |= set(state.nodes)
            asyncio.get_running_loop().call_later(
                PLAN_GRACE_S - (time.monotonic() - self._since), self.schedule)
        nodes = [NodeSlot(n.id, n.hostname, n.id in alive,
                          n.availability is Availability.ACTIVE) for n in state.nodes.values()]
        plan = plan_tasks(self.specs(), self.tasks().values(), self.states(), nodes,
                          new_id=lambda: secrets.token_hex(13), now=time.time())
        writes: list[tuple[str, str, bytes | None]] = [
            (TASKS, t.id, encode_task(t)) for t in plan.upserts]
        writes += [(TASKS, tid, None) for tid in plan.deletes]
        writes += [(RUNSPECS, spec.service, encode_spec(spec)) for spec in plan.specs]
        if writes:
            await self._services.define(writes)

    # -- node: run ----------------------------------------------------------------------------

    async def execute(self) -> None:
        ctx = self._ctx
        tasks = self.tasks()
        states = self.states()
        for t in tasks.values():
            if t.node != ctx.node_id or t.id in self._busy:
                continue
            running = t.id in self._procs
            if t.desired is Desired.RUNNING and not running:
                st = states.get(t.id)
                if st is None or st.state not in ENDED:
                    self._spawn(self._start(t))
            elif t.desired is Desired.SHUTDOWN and running:
                self._spawn(self._stop(t, State.SHUTDOWN))
        for tid in list(self._procs):
            if tid not in tasks and tid not in self._busy:
                gone = Task(tid, "", 0, ctx.node_id, (), Desired.SHUTDOWN, 0.0)
                self._spawn(self._stop(gone, State.SHUTDOWN))

    def _spawn(self, coro: Any) -> None:
        asyncio.get_running_loop().create_task(coro)

    @staticmethod
    def container_name(t: Task) -> str:
        return f"{t.service}.{t.slot}.{t.id[:12]}"

    async def _adopt(self, t: Task, name: str) -> bool:
        """Take back a task whose process still runs in its sandbox (started before this
        agent restarted): watched, a backend again, reported running; not started twice."""
        sb = self._ctx.ledger.state.sandboxes.get(name)
        if sb is None:
            return False
        pids = await self._ctx.thread(netns_pids, sb.netns_path)
        if not pids:
            return False
        try:
            proc = _Adopted(pids)
        except OSError:
            return False
        self._procs[t.id] = proc
        await self._services.add_backend(t.service, name)
        self._report(t, State.RUNNING)
        self._watchers[t.id] = asyncio.get_running_loop().create_task(self._watch(t, proc))
        log.info("task %s: took back its running process %s", name,
                 " ".join(map(str, pids)))
        return True

    async def _kill_leftovers(self, name: str) -> None:
        """Whatever still runs in a sandbox about to be made again (nothing is orphaned)."""
        sb = self._ctx.ledger.state.sandboxes.get(name)
        if sb is None:
            return
        for pid in await self._ctx.thread(netns_pids, sb.netns_path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    async def _start(self, t: Task) -> None:
        self._busy.add(t.id)
        name = self.container_name(t)
        try:
            if await self._adopt(t, name):
                return
            self._report(t, State.STARTING)
            await self._kill_leftovers(name)
            svc = self._services.service(t.service)
            nets = [await self._services.network_name(n) for n in svc.networks]
            if not nets:
                raise InvalidArgument(f"service {t.service} has no network")
            with contextlib.suppress(NotFound):
                await self._endpoints.remove(name, force=True)
            info = await self._endpoints.run(name, network=nets[0], service_task=True)
            for net in nets[1:]:
                await self._endpoints.connect(net, name, service_task=True)
            proc = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", info.netns, *t.command,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
            self._procs[t.id] = proc
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), SETTLE_S)
            if proc.returncode is not None:
                raise _Exited(proc.returncode)
            await self._services.add_backend(t.service, name)
            self._report(t, State.RUNNING)
            self._watchers[t.id] = asyncio.get_running_loop().create_task(self._watch(t, proc))
        except _Exited as exc:
            self._procs.pop(t.id, None)
            await self._cleanup(name)
            self._report(t, State.FAILED, f"task: non-zero exit ({exc.code})"
                         if exc.code else "task: exited at start")
        except (NetfabricError, OSError) as exc:
            self._procs.pop(t.id, None)
            await self._cleanup(name)
            self._report(t, State.REJECTED, str(exc))
        finally:
            self._busy.discard(t.id)
        self.schedule()

    async def _watch(self, t: Task, proc: _Proc) -> None:
        code = await proc.wait()
        if t.id in self._busy:       # being stopped on purpose
            return
        self._busy.add(t.id)
        try:
            self._procs.pop(t.id, None)
            await self._cleanup(self.container_name(t))
            if isinstance(proc, _Adopted):
                self._report(t, State.FAILED, "task: exited (started before the agent "
                             "restarted: its exit code is unknown)")
            else:
                self._report(t, State.FAILED if code else State.COMPLETE,
                             f"task: non-zero exit ({code})" if code else "")
        finally:
            self._busy.discard(t.id)
        self.schedule()

    async def _stop(self, t: Task, final: State) -> None:
        self._busy.add(t.id)
        try:
            proc = self._procs.get(t.id)
            tasks = self.tasks()
            full = tasks.get(t.id, t)
            name = self.container_name(full) if full.service else None
            if name is not None:
                # Leave every VIP first, then give the other nodes time to apply it.
                await self._services.forget_container(name)
                await asyncio.sleep(LEAVE_S)
            if proc is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), STOP_S)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
            self._procs.pop(t.id, None)
            watcher = self._watchers.pop(t.id, None)
            if watcher is not None:
                watcher.cancel()
            if name is not None:
                await self._cleanup(name)
                self._report(full, final)
        finally:
            self._busy.discard(t.id)

    async def _cleanup(self, name: str) -> None:
        with contextlib.suppress(NetfabricError):
            await self._services.forget_container(name)
        with contextlib.suppress(NotFound):
            await self._endpoints.remove(name, force=True)
        self._services.schedule()

    async def close(self) -> None:
        if self._job is not None:
            self._job.cancel()
        for w in self._watchers.values():
            w.cancel()
        for proc in self._procs.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()

    # -- verbs (manager) --------------------------------------------------------------------

    async def set_spec(self, spec: RunSpec) -> None:
        self._ctx.require_manager()
        await self._services.define([(RUNSPECS, spec.service, encode_spec(spec))])
        self.schedule()

    async def update(self, service: str, *, replicas: int | None, command: tuple[str, ...],
               failure_action: str | None, rollback: bool) -> RunSpec:
        """Scale, roll out a new command (one slot at a time), or roll back to the previous
        one; returns the new spec."""
        self._ctx.require_manager()
        spec = self.specs().get(service)
        if spec is None:
            self._services.service(service)
            raise InvalidArgument(f"service {service} is not run by netfabric (no command)")
        if failure_action is not None:
            try:
                spec = replace(spec, failure_action=FailureAction(failure_action))
            except ValueError as exc:
                raise InvalidArgument(f"invalid --update-failure-action {failure_action!r}: "
                                      "pause, continue or rollback") from exc
        if replicas is not None:
            spec = RunSpec(spec.service, replicas, spec.command, spec.previous,
                           spec.failure_action, spec.update, spec.updated, spec.message)
        if rollback:
            if not spec.previous:
                raise InvalidArgument(f"service {service} has no previous command")
            spec = replace(spec, command=spec.previous, previous=spec.command,
                           update=UpdateState.ROLLBACK_STARTED, updated=time.time(),
                           message="manually requested rollback")
        elif command and command != spec.command:
            spec = replace(spec, command=command, previous=spec.command,
                           update=UpdateState.UPDATING, updated=time.time(),
                           message="update in progress")
        await self.set_spec(spec)
        return spec

    async def drop_spec(self, service: str) -> None:
        if service in self.specs():
            await self._services.define([(RUNSPECS, service, None)])
            self.schedule()

    def ps(self, service: str) -> list[dict[str, Any]]:
        ctx = self._ctx
        ctx.require_manager()
        self._services.service(service)
        states = self.states()
        hosts = {n.id: n.hostname for n in ctx.ledger.state.nodes.values()}
        rows = []
        for t in sorted(self.tasks().values(), key=lambda t: (t.slot, -t.created)):
            if t.service != service:
                continue
            st = states.get(t.id)
            rows.append({"id": t.id, "name": f"{t.service}.{t.slot}", "slot": t.slot,
                         "node": hosts.get(t.node, t.node), "desired": str(t.desired),
                         "state": str(st.state) if st else "new",
                         "since": st.since if st else t.created,
                         "error": st.error if st else "", "command": list(t.command)})
        return rows


class _Proc(Protocol):
    """A task's process: one this agent started, or one it took back after a restart."""

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...


class _Adopted:
    """The processes of a task started before this agent restarted: not its children, so
    watched through pidfds; done when the last one exits (its exit code unknown: -1)."""

    def __init__(self, pids: list[int]) -> None:
        self._fds: dict[int, int] = {}
        try:
            for pid in pids:
                self._fds[pid] = os.pidfd_open(pid)
        except OSError:
            self._close()
            raise
        self.returncode: int | None = None
        self._done = asyncio.Event()
        loop = asyncio.get_running_loop()
        for pid, fd in self._fds.items():
            loop.add_reader(fd, self._exited, pid)

    def _exited(self, pid: int) -> None:
        fd = self._fds.pop(pid, None)
        if fd is not None:
            asyncio.get_running_loop().remove_reader(fd)
            os.close(fd)
        if not self._fds:
            self.returncode = -1
            self._done.set()

    def _close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    async def wait(self) -> int:
        await self._done.wait()
        return -1

    def _signal(self, sig: signal.Signals) -> None:
        for fd in list(self._fds.values()):
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, sig)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)


class _Exited(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code
