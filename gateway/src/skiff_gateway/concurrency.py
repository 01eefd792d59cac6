"""An endpoint's `concurrency`: the most jobs one worker may hold, enforced at job-take.

A worker asks for as many jobs as its concurrency_modifier says (job-take-batch's batch_size, or
another job-take while `job_in_progress=1`); the gateway hands it at most what is left under the
cap. What a worker holds is counted from the job store (its IN_PROGRESS jobs, the same on every
gateway replica) together with this gateway's tracker, which also counts a cancelled or timed-out
job the worker still reports running in its pings. With several replicas, a job finished through
another one stays in this tracker until the worker's next ping here: the cap errs on the side of
fewer jobs, never more. One take per worker at a time on a gateway, so two overlapping polls
cannot both see the same room.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from skiff_core.spec import EndpointSpec
from skiff_gateway.context import GatewayContext

# A full worker's poll is answered empty after this long (or its own shorter wait), so its loop
# comes back soon after a job ends, without spinning.
FULL_WAIT_S = 1.0

_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


def _lock(worker_id: str) -> asyncio.Lock:
    lock = _locks.get(worker_id)
    if lock is None:
        lock = _locks[worker_id] = asyncio.Lock()
    return lock


async def held(ctx: GatewayContext, worker_id: str) -> int:
    stored = {job.id for job in await ctx.store.jobs_of_worker(worker_id)}
    record = ctx.workers.get(worker_id)
    tracked = set(record.jobs_in_progress) if record is not None else set()
    return len(stored | tracked)


async def take(
    ctx: GatewayContext, spec: EndpointSpec, worker_id: str, asked: int, wait: float
) -> list[dict[str, Any]]:
    """The jobs for one job-take: `asked`, lowered to what the endpoint's concurrency leaves."""
    if spec.concurrency is None:
        return await ctx.jobs.take(spec, worker_id, asked, wait)
    async with _lock(worker_id):
        room = spec.concurrency - await held(ctx, worker_id)
        if room <= 0:
            await asyncio.sleep(min(wait, FULL_WAIT_S))
            return []
        return await ctx.jobs.take(spec, worker_id, min(asked, room), wait)
