"""In-memory stand-ins for the controller's fast tests: a clock the test moves, an orchestrator
that records what it is asked and lists what it runs, a lock that is always held, and a worker
registry with records the test sets directly."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from skiff_core.jobs import WorkerRecord, WorkerState
from skiff_core.orchestrator.base import WorkerInfo, WorkerPhase
from skiff_core.spec import EndpointSpec


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@dataclass
class ScaleCall:
    endpoint: str
    count: int
    stop: list[str]
    kill: list[str]


@dataclass
class FakeOrchestrator:
    clock: FakeClock
    specs: dict[str, EndpointSpec] = field(default_factory=dict)
    running: dict[str, WorkerInfo] = field(default_factory=dict)
    calls: list[ScaleCall] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    _next: int = 0

    async def apply(self, spec: EndpointSpec) -> None:
        self.specs[spec.name] = spec

    async def remove(self, endpoint: str) -> None:
        self.specs.pop(endpoint, None)
        self.running = {i: w for i, w in self.running.items() if w.endpoint != endpoint}

    async def scale(self, endpoint: str, count: int, *, stop: Sequence[str] = (), kill: Sequence[str] = ()) -> None:
        self.calls.append(ScaleCall(endpoint, count, list(stop), list(kill)))
        for worker_id in [*stop, *kill]:
            self.running.pop(worker_id, None)
        mine = [w for w in self.running.values() if w.endpoint == endpoint]
        for _ in range(count - len(mine)):
            self.launch(endpoint)

    async def replace(self, endpoint: str, worker_id: str) -> None:
        self.replaced.append(worker_id)
        if self.running.pop(worker_id, None) is not None:
            self.launch(endpoint)

    def launch(self, endpoint: str, spec_hash: str | None = None) -> WorkerInfo:
        self._next += 1
        spec = self.specs[endpoint]
        info = WorkerInfo(
            f"{endpoint}-{self._next}", endpoint, WorkerPhase.RUNNING, self.clock(), spec_hash or spec.spec_hash()
        )
        self.running[info.id] = info
        return info

    async def workers(self, endpoint: str) -> list[WorkerInfo]:
        return [w for w in self.running.values() if w.endpoint == endpoint]

    async def close(self) -> None:
        self.running.clear()

    def hurry(self) -> None:
        return None


class HeldLock:
    async def acquire(self) -> None:
        return None

    def is_held(self) -> bool:
        return True

    async def release(self) -> None:
        return None

    def holder_pid(self) -> int | None:
        return None

    async def close(self) -> None:
        return None


@dataclass
class FakeRegistry:
    """Worker records as a gateway would keep them; the test writes them directly."""

    clock: FakeClock
    records: dict[str, WorkerRecord] = field(default_factory=dict)

    def ready(self, info: WorkerInfo, *, jobs: Sequence[str] = (), idle_for: float = 0.0) -> WorkerRecord:
        now = self.clock()
        record = WorkerRecord(
            id=info.id,
            endpoint=info.endpoint,
            state=WorkerState.RUNNING if jobs else WorkerState.IDLE,
            launched_at=info.launched_at,
            first_take_at=info.launched_at,
            last_seen_at=now,
            last_take_at=now - idle_for,
            idle_since=None if jobs else now - idle_for,
            busy_since=now if jobs else None,
            jobs_in_progress=list(jobs),
        )
        self.records[info.id] = record
        return record

    def get(self, worker_id: str) -> WorkerRecord | None:
        return self.records.get(worker_id)

    def local(self) -> list[WorkerRecord]:
        return list(self.records.values())

    def drain(self, worker_id: str, endpoint: str) -> WorkerRecord:
        record = self.records.setdefault(worker_id, WorkerRecord(id=worker_id, endpoint=endpoint))
        if not record.draining:
            record.draining, record.draining_since, record.state = True, self.clock(), WorkerState.DRAINING
        return record

    def forget(self, worker_id: str) -> None:
        self.records.pop(worker_id, None)
