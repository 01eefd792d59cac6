"""A job-done reads the job from what this gateway replica handed out instead of the store. A
worker that lost its job (re-queued when it went silent, re-taken by another worker through
another replica) must still get 409 and leave the result that stands alone: its small output must
not replace it, and its big output must not overwrite the stored payload of the other worker's
result. Two replicas here: two gateway contexts on one SQLite state dir."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from skiff_core.backends import Backends
from skiff_core.catalog import EndpointCatalog
from skiff_core.config import Settings
from skiff_core.jobs import JobStatus
from skiff_core.keys import KeyRing
from skiff_core.spec import EndpointSpec
from skiff_gateway.context import GatewayContext
from skiff_gateway.http import ApiError

SPEC = EndpointSpec(name="ep", command=["true"])
INLINE_MAX = 1024


Replicas = tuple[GatewayContext, GatewayContext]


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[Replicas]:
    settings = Settings(state_dir=tmp_path, payload_inline_max_bytes=INLINE_MAX)
    built = [Backends.build(settings) for _ in range(2)]
    contexts = [
        GatewayContext.build(settings, b.queue, b.store, EndpointCatalog([SPEC]), KeyRing("sk_test_key"), b.payloads)
        for b in built
    ]
    await built[0].queue.ensure("ep", max_receives=5)
    yield contexts[0], contexts[1]
    for backends in built:
        await backends.close()


async def _retaken(first: GatewayContext, second: GatewayContext) -> str:
    """A job taken by worker "a" through `first`, re-queued as a went silent, then taken by
    worker "b" through `second`."""
    job = await first.jobs.submit(SPEC, {"input": {"n": 1}}, sync=False)
    assert [j["id"] for j in await first.jobs.take(SPEC, "a", 1, wait=5)] == [job.id]
    assert await second.jobs.release_worker_jobs("a", lambda _name: SPEC) == 1
    assert [j["id"] for j in await second.jobs.take(SPEC, "b", 1, wait=5)] == [job.id]
    return job.id


@pytest.mark.parametrize("size", ["small", "big"])
async def test_a_late_result_from_a_worker_that_lost_its_job_is_refused(replicas: Replicas, size: str) -> None:
    first, second = replicas
    job_id = await _retaken(first, second)
    late = {"late": "x" * (8 if size == "small" else 4 * INLINE_MAX)}
    stands = {"stands": "y" * (8 if size == "small" else 4 * INLINE_MAX)}
    await second.jobs.finish(SPEC, "b", job_id, {"output": stands})
    with pytest.raises(ApiError) as refused:
        await first.jobs.finish(SPEC, "a", job_id, {"output": late})
    assert refused.value.status == 409
    done = await first.jobs.get(SPEC, job_id)
    assert (done.status, done.worker_id, done.output) == (JobStatus.COMPLETED, "b", stands)


async def test_a_late_result_before_the_new_holders_is_refused_too(replicas: Replicas) -> None:
    first, second = replicas
    job_id = await _retaken(first, second)
    with pytest.raises(ApiError) as refused:
        await first.jobs.finish(SPEC, "a", job_id, {"output": {"late": 1}})
    assert refused.value.status == 409
    await second.jobs.finish(SPEC, "b", job_id, {"output": {"stands": 1}})
    done = await second.jobs.get(SPEC, job_id)
    assert (done.status, done.worker_id, done.output) == (JobStatus.COMPLETED, "b", {"stands": 1})
