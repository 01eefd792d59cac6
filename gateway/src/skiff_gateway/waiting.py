"""A queued job's `/status` says why it waits (`waitingReason`), from the note the leading
controller keeps for its endpoint (`skiff_core.waiting`). One store read, for IN_QUEUE jobs only."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from skiff_core.jobs import JobRecord, JobStatus
from skiff_core.store.base import Notes
from skiff_core.waiting import note_key
from skiff_gateway.auth import require_client
from skiff_gateway.context import GatewayContext


async def waiting_reason(store: Notes, endpoint: str) -> dict[str, Any] | None:
    key = note_key(endpoint)
    raw = (await store.notes(key)).get(key)
    if raw is None:
        return None
    try:
        reason: dict[str, Any] = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return reason


async def client_view(store: Notes, job: JobRecord) -> dict[str, Any]:
    """Runpod's /status body, with `waitingReason` while the job is IN_QUEUE."""
    body = job.client_view()
    if job.status is JobStatus.IN_QUEUE:
        reason = await waiting_reason(store, job.endpoint)
        if reason is not None:
            body["waitingReason"] = reason
    return body


async def removed_endpoint_view(
    ctx: GatewayContext, request: Request, endpoint: str, job_id: str
) -> dict[str, Any] | None:
    """/status of a job still queued for an endpoint that was removed: the job with the reason
    (None for every other case, which the route answers as usual, 404 included)."""
    if ctx.catalog.get(endpoint) is not None:
        return None
    require_client(ctx, request)
    job = await ctx.store.get(job_id)
    if job is None or job.endpoint != endpoint or job.status is not JobStatus.IN_QUEUE:
        return None
    return await client_view(ctx.store, job)
