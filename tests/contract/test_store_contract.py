"""JobStore contract (skiff_core.store.base), checked through the protocol only."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from skiff_core.jobs import JobRecord, JobStatus, WorkerRecord, WorkerState
from skiff_core.requeue import requeue_worker_jobs
from skiff_core.store.base import Claim, JobStore

Uid = Callable[[str], str]


@pytest.fixture
def make_job(uid: Uid, endpoint: str) -> Callable[..., JobRecord]:
    def make(**fields: object) -> JobRecord:
        values: dict[str, object] = {"id": uid("job"), "endpoint": endpoint, "input": {"n": 1}}
        values.update(fields)
        return JobRecord.model_validate(values)

    return make


async def test_create_and_get(store: JobStore, make_job: Callable[..., JobRecord], uid: Uid) -> None:
    job = make_job(input={"prompt": "hi", "nested": [1, 2.5, None]}, webhook="http://127.0.0.1:9/h")
    await store.create(job)
    assert await store.get(job.id) == job
    assert await store.get(uid("missing")) is None


async def test_transition_applies_changes(store: JobStore, make_job: Callable[..., JobRecord]) -> None:
    job = make_job()
    await store.create(job)
    started = time.time()
    running = await store.transition(
        job.id, expect={JobStatus.IN_QUEUE}, status=JobStatus.IN_PROGRESS, worker_id="w-1", started_at=started
    )
    assert running is not None
    assert (running.status, running.worker_id, running.started_at) == (JobStatus.IN_PROGRESS, "w-1", started)
    assert running.input == job.input
    assert await store.get(job.id) == running


async def test_transition_is_compare_and_set(store: JobStore, make_job: Callable[..., JobRecord]) -> None:
    job = make_job(status=JobStatus.IN_PROGRESS)
    await store.create(job)
    done = await store.transition(job.id, expect={JobStatus.IN_PROGRESS}, status=JobStatus.COMPLETED, output="first")
    assert done is not None and done.output == "first"
    again = await store.transition(job.id, expect={JobStatus.IN_PROGRESS}, status=JobStatus.COMPLETED, output="second")
    assert again is None
    stored = await store.get(job.id)
    assert stored is not None and (stored.status, stored.output) == (JobStatus.COMPLETED, "first")


async def test_claim_hands_a_queued_job_to_a_worker(store: JobStore, make_job: Callable[..., JobRecord]) -> None:
    created = time.time() - 5
    job = make_job(created_at=created, ttl_s=100.0, execution_timeout_s=30.0, deadline_at=created + 100)
    await store.create(job)
    now = time.time()
    claim = await store.claim(job.id, worker_id="w-1", receipt="n:1:r", now=now, retries=2, execution_id=None)
    assert claim.outcome == "claimed" and claim.job is not None
    taken = claim.job
    assert (taken.status, taken.worker_id, taken.receipt, taken.started_at, taken.retries) == (
        JobStatus.IN_PROGRESS,
        "w-1",
        "n:1:r",
        now,
        2,
    )
    assert taken.deadline_at == now + 30.0  # the execution timeout ends first
    assert taken.input == job.input and taken.trace is None
    assert await store.get(job.id) == taken
    assert [j.id for j in await store.jobs_of_worker("w-1")] == [job.id]
    counts = await store.counts(job.endpoint)
    assert (counts[JobStatus.IN_QUEUE], counts[JobStatus.IN_PROGRESS]) == (0, 1)
    # A re-delivery (the first worker's lease ran out) goes to the next worker.
    again = await store.claim(job.id, worker_id="w-2", receipt="n:1:s", now=now + 1, retries=3, execution_id=None)
    assert again.outcome == "claimed" and again.job is not None and again.job.worker_id == "w-2"
    assert await store.jobs_of_worker("w-1") == []


async def test_claim_keeps_the_ttl_from_submission(store: JobStore, make_job: Callable[..., JobRecord]) -> None:
    created = time.time() - 50
    job = make_job(created_at=created, ttl_s=60.0, execution_timeout_s=600.0, deadline_at=created + 60)
    await store.create(job)
    claim = await store.claim(job.id, worker_id="w-1", receipt=None, now=time.time(), retries=0, execution_id=None)
    assert claim.job is not None and claim.job.deadline_at == created + 60.0


async def test_claim_refuses_gone_and_expired_jobs(
    store: JobStore, make_job: Callable[..., JobRecord], uid: Uid
) -> None:
    assert await store.claim(
        uid("missing"), worker_id="w", receipt=None, now=time.time(), retries=0, execution_id=None
    ) == (Claim("gone", None))
    final = make_job(status=JobStatus.CANCELLED)
    await store.create(final)
    gone = await store.claim(final.id, worker_id="w", receipt=None, now=time.time(), retries=0, execution_id=None)
    assert gone == Claim("gone", final)
    old = make_job(created_at=time.time() - 120, ttl_s=60.0)
    await store.create(old)
    expired = await store.claim(old.id, worker_id="w", receipt=None, now=time.time(), retries=0, execution_id=None)
    assert expired == Claim("expired", old)
    assert await store.get(old.id) == old  # untouched: expiring it is the caller's business


async def test_claim_adds_the_execution_span_to_a_traced_job(
    store: JobStore, make_job: Callable[..., JobRecord]
) -> None:
    trace = {"trace_id": "a" * 32, "span_id": "b" * 16, "parent_id": None}
    traced, plain = make_job(trace=trace), make_job()
    await store.create(traced)
    await store.create(plain)
    claim = await store.claim(traced.id, worker_id="w", receipt=None, now=time.time(), retries=0, execution_id="c" * 16)
    assert claim.job is not None and claim.job.trace == {**trace, "execution_id": "c" * 16}
    claim = await store.claim(plain.id, worker_id="w", receipt=None, now=time.time(), retries=0, execution_id="c" * 16)
    assert claim.job is not None and claim.job.trace is None


async def test_transition_can_expect_the_holder(store: JobStore, make_job: Callable[..., JobRecord]) -> None:
    job = make_job(status=JobStatus.IN_PROGRESS, worker_id="w-new")
    await store.create(job)
    stale = await store.transition(
        job.id, expect={JobStatus.IN_PROGRESS}, holder="w-old", status=JobStatus.IN_QUEUE, worker_id=None
    )
    assert stale is None
    stored = await store.get(job.id)
    assert stored is not None and (stored.status, stored.worker_id) == (JobStatus.IN_PROGRESS, "w-new")
    done = await store.transition(job.id, expect={JobStatus.IN_PROGRESS}, holder="w-new", status=JobStatus.COMPLETED)
    assert done is not None and (done.status, done.worker_id) == (JobStatus.COMPLETED, "w-new")


async def test_requeue_leaves_a_job_redelivered_since_the_dead_workers_list_was_read(
    store: JobStore, make_job: Callable[..., JobRecord], uid: Uid
) -> None:
    """A new leader forgets a dead worker's jobs from a list read earlier; one of them already
    re-delivered to a live worker must stay with it (else its result gets a 409 and it runs twice)."""
    dead, live = uid("w"), uid("w")
    job = make_job(status=JobStatus.IN_PROGRESS, worker_id=dead)
    await store.create(job)
    stale = await store.jobs_of_worker(dead)
    await store.transition(job.id, expect={JobStatus.IN_PROGRESS}, worker_id=live)  # re-delivered

    class StaleList:
        def __getattr__(self, name: str) -> object:
            return getattr(store, name)

        async def jobs_of_worker(self, worker_id: str) -> list[JobRecord]:
            return stale

    queue = _NoQueue()
    requeued = await requeue_worker_jobs(StaleList(), queue, dead, lambda name: None)  # type: ignore[arg-type]
    assert requeued == [] and queue.extended == []
    stored = await store.get(job.id)
    assert stored is not None and (stored.status, stored.worker_id) == (JobStatus.IN_PROGRESS, live)


class _NoQueue:
    def __init__(self) -> None:
        self.extended: list[str] = []

    async def extend(self, endpoint: str, receipt: str, seconds: float) -> None:
        self.extended.append(receipt)


async def test_cancelled_job_cannot_complete(store: JobStore, make_job: Callable[..., JobRecord]) -> None:
    job = make_job(status=JobStatus.IN_PROGRESS)
    await store.create(job)
    cancelled = await store.transition(
        job.id, expect={JobStatus.IN_QUEUE, JobStatus.IN_PROGRESS}, status=JobStatus.CANCELLED
    )
    assert cancelled is not None
    assert await store.transition(job.id, expect={JobStatus.IN_PROGRESS}, status=JobStatus.COMPLETED, output=1) is None
    stored = await store.get(job.id)
    assert stored is not None and (stored.status, stored.output) == (JobStatus.CANCELLED, None)


async def test_transition_of_missing_job(store: JobStore, uid: Uid) -> None:
    assert await store.transition(uid("missing"), expect=set(JobStatus), status=JobStatus.FAILED) is None


async def test_delete_removes_job_and_stream(store: JobStore, make_job: Callable[..., JobRecord]) -> None:
    job = make_job()
    await store.create(job)
    await store.append_stream(job.id, ["a"])
    await store.delete(job.id)
    assert await store.get(job.id) is None
    assert await store.read_stream(job.id) == []


async def test_stream_append_and_read(store: JobStore, make_job: Callable[..., JobRecord]) -> None:
    job = make_job(status=JobStatus.IN_PROGRESS)
    await store.create(job)
    assert await store.read_stream(job.id) == []
    await store.append_stream(job.id, ["a", {"b": [1, 2]}])
    await store.append_stream(job.id, [3])
    assert await store.read_stream(job.id) == ["a", {"b": [1, 2]}, 3]
    assert await store.read_stream(job.id, 2) == [3]
    assert await store.read_stream(job.id, 3) == []


async def test_wait_stream_wakes_on_append(store: JobStore, make_job: Callable[..., JobRecord]) -> None:
    job = make_job(status=JobStatus.IN_PROGRESS)
    await store.create(job)
    await store.append_stream(job.id, ["a"])
    await asyncio.wait_for(store.wait_stream(job.id, 0, timeout=15), timeout=5)  # already has more
    waiting = asyncio.create_task(store.wait_stream(job.id, 1, timeout=15))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await store.append_stream(job.id, ["b"])
    await asyncio.wait_for(waiting, timeout=5)
    assert await store.read_stream(job.id, 1) == ["b"]


async def test_wait_stream_ends_when_job_final(store: JobStore, make_job: Callable[..., JobRecord]) -> None:
    job = make_job(status=JobStatus.IN_PROGRESS)
    await store.create(job)
    waiting = asyncio.create_task(store.wait_stream(job.id, 0, timeout=15))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await store.transition(job.id, expect={JobStatus.IN_PROGRESS}, status=JobStatus.COMPLETED)
    await asyncio.wait_for(waiting, timeout=5)


async def test_wait_stream_times_out(store: JobStore, make_job: Callable[..., JobRecord]) -> None:
    job = make_job(status=JobStatus.IN_PROGRESS)
    await store.create(job)
    started = time.monotonic()
    await store.wait_stream(job.id, 0, timeout=0.5)
    assert time.monotonic() - started >= 0.4


async def test_wait_final_wakes_on_transition(store: JobStore, make_job: Callable[..., JobRecord]) -> None:
    job = make_job()
    await store.create(job)
    waiting = asyncio.create_task(store.wait_final(job.id, timeout=15))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await store.transition(job.id, expect={JobStatus.IN_QUEUE}, status=JobStatus.IN_PROGRESS)
    await asyncio.sleep(0.3)
    assert not waiting.done(), "wait_final returned on a status that is not final"
    await store.transition(job.id, expect={JobStatus.IN_PROGRESS}, status=JobStatus.COMPLETED, output=42)
    final = await asyncio.wait_for(waiting, timeout=5)
    assert final is not None and (final.status, final.output) == (JobStatus.COMPLETED, 42)


async def test_wait_final_returns_current_record_on_timeout(
    store: JobStore, make_job: Callable[..., JobRecord], uid: Uid
) -> None:
    job = make_job()
    await store.create(job)
    started = time.monotonic()
    current = await store.wait_final(job.id, timeout=0.5)
    assert time.monotonic() - started >= 0.4
    assert current is not None and current.status == JobStatus.IN_QUEUE
    assert await store.wait_final(uid("missing"), timeout=0.5) is None


async def test_wait_final_of_final_job_returns_at_once(store: JobStore, make_job: Callable[..., JobRecord]) -> None:
    job = make_job(status=JobStatus.FAILED, error="boom")
    await store.create(job)
    final = await asyncio.wait_for(store.wait_final(job.id, timeout=15), timeout=5)
    assert final is not None and final.error == "boom"


async def test_counts_has_every_status(
    store: JobStore, make_job: Callable[..., JobRecord], endpoint: str, uid: Uid
) -> None:
    assert await store.counts(endpoint) == dict.fromkeys(JobStatus, 0)
    for status in (JobStatus.IN_QUEUE, JobStatus.IN_QUEUE, JobStatus.IN_PROGRESS, JobStatus.COMPLETED):
        await store.create(make_job(status=status))
    await store.create(make_job(endpoint=uid("elsewhere")))
    expected = dict.fromkeys(JobStatus, 0)
    expected.update({JobStatus.IN_QUEUE: 2, JobStatus.IN_PROGRESS: 1, JobStatus.COMPLETED: 1})
    assert await store.counts(endpoint) == expected


async def test_retried_count(store: JobStore, make_job: Callable[..., JobRecord], endpoint: str, uid: Uid) -> None:
    await store.create(make_job(retries=0))
    await store.create(make_job(retries=1))
    await store.create(make_job(endpoint=uid("elsewhere"), retries=3))
    later = make_job(status=JobStatus.IN_PROGRESS)
    await store.create(later)
    assert await store.retried_count(endpoint) == 1
    await store.transition(later.id, expect={JobStatus.IN_PROGRESS}, status=JobStatus.IN_QUEUE, retries=1)
    assert await store.retried_count(endpoint) == 2


async def test_due(store: JobStore, make_job: Callable[..., JobRecord]) -> None:
    now = time.time()
    past = make_job(deadline_at=now - 10)
    future = make_job(deadline_at=now + 3600)
    await store.create(past)
    await store.create(future)
    due_ids = {job.id for job in await store.due(now, limit=10_000)}
    assert past.id in due_ids
    assert future.id not in due_ids
    assert len(await store.due(now, limit=1)) == 1
    await store.transition(past.id, expect={JobStatus.IN_QUEUE}, deadline_at=now + 3600)
    assert past.id not in {job.id for job in await store.due(now, limit=10_000)}
    assert future.id in {job.id for job in await store.due(now + 7200, limit=10_000)}


async def test_jobs_of_worker(store: JobStore, make_job: Callable[..., JobRecord], uid: Uid) -> None:
    worker, other = uid("w"), uid("w")
    running = [make_job(status=JobStatus.IN_PROGRESS, worker_id=worker) for _ in range(2)]
    finished = make_job(status=JobStatus.COMPLETED, worker_id=worker)
    elsewhere = make_job(status=JobStatus.IN_PROGRESS, worker_id=other)
    for job in [*running, finished, elsewhere]:
        await store.create(job)
    assert sorted(j.id for j in await store.jobs_of_worker(worker)) == sorted(j.id for j in running)
    await store.transition(running[0].id, expect={JobStatus.IN_PROGRESS}, status=JobStatus.COMPLETED)
    assert [j.id for j in await store.jobs_of_worker(worker)] == [running[1].id]
    assert await store.jobs_of_worker(uid("nobody")) == []


async def test_worker_registry(store: JobStore, uid: Uid, endpoint: str) -> None:
    first = WorkerRecord(id=uid("w"), endpoint=endpoint)
    second = WorkerRecord(id=uid("w"), endpoint=endpoint, address="127.0.0.1:9000")
    stranger = WorkerRecord(id=uid("w"), endpoint=uid("elsewhere"))
    for worker in (first, second, stranger):
        await store.upsert_worker(worker)
    assert await store.get_worker(first.id) == first
    assert await store.get_worker(uid("missing")) is None
    busy = first.model_copy(update={"state": WorkerState.RUNNING, "jobs_in_progress": ["j-1"]})
    await store.upsert_worker(busy)
    assert await store.get_worker(first.id) == busy
    assert sorted(w.id for w in await store.list_workers(endpoint)) == sorted([first.id, second.id])
    assert {first.id, second.id, stranger.id} <= {w.id for w in await store.list_workers()}
    await store.delete_worker(first.id)
    assert await store.get_worker(first.id) is None
    assert [w.id for w in await store.list_workers(endpoint)] == [second.id]


async def test_stop_signals(store: JobStore, uid: Uid) -> None:
    worker, other = uid("w"), uid("w")
    assert await store.take_stops(worker, wait=0) == []
    await store.signal_stop(worker, "job-1")
    await store.signal_stop(worker, "job-2")
    await store.signal_stop(other, "job-3")
    assert sorted(await store.take_stops(worker, wait=0)) == ["job-1", "job-2"]
    assert await store.take_stops(worker, wait=0) == []
    assert await store.take_stops(other, wait=0) == ["job-3"]


async def test_take_stops_long_poll_wakes(store: JobStore, uid: Uid) -> None:
    worker = uid("w")
    waiting = asyncio.create_task(store.take_stops(worker, wait=15))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await store.signal_stop(worker, "job-1")
    assert await asyncio.wait_for(waiting, timeout=5) == ["job-1"]


async def test_many_parked_stop_polls_outlast_socket_timeouts_and_leave_the_store_usable(
    store: JobStore, make_job: Callable[..., JobRecord], uid: Uid
) -> None:
    """Every worker parks a job-stop poll for the whole take wait (20 s by default). Hundreds of
    them must neither take the store's connections from the requests in flight nor fail when the
    wait is longer than a client-side read timeout (redis-py's default is 5 s)."""
    workers = [uid("w") for _ in range(300)]
    parked = [asyncio.create_task(store.take_stops(w, wait=6)) for w in workers]
    await asyncio.sleep(0.5)
    jobs = [make_job() for _ in range(50)]
    await asyncio.gather(*(store.create(job) for job in jobs))
    assert all(stored is not None for stored in await asyncio.gather(*(store.get(job.id) for job in jobs)))
    await store.signal_stop(workers[7], "job-x")
    assert await asyncio.wait_for(parked[7], timeout=5) == ["job-x"]
    results = await asyncio.gather(*parked)
    assert [r for r in results if r] == [["job-x"]]


async def test_take_stops_times_out_empty(store: JobStore, uid: Uid) -> None:
    started = time.monotonic()
    assert await store.take_stops(uid("w"), wait=0.5) == []
    assert time.monotonic() - started >= 0.4


async def test_notes_replace_expire_and_filter_by_prefix(store: JobStore, uid: Uid) -> None:
    prefix = uid("notes") + ":"
    await store.put_note(prefix + "a", "1", ttl_s=30)
    await store.put_note(prefix + "a", "2", ttl_s=30)  # replaces
    await store.put_note(prefix + "forever", "f")
    await store.put_note(prefix + "short", "s", ttl_s=0.2)
    await store.put_note(uid("other") + ":a", "x", ttl_s=30)
    assert await store.notes(prefix) == {prefix + "a": "2", prefix + "forever": "f", prefix + "short": "s"}
    await asyncio.sleep(0.4)
    assert await store.notes(prefix) == {prefix + "a": "2", prefix + "forever": "f"}
    # A note written again after it expired is back.
    await store.put_note(prefix + "short", "again", ttl_s=30)
    assert (await store.notes(prefix))[prefix + "short"] == "again"
    assert await store.notes(uid("nothing")) == {}


async def test_client_keys_are_stored_listed_and_revoked(store: JobStore) -> None:
    from skiff_core.keys import Scope, matches, new_client_key

    key, record = new_client_key(Scope.READ, ["b", "a"], name="dashboard")
    other_key, other = new_client_key(Scope.WRITE, None)
    await store.put_key(record)
    await store.put_key(other)
    stored = await store.get_key(record.id)
    assert stored == record and stored.endpoints == ["a", "b"]
    assert key not in stored.model_dump_json()  # only the hash is kept
    assert matches(key, stored) and not matches(other_key, stored)
    assert {r.id for r in await store.list_keys()} >= {record.id, other.id}
    assert await store.delete_key(record.id) is True
    assert await store.delete_key(record.id) is False
    assert await store.get_key(record.id) is None
    assert await store.get_key(other.id) == other


async def test_server_secret_is_set_once_and_agreed_on(store: JobStore, uid: Uid) -> None:
    name = uid("secret")
    answers = await asyncio.gather(*(store.server_secret(name, f"candidate-{n}") for n in range(5)))
    assert len(set(answers)) == 1 and answers[0].startswith("candidate-")
    assert await store.server_secret(name, "another") == answers[0]


async def test_admit_counts_requests_over_a_sliding_window(store: JobStore, uid: Uid) -> None:
    counter = uid("rate")
    admitted = [
        await store.admit(counter, uid("t"), requests=3, window_s=0.6, concurrent=None, lease_s=10) for _ in range(5)
    ]
    assert admitted[:3] == [None, None, None]
    waits = admitted[3:]
    assert all(w is not None and 0 < w <= 0.6 for w in waits), waits
    # Refusals are not counted: once the window has moved past the first three, three more pass.
    await asyncio.sleep(0.7)
    again = [
        await store.admit(counter, uid("t"), requests=3, window_s=0.6, concurrent=None, lease_s=10) for _ in range(4)
    ]
    assert again[:3] == [None, None, None] and again[3] is not None
    # Counters are independent.
    assert await store.admit(uid("rate"), uid("t"), requests=1, window_s=10, concurrent=None, lease_s=10) is None


async def test_admit_holds_concurrency_slots_until_released_or_expired(store: JobStore, uid: Uid) -> None:
    counter = uid("slots")
    first, second, third = uid("t"), uid("t"), uid("t")

    async def admit(token: str, lease_s: float = 10) -> float | None:
        return await store.admit(counter, token, requests=None, window_s=10, concurrent=2, lease_s=lease_s)

    assert await admit(first) is None
    assert await admit(second, lease_s=0.3) is None
    assert await admit(third) is not None
    await store.release(counter, first)
    assert await admit(third) is None
    assert await admit(uid("t")) is not None
    # A lease that runs out frees its slot (a gateway died holding it)...
    await asyncio.sleep(0.4)
    fourth = uid("t")
    assert await admit(fourth, lease_s=0.3) is None
    # ...unless it is renewed.
    await store.renew([(counter, fourth), (counter, third)], 10)
    await asyncio.sleep(0.4)
    assert await admit(uid("t")) is not None


async def test_admit_refused_by_concurrency_counts_no_request(store: JobStore, uid: Uid) -> None:
    counter = uid("both")
    assert await store.admit(counter, uid("t"), requests=2, window_s=10, concurrent=1, lease_s=10) is None
    assert await store.admit(counter, uid("t"), requests=2, window_s=10, concurrent=1, lease_s=10) is not None
    # The refused one took no request from the window: one more request still fits in it.
    await store.admit(counter, uid("t"), requests=2, window_s=10, concurrent=None, lease_s=10)
    assert await store.admit(counter, uid("t"), requests=2, window_s=10, concurrent=None, lease_s=10) is not None
