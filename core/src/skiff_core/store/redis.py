"""JobStore on Redis (redis-py asyncio): for several gateway replicas sharing one store.

Keys, all under `prefix` (one Redis or a Sentinel-managed primary; the Lua scripts touch keys they
compute, so Redis Cluster is not supported):
  job:<id>                hash, one JSON-encoded value per JobRecord field
  stream:<id>             list of JSON stream items
  deadlines               sorted set id -> deadline_at, for `due`
  ep:<endpoint>:<STATUS>  sorted set id -> expiry time: exact per-status counts for /health
  ep:<endpoint>:retried   sorted set id -> expiry time: jobs delivered more than once
  wjobs:<worker>          set of the worker's IN_PROGRESS job ids
  worker:<id>             WorkerRecord JSON; workers / workers:ep:<endpoint> sets index them
  stops:<worker>          list of job ids to stop, popped with BLPOP
  note:<key>              a note's value, with the note's TTL; `notes` (sorted set key -> expiry
                          time, +inf when none) indexes them for `notes(prefix)`
  events                  pub/sub channel carrying the id of a job that became final, streamed
                          or was deleted: waiters on every replica wake at once
  keys                    hash key id -> ClientKeyRecord JSON (the key's hash, never the key)
  secret:<name>           a server secret (the worker keys' secret), set once
  rate:<counter>          sorted set request token -> admission time (Redis's clock), the
                          requests admitted in the current window
  slots:<counter>         sorted set request token -> lease end: requests in flight

Every write to a job goes through a Lua script (EVALSHA), so the status compare-and-set and the
index updates are one atomic step: a job cannot be completed twice nor revived after a cancel,
and counts never drift. Job keys expire `expiry_grace_s` after their deadline (or after now, if
that is later) as a safety net for a controller that is down: normally the controller deletes
jobs from `due()` first. Index entries of keys that expired that way are pruned by expiry time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Collection
from typing import Any, cast

import orjson
import redis.asyncio as aioredis
from pydantic import TypeAdapter
from redis.exceptions import RedisError

from skiff.aio import wait_event
from skiff_core.jobs import FINAL_STATUSES, JobRecord, JobStatus, WorkerRecord
from skiff_core.keys import ClientKeyRecord
from skiff_core.store.base import Claim
from skiff_core.store.redis_batch import CommandBatcher

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 2.0
# Connections per store (per gateway or controller process). Long polls park on pub/sub, not on a
# connection, so only requests in flight hold one; past the limit a request waits up to
# POOL_WAIT_S for one to come free.
MAX_CONNECTIONS = 256
POOL_WAIT_S = 10.0

_FIELD_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    name: TypeAdapter(info.annotation if info.annotation is not None else Any)
    for name, info in JobRecord.model_fields.items()
}
_STOP_SIGNAL_TTL_S = 24 * 3600

# Shared by the scripts below. Values are stored JSON-encoded; `field` decodes a small one.
_LUA_PRELUDE = """
local FINAL = {COMPLETED = true, FAILED = true, CANCELLED = true, TIMED_OUT = true}

local function field(key, name)
  local raw = redis.call('HGET', key, name)
  if not raw then return nil end
  local value = cjson.decode(raw)
  if value == cjson.null then return nil end
  return value
end

local function snapshot(key)
  return {status = field(key, 'status'), endpoint = field(key, 'endpoint'), worker = field(key, 'worker_id')}
end

local function unindex(p, id, old)
  redis.call('ZREM', p .. 'ep:' .. old.endpoint .. ':' .. old.status, id)
  redis.call('ZREM', p .. 'ep:' .. old.endpoint .. ':retried', id)
  if old.status == 'IN_PROGRESS' and old.worker then
    redis.call('SREM', p .. 'wjobs:' .. old.worker, id)
  end
end

local function reindex(key, skey, p, id, now, grace, old)
  local cur = snapshot(key)
  local deadline_raw = redis.call('HGET', key, 'deadline_at')
  local expire_at = math.max(tonumber(deadline_raw), now) + grace
  if old then unindex(p, id, old) end
  redis.call('ZADD', p .. 'ep:' .. cur.endpoint .. ':' .. cur.status, expire_at, id)
  redis.call('ZADD', p .. 'deadlines', deadline_raw, id)
  if tonumber(redis.call('HGET', key, 'retries') or '0') > 0 then
    redis.call('ZADD', p .. 'ep:' .. cur.endpoint .. ':retried', expire_at, id)
  end
  if cur.status == 'IN_PROGRESS' and cur.worker then
    redis.call('SADD', p .. 'wjobs:' .. cur.worker, id)
  end
  local ms = string.format('%d', math.floor(expire_at * 1000))
  redis.call('PEXPIREAT', key, ms)
  if redis.call('EXISTS', skey) == 1 then redis.call('PEXPIREAT', skey, ms) end
  if FINAL[cur.status] then redis.call('PUBLISH', p .. 'events', id) end
end
"""

# KEYS: job, stream. ARGV: prefix, id, now, grace, field, value, ...
_CREATE = (
    _LUA_PRELUDE
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
reindex(KEYS[1], KEYS[2], ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), nil)
return 1
"""
)

# KEYS: job, stream. ARGV: prefix, id, now, grace, holder (encoded worker_id, or "" for any), n,
# expected status x n, field, value, ...
_TRANSITION = (
    _LUA_PRELUDE
    + """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return false end
local n = tonumber(ARGV[6])
local expected = false
for i = 7, 6 + n do
  if ARGV[i] == current then expected = true break end
end
if not expected then return false end
if ARGV[5] ~= '' and redis.call('HGET', KEYS[1], 'worker_id') ~= ARGV[5] then return false end
local old = snapshot(KEYS[1])
if #ARGV >= 7 + n then redis.call('HSET', KEYS[1], unpack(ARGV, 7 + n)) end
reindex(KEYS[1], KEYS[2], ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), old)
return redis.call('HGETALL', KEYS[1])
"""
)

# KEYS: job, stream. ARGV: prefix, id, now, grace, worker_id, receipt, started_at, retries (each
# JSON-encoded but now), execution id ("" for none). Returns {outcome} or {outcome, flat record}.
_CLAIM = (
    _LUA_PRELUDE
    + """
local status = field(KEYS[1], 'status')
if not status then return {'gone'} end
if FINAL[status] then return {'gone', redis.call('HGETALL', KEYS[1])} end
local now = tonumber(ARGV[3])
local created = field(KEYS[1], 'created_at')
local ttl = field(KEYS[1], 'ttl_s')
if status == 'IN_QUEUE' and now > created + ttl then return {'expired', redis.call('HGETALL', KEYS[1])} end
local old = snapshot(KEYS[1])
local deadline = math.min(now + field(KEYS[1], 'execution_timeout_s'), created + ttl)
redis.call('HSET', KEYS[1], 'status', '"IN_PROGRESS"', 'worker_id', ARGV[5], 'receipt', ARGV[6],
  'started_at', ARGV[7], 'retries', ARGV[8], 'deadline_at', string.format('%.17g', deadline))
if ARGV[9] ~= '' then
  local trace = field(KEYS[1], 'trace')
  if type(trace) == 'table' and next(trace) ~= nil then
    trace['execution_id'] = ARGV[9]
    redis.call('HSET', KEYS[1], 'trace', cjson.encode(trace))
  end
end
reindex(KEYS[1], KEYS[2], ARGV[1], ARGV[2], now, tonumber(ARGV[4]), old)
return {'claimed', redis.call('HGETALL', KEYS[1])}
"""
)

# KEYS: job, stream. ARGV: prefix, id
_DELETE = (
    _LUA_PRELUDE
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then unindex(ARGV[1], ARGV[2], snapshot(KEYS[1])) end
redis.call('ZREM', ARGV[1] .. 'deadlines', ARGV[2])
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('PUBLISH', ARGV[1] .. 'events', ARGV[2])
"""
)

# KEYS: job, stream. ARGV: prefix, id, item, ... Items of a deleted job would never be cleaned up.
_APPEND = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 3, #ARGV, 1000 do
  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
redis.call('PUBLISH', ARGV[1] .. 'events', ARGV[2])
return 1
"""

# KEYS: stops list. Drains it atomically.
_DRAIN = """
local items = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
return items
"""


# KEYS: hits, slots. ARGV: token, requests (-1: none), window_s, concurrent (-1: none), lease_s.
# Redis's clock, not the callers': replicas on several machines share one window.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local requests = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local concurrent = tonumber(ARGV[4])
if requests >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  if redis.call('ZCARD', KEYS[1]) >= requests then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return tostring(math.max(0, tonumber(oldest[2]) + window - now))
  end
end
if concurrent >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= concurrent then return '1' end
  local lease = tonumber(ARGV[5])
  redis.call('ZADD', KEYS[2], now + lease, ARGV[1])
  redis.call('PEXPIRE', KEYS[2], math.ceil(lease * 1000))
end
if requests >= 0 then
  redis.call('ZADD', KEYS[1], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
end
return false
"""

# KEYS: slot sets. ARGV: lease_s, then one token per key.
_RENEW = """
local t = redis.call('TIME')
local until_ = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', until_, ARGV[i + 1])
  redis.call('PEXPIRE', key, math.ceil(tonumber(ARGV[1]) * 1000))
end
"""


def _stops_event(worker_id: str) -> str:
    # On the events channel beside job ids, which never contain a space.
    return f"stops {worker_id}"


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _job_from_hash(flat: dict[str, str]) -> JobRecord:
    return JobRecord.model_validate({name: orjson.loads(raw) for name, raw in flat.items()})


def _job_from_pairs(flat: list[str]) -> JobRecord:
    """A record from a script's HGETALL reply: field, value, field, value, ..."""
    return _job_from_hash(dict(zip(flat[::2], flat[1::2], strict=True)))


class RedisStore:
    """JobStore (every part of it, see skiff_core.store.base) under `prefix` in one Redis."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "skiff:",
        *,
        expiry_grace_s: float = 3600.0,
        recheck_s: float = 5.0,
    ) -> None:
        # A burst of requests beyond the pool waits for a connection instead of failing with
        # "Too many connections" (redis-py's plain pool refuses at its limit).
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            decode_responses=True,
            health_check_interval=30,
            socket_keepalive=True,
            max_connections=MAX_CONNECTIONS,
            timeout=POOL_WAIT_S,
        )
        self._redis: aioredis.Redis = aioredis.Redis(connection_pool=pool)
        self._p = prefix
        self._grace = expiry_grace_s
        # Pub/sub is at-most-once: waiters also re-read now and then in case a message was lost.
        self._recheck_s = recheck_s
        self._create = self._redis.register_script(_CREATE)
        self._transition = self._redis.register_script(_TRANSITION)
        self._claim = self._redis.register_script(_CLAIM)
        self._delete = self._redis.register_script(_DELETE)
        self._append = self._redis.register_script(_APPEND)
        self._drain = self._redis.register_script(_DRAIN)
        self._admit = self._redis.register_script(_ADMIT)
        self._renew = self._redis.register_script(_RENEW)
        self._batch = CommandBatcher(self._redis)
        self._waiters: dict[str, set[asyncio.Event]] = {}
        # Final records of waited-for jobs this process made final, kept until their last waiter leaves.
        self._finals: dict[str, JobRecord] = {}
        self._finishing: dict[str, int] = {}  # job id -> final changes of it in flight here
        self._listener: asyncio.Task[None] | None = None
        self._listener_lock = asyncio.Lock()

    def _job_keys(self, job_id: str) -> list[str]:
        return [f"{self._p}job:{job_id}", f"{self._p}stream:{job_id}"]

    # JobRecords.

    async def create(self, job: JobRecord) -> None:
        fields = [part for name, value in job.model_dump(mode="json").items() for part in (name, _dumps(value))]
        created = await self._batch.script(
            self._create, self._job_keys(job.id), [self._p, job.id, time.time(), self._grace, *fields]
        )
        if not created:
            raise ValueError(f"job {job.id!r} already exists")

    async def get(self, job_id: str) -> JobRecord | None:
        reply = await self._batch.command("HGETALL", f"{self._p}job:{job_id}")
        if not reply:
            return None
        # A map on RESP3 (redis-py's default), a flat list on RESP2.
        return _job_from_hash(reply) if isinstance(reply, dict) else _job_from_pairs(reply)

    async def transition(
        self, job_id: str, *, expect: Collection[JobStatus], holder: str | None = None, **changes: Any
    ) -> JobRecord | None:
        unknown = changes.keys() - _FIELD_ADAPTERS.keys()
        if unknown:
            raise ValueError(f"not JobRecord fields: {', '.join(sorted(unknown))}")
        if "id" in changes and changes["id"] != job_id:
            raise ValueError("transition cannot change a job's id")
        if "endpoint" in changes:
            raise ValueError("transition cannot move a job to another endpoint")
        fields: list[str] = []
        for name, value in changes.items():
            adapter = _FIELD_ADAPTERS[name]
            # Validate before writing: a bad value raises here and nothing is stored.
            fields += [name, _dumps(adapter.dump_python(adapter.validate_python(value), mode="json"))]
        expected = [_dumps(JobStatus(status).value) for status in expect]
        # A final change made here reaches this process's waiters with its record (no read back);
        # meanwhile the event it publishes is not theirs to act on (see _listen).
        finishing = "status" in changes and JobStatus(changes["status"]).final
        if finishing:
            self._finishing[job_id] = self._finishing.get(job_id, 0) + 1
        job: JobRecord | None = None
        try:
            flat = await self._batch.script(
                self._transition,
                self._job_keys(job_id),
                [
                    self._p,
                    job_id,
                    time.time(),
                    self._grace,
                    "" if holder is None else _dumps(holder),
                    len(expected),
                    *expected,
                    *fields,
                ],
            )
            if flat:
                job = _job_from_pairs(flat)
        finally:
            if finishing:
                self._finished_here(job_id, job)
        return job

    def _finished_here(self, job_id: str, job: JobRecord | None) -> None:
        left = self._finishing.pop(job_id, 1) - 1
        if left:
            self._finishing[job_id] = left
        waiters = self._waiters.get(job_id)
        if not waiters:
            return
        if job is not None and job.status.final:
            self._finals[job_id] = job
        # Also when the change did not apply: another process may have made the job final, and
        # its event was skipped while this change was in flight.
        for event in waiters:
            event.set()

    async def claim(
        self, job_id: str, *, worker_id: str, receipt: str | None, now: float, retries: int, execution_id: str | None
    ) -> Claim:
        reply = await self._batch.script(
            self._claim,
            self._job_keys(job_id),
            [
                self._p,
                job_id,
                now,
                self._grace,
                _dumps(worker_id),
                _dumps(receipt),
                _dumps(now),
                _dumps(retries),
                execution_id or "",
            ],
        )
        outcome, flat = reply[0], reply[1] if len(reply) > 1 else None
        job = _job_from_pairs(flat) if flat else None
        return Claim(outcome, job)

    async def delete(self, job_id: str) -> None:
        await self._batch.script(self._delete, self._job_keys(job_id), [self._p, job_id])

    # JobStreams.

    async def append_stream(self, job_id: str, items: list[Any]) -> None:
        if items:
            await self._append(keys=self._job_keys(job_id), args=[self._p, job_id, *map(_dumps, items)])

    async def read_stream(self, job_id: str, start: int = 0) -> list[Any]:
        if start < 0:
            raise ValueError(f"start must not be negative, got {start}")
        raw = cast(list[str], await self._redis.lrange(f"{self._p}stream:{job_id}", start, -1))
        return [orjson.loads(item) for item in raw]

    # Waiting, for JobRecords.wait_final and JobStreams.wait_stream: one pub/sub connection per
    # store, waking per-job asyncio events.

    async def wait_final(self, job_id: str, timeout: float, *, fresh: JobRecord | None = None) -> JobRecord | None:
        async with self._waiter(job_id) as wake:
            deadline = time.monotonic() + max(0.0, timeout)
            while True:
                wake.clear()  # before reading, so a change after the read still wakes us
                job: JobRecord | None
                if fresh is not None:
                    # Just created by the caller: no worker has seen it before this waiter was in place.
                    job, fresh = fresh, None
                else:
                    job = self._finals.get(job_id) or await self.get(job_id)
                if job is None or job.status.final or not await self._sleep(wake, deadline):
                    return job

    async def wait_stream(self, job_id: str, start: int, timeout: float) -> None:
        async with self._waiter(job_id) as wake:
            deadline = time.monotonic() + max(0.0, timeout)
            while True:
                wake.clear()
                pipe = self._redis.pipeline(transaction=False)
                pipe.llen(f"{self._p}stream:{job_id}")
                pipe.hget(f"{self._p}job:{job_id}", "status")
                length, status = await pipe.execute()
                if length > start or status is None or orjson.loads(status) in FINAL_STATUSES:
                    return
                if not await self._sleep(wake, deadline):
                    return

    async def _sleep(self, wake: asyncio.Event, deadline: float) -> bool:
        """Wait for a wake-up or a periodic re-check; False once the deadline has passed."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        await wait_event(wake, min(remaining, self._recheck_s))
        return True

    @contextlib.asynccontextmanager
    async def _waiter(self, job_id: str) -> AsyncIterator[asyncio.Event]:
        await self._ensure_listener()
        event = asyncio.Event()
        self._waiters.setdefault(job_id, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[job_id]
                    self._finals.pop(job_id, None)

    async def _ensure_listener(self) -> None:
        if self._listener is not None:
            return
        async with self._listener_lock:
            if self._listener is not None:
                return
            pubsub = self._redis.pubsub()
            await pubsub.subscribe(f"{self._p}events")
            # Only once the server confirmed the subscription can no publish slip past a waiter.
            deadline = time.monotonic() + 10
            while True:
                message = await pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))
                if message is not None and message["type"] == "subscribe":
                    break
                if time.monotonic() >= deadline:
                    await _bounded_close(pubsub.aclose(), "pub/sub connection")
                    raise TimeoutError("Redis did not confirm the pub/sub subscription within 10 s")
            self._listener = asyncio.create_task(self._listen(pubsub), name="skiff-redis-events")

    async def _listen(self, pubsub: Any) -> None:
        try:
            while True:
                try:
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            if message["data"] in self._finishing:
                                continue  # _finished_here wakes them, with the record
                            for event in self._waiters.get(message["data"], ()):
                                event.set()
                        elif message["type"] == "subscribe":
                            self._wake_all()  # resubscribed after a reconnect: changes may be missed
                except RedisError as exc:
                    log.warning("Redis pub/sub connection lost (%s); reconnecting", exc)
                    self._wake_all()
                    await asyncio.sleep(0.5)
        finally:
            await _bounded_close(pubsub.aclose(), "pub/sub connection")

    def _wake_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.set()

    # JobRecords: queries.

    async def counts(self, endpoint: str) -> dict[JobStatus, int]:
        now = time.time()
        pipe = self._redis.pipeline(transaction=False)
        for status in JobStatus:
            key = f"{self._p}ep:{endpoint}:{status.value}"
            pipe.zremrangebyscore(key, "-inf", f"({now}")  # keys that Redis expired
            pipe.zcard(key)
        replies = await pipe.execute()
        return {status: int(replies[2 * i + 1]) for i, status in enumerate(JobStatus)}

    async def retried_count(self, endpoint: str) -> int:
        key = f"{self._p}ep:{endpoint}:retried"
        pipe = self._redis.pipeline(transaction=False)
        pipe.zremrangebyscore(key, "-inf", f"({time.time()}")
        pipe.zcard(key)
        return int((await pipe.execute())[1])

    async def due(self, now: float, limit: int = 100) -> list[JobRecord]:
        key = f"{self._p}deadlines"
        ids = cast(list[str], await self._redis.zrangebyscore(key, "-inf", now, start=0, num=limit))
        jobs, gone = await self._get_many(ids)
        if gone:
            await self._redis.zrem(key, *gone)
        return jobs

    async def _get_many(self, ids: list[str]) -> tuple[list[JobRecord], list[str]]:
        if not ids:
            return [], []
        pipe = self._redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(f"{self._p}job:{job_id}")
        jobs, gone = [], []
        for job_id, flat in zip(ids, await pipe.execute(), strict=True):
            if flat:
                jobs.append(_job_from_hash(flat))
            else:
                gone.append(job_id)
        return jobs, gone

    async def jobs_of_worker(self, worker_id: str) -> list[JobRecord]:
        key = f"{self._p}wjobs:{worker_id}"
        jobs, gone = await self._get_many(sorted(cast(set[str], await self._redis.smembers(key))))
        if gone:
            await self._redis.srem(key, *gone)
        return [j for j in jobs if j.status is JobStatus.IN_PROGRESS and j.worker_id == worker_id]

    # WorkerRecords.

    async def upsert_worker(self, worker: WorkerRecord) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(f"{self._p}worker:{worker.id}", worker.model_dump_json())
            pipe.sadd(f"{self._p}workers", worker.id)
            pipe.sadd(f"{self._p}workers:ep:{worker.endpoint}", worker.id)
            await pipe.execute()

    async def get_worker(self, worker_id: str) -> WorkerRecord | None:
        raw = await self._redis.get(f"{self._p}worker:{worker_id}")
        return None if raw is None else WorkerRecord.model_validate_json(raw)

    async def list_workers(self, endpoint: str | None = None) -> list[WorkerRecord]:
        index = f"{self._p}workers" if endpoint is None else f"{self._p}workers:ep:{endpoint}"
        ids = sorted(cast(set[str], await self._redis.smembers(index)))
        if not ids:
            return []
        keys = [f"{self._p}worker:{worker_id}" for worker_id in ids]
        raws = cast(list[str | None], await self._redis.mget(keys))
        workers = [WorkerRecord.model_validate_json(raw) for raw in raws if raw is not None]
        # An upsert that moved a worker to another endpoint leaves it in the old endpoint's set.
        return [w for w in workers if endpoint is None or w.endpoint == endpoint]

    async def delete_worker(self, worker_id: str) -> None:
        worker = await self.get_worker(worker_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(f"{self._p}worker:{worker_id}", f"{self._p}stops:{worker_id}")
            pipe.srem(f"{self._p}workers", worker_id)
            if worker is not None:
                pipe.srem(f"{self._p}workers:ep:{worker.endpoint}", worker_id)
            await pipe.execute()

    # StopSignals.

    async def signal_stop(self, worker_id: str, job_id: str) -> None:
        key = f"{self._p}stops:{worker_id}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, job_id)
            pipe.expire(key, _STOP_SIGNAL_TTL_S)  # a worker that never asks again must not leak keys
            pipe.publish(f"{self._p}events", _stops_event(worker_id))
            await pipe.execute()

    async def take_stops(self, worker_id: str, wait: float) -> list[str]:
        # Parked on the shared pub/sub listener, not on a BLPOP: a blocking command would hold
        # a pooled connection per parked worker for the whole wait.
        key = f"{self._p}stops:{worker_id}"
        async with self._waiter(_stops_event(worker_id)) as wake:
            deadline = time.monotonic() + max(0.0, wait)
            while True:
                wake.clear()
                items: list[str] = list(await self._drain(keys=[key]))
                if items or not await self._sleep(wake, deadline):
                    return list(dict.fromkeys(items))  # one signal per job, as often as it was sent

    # Notes.

    async def put_note(self, key: str, value: str, ttl_s: float | None = None) -> None:
        now = time.time()
        expires = math.inf if ttl_s is None else now + ttl_s
        async with self._redis.pipeline(transaction=True) as pipe:
            if ttl_s is None:
                pipe.set(f"{self._p}note:{key}", value)
            else:
                pipe.set(f"{self._p}note:{key}", value, px=max(1, int(ttl_s * 1000)))
            pipe.zadd(f"{self._p}notes", {key: expires})
            # Pruned on write (replicas write twice a second), so reads stay read-only.
            pipe.zremrangebyscore(f"{self._p}notes", "-inf", now)
            await pipe.execute()

    async def notes(self, prefix: str) -> dict[str, str]:
        live = cast(list[str], await self._redis.zrangebyscore(f"{self._p}notes", time.time(), "+inf"))
        keys = [k for k in live if k.startswith(prefix)]
        if not keys:
            return {}
        values = cast(list[str | None], await self._redis.mget([f"{self._p}note:{k}" for k in keys]))
        return {k: v for k, v in zip(keys, values, strict=True) if v is not None}

    # ClientKeys.

    async def put_key(self, record: ClientKeyRecord) -> None:
        await self._redis.hset(f"{self._p}keys", record.id, record.model_dump_json())

    async def get_key(self, key_id: str) -> ClientKeyRecord | None:
        raw = await self._redis.hget(f"{self._p}keys", key_id)
        return None if raw is None else ClientKeyRecord.model_validate_json(raw)

    async def list_keys(self) -> list[ClientKeyRecord]:
        raws = cast(dict[str, str], await self._redis.hgetall(f"{self._p}keys"))
        records = [ClientKeyRecord.model_validate_json(raw) for raw in raws.values()]
        return sorted(records, key=lambda r: (r.created_at, r.id))

    async def delete_key(self, key_id: str) -> bool:
        return bool(await self._redis.hdel(f"{self._p}keys", key_id))

    async def server_secret(self, name: str, candidate: str) -> str:
        key = f"{self._p}secret:{name}"
        await self._redis.set(key, candidate, nx=True)
        value = await self._redis.get(key)
        if value is None:
            raise RuntimeError(f"Redis lost the secret {name!r} it was just given")
        return str(value)

    # RateCounters.

    async def admit(
        self,
        key: str,
        token: str,
        *,
        requests: int | None,
        window_s: float,
        concurrent: int | None,
        lease_s: float,
    ) -> float | None:
        wait = await self._admit(
            keys=[f"{self._p}rate:{key}", f"{self._p}slots:{key}"],
            args=[
                token,
                -1 if requests is None else requests,
                window_s,
                -1 if concurrent is None else concurrent,
                lease_s,
            ],
        )
        return None if wait is None else float(wait)

    async def renew(self, slots: list[tuple[str, str]], lease_s: float) -> None:
        if slots:
            await self._renew(
                keys=[f"{self._p}slots:{key}" for key, _ in slots], args=[lease_s, *(token for _, token in slots)]
            )

    async def release(self, key: str, token: str) -> None:
        await self._redis.zrem(f"{self._p}slots:{key}", token)

    # Closeable.

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        await _bounded_close(self._batch.close(), "command batches")
        await _bounded_close(self._redis.aclose(), "connection pool")


async def _bounded_close(closing: Awaitable[None], what: str) -> None:
    """redis-py's asyncio close can hang in StreamWriter.wait_closed (redis/redis-py#3941, open):
    a process stopping must not wait on it. The sockets go when the process exits."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await closing
    except (TimeoutError, RedisError, OSError) as exc:
        log.warning("closing the Redis %s did not finish cleanly (%s); leaving it", what, type(exc).__name__)
