"""What the gateway knows of workers: last contact, jobs in hand, cold start, draining.

Kept in memory on the hot path (job-take/job-done must not write the worker registry per job)
and flushed to the job store about once a second, where the controller reads it. The draining
flag travels the other way: the controller sets it in the store, the flush picks it up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from skiff_core.jobs import WorkerRecord, WorkerState
from skiff_core.store.base import WorkerRecords

log = logging.getLogger("skiff.gateway")

# A ping carries the worker's job list as it stood when the ping left, so it can cross a job-take
# or job-done in flight: it may miss a job just handed out, or list one just finished. For this
# long after either event, a ping's word on that job is not taken over the gateway's own record.
PING_RACE_GRACE_S = 5.0
# Flushes run about twice a second. A longer gap means this process did not run (SIGSTOP, a long
# GC or VM pause, a starved host): the pings sent meanwhile wait in the socket backlog, so the
# silence it saw is its own, not the workers'.
STALL_AFTER_S = 3.0


class WorkerTracker:
    def __init__(self, store: WorkerRecords) -> None:
        self._store = store
        self._workers: dict[str, WorkerRecord] = {}
        self._dirty: set[str] = set()
        self._handed: dict[str, dict[str, float]] = {}
        self._finished: dict[str, dict[str, float]] = {}
        self._polls: dict[str, set[Callable[[], None]]] = {}
        # Workers heard from at least once. One only registered at launch may still be importing
        # its handler or loading a model without pinging: worker_startup_timeout_s covers it.
        self._contacted: set[str] = set()
        self._flushed_at: float | None = None
        self.stalls = 0  # pauses of this process the flush noticed (for logs and tests)
        self._takes: dict[str, set[Callable[[], None]]] = {}

    def _get(self, worker_id: str, endpoint: str) -> WorkerRecord:
        worker = self._workers.get(worker_id)
        if worker is None:
            worker = WorkerRecord(id=worker_id, endpoint=endpoint)
            self._workers[worker_id] = worker
            self._dirty.add(worker_id)
        return worker

    def register(self, worker_id: str, endpoint: str, launched_at: float, started_at: float | None = None) -> None:
        """Called by an orchestrator at launch, so cold start counts from the real start (and
        splits at the process start)."""
        worker = self._get(worker_id, endpoint)
        worker.launched_at = launched_at
        worker.started_at = started_at
        self._dirty.add(worker_id)

    def seen(self, worker_id: str, endpoint: str, jobs: list[str] | None = None) -> WorkerRecord:
        worker = self._get(worker_id, endpoint)
        now = time.time()
        worker.last_seen_at = now
        self._contacted.add(worker_id)
        if jobs is not None:
            reported = self._reconcile(worker_id, worker.jobs_in_progress, jobs, now)
            if set(reported) != set(worker.jobs_in_progress):
                worker.jobs_in_progress = reported
                self._set_state(worker, now)
        if worker.state is WorkerState.UNHEALTHY:
            self._set_state(worker, now)
        return worker

    def taking(self, worker_id: str, endpoint: str) -> WorkerRecord:
        worker = self.seen(worker_id, endpoint)
        worker.last_take_at = time.time()
        if worker.first_take_at is None:
            worker.first_take_at = time.time()
            self._set_state(worker, worker.first_take_at)
        return worker

    def _reconcile(self, worker_id: str, held: list[str], reported: list[str], now: float) -> list[str]:
        handed = _recent(self._handed, worker_id, now)
        finished = _recent(self._finished, worker_id, now)
        jobs = [j for j in reported if j not in finished]
        jobs += [j for j in held if j in handed and j not in jobs]
        return jobs

    def took(self, worker: WorkerRecord, job_ids: list[str]) -> None:
        now = time.time()
        handed = self._handed.setdefault(worker.id, {})
        for job_id in job_ids:
            handed[job_id] = now
            if job_id not in worker.jobs_in_progress:
                worker.jobs_in_progress.append(job_id)
        self._set_state(worker, now)

    def finished(self, worker_id: str, endpoint: str, job_id: str, *, by_worker: bool = False) -> None:
        """The job left the worker's hands. Not a sign of life: the gateway also calls this when it
        cancels or times out a job whose worker may be gone, which must not resurrect it.

        `by_worker`: the worker itself said so (job-done). A cancelled job may still run on the
        worker, so only then is a ping that lists the job taken as stale."""
        worker = self._workers.get(worker_id)
        if worker is None:
            return
        self._handed.get(worker_id, {}).pop(job_id, None)
        if by_worker:
            self._finished.setdefault(worker_id, {})[job_id] = time.time()
        if job_id in worker.jobs_in_progress:
            worker.jobs_in_progress.remove(job_id)
            self._set_state(worker, time.time())

    def is_draining(self, worker_id: str) -> bool:
        worker = self._workers.get(worker_id)
        return worker is not None and worker.draining

    def get(self, worker_id: str) -> WorkerRecord | None:
        return self._workers.get(worker_id)

    def drain(self, worker_id: str, endpoint: str) -> WorkerRecord:
        """Hand this worker no new job from now on (the controller stops it once idle)."""
        worker = self._get(worker_id, endpoint)
        if not worker.draining:
            self._mark_draining(worker, time.time())
        return worker

    def replace(self, worker_id: str, endpoint: str) -> WorkerRecord:
        """The worker asked to be replaced after its job (stopPod): no new job from now on, and
        the controller has the orchestrator stop it and start a fresh one once it holds nothing."""
        worker = self.drain(worker_id, endpoint)
        if not worker.replace:
            worker.replace = True
            self._dirty.add(worker_id)
        return worker

    def _mark_draining(self, worker: WorkerRecord, since: float) -> None:
        """From now on the worker gets no job; a job-take parked on the queue stops waiting, so the
        worker's next take (answered at once, empty) proves it holds nothing and it can be stopped
        now instead of after the rest of its long poll."""
        worker.draining = True
        worker.draining_since = since
        self._set_state(worker, time.time())
        for interrupt in list(self._takes.get(worker.id, ())):
            interrupt()

    def polls(self, worker_id: str) -> set[Callable[[], None]]:
        """Enders of this worker's parked long polls (see skiff_gateway.http.unless_disconnected)."""
        return self._polls.setdefault(worker_id, set())

    def takes(self, worker_id: str) -> set[Callable[[], None]]:
        """Interrupters of this worker's job-takes while they wait on the queue (see
        JobService.take): a drain calls them."""
        return self._takes.setdefault(worker_id, set())

    def release(self, worker_id: str, endpoint: str) -> None:
        """The worker is being stopped: no new job, and its parked job-take and job-stop polls end
        now. A worker such as runpod's notices its SIGTERM only when its long poll returns, so
        without this it would wait out the poll (20 s) and be killed at the end of its grace."""
        self.drain(worker_id, endpoint)
        for end in list(self._polls.get(worker_id, ())):
            end()

    def forget(self, worker_id: str) -> None:
        self._workers.pop(worker_id, None)
        self._polls.pop(worker_id, None)
        self._takes.pop(worker_id, None)
        self._handed.pop(worker_id, None)
        self._finished.pop(worker_id, None)
        self._contacted.discard(worker_id)
        self._dirty.discard(worker_id)

    def local(self) -> list[WorkerRecord]:
        return list(self._workers.values())

    def _set_state(self, worker: WorkerRecord, now: float) -> None:
        if worker.draining:
            state = WorkerState.DRAINING
        elif worker.jobs_in_progress:
            state = WorkerState.RUNNING
        elif worker.first_take_at is None:
            state = WorkerState.INITIALIZING
        else:
            state = WorkerState.IDLE
        if state is WorkerState.RUNNING and worker.state is not WorkerState.RUNNING:
            worker.busy_since = now
        elif state is not WorkerState.RUNNING and not (state is WorkerState.DRAINING and worker.jobs_in_progress):
            worker.busy_since = None
        if state is WorkerState.IDLE and worker.state is not WorkerState.IDLE:
            worker.idle_since = now
        elif state is not WorkerState.IDLE and not (state is WorkerState.DRAINING and not worker.jobs_in_progress):
            worker.idle_since = None
        worker.state = state
        self._dirty.add(worker.id)

    async def flush(self, lost_after: float) -> list[str]:
        """Write changed records, read back draining flags, mark silent workers unhealthy.

        Returns ids of workers that just went silent (their jobs must be released).

        Silence is judged by the time this process ran: after a stall (see STALL_AFTER_S) every
        worker's last contact moves forward by the stall, so a pause of the gateway never reads
        as its workers going quiet; a worker really gone is still lost `lost_after` later."""
        now = time.time()
        if self._flushed_at is not None and now - self._flushed_at > STALL_AFTER_S:
            self._credit_stall(now - self._flushed_at, now)
        self._flushed_at = now
        lost: list[str] = []
        for worker in self._workers.values():
            silent = now - worker.last_seen_at > lost_after and worker.id in self._contacted
            if worker.state is not WorkerState.UNHEALTHY and silent:
                worker.state = WorkerState.UNHEALTHY
                self._dirty.add(worker.id)
                lost.append(worker.id)
        dirty, self._dirty = self._dirty, set()
        for worker_id in dirty:
            record = self._workers.get(worker_id)
            if record is None:
                continue
            stored = await self._store.get_worker(worker_id)
            if stored is not None and stored.replace:
                record.replace = True
            if stored is not None and stored.draining and not record.draining:
                self._mark_draining(record, stored.draining_since or now)
                self._dirty.discard(worker_id)
            await self._store.upsert_worker(record)
        await self._refresh_draining()
        return lost

    def _credit_stall(self, stalled: float, now: float) -> None:
        self.stalls += 1
        log.warning(
            "the gateway did not run for %.1fs (paused or starved); workers' silence during it does not count",
            stalled,
        )
        for worker in self._workers.values():
            if worker.state is not WorkerState.UNHEALTHY:
                worker.last_seen_at = min(now, worker.last_seen_at + stalled)

    async def _refresh_draining(self) -> None:
        for stored in await self._store.list_workers():
            local = self._workers.get(stored.id)
            if local is not None and stored.replace and not local.replace:
                local.replace = True
            if local is not None and stored.draining and not local.draining:
                self._mark_draining(local, stored.draining_since or time.time())


def _recent(events: dict[str, dict[str, float]], worker_id: str, now: float) -> set[str]:
    """Job ids with an event for this worker inside the grace; older entries are dropped."""
    by_job = events.get(worker_id)
    if not by_job:
        return set()
    for job_id in [j for j, at in by_job.items() if now - at > PING_RACE_GRACE_S]:
        del by_job[job_id]
    return set(by_job)
