"""Load-balancer numbers shared between processes: gateway replicas route the requests of
load_balancer endpoints, and the controller (in the same process under `skiff up`, or a separate
`skiff controller`) scales their workers.

Each gateway replica's `LoadReporter` publishes a `LoadReport` (requests held for want of a
worker, requests in flight per worker, the drain marks it honours) as a job-store note every
`REPORT_EVERY_S`, at once when a request is held, and with a `REPORT_TTL_S` expiry so that a dead
replica stops counting. The controller's `ReportedLoads` sums the live reports into the same
numbers an in-process `Balancer` gives. Drain marks travel the other way: one note the
controller rewrites, which each replica adopts before it builds its next report.

This module is the wire format and the numbers both sides speak; neither side's code lives here.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel

from skiff_core.store.base import JobStore

NOTES_PREFIX = "lb-"
REPORT_PREFIX = "lb-report:"
DRAIN_NOTE = "lb-draining"
REPORT_EVERY_S = 0.5
# Several missed reports in a row, not one slow write, mean the replica is gone.
REPORT_TTL_S = 5.0
# The controller rewrites its marks this often; they lapse when no controller leads.
DRAIN_REFRESH_S = 5.0
DRAIN_TTL_S = 30.0
# One read of the reports serves every endpoint's pass within this window.
READ_CACHE_S = 0.1


@dataclass(slots=True)
class InstanceLoad:
    endpoint: str
    inflight: int = 0
    ready_at: float | None = None  # first seen healthy (its cold start ends here)
    busy_since: float | None = None  # set while inflight > 0
    idle_since: float | None = None  # set while inflight == 0 and ready
    served: int = 0


@dataclass(frozen=True, slots=True)
class EndpointLoad:
    waiting: int  # requests held because no healthy worker could take them
    oldest_wait_s: float
    inflight: int


class LoadSource(Protocol):
    """A live balancer as a report reads it."""

    def draining(self) -> frozenset[str]: ...

    def held(self) -> dict[str, tuple[int, float]]: ...

    def loads(self) -> dict[str, InstanceLoad]: ...


class InstanceReport(BaseModel):
    """An InstanceLoad on the wire: the same fields, read off it by name."""

    endpoint: str
    inflight: int = 0
    served: int = 0
    ready_at: float | None = None
    busy_since: float | None = None
    idle_since: float | None = None


class HeldReport(BaseModel):
    count: int
    since: float


class LoadReport(BaseModel):
    replica: str
    at: float
    draining: list[str] = []
    held: dict[str, HeldReport] = {}
    loads: dict[str, InstanceReport] = {}

    @classmethod
    def of(cls, replica: str, balancer: LoadSource) -> LoadReport:
        return cls(
            replica=replica,
            at=time.time(),
            draining=sorted(balancer.draining()),
            held={name: HeldReport(count=n, since=since) for name, (n, since) in balancer.held().items()},
            loads={
                i: InstanceReport.model_validate(load, from_attributes=True) for i, load in balancer.loads().items()
            },
        )


def replica_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


async def stored_marks(store: JobStore) -> list[str]:
    return parse_marks((await store.notes(DRAIN_NOTE)).get(DRAIN_NOTE))


def parse_marks(raw: str | None) -> list[str]:
    if not raw:
        return []
    try:
        marks = json.loads(raw)
    except ValueError:
        return []
    return [str(m) for m in marks] if isinstance(marks, list) else []
