"""Giving a dead worker's jobs back to the queue: what both the gateway (a worker went silent)
and whoever runs the workers (a process exited) do when a worker is gone."""

from __future__ import annotations

from collections.abc import Callable

from skiff_core.jobs import JobStatus
from skiff_core.queue.base import JobQueue
from skiff_core.spec import EndpointSpec
from skiff_core.store.base import JobRecords


async def requeue_worker_jobs(
    store: JobRecords, queue: JobQueue, worker_id: str, spec_of: Callable[[str], EndpointSpec | None]
) -> list[str]:
    """Make the worker's IN_PROGRESS jobs visible again now instead of at lease expiry.

    A re-queued job waits under its TTL again, counted from submission as Runpod counts it; its
    next delivery starts a fresh execution deadline (job-take sets it). Keeping the running
    deadline would let the sweeper expire it as "queued past its TTL" before any retry.

    Returns the endpoint of each job put back (one entry per job)."""
    endpoints: list[str] = []
    for job in await store.jobs_of_worker(worker_id):
        spec = spec_of(job.endpoint)
        updated = await store.transition(
            job.id,
            expect=(JobStatus.IN_PROGRESS,),
            # The list above can be stale: a job re-delivered meanwhile belongs to its new holder.
            holder=worker_id,
            status=JobStatus.IN_QUEUE,
            worker_id=None,
            deadline_at=job.created_at + job.ttl_s,
        )
        if updated is not None and spec is not None and job.receipt:
            await queue.extend(spec.name, job.receipt, 0)
            endpoints.append(spec.name)
    return endpoints
