"""The two scalers a `scaling` block can name: how many workers the queue asks for right now.

Both are pure arithmetic over one snapshot of an endpoint. Clamping to min/max, waking a
zero-worker endpoint, choosing what to drain and the learned refinements live in
`skiff_controller.autoscaler`; keeping the raw formulas here lets tests and the benchmark check
them in isolation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from skiff_core.spec import ScalerType


@dataclass(frozen=True, slots=True)
class Load:
    """One endpoint's queue and worker counts at a single instant."""

    queued: int  # visible jobs nobody has taken
    in_progress: int  # jobs taken and not finished
    oldest_age_s: float  # how long the oldest queued job has waited (0 when none)
    idle: int  # ready workers without a job
    busy: int  # workers running at least one job
    starting: int  # launched, not yet taken their first job


def request_count(load: Load, target: float) -> int:
    """Runpod's "request count" strategy: one worker per `target` jobs, queued or running."""
    # Round before ceil so that float targets such as 0.7 do not turn 7/0.7 = 10.000000000000002
    # into 11 workers.
    return max(0, math.ceil(round((load.queued + load.in_progress) / target, 9)))


def overdue_jobs(load: Load, target: float) -> int:
    """Estimated number of queued jobs that have waited longer than `target` seconds.

    The queue reports only the oldest job's age, so assume the queued jobs arrived evenly spread
    between then and now: the fraction older than `target` is (oldest - target) / oldest. A burst
    (all jobs as old as the oldest) gives all of them, a steady trickle a proportional share.
    """
    if load.queued <= 0 or load.oldest_age_s <= target:
        return 0
    share = (load.oldest_age_s - target) / load.oldest_age_s
    return min(load.queued, max(1, math.ceil(round(load.queued * share, 9))))


def queue_delay(load: Load, target: float) -> int:
    """Runpod's "queue delay" strategy: add workers while jobs wait longer than `target` seconds.

    Workers already busy or starting are kept; idle workers count only while there is queued work
    for them (the rest are surplus, left to idle_timeout). A new worker is asked for each overdue
    job that no idle or starting worker is about to take, so a pass never re-asks for workers that
    are already on their way.
    """
    idle_used = min(load.idle, load.queued)
    kept = load.busy + load.starting + idle_used
    uncovered = overdue_jobs(load, target) - idle_used - load.starting
    return kept + max(0, uncovered)


def wanted(scaler: ScalerType, target: float, load: Load) -> int:
    """The worker count the endpoint's scaler asks for, before min/max and the autoscaler's rules."""
    if scaler is ScalerType.REQUEST_COUNT:
        return request_count(load, target)
    return queue_delay(load, target)
