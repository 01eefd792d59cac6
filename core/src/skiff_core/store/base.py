"""The job-store seam: embedded (SQLite, same file as the queue) and cluster (Redis).

Every status change goes through `transition`, an atomic compare-and-set on the current status,
so a job cannot be completed twice nor come back after a cancel, whichever gateway replica or
worker races. Waiters (`wait_final`, `wait_stream`, `take_stops`) wake as soon as any process
writes the change: in-process events plus polling for SQLite, pub/sub for Redis.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Protocol, runtime_checkable

from skiff_core.jobs import JobRecord, JobStatus, WorkerRecord


@runtime_checkable
class JobStore(Protocol):
    async def create(self, job: JobRecord) -> None:
        """Store a new job durably (before the client hears "accepted")."""

    async def get(self, job_id: str) -> JobRecord | None: ...

    async def transition(self, job_id: str, *, expect: Collection[JobStatus], **changes: Any) -> JobRecord | None:
        """Apply `changes` (JobRecord field names, `status` included) iff the job's current status
        is in `expect`. Returns the updated record, or None when the job is missing or its status
        was not expected. Wakes `wait_final` waiters when the new status is final."""

    async def delete(self, job_id: str) -> None: ...

    async def append_stream(self, job_id: str, items: list[Any]) -> None:
        """Append partial outputs of a streaming job and wake `wait_stream` waiters."""

    async def read_stream(self, job_id: str, start: int = 0) -> list[Any]:
        """Stream items from index `start` on."""

    async def wait_final(self, job_id: str, timeout: float) -> JobRecord | None:
        """Return the job once its status is final, or its current record after `timeout` s."""

    async def wait_stream(self, job_id: str, start: int, timeout: float) -> None:
        """Return once the stream has more than `start` items, the job is final, or `timeout` s passed."""

    async def counts(self, endpoint: str) -> dict[JobStatus, int]:
        """Stored jobs of the endpoint by status (every status present, zero when none)."""

    async def retried_count(self, endpoint: str) -> int:
        """Stored jobs of the endpoint that were delivered more than once."""

    async def due(self, now: float, limit: int = 100) -> list[JobRecord]:
        """Jobs whose `deadline_at` has passed: queued past their TTL, running past their
        execution timeout, or final past their retention."""

    async def jobs_of_worker(self, worker_id: str) -> list[JobRecord]:
        """IN_PROGRESS jobs currently assigned to the worker."""

    async def upsert_worker(self, worker: WorkerRecord) -> None: ...

    async def get_worker(self, worker_id: str) -> WorkerRecord | None: ...

    async def list_workers(self, endpoint: str | None = None) -> list[WorkerRecord]: ...

    async def delete_worker(self, worker_id: str) -> None: ...

    async def signal_stop(self, worker_id: str, job_id: str) -> None:
        """Ask a worker to stop one job (cancel, timeout); delivered through `take_stops`."""

    async def take_stops(self, worker_id: str, wait: float) -> list[str]:
        """Pending stop signals for the worker, removed as they are returned; waits up to `wait`
        s for one when there is none."""

    async def put_note(self, key: str, value: str, ttl_s: float | None = None) -> None:
        """Set a small piece of state shared between processes (a gateway's load-balancer report,
        the controller's drain marks), replacing any previous value; it vanishes after `ttl_s` s
        (never when None), so a process that died stops speaking for itself."""

    async def notes(self, prefix: str) -> dict[str, str]:
        """Every unexpired note whose key starts with `prefix`, by key."""

    async def close(self) -> None: ...
