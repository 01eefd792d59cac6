"""The controller: one control loop per endpoint, run only by the holder of the leader lock.

Each loop wakes on every enqueue (`wake`, wired to JobService.on_enqueue and the load balancer's
"request waiting" hook), on a short tick and at the autoscaler's `recheck_at`. A pass observes
the queue, the worker registry and the orchestrator's table, asks the pure autoscaler
(`skiff_controller.autoscaler`) what to do, and acts through the Orchestrator protocol only:

- launches: `scale(count + n)`; the loop keeps `count`, what it last asked for, so that a lower
  count always names exactly the workers to stop;
- scale-down: workers the autoscaler picks are marked draining (the gateway hands them no new
  job; the balancer no new request) and stopped only once idle: no job in hand and a job-take
  seen after the drain (a long-poll begun before the drain could still hand out a job). A busy
  worker is never stopped by scaling;
- rolling replacement: workers of an older spec_hash are hidden from the autoscaler, and one is
  drained for each new-version worker that is ready (has made its first job-take); old and new
  together stay within max_workers unless the endpoint's `max_surge` allows more;
- replacement on request: a worker that sent `stopPod` with a job's result (refresh_worker) is
  drained by the gateway and, once it holds nothing, replaced through `Orchestrator.replace`
  (the count stays; the autoscaler sees it as the starting worker that takes its place);
- health: a worker that stopped pinging (the gateway re-queued its jobs) is stopped, and so is a
  worker still holding a job that timed out or was cancelled `stuck_grace_s` after the job-stop
  signal; the autoscaler launches replacements on the same pass or the next.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from skiff.aio import wait_event
from skiff_controller.autoscaler import Autoscaler, Observation, ScalingDecision, WorkerView
from skiff_controller.lb_loads import LoadView
from skiff_controller.observe import PassObserver
from skiff_controller.reconcile import Reconciler
from skiff_core.catalog import EndpointCatalog
from skiff_core.config import Settings
from skiff_core.exited_workers import exit_view, recent_exits
from skiff_core.jobs import WorkerRecord, WorkerState, cold_start_parts
from skiff_core.leader import LeaderLock
from skiff_core.orchestrator.base import Orchestrator, WorkerInfo, WorkerPhase
from skiff_core.outages import log_failure
from skiff_core.queue.base import JobQueue
from skiff_core.requeue import requeue_worker_jobs
from skiff_core.spec import EndpointSpec, EndpointType
from skiff_core.store.base import JobRecords, Notes, WorkerRecords

log = logging.getLogger("skiff.controller")

_LIVE = frozenset({WorkerState.INITIALIZING, WorkerState.IDLE, WorkerState.RUNNING})
_READY = frozenset({WorkerState.IDLE, WorkerState.RUNNING})
# How soon a pass looks again at a drained idle worker that has not yet taken since the drain.
DRAIN_RECHECK_S = 0.05
# Orchestrator phases in which a worker holds its slot (its GPU): until its process has exited.
_HOLDING = frozenset({WorkerPhase.PENDING, WorkerPhase.RUNNING, WorkerPhase.STOPPING})
# Old-version workers leave in this order: idle first, then not yet started, then busy ones.
_DRAIN_ORDER = {WorkerState.IDLE: 0, WorkerState.INITIALIZING: 1, WorkerState.RUNNING: 2}


@dataclass
class _Loop:
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    enqueued: bool = False
    task: asyncio.Task[None] | None = None
    count: int | None = None  # workers asked of the orchestrator; None until the first pass
    decision: ScalingDecision | None = None
    stuck_since: dict[tuple[str, str], float] = field(default_factory=dict)
    replacing: set[str] = field(default_factory=set)  # replace() asked, not yet gone from the table
    # Workers a rolling replacement must end with: the old ones live when it began (it outlives
    # their exits: without surge an old worker may leave before its replacement starts).
    roll_target: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class _Worker:
    info: WorkerInfo
    view: WorkerView
    record: WorkerRecord | None
    outdated: bool


class ControllerStore(JobRecords, WorkerRecords, Notes, Protocol):
    """What the controller reads and writes in the job store: worker records, the jobs they hold,
    and the notes that tell gateways why queued jobs wait."""


class WorkerRegistry(Protocol):
    """The worker records the controller reads and marks: the gateway's own tracker when both
    run in one process (`skiff up`), a mirror of the job store's records otherwise."""

    def get(self, worker_id: str) -> WorkerRecord | None: ...

    def local(self) -> list[WorkerRecord]:
        """Records this process holds that may be fresher than the store's."""

    def drain(self, worker_id: str, endpoint: str) -> WorkerRecord:
        """Mark the worker draining (no new job is handed to it) and return its record."""

    def forget(self, worker_id: str) -> None: ...


@dataclass(frozen=True)
class Timing:
    """The settings the controller's rules read."""

    ping_interval_s: float
    take_wait_s: float
    worker_startup_timeout_s: float

    @classmethod
    def of(cls, settings: Settings) -> Timing:
        return cls(settings.ping_interval_s, settings.take_wait_s, settings.worker_startup_timeout_s)


class Controller:
    def __init__(
        self,
        catalog: EndpointCatalog,
        queue: JobQueue,
        store: ControllerStore,
        workers: WorkerRegistry,
        orchestrator: Orchestrator,
        lock: LeaderLock,
        *,
        timing: Timing,
        balancer: LoadView | None = None,
        autoscaler: Autoscaler | None = None,
        tick_s: float = 0.5,
        stuck_grace_s: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.catalog = catalog
        self.queue = queue
        self.store = store
        self.workers = workers
        self.timing = timing
        self.orchestrator = orchestrator
        self.lock = lock
        self.balancer = balancer
        self.autoscaler = autoscaler or Autoscaler()
        self.reconciler = Reconciler(catalog, queue, orchestrator, self)
        self.tick_s = tick_s
        self.clock = clock
        # Three missed pings' worth: the runpod SDK may pick a stop signal up only on its next poll.
        self.stuck_grace_s = 3 * timing.ping_interval_s if stuck_grace_s is None else stuck_grace_s
        self.leading = False
        self._loops: dict[str, _Loop] = {name: _Loop() for name in catalog.names()}
        self._background: set[asyncio.Task[None]] = set()
        # Metrics, waiting reasons and the wanted-vs-actual history (skiff_controller.observe).
        self.observer = PassObserver(self)

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        """Wait for leadership, then run every endpoint's loop until cancelled or the lock is lost."""
        try:
            while True:
                await self.lock.acquire()
                self.leading = True
                log.info("controller %d is the leader", os.getpid())
                await self.reconciler.register_all()
                await self.forget_vanished_workers()
                for name in list(self._loops):
                    self._start(name)
                while self.lock.is_held():
                    await asyncio.sleep(1.0)
                log.error("leadership lost: stopping the control loops until it is regained")
                self.leading = False
                await self._stop_loops()
        finally:
            self.leading = False
            await self._stop_loops()
            await asyncio.gather(*self._background, return_exceptions=True)
            await self.lock.release()

    async def forget_vanished_workers(self) -> int:
        """Make the worker registry match what really runs, as a new leader starts: a record whose
        worker the orchestrator does not list belongs to a worker that died unseen (with a
        `skiff up` killed by -9, say). Its jobs go back to the queue now rather than at lease
        expiry, and the record goes, so `/health` and the autoscaler count only real workers."""
        gone = 0
        for spec in self.catalog.all():
            if spec.type is not EndpointType.QUEUE:
                continue
            listed = {info.id for info in await self.orchestrator.workers(spec.name)}
            for worker_id in sorted(set(await self._records(spec.name)) - listed):
                requeued = await requeue_worker_jobs(self.store, self.queue, worker_id, self.catalog.get)
                self.workers.forget(worker_id)
                await self.store.delete_worker(worker_id)
                gone += 1
                log.warning(
                    "%s: worker %s is registered but not running; forgot it%s",
                    spec.name,
                    worker_id,
                    f" and re-queued {len(requeued)} job(s)" if requeued else "",
                )
        return gone

    def wake(self, endpoint: str) -> None:
        """A job (or a load-balanced request) arrived: run the endpoint's pass now, not on the tick."""
        loop = self._loops.get(endpoint)
        if loop is not None:
            loop.enqueued = True
            loop.wake.set()

    # ------------------------------------------------------------------ Reconciler hooks
    def endpoint_added(self, name: str) -> None:
        self._loops.setdefault(name, _Loop())
        if self.leading:
            self._start(name)

    def endpoint_changed(self, name: str) -> None:
        self.wake(name)

    async def endpoint_removed(self, name: str) -> None:
        loop = self._loops.pop(name, None)
        if loop is not None and loop.task is not None:
            loop.task.cancel()
            await asyncio.gather(loop.task, return_exceptions=True)
        self.autoscaler.forget(name)
        self.observer.endpoint_removed(name)

    # ------------------------------------------------------------------ ControlPlane
    async def apply(self, specs: list[EndpointSpec]) -> dict[str, list[str]]:
        result = await self.reconciler.apply(specs)
        if result.any:
            log.warning(
                "applied endpoints: added %s, changed %s, removed %s",
                result.added or "-",
                result.changed or "-",
                result.removed or "-",
            )
        return result.as_dict()

    async def status(self) -> dict[str, Any]:
        now = self.clock()
        endpoints = []
        for spec in self.catalog.all():
            infos = {i.id: i for i in await self.orchestrator.workers(spec.name)}
            records = await self._records(spec.name)
            ids = list(infos) if self.leading else sorted(set(infos) | set(records))
            workers = [self._worker_status(spec, infos.get(i), records.get(i), i, now) for i in ids]
            loop = self._loops.get(spec.name)
            entry: dict[str, Any] = {
                "name": spec.name,
                "type": spec.type.value,
                "version": spec.spec_hash(),
                "scaling": {
                    "min_workers": spec.scaling.min_workers,
                    "max_workers": spec.scaling.max_workers,
                    "idle_timeout_s": spec.scaling.idle_timeout,
                    "scaler": spec.scaling.scaler.value,
                    "target": spec.scaling.target,
                },
                "workers": [w for w in workers if w is not None],
                "decision": loop.decision.reason if loop and loop.decision else None,
                "exited": [exit_view(r, now) for r in await recent_exits(self.store, spec.name)],
                **self.observer.status_of(spec.name),
            }
            if spec.type is EndpointType.QUEUE:
                stats = await self.queue.stats(spec.name)
                entry["queue"] = {
                    "queued": stats.queued,
                    "in_flight": stats.in_flight,
                    "oldest_age_s": stats.oldest_age_s,
                }
            elif self.balancer is not None:
                summary, _ = await self.balancer.observe(spec.name)
                entry["queue"] = {
                    "queued": summary.waiting,
                    "in_flight": summary.inflight,
                    "oldest_age_s": summary.oldest_wait_s,
                }
            endpoints.append(entry)
        return {"leader": self.leading, "pid": os.getpid(), "endpoints": endpoints}

    def _worker_status(
        self, spec: EndpointSpec, info: WorkerInfo | None, record: WorkerRecord | None, worker_id: str, now: float
    ) -> dict[str, Any] | None:
        if info is None and (record is None or record.state is WorkerState.UNHEALTHY):
            return None
        state = record.state.value if record is not None else "initializing"
        cold = record.cold_start_s if record is not None else None
        ready_at = record.first_take_at if record is not None else None
        idle_since = record.idle_since if record is not None and record.state is WorkerState.IDLE else None
        if spec.type is EndpointType.LOAD_BALANCER and self.balancer is not None and info is not None:
            load = self.balancer.load_of(worker_id)
            if load is not None and load.ready_at is not None:
                cold = load.ready_at - info.launched_at
                ready_at = load.ready_at
                state = "running" if load.inflight else "idle"
                idle_since = load.idle_since if not load.inflight else None
        if info is not None and info.phase is WorkerPhase.STOPPING:
            state = "stopping"
        elif record is not None and record.draining:
            state = "draining"
        return {
            "id": worker_id,
            "state": state,
            "phase": info.phase.value if info is not None else None,
            "version": info.spec_hash if info is not None else None,
            "current": info is None or info.spec_hash == spec.spec_hash(),
            "idle_s": None if idle_since is None else max(0.0, now - idle_since),
            "cold_start_s": cold,
            "jobs": list(record.jobs_in_progress) if record is not None else [],
            "uptime_s": now - (info.launched_at if info is not None else record.launched_at if record else now),
            # The orchestrator's view of the start (Nomad: task events), the registry's first take.
            "cold_start_parts": (
                cold_start_parts(info.launched_at, info.started_at, info.pull_s, ready_at).model_dump()
                if info is not None
                else record.cold_start_parts().model_dump()
                if record is not None
                else None
            ),
        }

    # ------------------------------------------------------------------ the loops
    def _start(self, name: str) -> None:
        loop = self._loops.setdefault(name, _Loop())
        if loop.task is None or loop.task.done():
            loop.task = asyncio.get_running_loop().create_task(self._run_loop(name), name=f"control-{name}")

    async def _stop_loops(self) -> None:
        tasks = [loop.task for loop in self._loops.values() if loop.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for loop in self._loops.values():
            loop.task = None
            loop.count = None  # re-read from the orchestrator after regaining leadership

    async def _run_loop(self, name: str) -> None:
        while name in self._loops:
            loop = self._loops[name]
            loop.wake.clear()
            enqueue, loop.enqueued = loop.enqueued, False
            try:
                decision = await self.pass_once(name, enqueue=enqueue)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log_failure(log, exc, "control pass for %s failed; retrying on the next tick", name)
                decision = None
            timeout = self.tick_s
            if decision is not None and decision.recheck_at is not None:
                timeout = min(timeout, max(0.01, decision.recheck_at - self.clock()))
            await wait_event(loop.wake, timeout)

    async def pass_once(self, name: str, *, enqueue: bool = False) -> ScalingDecision | None:
        spec = self.catalog.get(name)
        loop = self._loops.get(name)
        if spec is None or loop is None:
            return None
        async with loop.lock:
            return await self._pass(spec, loop, enqueue)

    async def _pass(self, spec: EndpointSpec, loop: _Loop, enqueue: bool) -> ScalingDecision:
        name = spec.name
        infos = await self.orchestrator.workers(name)
        if loop.count is None:
            loop.count = sum(1 for i in infos if i.phase in (WorkerPhase.PENDING, WorkerPhase.RUNNING))
        now = self.clock()
        if spec.type is EndpointType.QUEUE:
            stats = await self.queue.stats(name)
            queued, in_progress, oldest = stats.queued, stats.in_flight, stats.oldest_age_s
            workers = await self._queue_workers(spec, infos)
        else:
            queued, in_progress, oldest, workers = await self._lb_workers(spec, infos)

        # Workers asked for but not in the orchestrator's table yet (a crashed one waiting out
        # its restart backoff, a Nomad allocation being placed) are starting ones to the
        # autoscaler; without them it would ask again on every pass and inflate the count.
        listed = sum(1 for w in workers if w.info.phase in (WorkerPhase.PENDING, WorkerPhase.RUNNING))
        for i in range(max(0, loop.count - listed)):
            info = WorkerInfo(f"{name}-pending-{i}", name, WorkerPhase.PENDING, now, spec.spec_hash())
            workers.append(_Worker(info, WorkerView(info.id, WorkerState.INITIALIZING, now), None, False))
        present = [w for w in workers if not w.outdated]
        old_live = [w for w in workers if w.outdated and w.view.state in _LIVE]
        old_leaving = [w for w in workers if w.outdated and w.view.state not in _LIVE and w.info.phase in _HOLDING]
        decision = self.autoscaler.decide(
            name, spec.scaling, Observation(queued, in_progress, oldest, [w.view for w in present], enqueue), now
        )
        loop.decision = decision
        start = decision.start
        drain = set(decision.drain)
        live_new = sum(1 for w in present if w.view.state in _LIVE)
        if old_live or old_leaving:
            loop.roll_target = max(loop.roll_target, len(old_live))
        elif live_new >= min(spec.scaling.max_workers, loop.roll_target):
            loop.roll_target = 0  # every old worker has gone and has its replacement
        if old_live or loop.roll_target:
            start, drain = self._roll(spec, decision, present, old_live, len(old_leaving), loop.roll_target)

        stop: set[str] = set()
        # Unresponsive ones get no stop grace: their jobs are already back in the queue or ended.
        kill: set[str] = set()
        for worker in workers:
            if worker.view.state is WorkerState.UNHEALTHY and worker.info.phase is not WorkerPhase.STOPPING:
                log.warning("worker %s of %s stopped pinging: replacing it", worker.info.id, name)
                kill.add(worker.info.id)
        slow = self._never_ready(spec, workers, now)
        stuck = await self._stuck(spec, loop, workers, now)
        exits = {"unhealthy": len(kill), "not_ready": len(slow - kill), "stuck": len(stuck - kill - slow)}
        kill |= slow | stuck
        for worker in workers:
            if worker.info.id in drain:
                self._drain(spec, worker)
        soon = False
        for worker in workers:
            draining = worker.view.state is WorkerState.DRAINING or worker.info.id in drain
            leaving = worker.info.phase is WorkerPhase.STOPPING or worker.info.id in kill
            if draining and not leaving:
                if await self._idle(spec, worker, now):
                    stop.add(worker.info.id)
                elif worker.record is not None and not worker.record.jobs_in_progress:
                    soon = True  # its next job-take, due at once, lets it stop: look again shortly
        to_replace = await self._to_replace(spec, loop, workers, drain | stop | kill, now)
        self.observer.passed(spec, loop.count, queued, in_progress, oldest, workers, decision, now)
        if start or stop or kill or drain:
            self.observer.acted(spec, decision, start, len(drain), bool(old_live), {**exits, "scale_down": len(stop)})
        if start or stop or kill:
            loop.count = max(0, loop.count + start - len(stop) - len(kill))
            if start:
                log.info("%s: starting %d worker(s): %s", name, start, decision.reason)
            self._spawn(self._scale(name, loop.count, sorted(stop), sorted(kill)))
        for worker_id in sorted(to_replace):
            log.info("%s: replacing worker %s, which asked for it after its job (stopPod)", name, worker_id)
            loop.replacing.add(worker_id)
            self._spawn(self._replace(name, worker_id))
        if spec.type is EndpointType.LOAD_BALANCER and self.balancer is not None:
            await self.balancer.publish()
        if soon:
            recheck = now + DRAIN_RECHECK_S
            return replace(decision, recheck_at=min(decision.recheck_at or recheck, recheck))
        return decision

    def _roll(
        self,
        spec: EndpointSpec,
        decision: ScalingDecision,
        present: list[_Worker],
        old_live: list[_Worker],
        old_leaving: int,
        roll_target: int,
    ) -> tuple[int, set[str]]:
        """A rolling replacement in progress: one new-version worker for each old one (or what the
        autoscaler wants, if more), and an old one drained for each new one that is ready.

        Old workers still hold their slot (their GPU) until they exit. With `max_surge` 0, the
        default, new and old together never exceed max_workers: where there is no room, one old
        worker at a time is drained first (once no new one is still starting) and its replacement
        starts once it has gone."""
        hi = spec.scaling.max_workers
        live_new = [w for w in present if w.view.state in _LIVE]
        ready_new = [w for w in live_new if w.view.state in _READY]
        want_new = min(hi, max(decision.desired, roll_target))
        wanted = max(decision.start, want_new - len(live_new))
        wanted = max(0, min(wanted, hi - len(present)))
        room = hi + spec.scaling.max_surge - len(present) - len(old_live) - old_leaving
        start = max(0, min(wanted, room))
        keep_old = max(0, want_new - len(ready_new))
        if start == 0 and wanted > 0 and old_leaving == 0 and len(live_new) == len(ready_new):
            keep_old = min(keep_old, len(old_live) - 1)  # make room: one more old worker leaves
        leaving = sorted(old_live, key=lambda w: (_DRAIN_ORDER.get(w.view.state, 3), w.view.launched_at))
        drain = {w.info.id for w in leaving[: max(0, len(old_live) - keep_old)]}
        return start, drain

    async def _scale(self, name: str, count: int, stop: list[str], kill: list[str]) -> None:
        await self.orchestrator.scale(name, count, stop=stop, kill=kill)
        for worker_id in [*stop, *kill]:
            self.workers.forget(worker_id)
            await self.store.delete_worker(worker_id)
            if self.balancer is not None:
                self.balancer.forget(worker_id)

    async def _replace(self, name: str, worker_id: str) -> None:
        await self.orchestrator.replace(name, worker_id)
        self.workers.forget(worker_id)
        await self.store.delete_worker(worker_id)

    async def _to_replace(
        self, spec: EndpointSpec, loop: _Loop, workers: list[_Worker], leaving: set[str], now: float
    ) -> set[str]:
        """Workers that asked to be replaced after their job (stopPod) and now hold nothing."""
        listed = {w.info.id for w in workers}
        loop.replacing &= listed
        found: set[str] = set()
        for worker in workers:
            worker_id = worker.info.id
            if (
                worker.record is not None
                and worker.record.replace
                and worker.info.phase is WorkerPhase.RUNNING
                and worker_id not in leaving
                and worker_id not in loop.replacing
                and await self._idle(spec, worker, now)
            ):
                found.add(worker_id)
        return found

    async def settled(self) -> None:
        """Wait for the orchestrator calls and store writes that passes started in the background."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            log_failure(log, error, "orchestrator call failed")

    # ------------------------------------------------------------------ observing
    async def _records(self, endpoint: str) -> dict[str, WorkerRecord]:
        """The registry as stored (every gateway replica), overlaid with this process's fresher view."""
        merged = {w.id: w for w in await self.store.list_workers(endpoint)}
        for worker in self.workers.local():
            if worker.endpoint == endpoint:
                merged[worker.id] = worker
        return merged

    async def _queue_workers(self, spec: EndpointSpec, infos: list[WorkerInfo]) -> list[_Worker]:
        records = await self._records(spec.name)
        listed = {info.id for info in infos}
        for stale in [r for r in records.values() if r.state is WorkerState.UNHEALTHY and r.id not in listed]:
            # A gateway gave up on it (its jobs are back in the queue) and nothing runs it: a
            # record no stop or exit will ever remove (it went silent after its process was gone).
            self.workers.forget(stale.id)
            self._spawn(self.store.delete_worker(stale.id))
        current = spec.spec_hash()
        out = []
        for info in infos:
            record = records.get(info.id)
            if info.phase in (WorkerPhase.STOPPING, WorkerPhase.EXITED):
                view = WorkerView(info.id, WorkerState.DRAINING, info.launched_at)
            elif record is None:
                view = WorkerView(info.id, WorkerState.INITIALIZING, info.launched_at)
            elif record.replace:
                # To the autoscaler it is the fresh worker about to take its place: a starting one.
                view = WorkerView(info.id, WorkerState.INITIALIZING, self.clock())
            else:
                view = WorkerView.from_record(record, busy_since=record.busy_since)
                view = WorkerView(
                    view.id, view.state, info.launched_at, view.ready_at, view.idle_since, view.busy_since
                )
            out.append(_Worker(info, view, record, info.spec_hash != current))
        return out

    async def _lb_workers(self, spec: EndpointSpec, infos: list[WorkerInfo]) -> tuple[int, int, float, list[_Worker]]:
        if self.balancer is None:
            return 0, 0, 0.0, []
        summary, loads = await self.balancer.observe(spec.name)
        current = spec.spec_hash()
        out = []
        for info in infos:
            load = loads.get(info.id)
            if info.phase in (WorkerPhase.STOPPING, WorkerPhase.EXITED) or self.balancer.is_draining(info.id):
                view = WorkerView(info.id, WorkerState.DRAINING, info.launched_at)
            elif load is None or load.ready_at is None:
                view = WorkerView(info.id, WorkerState.INITIALIZING, info.launched_at)
            elif load.inflight:
                view = WorkerView(
                    info.id, WorkerState.RUNNING, info.launched_at, load.ready_at, busy_since=load.busy_since
                )
            else:
                idle_since = load.idle_since or load.ready_at
                view = WorkerView(info.id, WorkerState.IDLE, info.launched_at, load.ready_at, idle_since=idle_since)
            out.append(_Worker(info, view, None, info.spec_hash != current))
        known = {info.id for info in infos}
        for gone in [i for i, load in loads.items() if i not in known and not load.inflight]:
            self.balancer.forget(gone)  # crashed and replaced: the orchestrator no longer lists it
        return summary.waiting, summary.inflight, summary.oldest_wait_s, out

    def _drain(self, spec: EndpointSpec, worker: _Worker) -> None:
        if spec.type is EndpointType.LOAD_BALANCER:
            if self.balancer is not None:
                self.balancer.drain(worker.info.id)
        else:
            record = self.workers.drain(worker.info.id, spec.name)
            worker.record = record
            # Other gateway replicas learn of it from the store on their next flush.
            self._spawn(self.store.upsert_worker(record.model_copy()))
        log.info("%s: draining worker %s", spec.name, worker.info.id)

    async def _idle(self, spec: EndpointSpec, worker: _Worker, now: float) -> bool:
        """Whether a draining worker can be stopped without interrupting anything."""
        if spec.type is EndpointType.LOAD_BALANCER:
            return self.balancer is None or self.balancer.can_stop(worker.info.id)
        record = self.workers.get(worker.info.id) or worker.record
        if record is None:
            return True  # never reached the gateway: it holds nothing
        if record.jobs_in_progress:
            return False
        drained_at = record.draining_since or now
        # A job-take that began before the drain may still be waiting on the queue and hand a job
        # out; a take begun after it proves the earlier one returned (workers take one at a time).
        took_since = record.last_take_at is not None and record.last_take_at > drained_at
        if not (took_since or record.first_take_at is None or now > drained_at + self.timing.take_wait_s + 1.0):
            return False
        # The job store is the authority on what a worker holds (pings may lag a take).
        return not await self.store.jobs_of_worker(worker.info.id)

    def _never_ready(self, spec: EndpointSpec, workers: list[_Worker], now: float) -> set[str]:
        """Running workers still not ready `worker_startup_timeout_s` after launch."""
        limit = self.timing.worker_startup_timeout_s
        slow = {
            w.info.id
            for w in workers
            if w.view.state is WorkerState.INITIALIZING
            and w.info.phase is WorkerPhase.RUNNING
            and not (w.record is not None and w.record.replace)
            and now - w.info.launched_at > limit
        }
        for worker_id in sorted(slow):
            log.warning(
                "worker %s of %s is not ready %.0fs after launch (worker_startup_timeout_s): replacing it",
                worker_id,
                spec.name,
                limit,
            )
        return slow

    async def _stuck(self, spec: EndpointSpec, loop: _Loop, workers: list[_Worker], now: float) -> set[str]:
        """Workers still holding a job that ended (execution timeout, cancel) after the grace period."""
        if spec.type is not EndpointType.QUEUE:
            return set()
        stuck: set[str] = set()
        for worker in workers:
            record = worker.record
            if record is None or worker.info.phase is WorkerPhase.STOPPING:
                continue
            for job_id in record.jobs_in_progress:
                job = await self.store.get(job_id)
                if job is not None and not job.status.final and job.worker_id == worker.info.id:
                    continue
                key = (worker.info.id, job_id)
                since = loop.stuck_since.setdefault(key, now)
                if now - since > self.stuck_grace_s:
                    log.warning(
                        "worker %s of %s still runs job %s %.0fs after it ended: killing it",
                        worker.info.id,
                        spec.name,
                        job_id,
                        now - since,
                    )
                    stuck.add(worker.info.id)
        # Keyed by worker, not by this pass's job list: the tracker drops an ended job until the
        # worker's next ping reports it again, and that gap must not restart the grace period.
        alive = {w.info.id for w in workers}
        loop.stuck_since = {k: v for k, v in loop.stuck_since.items() if k[0] in alive}
        return stuck
