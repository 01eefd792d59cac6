"""The controller's rules, in one process and on a clock the test moves: scale from zero, drain
then stop only when idle, never stop a busy worker, replace a worker that never got ready or is
stuck on an ended job, roll a changed endpoint one ready worker at a time.

Real SQLite queue and store in a temporary directory; the orchestrator, the worker registry and
the leader lock are the in-memory fakes of tests/support/fakes.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from skiff_controller.autoscaler import Autoscaler
from skiff_controller.loop import Controller, Timing
from skiff_core.catalog import EndpointCatalog
from skiff_core.jobs import JobRecord, JobStatus
from skiff_core.queue.sqlite import SqliteQueue
from skiff_core.spec import EndpointSpec, ScalingSpec
from skiff_core.store.sqlite import SqliteStore
from tests.support.fakes import FakeClock, FakeOrchestrator, FakeRegistry, HeldLock

TIMING = Timing(ping_interval_s=1.0, take_wait_s=2.0, worker_startup_timeout_s=30.0)


@dataclass
class Rig:
    clock: FakeClock
    orchestrator: FakeOrchestrator
    registry: FakeRegistry
    queue: SqliteQueue
    store: SqliteStore
    controller: Controller

    async def tick(self, seconds: float = 0.0, *, enqueue: bool = False) -> None:
        self.clock.advance(seconds)
        await self.controller.pass_once("ep", enqueue=enqueue)
        await self.controller.settled()


def spec(**scaling: object) -> EndpointSpec:
    defaults: dict[str, object] = {"min_workers": 0, "max_workers": 2, "idle_timeout": 5.0, "scaler": "request_count"}
    return EndpointSpec(name="ep", command=["true"], scaling=ScalingSpec(**{**defaults, "target": 1.0, **scaling}))


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    clock = FakeClock()
    orchestrator, registry = FakeOrchestrator(clock), FakeRegistry(clock)
    queue, store = SqliteQueue(tmp_path / "skiff.db"), SqliteStore(tmp_path / "skiff.db")
    catalog = EndpointCatalog([spec()])
    await queue.ensure("ep", max_receives=3)
    await orchestrator.apply(spec())
    controller = Controller(
        catalog,
        queue,
        store,
        registry,
        orchestrator,
        HeldLock(),
        timing=TIMING,
        autoscaler=Autoscaler(clock=clock),
        stuck_grace_s=3.0,
        clock=clock,
    )
    yield Rig(clock, orchestrator, registry, queue, store, controller)
    await queue.close()
    await store.close()


async def test_a_job_for_an_endpoint_without_workers_starts_one_on_the_same_pass(rig: Rig) -> None:
    await rig.tick()
    assert rig.orchestrator.calls == []
    await rig.queue.enqueue("ep", "job-1")
    await rig.tick(enqueue=True)
    assert [(c.count, c.stop) for c in rig.orchestrator.calls] == [(1, [])]
    assert len(rig.orchestrator.running) == 1


async def test_an_idle_worker_is_drained_then_stopped_only_after_a_take_since_the_drain(rig: Rig) -> None:
    info = rig.orchestrator.launch("ep")
    rig.registry.ready(info, idle_for=6.0)  # past idle_timeout (5 s)
    await rig.tick()
    record = rig.registry.get(info.id)
    assert record is not None and record.draining
    assert rig.orchestrator.calls == []  # a take begun before the drain could still hand out a job
    await rig.tick(0.5)
    assert rig.orchestrator.calls == []
    record.last_take_at = rig.clock.advance(0.1)  # a take after the drain: the earlier one returned
    await rig.tick()
    assert [(c.count, c.stop) for c in rig.orchestrator.calls] == [(0, [info.id])]
    assert rig.registry.get(info.id) is None and info.id not in rig.orchestrator.running


async def test_a_drained_worker_that_never_takes_again_is_stopped_after_the_take_wait(rig: Rig) -> None:
    info = rig.orchestrator.launch("ep")
    rig.registry.ready(info, idle_for=6.0)
    await rig.tick()
    await rig.tick(TIMING.take_wait_s + 0.5)
    assert rig.orchestrator.calls == []
    await rig.tick(1.0)  # take_wait_s + 1 s after the drain: the parked take has returned
    assert [c.stop for c in rig.orchestrator.calls] == [[info.id]]


async def test_a_busy_worker_is_never_stopped_by_a_scale_down(rig: Rig) -> None:
    info = rig.orchestrator.launch("ep")
    record = rig.registry.ready(info, idle_for=6.0)
    await rig.tick()
    assert record.draining
    # The job store says it holds a job (a take that crossed the drain): it stays, however long.
    await rig.store.create(
        JobRecord(id="j1", endpoint="ep", status=JobStatus.IN_PROGRESS, worker_id=info.id, started_at=rig.clock())
    )
    for _ in range(5):
        record.last_take_at = rig.clock.advance(10.0)
        await rig.tick()
    assert rig.orchestrator.calls == []
    assert info.id in rig.orchestrator.running


async def test_a_worker_that_never_gets_ready_is_killed_after_the_startup_timeout(rig: Rig) -> None:
    info = rig.orchestrator.launch("ep")
    await rig.tick(TIMING.worker_startup_timeout_s - 1)
    assert rig.orchestrator.calls == []
    await rig.tick(2)
    assert [(c.kill, c.stop) for c in rig.orchestrator.calls] == [([info.id], [])]


async def test_a_worker_stuck_on_an_ended_job_is_killed_after_the_grace(rig: Rig) -> None:
    info = rig.orchestrator.launch("ep")
    rig.registry.ready(info, jobs=["j1"])
    await rig.store.create(JobRecord(id="j1", endpoint="ep", status=JobStatus.CANCELLED, worker_id=info.id))
    await rig.tick()
    await rig.tick(2.9)
    assert rig.orchestrator.calls == []
    await rig.tick(0.2)
    assert [c.kill for c in rig.orchestrator.calls] == [[info.id]]


async def test_a_worker_on_a_live_job_is_not_stuck(rig: Rig) -> None:
    info = rig.orchestrator.launch("ep")
    rig.registry.ready(info, jobs=["j1"])
    await rig.store.create(JobRecord(id="j1", endpoint="ep", status=JobStatus.IN_PROGRESS, worker_id=info.id))
    await rig.tick()
    await rig.tick(60)
    assert all(not c.kill for c in rig.orchestrator.calls)


async def test_a_changed_endpoint_rolls_one_ready_worker_at_a_time(rig: Rig) -> None:
    old = rig.orchestrator.launch("ep", spec_hash="old-version")
    rig.registry.ready(old)
    await rig.tick()
    # One new-version worker for the old one; the old one keeps serving until it is ready.
    assert [c.count for c in rig.orchestrator.calls] == [2]
    new = next(w for w in rig.orchestrator.running.values() if w.id != old.id)
    assert not rig.registry.get(old.id).draining  # type: ignore[union-attr]
    rig.registry.ready(new)
    await rig.tick(0.5)
    assert rig.registry.get(old.id).draining  # type: ignore[union-attr]
    rig.registry.get(old.id).last_take_at = rig.clock.advance(0.1)  # type: ignore[union-attr]
    await rig.tick()
    assert rig.orchestrator.calls[-1].stop == [old.id]
    assert list(rig.orchestrator.running) == [new.id]


async def test_a_worker_that_sent_stop_pod_is_replaced_once_it_holds_nothing(rig: Rig) -> None:
    info = rig.orchestrator.launch("ep")
    record = rig.registry.ready(info)
    await rig.queue.enqueue("ep", "job-2")  # work waiting: the endpoint wants its one worker
    # What the gateway's tracker does on a job-done carrying stopPod: drained, marked replace.
    rig.registry.drain(info.id, "ep")
    record.replace = True
    await rig.tick()
    assert rig.orchestrator.replaced == []  # a take begun before the drain could still hand out a job
    record.last_take_at = rig.clock.advance(0.1)
    await rig.tick()
    assert rig.orchestrator.replaced == [info.id]
    # Replaced in place: no extra worker asked for, the count unchanged, the record forgotten.
    assert rig.orchestrator.calls == []
    assert [w.id for w in await rig.orchestrator.workers("ep")] != [info.id]
    assert len(rig.orchestrator.running) == 1
    assert rig.registry.get(info.id) is None


async def _roll_two_old_workers(rig: Rig, current: EndpointSpec) -> tuple[int, set[str]]:
    """Two old-version workers at max_workers 2, a long idle_timeout so that none idles out: new
    ones get ready at once, drained ones take again (proving idle). Returns the peak worker count
    and the versions running at the end."""
    rig.controller.catalog = EndpointCatalog([current])
    await rig.orchestrator.apply(current)
    for old in [rig.orchestrator.launch("ep", spec_hash="old-version") for _ in range(2)]:
        rig.registry.ready(old)
    peak = 0
    for _ in range(20):
        await rig.tick(0.5)
        peak = max(peak, len(rig.orchestrator.running))
        for info in rig.orchestrator.running.values():
            record = rig.registry.get(info.id)
            if record is None:
                rig.registry.ready(info)
            elif record.draining:
                record.last_take_at = rig.clock() + 0.01
    return peak, {w.spec_hash for w in rig.orchestrator.running.values()}


async def test_a_rolling_replacement_stays_within_max_workers_by_default(rig: Rig) -> None:
    current = spec(idle_timeout=60.0)
    peak, versions = await _roll_two_old_workers(rig, current)
    assert peak <= 2, "a rollout ran more workers (GPUs) than max_workers"
    assert versions == {current.spec_hash()} and len(rig.orchestrator.running) == 2


async def test_max_surge_lets_a_rollout_start_new_workers_before_old_ones_leave(rig: Rig) -> None:
    current = spec(idle_timeout=60.0, max_surge=1)
    peak, versions = await _roll_two_old_workers(rig, current)
    assert peak == 3
    assert versions == {current.spec_hash()} and len(rig.orchestrator.running) == 2


def test_the_new_scaling_fields_at_their_defaults_leave_the_version_as_it_was() -> None:
    """Upgrading Skiff must not roll every endpoint: the digest of a spec that does not set
    max_surge or prewarm is the one earlier versions computed (pinned here)."""
    plain = EndpointSpec(name="x", command=["true"])
    assert plain.spec_hash() == "4b5e75e285d8fb0b"
    assert EndpointSpec(name="x", command=["true"], scaling=ScalingSpec(max_surge=1)).spec_hash() != plain.spec_hash()
    assert EndpointSpec(name="x", command=["true"], scaling=ScalingSpec(prewarm=5.0)).spec_hash() != plain.spec_hash()
