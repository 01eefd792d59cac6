"""Job and worker records shared by the gateway, the stores and the controller (Runpod v2 words)."""

from __future__ import annotations

import time
import uuid
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class JobStatus(StrEnum):
    IN_QUEUE = "IN_QUEUE"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"

    @property
    def final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMED_OUT})
ACTIVE_STATUSES = frozenset({JobStatus.IN_QUEUE, JobStatus.IN_PROGRESS})

# Runpod keeps results 30 min for /run and 1 min for /runsync.
RUN_RETENTION_S = 30 * 60
RUNSYNC_RETENTION_S = 60


def new_job_id() -> str:
    # Runpod ids look like "sync-<uuid>-u1"/"<uuid>-u1"; clients only treat them as opaque strings.
    return f"{uuid.uuid4()}-s1"


class JobRecord(BaseModel):
    id: str
    endpoint: str
    status: JobStatus = JobStatus.IN_QUEUE
    input: Any = None
    output: Any = None
    error: Any = None
    webhook: str | None = None
    execution_timeout_s: float = 600.0
    ttl_s: float = 86400.0
    low_priority: bool = False
    sync: bool = False
    created_at: float = Field(default_factory=time.time)
    started_at: float | None = None
    completed_at: float | None = None
    worker_id: str | None = None
    receipt: str | None = None  # queue receipt of the current delivery, to delete on completion
    retries: int = 0  # deliveries after the first
    # The client's X-Request-ID (or one the gateway made): logs of the gateway and the worker carry it.
    request_id: str | None = None
    # Trace and span ids when tracing is on (skiff_core.tracing): chosen at acceptance and take.
    trace: dict[str, Any] | None = None
    stream_read: int = 0  # stream items already handed to a /stream caller (Runpod returns only new ones)
    # When the job must leave its current state: created_at + ttl while queued, the earlier of
    # started_at + execution timeout and created_at + ttl while running, completed_at + retention
    # once final (then it is deleted).
    deadline_at: float = 0.0

    def client_view(self) -> dict[str, Any]:
        """The body Runpod returns from /status and /runsync."""
        body: dict[str, Any] = {"id": self.id, "status": self.status.value}
        if self.started_at is not None:
            body["delayTime"] = int((self.started_at - self.created_at) * 1000)
        if self.completed_at is not None and self.started_at is not None:
            body["executionTime"] = int((self.completed_at - self.started_at) * 1000)
        if self.worker_id is not None:
            body["workerId"] = self.worker_id
        if self.retries:
            body["retries"] = self.retries
        if self.output is not None:
            body["output"] = self.output
        if self.error is not None:
            body["error"] = self.error
        return body


class WorkerState(StrEnum):
    INITIALIZING = "initializing"  # launched, has not taken a job yet
    IDLE = "idle"
    RUNNING = "running"  # has at least one job in progress
    DRAINING = "draining"  # chosen to stop: gets no new job
    UNHEALTHY = "unhealthy"  # stopped pinging


class WorkerRecord(BaseModel):
    id: str
    endpoint: str
    state: WorkerState = WorkerState.INITIALIZING
    launched_at: float = Field(default_factory=time.time)
    first_take_at: float | None = None  # cold start = first_take_at - launched_at
    last_seen_at: float = Field(default_factory=time.time)
    idle_since: float | None = None
    jobs_in_progress: list[str] = Field(default_factory=list)
    address: str | None = None  # load_balancer workers: "127.0.0.1:PORT"
    draining: bool = False
    # It asked to be replaced after its job (stopPod: the SDKs' refresh_worker). Drained too, so
    # it gets no new job; the controller then has the orchestrator replace it, keeping the count.
    replace: bool = False
    # Set while RUNNING: when its current job(s) started (the autoscaler estimates remaining time).
    busy_since: float | None = None
    # When the controller marked it draining, and its latest job-take: a take that began before
    # the drain may still hand out a job, so a drained worker is stopped only after a later take.
    draining_since: float | None = None
    last_take_at: float | None = None
    # Set once its process ended on its own (skiff_core.exited_workers keeps such records a while):
    # when, its exit code, and the last lines it printed.
    exited_at: float | None = None
    exit_code: int | None = None
    last_output: list[str] = Field(default_factory=list)
    # What the orchestrator saw of its start (WorkerInfo.started_at / pull_s): None where unknown.
    started_at: float | None = None
    pull_s: float | None = None

    @property
    def cold_start_s(self) -> float | None:
        return None if self.first_take_at is None else self.first_take_at - self.launched_at

    def cold_start_parts(self) -> ColdStartParts:
        return cold_start_parts(self.launched_at, self.started_at, self.pull_s, self.first_take_at)


class ColdStartParts(BaseModel):
    """A cold start (launch to first job-take) in the parts Skiff can see; they add up to it.

    placement_s: launch to the start of the process, less the pull (local: spawning it; Nomad:
    the allocation's creation to its task's "Started" event: client pickup, task directory,
    templates, container creation). pull_s: Nomad's docker driver "Downloading image" event to
    "Started" (None: no pull seen, the image was on the node or nothing is pulled).
    start_to_take_s: the process started to its first job-take (SDK import, model load)."""

    placement_s: float | None = None
    pull_s: float | None = None
    start_to_take_s: float | None = None


def cold_start_parts(
    launched_at: float, started_at: float | None, pull_s: float | None, ready_at: float | None
) -> ColdStartParts:
    if started_at is None:
        return ColdStartParts()
    return ColdStartParts(
        placement_s=max(0.0, started_at - launched_at - (pull_s or 0.0)),
        pull_s=pull_s,
        start_to_take_s=None if ready_at is None else max(0.0, ready_at - started_at),
    )
