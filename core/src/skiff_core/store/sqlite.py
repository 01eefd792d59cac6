"""The embedded job store on the shared SQLite file (see skiff_core.store.base).

A job is one row: the JobRecord as JSON plus the columns the store searches by (endpoint, status,
worker, deadline, retries), rewritten together so that they never disagree. `transition` reads
and writes under BEGIN IMMEDIATE, which makes its status check a compare-and-set across
processes. Retention is the caller's: it sets `deadline_at`, finds expired jobs with `due` and
deletes them.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import orjson

from skiff_core.embedded_db import EmbeddedDb, WriteTransaction
from skiff_core.jobs import FINAL_STATUSES, JobRecord, JobStatus, WorkerRecord
from skiff_core.keys import ClientKeyRecord
from skiff_core.spec import MAX_RATE_WINDOW_S
from skiff_core.store.base import Claim

_FINAL_VALUES = frozenset(status.value for status in FINAL_STATUSES)
_STATUS = {status.value: status for status in JobStatus}
_JOB_FIELDS = frozenset(JobRecord.model_fields)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY,
        endpoint TEXT NOT NULL,
        status TEXT NOT NULL,
        worker_id TEXT,
        deadline_at REAL NOT NULL,
        retries INTEGER NOT NULL,
        record TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (endpoint, status)",
    "CREATE INDEX IF NOT EXISTS jobs_by_deadline ON jobs (deadline_at)",
    # Partial indexes stay small: only retried jobs, only jobs in progress.
    "CREATE INDEX IF NOT EXISTS jobs_retried ON jobs (endpoint) WHERE retries > 0",
    "CREATE INDEX IF NOT EXISTS jobs_running ON jobs (worker_id) WHERE status = 'IN_PROGRESS'",
    """CREATE TABLE IF NOT EXISTS job_stream (
        job_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        item TEXT NOT NULL,
        PRIMARY KEY (job_id, seq)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS workers (
        id TEXT PRIMARY KEY,
        endpoint TEXT NOT NULL,
        record TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS workers_by_endpoint ON workers (endpoint)",
    """CREATE TABLE IF NOT EXISTS stop_signals (
        id INTEGER PRIMARY KEY,
        worker_id TEXT NOT NULL,
        job_id TEXT NOT NULL,
        UNIQUE (worker_id, job_id)
    )""",
    """CREATE TABLE IF NOT EXISTS notes (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        expires_at REAL
    )""",
    """CREATE TABLE IF NOT EXISTS client_keys (
        id TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        record TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS secrets (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    # Rate limits: one row per admitted request still inside its window, one per held slot.
    """CREATE TABLE IF NOT EXISTS rate_hits (
        key TEXT NOT NULL,
        at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS rate_hits_by_key ON rate_hits (key, at)",
    "CREATE INDEX IF NOT EXISTS rate_hits_by_age ON rate_hits (at)",
    """CREATE TABLE IF NOT EXISTS rate_slots (
        token TEXT PRIMARY KEY,
        key TEXT NOT NULL,
        until REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS rate_slots_by_key ON rate_slots (key, until)",
)

_INSERT_JOB = """INSERT INTO jobs (id, endpoint, status, worker_id, deadline_at, retries, record)
    VALUES (?, ?, ?, ?, ?, ?, ?)"""
_UPDATE_JOB = """UPDATE jobs SET endpoint = ?, status = ?, worker_id = ?, deadline_at = ?, retries = ?,
    record = ? WHERE id = ?"""
_STREAM_STATE = """SELECT (SELECT status FROM jobs WHERE id = ?1),
    EXISTS (SELECT 1 FROM job_stream WHERE job_id = ?1 AND seq >= ?2)"""


class SqliteStore:
    """JobStore (every part of it, see skiff_core.store.base) on `path`; may share the file (and,
    within a process, the connection) with the queue."""

    def __init__(self, path: Path) -> None:
        self._db = EmbeddedDb.open(path, name="store", schema=_SCHEMA)
        self._conn = self._db.conn
        self._closed = False

    # JobRecords.

    async def create(self, job: JobRecord) -> None:
        try:
            # A lone INSERT is its own transaction: committed (durable, see skiff_core.embedded_db) on return.
            self._conn.execute(_INSERT_JOB, (job.id, *_columns(job), job.model_dump_json()))
        except sqlite3.IntegrityError:
            raise ValueError(f"job {job.id!r} already exists") from None

    async def get(self, job_id: str) -> JobRecord | None:
        return self._get(job_id)

    def _get(self, job_id: str) -> JobRecord | None:
        row = self._conn.execute("SELECT record FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else JobRecord.model_validate_json(row[0])

    async def transition(
        self, job_id: str, *, expect: Collection[JobStatus], holder: str | None = None, **changes: Any
    ) -> JobRecord | None:
        unknown = changes.keys() - _JOB_FIELDS
        if unknown:
            raise ValueError(f"not JobRecord fields: {', '.join(sorted(unknown))}")
        if "id" in changes and changes["id"] != job_id:
            raise ValueError("transition cannot change a job's id")
        conn = self._conn
        with WriteTransaction(conn):
            row = conn.execute("SELECT status, worker_id, record FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or _STATUS[row[0]] not in expect or (holder is not None and row[1] != holder):
                return None
            # Validating the merged fields checks the changes too (a bad value raises, nothing is written).
            job = JobRecord.model_validate({**orjson.loads(row[2]), **changes})
            conn.execute(_UPDATE_JOB, (*_columns(job), job.model_dump_json(), job_id))
        if job.status in FINAL_STATUSES:  # the only change wait_final and wait_stream wait for
            self._db.waiter.notify(("job", job_id))
        return job

    async def claim(
        self, job_id: str, *, worker_id: str, receipt: str | None, now: float, retries: int, execution_id: str | None
    ) -> Claim:
        conn = self._conn
        with WriteTransaction(conn):
            row = conn.execute("SELECT record FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return Claim("gone", None)
            job = JobRecord.model_validate_json(row[0])
            if job.status in FINAL_STATUSES:
                return Claim("gone", job)
            if job.status is JobStatus.IN_QUEUE and now > job.created_at + job.ttl_s:
                return Claim("expired", job)
            changes: dict[str, Any] = {
                "status": JobStatus.IN_PROGRESS,
                "worker_id": worker_id,
                "receipt": receipt,
                "started_at": now,
                "retries": retries,
                "deadline_at": min(now + job.execution_timeout_s, job.created_at + job.ttl_s),
            }
            if execution_id is not None and job.trace:
                changes["trace"] = {**job.trace, "execution_id": execution_id}
            job = job.model_copy(update=changes)
            conn.execute(_UPDATE_JOB, (*_columns(job), job.model_dump_json(), job_id))
        return Claim("claimed", job)

    async def delete(self, job_id: str) -> None:
        with WriteTransaction(self._conn) as conn:
            conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            conn.execute("DELETE FROM job_stream WHERE job_id = ?", (job_id,))
        self._db.waiter.notify(("job", job_id))

    async def wait_final(self, job_id: str, timeout: float, *, fresh: JobRecord | None = None) -> JobRecord | None:
        # `fresh` is not needed: the first look is a local read of the file.
        def check() -> tuple[bool, None]:
            row = self._conn.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return row is None or row[0] in _FINAL_VALUES, None

        await self._db.waiter.wait_until(("job", job_id), check, max(timeout, 0.0))
        return self._get(job_id)

    # JobStreams.

    async def append_stream(self, job_id: str, items: list[Any]) -> None:
        encoded = [json.dumps(item) for item in items]
        if not encoded:
            return
        with WriteTransaction(self._conn) as conn:
            # Items for a job already deleted would never be cleaned up: drop them.
            if conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is None:
                return
            (start,) = conn.execute(
                "SELECT COALESCE(MAX(seq) + 1, 0) FROM job_stream WHERE job_id = ?", (job_id,)
            ).fetchone()
            conn.executemany(
                "INSERT INTO job_stream (job_id, seq, item) VALUES (?, ?, ?)",
                [(job_id, start + i, item) for i, item in enumerate(encoded)],
            )
        self._db.waiter.notify(("job", job_id))

    async def read_stream(self, job_id: str, start: int = 0) -> list[Any]:
        if start < 0:
            raise ValueError(f"start must not be negative, got {start}")
        rows = self._conn.execute(
            "SELECT item FROM job_stream WHERE job_id = ? AND seq >= ? ORDER BY seq", (job_id, start)
        ).fetchall()
        return [json.loads(item) for (item,) in rows]

    async def wait_stream(self, job_id: str, start: int, timeout: float) -> None:
        def check() -> tuple[bool, None]:
            status, more = self._conn.execute(_STREAM_STATE, (job_id, start)).fetchone()
            return bool(more) or status is None or status in _FINAL_VALUES, None

        await self._db.waiter.wait_until(("job", job_id), check, max(timeout, 0.0))

    # JobRecords: queries.

    async def counts(self, endpoint: str) -> dict[JobStatus, int]:
        counts = dict.fromkeys(JobStatus, 0)
        for status, n in self._conn.execute(
            "SELECT status, COUNT(*) FROM jobs WHERE endpoint = ? GROUP BY status", (endpoint,)
        ):
            counts[_STATUS[status]] = n
        return counts

    async def retried_count(self, endpoint: str) -> int:
        row = self._conn.execute("SELECT COUNT(*) FROM jobs WHERE endpoint = ? AND retries > 0", (endpoint,)).fetchone()
        return int(row[0])

    async def due(self, now: float, limit: int = 100) -> list[JobRecord]:
        rows = self._conn.execute(
            "SELECT record FROM jobs WHERE deadline_at <= ? ORDER BY deadline_at LIMIT ?", (now, limit)
        ).fetchall()
        return [JobRecord.model_validate_json(record) for (record,) in rows]

    async def jobs_of_worker(self, worker_id: str) -> list[JobRecord]:
        rows = self._conn.execute(
            "SELECT record FROM jobs WHERE worker_id = ? AND status = 'IN_PROGRESS'", (worker_id,)
        ).fetchall()
        return [JobRecord.model_validate_json(record) for (record,) in rows]

    # WorkerRecords.

    async def upsert_worker(self, worker: WorkerRecord) -> None:
        self._conn.execute(
            "INSERT INTO workers (id, endpoint, record) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET endpoint = excluded.endpoint, record = excluded.record",
            (worker.id, worker.endpoint, worker.model_dump_json()),
        )

    async def get_worker(self, worker_id: str) -> WorkerRecord | None:
        row = self._conn.execute("SELECT record FROM workers WHERE id = ?", (worker_id,)).fetchone()
        return None if row is None else WorkerRecord.model_validate_json(row[0])

    async def list_workers(self, endpoint: str | None = None) -> list[WorkerRecord]:
        if endpoint is None:
            rows = self._conn.execute("SELECT record FROM workers ORDER BY id").fetchall()
        else:
            rows = self._conn.execute(
                "SELECT record FROM workers WHERE endpoint = ? ORDER BY id", (endpoint,)
            ).fetchall()
        return [WorkerRecord.model_validate_json(record) for (record,) in rows]

    async def delete_worker(self, worker_id: str) -> None:
        with WriteTransaction(self._conn) as conn:
            conn.execute("DELETE FROM workers WHERE id = ?", (worker_id,))
            conn.execute("DELETE FROM stop_signals WHERE worker_id = ?", (worker_id,))

    # StopSignals.

    async def signal_stop(self, worker_id: str, job_id: str) -> None:
        self._conn.execute("INSERT OR IGNORE INTO stop_signals (worker_id, job_id) VALUES (?, ?)", (worker_id, job_id))
        self._db.waiter.notify(("stop", worker_id))

    async def take_stops(self, worker_id: str, wait: float) -> list[str]:
        def check() -> tuple[bool, list[str]]:
            # Look before deleting: an empty DELETE would still take the write lock on every poll.
            peek = "SELECT 1 FROM stop_signals WHERE worker_id = ? LIMIT 1"
            if self._conn.execute(peek, (worker_id,)).fetchone() is None:
                return False, []
            rows = self._conn.execute(
                "DELETE FROM stop_signals WHERE worker_id = ? RETURNING job_id", (worker_id,)
            ).fetchall()
            return bool(rows), [job_id for (job_id,) in rows]

        if wait <= 0:
            return check()[1]
        return (await self._db.waiter.wait_until(("stop", worker_id), check, wait))[1]

    # Notes.

    async def put_note(self, key: str, value: str, ttl_s: float | None = None) -> None:
        now = time.time()
        with WriteTransaction(self._conn) as conn:
            conn.execute(
                "INSERT INTO notes (key, value, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
                (key, value, None if ttl_s is None else now + ttl_s),
            )
            # Notes are few (one per gateway replica and a handful more): pruning here is cheap.
            conn.execute("DELETE FROM notes WHERE expires_at <= ?", (now,))

    async def notes(self, prefix: str) -> dict[str, str]:
        rows = self._conn.execute(
            "SELECT key, value FROM notes WHERE substr(key, 1, ?) = ? AND (expires_at IS NULL OR expires_at > ?)",
            (len(prefix), prefix, time.time()),
        ).fetchall()
        return dict(rows)

    # ClientKeys.

    async def put_key(self, record: ClientKeyRecord) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO client_keys (id, created_at, record) VALUES (?, ?, ?)",
            (record.id, record.created_at, record.model_dump_json()),
        )

    async def get_key(self, key_id: str) -> ClientKeyRecord | None:
        row = self._conn.execute("SELECT record FROM client_keys WHERE id = ?", (key_id,)).fetchone()
        return None if row is None else ClientKeyRecord.model_validate_json(row[0])

    async def list_keys(self) -> list[ClientKeyRecord]:
        rows = self._conn.execute("SELECT record FROM client_keys ORDER BY created_at, id").fetchall()
        return [ClientKeyRecord.model_validate_json(record) for (record,) in rows]

    async def delete_key(self, key_id: str) -> bool:
        return self._conn.execute("DELETE FROM client_keys WHERE id = ?", (key_id,)).rowcount > 0

    async def server_secret(self, name: str, candidate: str) -> str:
        with WriteTransaction(self._conn) as conn:
            conn.execute("INSERT OR IGNORE INTO secrets (name, value) VALUES (?, ?)", (name, candidate))
            (value,) = conn.execute("SELECT value FROM secrets WHERE name = ?", (name,)).fetchone()
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
        now = time.time()
        with WriteTransaction(self._conn) as conn:
            if requests is not None:
                conn.execute("DELETE FROM rate_hits WHERE key = ? AND at <= ?", (key, now - window_s))
                # Counters nobody uses any more: their rows go once no window can reach them.
                conn.execute("DELETE FROM rate_hits WHERE at <= ?", (now - MAX_RATE_WINDOW_S,))
                count, oldest = conn.execute("SELECT COUNT(*), MIN(at) FROM rate_hits WHERE key = ?", (key,)).fetchone()
                if count >= requests:
                    return max(0.0, oldest + window_s - now)
            if concurrent is not None:
                conn.execute("DELETE FROM rate_slots WHERE until <= ?", (now,))
                (held,) = conn.execute("SELECT COUNT(*) FROM rate_slots WHERE key = ?", (key,)).fetchone()
                if held >= concurrent:
                    return 1.0  # a slot frees when a request ends: no better guess than soon
                conn.execute(
                    "INSERT OR REPLACE INTO rate_slots (token, key, until) VALUES (?, ?, ?)",
                    (token, key, now + lease_s),
                )
            if requests is not None:
                conn.execute("INSERT INTO rate_hits (key, at) VALUES (?, ?)", (key, now))
        return None

    async def renew(self, slots: list[tuple[str, str]], lease_s: float) -> None:
        if slots:
            until = time.time() + lease_s
            with WriteTransaction(self._conn) as conn:
                conn.executemany(
                    "UPDATE rate_slots SET until = ? WHERE token = ? AND key = ?",
                    [(until, token, key) for key, token in slots],
                )

    async def release(self, key: str, token: str) -> None:
        self._conn.execute("DELETE FROM rate_slots WHERE token = ? AND key = ?", (token, key))

    # Closeable.

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.release()


def _columns(job: JobRecord) -> tuple[str, str, str | None, float, int]:
    return job.endpoint, job.status.value, job.worker_id, job.deadline_at, job.retries
