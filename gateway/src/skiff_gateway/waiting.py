"""A queued job's `/status` says why it waits (`waitingReason`), from the note the leading
controller keeps for its endpoint (`skiff_core.waiting`). One store read, for IN_QUEUE jobs only."""

from __future__ import annotations

from typing import Any

import orjson

from skiff_core.jobs import JobRecord, JobStatus
from skiff_core.store.base import Notes
from skiff_core.waiting import note_key


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
