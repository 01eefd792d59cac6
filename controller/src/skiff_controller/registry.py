"""The worker registry of a controller that runs without a gateway in its process.

`skiff controller` sees workers only through the records the gateway replicas flush to the job
store (about once a second). It mirrors them often, and keeps its own drains until the store
shows them, so a refresh never undoes a drain that is still on its way to the gateways. A drain
kept for a worker that no gateway ever flushed lapses after `UNCONFIRMED_DRAIN_S`, and `forget`
(a stop, a kill, an exit) drops the worker for good.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from skiff_core.jobs import WorkerRecord, WorkerState
from skiff_core.store.base import WorkerRecords

# A drained worker the store still does not list after this long has gone (or never reached a
# gateway): keeping its record longer would only leave a ghost.
UNCONFIRMED_DRAIN_S = 30.0


class StoreRegistry:
    def __init__(self, store: WorkerRecords, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._records: dict[str, WorkerRecord] = {}
        self._drains: dict[str, WorkerRecord] = {}  # this controller's drains, until the store shows them

    async def mirror(self) -> None:
        stored = {w.id: w for w in await self._store.list_workers()}
        now = self._clock()
        for worker_id, drained in list(self._drains.items()):
            record = stored.get(worker_id)
            if record is not None and record.draining:
                del self._drains[worker_id]  # the gateways have it
            elif record is not None:
                stored[worker_id] = record.model_copy(
                    update={"draining": True, "draining_since": drained.draining_since, "state": drained.state}
                )
            elif now - (drained.draining_since or now) > UNCONFIRMED_DRAIN_S:
                del self._drains[worker_id]
            else:
                stored[worker_id] = drained  # drained before any gateway flushed it
        self._records = stored

    def register(self, worker_id: str, endpoint: str, launched_at: float, started_at: float | None = None) -> None:
        """A worker this process launched (the local orchestrator): known before its first flush."""
        if worker_id not in self._records:
            self._records[worker_id] = WorkerRecord(
                id=worker_id, endpoint=endpoint, launched_at=launched_at, started_at=started_at
            )

    def get(self, worker_id: str) -> WorkerRecord | None:
        return self._records.get(worker_id)

    def local(self) -> list[WorkerRecord]:
        return list(self._records.values())

    def drain(self, worker_id: str, endpoint: str) -> WorkerRecord:
        record = self._records.get(worker_id) or WorkerRecord(id=worker_id, endpoint=endpoint)
        if not record.draining:
            now = self._clock()
            update: dict[str, object] = {"draining": True, "draining_since": now, "state": WorkerState.DRAINING}
            # As the gateway's tracker keeps them: busy since while it still holds jobs, idle since otherwise.
            update["busy_since" if not record.jobs_in_progress else "idle_since"] = None
            record = record.model_copy(update=update)
        self._records[worker_id] = record
        self._drains[worker_id] = record
        return record

    def forget(self, worker_id: str) -> None:
        self._records.pop(worker_id, None)
        self._drains.pop(worker_id, None)
