"""The embedded job queue: SQS semantics on the shared SQLite file (see skiff_core.queue.base).

Each message row is visible when `visible_at <= now`; receiving one moves `visible_at` to the end
of its lease and gives it a fresh receipt `"<row id>:<nonce>"`, so a receipt from an earlier
delivery no longer matches and its delete/extend does nothing. Like SQS's redrive policy
(https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-dead-letter-queues.html)
a message already received `max_receives` times is moved to the dead-letter table by the receive
that would deliver it once more.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

from skiff_core.embedded_db import EmbeddedDb, WriteTransaction
from skiff_core.queue.base import Delivery, QueueStats

NORMAL_LANE = 0
LOW_LANE = 1

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS queue_endpoints (
        endpoint TEXT PRIMARY KEY,
        max_receives INTEGER NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS queue_messages (
        id INTEGER PRIMARY KEY,
        endpoint TEXT NOT NULL,
        lane INTEGER NOT NULL,
        job_id TEXT NOT NULL,
        enqueued_at REAL NOT NULL,
        visible_at REAL NOT NULL,
        receive_count INTEGER NOT NULL DEFAULT 0,
        receipt TEXT
    )""",
    # Receives seek the visible head of one lane; stats count and age both lanes from the index alone.
    """CREATE INDEX IF NOT EXISTS queue_messages_ready
        ON queue_messages (endpoint, lane, visible_at, enqueued_at)""",
    """CREATE TABLE IF NOT EXISTS queue_dead (
        id INTEGER PRIMARY KEY,
        endpoint TEXT NOT NULL,
        job_id TEXT NOT NULL,
        enqueued_at REAL NOT NULL,
        visible_at REAL NOT NULL,
        receive_count INTEGER NOT NULL,
        receipt TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS queue_dead_ready ON queue_dead (endpoint, visible_at)",
)

_PEEK = "SELECT 1 FROM queue_messages WHERE endpoint = ? AND lane IN (0, 1) AND visible_at <= ? LIMIT 1"
_HEAD = """SELECT id, job_id, enqueued_at, receive_count FROM queue_messages
    WHERE endpoint = ? AND lane = ? AND visible_at <= ? ORDER BY visible_at LIMIT ?"""
_LEASE = "UPDATE queue_messages SET receive_count = ?, visible_at = ?, receipt = ? WHERE id = ?"
_TO_DEAD = """INSERT INTO queue_dead (endpoint, job_id, enqueued_at, visible_at, receive_count)
    SELECT endpoint, job_id, enqueued_at, ?, receive_count FROM queue_messages WHERE id = ?"""
_DEAD_HEAD = """SELECT id, job_id, enqueued_at, receive_count FROM queue_dead
    WHERE endpoint = ? AND visible_at <= ? ORDER BY visible_at LIMIT ?"""
_DEAD_LEASE = "UPDATE queue_dead SET receive_count = ?, visible_at = ?, receipt = ? WHERE id = ?"
_STATS = """SELECT
    (SELECT COUNT(*) FROM queue_messages WHERE endpoint = ?1 AND lane IN (0, 1) AND visible_at <= ?2),
    (SELECT COUNT(*) FROM queue_messages WHERE endpoint = ?1 AND lane IN (0, 1) AND visible_at > ?2),
    (SELECT MIN(enqueued_at) FROM queue_messages
        WHERE endpoint = ?1 AND lane IN (0, 1) AND visible_at <= ?2)"""


class SqliteQueue:
    """JobQueue on `path`; may share the file (and, within a process, the connection) with others."""

    def __init__(self, path: Path) -> None:
        self._db = EmbeddedDb.open(path, name="queue", schema=_SCHEMA)
        self._conn = self._db.conn
        self._closed = False

    async def ensure(self, endpoint: str, *, max_receives: int) -> None:
        if max_receives < 1:
            raise ValueError(f"max_receives must be at least 1, got {max_receives}")
        self._conn.execute(
            "INSERT INTO queue_endpoints (endpoint, max_receives) VALUES (?, ?) "
            "ON CONFLICT (endpoint) DO UPDATE SET max_receives = excluded.max_receives",
            (endpoint, max_receives),
        )

    async def enqueue(self, endpoint: str, job_id: str, *, low_priority: bool = False) -> None:
        now = time.time()
        # A lone INSERT is its own transaction: committed (durable, see skiff_core.embedded_db) on return.
        self._conn.execute(
            "INSERT INTO queue_messages (endpoint, lane, job_id, enqueued_at, visible_at) VALUES (?, ?, ?, ?, ?)",
            (endpoint, LOW_LANE if low_priority else NORMAL_LANE, job_id, now, now),
        )
        self._db.waiter.notify(("queue", endpoint))

    async def receive(self, endpoint: str, *, max_messages: int, lease: float, wait: float) -> list[Delivery]:
        _check_receive(max_messages, lease)
        if wait <= 0:
            return self._receive_now(endpoint, max_messages, lease)

        def check() -> tuple[bool, list[Delivery]]:
            deliveries = self._receive_now(endpoint, max_messages, lease)
            return bool(deliveries), deliveries

        return (await self._db.waiter.wait_until(("queue", endpoint), check, wait))[1]

    def _receive_now(self, endpoint: str, max_messages: int, lease: float) -> list[Delivery]:
        conn = self._conn
        now = time.time()
        # Most long-poll wakeups find nothing: look without taking the write lock first.
        if conn.execute(_PEEK, (endpoint, now)).fetchone() is None:
            return []
        deliveries: list[Delivery] = []
        # Strictly after `now` even for lease 0, so the re-reads below do not pick a delivery again.
        leased_until = now + max(lease, 1e-6)
        with WriteTransaction(conn):
            row = conn.execute("SELECT max_receives FROM queue_endpoints WHERE endpoint = ?", (endpoint,)).fetchone()
            max_receives: int | None = row[0] if row else None
            for lane in (NORMAL_LANE, LOW_LANE):
                # Dead-lettering consumes candidates without delivering them: look again until full.
                while len(deliveries) < max_messages:
                    rows = conn.execute(_HEAD, (endpoint, lane, now, max_messages - len(deliveries))).fetchall()
                    if not rows:
                        break
                    for msg_id, job_id, enqueued_at, receive_count in rows:
                        if max_receives is not None and receive_count >= max_receives:
                            conn.execute(_TO_DEAD, (now, msg_id))
                            conn.execute("DELETE FROM queue_messages WHERE id = ?", (msg_id,))
                            continue
                        receipt = f"{msg_id}:{secrets.token_hex(8)}"
                        conn.execute(_LEASE, (receive_count + 1, leased_until, receipt, msg_id))
                        deliveries.append(Delivery(job_id, receipt, receive_count + 1, enqueued_at))
        return deliveries

    async def delete(self, endpoint: str, receipt: str) -> None:
        self._conn.execute(
            "DELETE FROM queue_messages WHERE id = ? AND receipt = ? AND endpoint = ?",
            (_receipt_id(receipt), receipt, endpoint),
        )

    async def extend(self, endpoint: str, receipt: str, lease: float) -> None:
        if lease < 0:
            raise ValueError(f"lease must not be negative, got {lease}")
        self._conn.execute(
            "UPDATE queue_messages SET visible_at = ? WHERE id = ? AND receipt = ? AND endpoint = ?",
            (time.time() + lease, _receipt_id(receipt), receipt, endpoint),
        )
        if lease == 0:
            self._db.waiter.notify(("queue", endpoint))

    async def stats(self, endpoint: str) -> QueueStats:
        now = time.time()
        queued, in_flight, oldest = self._conn.execute(_STATS, (endpoint, now)).fetchone()
        return QueueStats(
            queued=queued, in_flight=in_flight, oldest_age_s=0.0 if oldest is None else max(0.0, now - oldest)
        )

    async def purge(self, endpoint: str) -> list[str]:
        rows = self._conn.execute(
            "DELETE FROM queue_messages WHERE endpoint = ? AND lane IN (0, 1) AND visible_at <= ? RETURNING job_id",
            (endpoint, time.time()),
        ).fetchall()
        return [job_id for (job_id,) in rows]

    async def receive_dead(self, endpoint: str, *, max_messages: int, lease: float) -> list[Delivery]:
        _check_receive(max_messages, lease)
        conn = self._conn
        now = time.time()
        deliveries: list[Delivery] = []
        with WriteTransaction(conn):
            for msg_id, job_id, enqueued_at, receive_count in conn.execute(
                _DEAD_HEAD, (endpoint, now, max_messages)
            ).fetchall():
                receipt = f"{msg_id}:{secrets.token_hex(8)}"
                conn.execute(_DEAD_LEASE, (receive_count + 1, now + lease, receipt, msg_id))
                deliveries.append(Delivery(job_id, receipt, receive_count + 1, enqueued_at))
        return deliveries

    async def delete_dead(self, endpoint: str, receipt: str) -> None:
        self._conn.execute(
            "DELETE FROM queue_dead WHERE id = ? AND receipt = ? AND endpoint = ?",
            (_receipt_id(receipt), receipt, endpoint),
        )

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.release()


def _check_receive(max_messages: int, lease: float) -> None:
    if max_messages < 1:
        raise ValueError(f"max_messages must be at least 1, got {max_messages}")
    if lease < 0:
        raise ValueError(f"lease must not be negative, got {lease}")


def _receipt_id(receipt: str) -> int:
    head, sep, _ = receipt.partition(":")
    try:
        if not sep:
            raise ValueError
        return int(head)
    except ValueError:
        raise ValueError(f"not a receipt of this queue: {receipt!r}") from None
