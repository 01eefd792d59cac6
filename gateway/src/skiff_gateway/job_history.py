"""The last hour of jobs a gateway replica finished, and the ids of recent ones, per endpoint:
what the console charts (jobs per minute, p50/p95 delay and execution) and lists."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from skiff_core.jobs import JobRecord

WINDOW_S = 3600.0
BUCKET_S = 300.0  # the charts' resolution: twelve points over the hour
RECENT_JOBS = 50


class JobHistory:
    """The last hour of jobs this replica finished, and the ids of recent ones, per endpoint."""

    def __init__(self) -> None:
        self._finished: dict[str, deque[tuple[float, float | None, float | None, str, str | None]]] = {}
        self._recent: dict[str, deque[str]] = {}

    def submitted(self, job: JobRecord) -> None:
        recent = self._recent.setdefault(job.endpoint, deque(maxlen=RECENT_JOBS))
        recent.appendleft(job.id)

    def final(self, job: JobRecord) -> None:
        done = job.completed_at or time.time()
        delay = None if job.started_at is None else job.started_at - job.created_at
        execution = None if job.started_at is None else done - job.started_at
        rows = self._finished.setdefault(job.endpoint, deque())
        rows.append((done, delay, execution, job.status.value, job.worker_id))
        while rows and rows[0][0] < done - WINDOW_S:
            rows.popleft()
        recent = self._recent.setdefault(job.endpoint, deque(maxlen=RECENT_JOBS))
        if job.id not in recent:
            recent.appendleft(job.id)

    def recent(self, endpoint: str) -> list[str]:
        return list(self._recent.get(endpoint, ()))

    def jobs_done_by(self, endpoint: str) -> dict[str, int]:
        done: dict[str, int] = {}
        for *_, worker in self._finished.get(endpoint, ()):
            if worker:
                done[worker] = done.get(worker, 0) + 1
        return done

    def series(self, endpoint: str, now: float) -> list[dict[str, Any]]:
        """Twelve five-minute buckets, oldest first: jobs per minute, p50/p95 delay and execution (ms)."""
        count = int(WINDOW_S // BUCKET_S)
        start = now - count * BUCKET_S
        buckets: list[list[tuple[float | None, float | None]]] = [[] for _ in range(count)]
        for done, delay, execution, _status, _worker in self._finished.get(endpoint, ()):
            index = int((done - start) // BUCKET_S)
            if 0 <= index < count:
                buckets[index].append((delay, execution))
        out = []
        for index, rows in enumerate(buckets):
            delays = sorted(d for d, _ in rows if d is not None)
            executions = sorted(e for _, e in rows if e is not None)
            out.append(
                {
                    "at": start + (index + 1) * BUCKET_S,
                    "jobs_per_min": len(rows) / (BUCKET_S / 60),
                    "delay_p50_ms": _percentile_ms(delays, 0.5),
                    "delay_p95_ms": _percentile_ms(delays, 0.95),
                    "execution_p50_ms": _percentile_ms(executions, 0.5),
                    "execution_p95_ms": _percentile_ms(executions, 0.95),
                }
            )
        return out


def _percentile_ms(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1)
