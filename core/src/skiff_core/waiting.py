"""Why a queued job waits: the reason the leading controller writes for each endpoint (a note in
the job store) and gateways add to `/status` of a job still IN_QUEUE, as `waitingReason` (an
extra field: Runpod's clients ignore fields they do not know)."""

from __future__ import annotations

from pydantic import BaseModel

NOTE_PREFIX = "waiting:"
# The controller rewrites a note at least this often; a note it stopped writing (no leader, the
# endpoint has no queue) lapses after NOTE_TTL_S.
REFRESH_S = 2.0
NOTE_TTL_S = 10.0


class WaitReason(BaseModel):
    # starting_worker, max_workers, crash_loop, placement_failed, endpoint_removed, no_worker,
    # waiting_for_worker
    code: str
    message: str
    since: float | None = None
    exit_code: int | None = None
    backoff_s: float | None = None
    worker_id: str | None = None
    output: list[str] = []


def note_key(endpoint: str) -> str:
    return NOTE_PREFIX + endpoint
