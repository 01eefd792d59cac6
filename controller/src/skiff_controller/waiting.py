"""Why an endpoint's queued jobs wait: worked out by the leading controller on each pass and
shared through a note in the job store, which every gateway replica reads for `/status` of a job
still IN_QUEUE (`skiff_core.waiting` has the wire format)."""

from __future__ import annotations

from collections.abc import Sequence

from skiff_core.jobs import WorkerState
from skiff_core.orchestrator.base import Trouble, WorkerPhase
from skiff_core.spec import ScalingSpec
from skiff_core.waiting import WaitReason


def wait_reason(
    scaling: ScalingSpec,
    states: Sequence[tuple[WorkerState, WorkerPhase, float]],
    trouble: Trouble | None,
    now: float,
) -> WaitReason:
    """`states`: (state, phase, launched_at) of each worker the endpoint has, current or not."""
    live = [s for s in states if s[1] is not WorkerPhase.STOPPING and s[0] is not WorkerState.DRAINING]
    ready = [s for s in live if s[0] in (WorkerState.IDLE, WorkerState.RUNNING)]
    idle = [s for s in live if s[0] is WorkerState.IDLE]
    starting = [s for s in live if s[0] is WorkerState.INITIALIZING]
    if trouble is not None and trouble.kind == "placement_failed" and not ready:
        return WaitReason(code="placement_failed", message=trouble.message, since=trouble.at)
    if trouble is not None and trouble.kind == "crash_loop" and not ready:
        backoff = None if trouble.restart_at is None else max(0.0, trouble.restart_at - now)
        message = f"workers are crash-looping: {trouble.message}"
        if backoff:
            message += f"; the next one starts in {backoff:.1f}s (backoff)"
        return WaitReason(
            code="crash_loop",
            message=message,
            since=trouble.at,
            exit_code=trouble.exit_code,
            backoff_s=backoff,
            worker_id=trouble.worker_id,
            output=list(trouble.output),
        )
    if starting and not idle:
        oldest = min(s[2] for s in starting)
        return WaitReason(
            code="starting_worker",
            message=f"starting a worker ({len(starting)} starting, for {max(0.0, now - oldest):.1f}s so far)",
            since=oldest,
        )
    if ready and len(ready) >= scaling.max_workers and not idle:
        return WaitReason(
            code="max_workers",
            message=f"max_workers={scaling.max_workers} reached and all {len(ready)} worker(s) are busy",
        )
    if not live:
        return WaitReason(code="no_worker", message="no worker yet: the controller is starting one")
    return WaitReason(code="waiting_for_worker", message="waiting for a worker to take it")
