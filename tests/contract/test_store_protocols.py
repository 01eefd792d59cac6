"""JobStore's parts (skiff_core.store.base): both stores provide each of them, and the parts stay
views of one store.

The `_parts_of_*` functions are never called: mypy checks them (tests.contract is in its package
list), so a missing method or a signature that drifted from its protocol fails the type check,
which the runtime isinstance checks below (method names only) would miss.
"""

from __future__ import annotations

from collections.abc import Callable

from skiff_core.jobs import JobRecord, WorkerRecord
from skiff_core.store.base import (
    ClientKeys,
    Closeable,
    JobRecords,
    JobStore,
    JobStreams,
    Notes,
    RateCounters,
    StopSignals,
    WorkerRecords,
)
from skiff_core.store.redis import RedisStore
from skiff_core.store.sqlite import SqliteStore

PARTS: tuple[type, ...] = (
    JobRecords,
    JobStreams,
    WorkerRecords,
    StopSignals,
    Notes,
    ClientKeys,
    RateCounters,
    Closeable,
)

Parts = tuple[JobRecords, JobStreams, WorkerRecords, StopSignals, Notes, ClientKeys, RateCounters, Closeable, JobStore]


def _parts_of_sqlite(store: SqliteStore) -> Parts:
    return store, store, store, store, store, store, store, store, store


def _parts_of_redis(store: RedisStore) -> Parts:
    return store, store, store, store, store, store, store, store, store


def _members(protocol: type) -> set[str]:
    return {name for name in dir(protocol) if not name.startswith("_")}


def test_job_store_is_exactly_its_parts() -> None:
    # Every method belongs to one part, so narrowing a consumer's annotation never needs a
    # method that only JobStore has.
    seen: set[str] = set()
    for part in PARTS:
        assert not seen & _members(part), f"{part.__name__} repeats {sorted(seen & _members(part))}"
        seen |= _members(part)
    assert _members(JobStore) == seen
    assert not {name for name in vars(JobStore) if not name.startswith("_")}


async def test_store_provides_every_part(store: JobStore) -> None:
    for part in PARTS:
        assert isinstance(store, part), part.__name__


async def test_deleting_a_worker_drops_its_stop_signals(
    store: JobStore, uid: Callable[[str], str], endpoint: str
) -> None:
    worker = WorkerRecord(id=uid("w"), endpoint=endpoint)
    await store.upsert_worker(worker)
    await store.signal_stop(worker.id, "job-1")
    await store.delete_worker(worker.id)
    assert await store.take_stops(worker.id, wait=0) == []


async def test_stream_of_a_deleted_job_stays_empty(store: JobStore, endpoint: str, uid: Callable[[str], str]) -> None:
    job = JobRecord(id=uid("job"), endpoint=endpoint, input={})
    await store.create(job)
    await store.delete(job.id)
    await store.append_stream(job.id, ["late"])
    assert await store.read_stream(job.id) == []
