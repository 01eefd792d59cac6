"""A ping crossing a job-take or job-done in flight must not flip a worker's state.

The worker composes its ping from the jobs it holds at that moment, so a ping sent just before it
received a job arrives without that job, and one sent just before its job-done arrives with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from skiff_core.jobs import WorkerState
from skiff_core.store.sqlite import SqliteStore
from skiff_gateway import workers as workers_module
from skiff_gateway.workers import PING_RACE_GRACE_S, WorkerTracker


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(workers_module.time, "time", clock.time)
    return clock


@pytest.fixture
def tracker(tmp_path: Path) -> Iterator[WorkerTracker]:
    store = SqliteStore(tmp_path / "state.db")
    yield WorkerTracker(store)
    asyncio.run(store.close())


def test_ping_that_missed_a_fresh_job_keeps_the_worker_running(tracker: WorkerTracker, clock: Clock) -> None:
    worker = tracker.taking("w1", "echo")
    tracker.took(worker, ["job-a"])
    clock.now += 0.2
    assert tracker.seen("w1", "echo", jobs=[]).state is WorkerState.RUNNING
    # Past the grace, the worker's word stands: it does not hold the job (the take reply was lost).
    clock.now += PING_RACE_GRACE_S + 1
    record = tracker.seen("w1", "echo", jobs=[])
    assert record.state is WorkerState.IDLE
    assert record.jobs_in_progress == []


def test_ping_that_still_lists_a_done_job_does_not_bring_it_back(tracker: WorkerTracker, clock: Clock) -> None:
    worker = tracker.taking("w1", "echo")
    tracker.took(worker, ["job-a"])
    clock.now += 1
    tracker.finished("w1", "echo", "job-a", by_worker=True)
    assert tracker.seen("w1", "echo", jobs=["job-a"]).state is WorkerState.IDLE
    # A job it reports that the gateway never saw finish still counts.
    assert tracker.seen("w1", "echo", jobs=["job-a", "job-b"]).jobs_in_progress == ["job-b"]


def test_cancelled_job_still_running_on_the_worker_keeps_it_busy(tracker: WorkerTracker, clock: Clock) -> None:
    worker = tracker.taking("w1", "echo")
    tracker.took(worker, ["job-a"])
    clock.now += 1
    tracker.finished("w1", "echo", "job-a")  # cancelled by the client, not done by the worker
    record = tracker.get("w1")
    assert record is not None and record.state is WorkerState.IDLE
    assert tracker.seen("w1", "echo", jobs=["job-a"]).state is WorkerState.RUNNING


def test_a_worker_still_starting_is_not_lost_for_silence(tracker: WorkerTracker, clock: Clock) -> None:
    """Launched but not heard from yet (a slow import or model load): only the startup timeout
    (the controller's rule) may end its start; once heard from, silence makes it lost."""
    tracker.register("w1", "echo", launched_at=clock.now)
    record = tracker.get("w1")
    assert record is not None
    clock.now = record.last_seen_at + 60  # the record's creation stamp is the real clock's
    assert asyncio.run(tracker.flush(lost_after=4)) == []
    tracker.seen("w1", "echo", jobs=[])
    lost: list[str] = []
    for _ in range(5):  # flushed every second, as housekeeping does (a longer gap reads as a stall)
        clock.now += 1
        lost += asyncio.run(tracker.flush(lost_after=4))
    assert lost == ["w1"]


def test_a_drain_ends_the_workers_parked_job_take_whether_marked_here_or_learned_from_the_store(
    tracker: WorkerTracker, tmp_path: Path
) -> None:
    """Its next take then proves it idle at once (skiff up: the controller marks this tracker;
    a cluster: the gateway learns the drain from the job store on its flush)."""
    ended: list[str] = []
    tracker.taking("w1", "ep")
    tracker.takes("w1").add(lambda: ended.append("w1"))
    tracker.drain("w1", "ep")
    assert ended == ["w1"]

    tracker.taking("w2", "ep")
    tracker.takes("w2").add(lambda: ended.append("w2"))
    other = SqliteStore(tmp_path / "state.db")  # a controller's view of the same store

    async def drain_elsewhere_then_flush() -> None:
        await tracker.flush(lost_after=60)
        record = await other.get_worker("w2")
        assert record is not None
        await other.upsert_worker(record.model_copy(update={"draining": True, "draining_since": record.last_seen_at}))
        await tracker.flush(lost_after=60)
        await other.close()

    asyncio.run(drain_elsewhere_then_flush())
    assert ended == ["w1", "w2"]
    assert tracker.is_draining("w2")
