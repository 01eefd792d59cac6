"""The orchestrator seam: the controller says how many workers an endpoint should have and which
ones to stop; the orchestrator makes it so (processes locally, a group `Count` in Nomad)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from skiff_core.spec import EndpointSpec


class WorkerPhase(StrEnum):
    PENDING = "pending"  # asked for, not yet running (Nomad: placing / pulling the image)
    RUNNING = "running"
    STOPPING = "stopping"
    EXITED = "exited"  # finished or crashed; replaced according to the restart policy


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    id: str  # RUNPOD_POD_ID the worker reports (local: generated; Nomad: the allocation id)
    endpoint: str
    phase: WorkerPhase
    launched_at: float
    spec_hash: str
    address: str | None = None  # "host:port" of a load_balancer worker's HTTP server
    health_address: str | None = None  # "host:port" that answers GET /ping
    restarts: int = 0
    # Its process started (local: spawned; Nomad: the task's "Started" event), and how long the
    # image pull before it took (Nomad's docker driver; None: no pull seen). skiff_core.jobs
    # cold_start_parts splits a cold start with them.
    started_at: float | None = None
    pull_s: float | None = None


@runtime_checkable
class Orchestrator(Protocol):
    async def apply(self, spec: EndpointSpec) -> None:
        """Register or update an endpoint's worker template (running workers keep their version
        until replaced)."""

    async def remove(self, endpoint: str) -> None:
        """Stop every worker of the endpoint and forget it."""

    async def scale(self, endpoint: str, count: int, *, stop: Sequence[str] = (), kill: Sequence[str] = ()) -> None:
        """Run `count` workers. When lowering, stop the workers named in `stop` (idle ones the
        controller picked) rather than arbitrary ones.

        `kill` names workers to stop without the stop grace: ones that stopped pinging, still run a
        job that already ended, or never became ready. A grace only holds their slot, and a replacement
        waits for it when the endpoint is at max_workers. An orchestrator that cannot skip the grace
        (Nomad applies the task's kill_timeout) stops them as it stops `stop`."""

    async def replace(self, endpoint: str, worker_id: str) -> None:
        """Stop this worker (with the stop grace) and start a fresh one in its place; the count
        stays. For a worker that asked for it after its job (stopPod / refresh_worker)."""

    async def workers(self, endpoint: str) -> list[WorkerInfo]: ...

    async def close(self) -> None:
        """Stop every worker this orchestrator started (embedded) or just disconnect (cluster)."""

    def hurry(self) -> None:
        """Cut short the stop grace of workers being stopped (a second Ctrl-C): kill them now.
        A no-op where the cluster manager owns the stop."""


@dataclass(frozen=True, slots=True)
class WorkerExit:
    """How a worker's process ended on its own (the local orchestrator's exit hook)."""

    code: int
    output: tuple[str, ...] = ()  # the last lines it printed


@dataclass(frozen=True, slots=True)
class Trouble:
    """Why an orchestrator cannot keep an endpoint's workers up (shown as a queued job's reason)."""

    kind: str  # "crash_loop" or "placement_failed"
    message: str
    at: float  # when it was seen
    exit_code: int | None = None  # crash_loop: the last crashed worker's exit code
    restart_at: float | None = None  # crash_loop: when the backoff lets the next worker start
    worker_id: str | None = None  # crash_loop: the worker that crashed last
    output: tuple[str, ...] = ()  # crash_loop: the last lines it printed


@runtime_checkable
class ReportsTrouble(Protocol):
    """An orchestrator that can say why an endpoint's workers do not come up."""

    def trouble(self, endpoint: str) -> Trouble | None: ...


@dataclass(frozen=True, slots=True)
class LogLine:
    worker_id: str
    stream: str  # "stdout" or "stderr" ("output" where the two are one file)
    text: str


@runtime_checkable
class WorkerLogs(Protocol):
    """An orchestrator that can read its workers' output (`skiff logs`)."""

    def worker_logs(self, endpoint: str, *, worker: str | None = None, follow: bool = False) -> AsyncIterator[LogLine]:
        """Every line of every worker of `endpoint` (or of the workers whose id starts with
        `worker`); with `follow`, keep going with new output and new workers until cancelled."""
