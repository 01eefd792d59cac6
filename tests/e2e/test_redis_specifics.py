"""RedisStore behaviour beyond the shared contract, against a private redis-server process."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis as sync_redis

from skiff_core.jobs import JobRecord, JobStatus, WorkerRecord
from skiff_core.store.redis import RedisStore
from tests.support.services import RedisServer, redis_server

S = JobStatus


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as srv:
        yield srv


@pytest.fixture
def prefix() -> str:
    return f"r{uuid.uuid4().hex[:8]}:"


@pytest.fixture
async def stores(server: RedisServer, prefix: str) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    """Two stores on one Redis: two gateway replicas. Waiters re-check only every 60 s, so a wake-up
    seen sooner came through pub/sub."""
    a = RedisStore(server.url(), prefix, recheck_s=60)
    b = RedisStore(server.url(), prefix, recheck_s=60)
    yield a, b
    await a.close()
    await b.close()


def _job(job_id: str = "j1", **fields: object) -> JobRecord:
    return JobRecord.model_validate({"id": job_id, "endpoint": "ep", "deadline_at": time.time() + 600, **fields})


async def test_racing_completions_have_one_winner(stores: tuple[RedisStore, RedisStore]) -> None:
    a, b = stores
    await a.create(_job(status=S.IN_PROGRESS, worker_id="w1"))
    results = await asyncio.gather(
        *(
            store.transition("j1", expect=[S.IN_PROGRESS], status=S.COMPLETED, output=i)
            for i in range(20)
            for store in (a, b)
        )
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert (await b.get("j1")) == winners[0]
    assert (await a.counts("ep"))[S.COMPLETED] == 1 and (await a.counts("ep"))[S.IN_PROGRESS] == 0
    assert await a.jobs_of_worker("w1") == []


async def test_cancelled_job_cannot_come_back(stores: tuple[RedisStore, RedisStore]) -> None:
    a, b = stores
    await a.create(_job())
    assert await a.transition("j1", expect=[S.IN_QUEUE, S.IN_PROGRESS], status=S.CANCELLED)
    assert await b.transition("j1", expect=[S.IN_QUEUE], status=S.IN_PROGRESS, worker_id="w") is None
    assert await b.transition("j1", expect=[S.IN_PROGRESS], status=S.COMPLETED) is None
    assert (await a.get("j1")).status is S.CANCELLED  # type: ignore[union-attr]


async def test_wait_final_wakes_on_another_replica(stores: tuple[RedisStore, RedisStore]) -> None:
    a, b = stores
    await a.create(_job(status=S.IN_PROGRESS))

    async def other_replica() -> None:
        await asyncio.sleep(0.2)
        await b.transition("j1", expect=[S.IN_PROGRESS], status=S.COMPLETED, output="done")
        # Deleted later: a waiter that only woke at its timeout would see nothing at all.
        await asyncio.sleep(3)
        await b.delete("j1")

    task = asyncio.create_task(other_replica())
    job = await a.wait_final("j1", timeout=10)
    assert job is not None and job.status is S.COMPLETED and job.output == "done"
    await task


async def test_wait_stream_wakes_on_another_replica(stores: tuple[RedisStore, RedisStore]) -> None:
    a, b = stores
    await a.create(_job(status=S.IN_PROGRESS))

    async def other_replica() -> None:
        await asyncio.sleep(0.2)
        await b.append_stream("j1", [{"token": "a"}])
        await asyncio.sleep(3)
        await b.append_stream("j1", [{"token": "b"}])

    task = asyncio.create_task(other_replica())
    await a.wait_stream("j1", 0, timeout=10)
    assert await a.read_stream("j1") == [{"token": "a"}]
    task.cancel()


async def test_stop_signal_wakes_a_blocked_take(stores: tuple[RedisStore, RedisStore]) -> None:
    a, b = stores
    waiting = asyncio.create_task(a.take_stops("w1", wait=10))
    await asyncio.sleep(0.2)
    await b.signal_stop("w1", "j1")
    await b.signal_stop("w1", "j1")
    stops = await waiting
    assert stops[0] == "j1"
    assert set(stops + await a.take_stops("w1", wait=0)) == {"j1"}


async def test_records_expire_after_deadline_plus_grace(server: RedisServer, prefix: str) -> None:
    store = RedisStore(server.url(), prefix, expiry_grace_s=100)
    raw = sync_redis.Redis.from_url(server.url())
    try:
        await store.create(_job(deadline_at=time.time() + 50))
        await store.append_stream("j1", [1])
        for key in (f"{prefix}job:j1", f"{prefix}stream:j1"):
            assert 140_000 < raw.pttl(key) <= 150_000
        # Final: retention starts; the TTL follows the new deadline.
        await store.transition("j1", expect=[S.IN_QUEUE], status=S.COMPLETED, deadline_at=time.time() + 10)
        assert 100_000 < raw.pttl(f"{prefix}job:j1") <= 110_000
    finally:
        raw.close()
        await store.close()


async def test_counts_and_due_survive_redis_expiring_a_job(server: RedisServer, prefix: str) -> None:
    store = RedisStore(server.url(), prefix, expiry_grace_s=0.3)
    try:
        await store.create(_job(status=S.IN_PROGRESS, worker_id="w1", retries=2, deadline_at=time.time()))
        assert (await store.counts("ep"))[S.IN_PROGRESS] == 1
        assert await store.retried_count("ep") == 1
        await asyncio.sleep(0.6)  # the controller was away: Redis dropped the key on its own
        assert await store.get("j1") is None
        assert (await store.counts("ep"))[S.IN_PROGRESS] == 0
        assert await store.retried_count("ep") == 0
        assert await store.due(time.time() + 10) == []
        assert await store.jobs_of_worker("w1") == []
    finally:
        await store.close()


async def test_prefixes_isolate_installations(server: RedisServer) -> None:
    one, two = RedisStore(server.url(), "one:"), RedisStore(server.url(), "two:")
    try:
        await one.create(_job())
        await one.upsert_worker(WorkerRecord(id="w1", endpoint="ep"))
        assert await two.get("j1") is None
        assert (await two.counts("ep"))[S.IN_QUEUE] == 0
        assert await two.list_workers() == []
        await two.create(_job())  # same id, other installation: no clash
    finally:
        await one.close()
        await two.close()


async def test_values_keep_their_json_shape(stores: tuple[RedisStore, RedisStore]) -> None:
    a, _ = stores
    tricky = {"empty_list": [], "empty_dict": {}, "big": 2**62, "float": 0.1, "text": "ünï\u2028", "none": None}
    await a.create(_job(input=tricky))
    done = await a.transition("j1", expect=[S.IN_QUEUE], status=S.COMPLETED, output=[tricky])
    assert done is not None and done.input == tricky and done.output == [tricky]
    assert (await a.get("j1")) == done


async def test_bad_changes_write_nothing(stores: tuple[RedisStore, RedisStore]) -> None:
    a, _ = stores
    await a.create(_job())
    with pytest.raises(ValueError):
        await a.transition("j1", expect=[S.IN_QUEUE], status="BOGUS")
    with pytest.raises(ValueError, match="not JobRecord fields"):
        await a.transition("j1", expect=[S.IN_QUEUE], colour="red")
    with pytest.raises(ValueError, match="already exists"):
        await a.create(_job())
    assert (await a.get("j1")).status is S.IN_QUEUE  # type: ignore[union-attr]


def test_missing_redis_server_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="redis-server"), redis_server(tmp_path):
        pass


async def test_batched_commands_each_get_their_own_reply_or_error(server: RedisServer, prefix: str) -> None:
    import redis.asyncio as aioredis
    from redis.exceptions import ResponseError

    from skiff_core.store.redis_batch import MAX_IN_FLIGHT, CommandBatcher

    client = aioredis.Redis.from_url(server.url(), decode_responses=True)
    batcher = CommandBatcher(client)
    await client.set(f"{prefix}string", "x")
    for i in range(300):
        await client.hset(f"{prefix}h{i}", "n", str(i))
    sent: list[int] = []
    original = client.connection_pool.get_connection

    async def counting_get_connection(*args: object, **kwargs: object) -> object:
        sent.append(1)
        return await original(*args, **kwargs)  # type: ignore[arg-type]

    client.connection_pool.get_connection = counting_get_connection  # type: ignore[method-assign]
    replies = await asyncio.gather(
        *(batcher.command("HGETALL", f"{prefix}h{i}") for i in range(300)),
        batcher.command("HGETALL", f"{prefix}string"),  # the wrong type: an error for this one only
        return_exceptions=True,
    )
    assert replies[:300] == [{"n": str(i)} for i in range(300)]  # a RESP3 map, as Redis sent it
    assert isinstance(replies[300], ResponseError) and "WRONGTYPE" in str(replies[300])
    # 301 commands in one turn: full batches of 64 and the rest, not a round trip each.
    assert len(sent) <= 301 // 64 + MAX_IN_FLIGHT + 1
    await batcher.close()
    await client.aclose()


async def test_batches_survive_a_dropped_connection_and_bad_values_fail_alone(server: RedisServer, prefix: str) -> None:
    import redis.asyncio as aioredis
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import DataError

    from skiff_core.store.redis_batch import CommandBatcher

    client = aioredis.Redis.from_url(server.url(), decode_responses=True)
    batcher = CommandBatcher(client)
    assert await batcher.command("SET", f"{prefix}k", "v1") == "OK"
    # Redis drops every client connection, the pooled one included: the next batch finds it dead.
    admin = aioredis.Redis.from_url(server.url())
    await admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    await admin.aclose()
    # The batch on the dead connection fails as redis-py's own pipelines fail there (this client
    # has no retries configured); the next one goes out on a fresh connection.
    with contextlib.suppress(RedisConnectionError):
        await batcher.command("GET", f"{prefix}k")
    assert await batcher.command("GET", f"{prefix}k") == "v1"
    results = await asyncio.gather(
        batcher.command("SET", f"{prefix}k", None), batcher.command("GET", f"{prefix}k"), return_exceptions=True
    )
    assert isinstance(results[0], DataError) and results[1] == "v1"
    await batcher.close()
    await client.aclose()


async def test_a_script_redis_forgot_is_loaded_again(stores: tuple[RedisStore, RedisStore]) -> None:
    a, _b = stores
    await a.create(_job("j-flush", status=S.IN_QUEUE))
    await a._redis.script_flush()
    updated = await a.transition("j-flush", expect=(S.IN_QUEUE,), status=S.CANCELLED)
    assert updated is not None and updated.status is S.CANCELLED


async def test_a_waiter_gets_a_final_record_made_in_its_own_process_without_reading_it_back(
    stores: tuple[RedisStore, RedisStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = stores
    await a.create(_job("j-local", status=S.IN_PROGRESS, worker_id="w1"))
    reads = _count_reads(a, monkeypatch)
    waiting = asyncio.create_task(a.wait_final("j-local", 30))
    while not reads:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    before = len(reads)  # the first look (and any re-check the listener's start caused)
    done = await a.transition("j-local", expect=(S.IN_PROGRESS,), status=S.COMPLETED, output={"ok": 1})
    final = await asyncio.wait_for(waiting, 5)
    assert final == done and final is not None and final.output == {"ok": 1}
    assert len(reads) == before  # nothing read back after the transition
    # Another process's waiter still wakes, through the published event.
    await a.create(_job("j-remote", status=S.IN_PROGRESS, worker_id="w1"))
    remote = asyncio.create_task(b.wait_final("j-remote", 30))
    await asyncio.sleep(0.2)
    await a.transition("j-remote", expect=(S.IN_PROGRESS,), status=S.FAILED, error="boom")
    got = await asyncio.wait_for(remote, 5)
    assert got is not None and got.status is S.FAILED


async def test_a_runsync_waiter_takes_the_job_it_just_created_for_its_first_look(
    stores: tuple[RedisStore, RedisStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = stores
    job = _job("j-fresh", status=S.IN_QUEUE)
    await a.create(job)
    reads = _count_reads(a, monkeypatch)
    waiting = asyncio.create_task(a.wait_final("j-fresh", 30, fresh=job))
    await asyncio.sleep(0.3)
    assert reads == [] and not waiting.done()
    # Finished by another process: its event wakes the waiter, which reads the outcome.
    await b.transition("j-fresh", expect=(S.IN_QUEUE,), status=S.CANCELLED)
    final = await asyncio.wait_for(waiting, 5)
    assert final is not None and final.status is S.CANCELLED and reads == ["j-fresh"]
    # With nothing happening, the wait ends with the record it was given.
    other = _job("j-idle", status=S.IN_QUEUE)
    await a.create(other)
    assert await a.wait_final("j-idle", 0.2, fresh=other) == other


def _count_reads(store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the jobs `store.get` is asked for from now on."""
    reads: list[str] = []
    real_get = store.get

    async def counted_get(job_id: str) -> JobRecord | None:
        reads.append(job_id)
        return await real_get(job_id)

    monkeypatch.setattr(store, "get", counted_get)
    return reads
