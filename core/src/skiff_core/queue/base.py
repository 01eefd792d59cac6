"""The queue seam. Semantics are SQS's so that AWS SQS, ElasticMQ, LocalStack and moto all fit.

A message carries only a job id; the job itself lives in the job store. Receiving a message
hides it for `lease` seconds (the visibility timeout); a worker that dies loses the lease and
the message becomes visible again with its receive count raised. A message received more than
`max_receives` times is moved to the endpoint's dead-letter queue instead of being delivered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Delivery:
    job_id: str
    receipt: str  # opaque handle for delete/extend; changes on every delivery
    receive_count: int  # 1 on the first delivery
    enqueued_at: float  # epoch seconds


@dataclass(frozen=True, slots=True)
class QueueStats:
    queued: int  # visible, waiting for a worker (normal + low priority)
    in_flight: int  # received, lease not yet expired
    oldest_age_s: float  # age of the oldest visible message, 0 when none


@runtime_checkable
class JobQueue(Protocol):
    async def ensure(self, endpoint: str, *, max_receives: int) -> None:
        """Create (or find) the endpoint's queues; idempotent."""

    async def enqueue(self, endpoint: str, job_id: str, *, low_priority: bool = False) -> None:
        """Durably add a message. Returns only once it would survive a crash of this process."""

    async def receive(self, endpoint: str, *, max_messages: int, lease: float, wait: float) -> list[Delivery]:
        """Up to max_messages visible messages, normal priority first, each leased for `lease` s.

        Waits up to `wait` seconds for one to arrive (long poll); returns [] when none did.
        """

    async def delete(self, endpoint: str, receipt: str) -> None:
        """Acknowledge a delivery. A stale receipt (lease lost and re-delivered) is ignored by the
        embedded queue; SQS may still honour it, so callers delete only with the latest receipt."""

    async def extend(self, endpoint: str, receipt: str, lease: float) -> None:
        """Set the delivery's remaining lease to `lease` s from now (0 makes it visible at once)."""

    async def stats(self, endpoint: str) -> QueueStats: ...

    async def purge(self, endpoint: str) -> list[str]:
        """Drop every visible (not in-flight) message; returns their job ids."""

    async def receive_dead(self, endpoint: str, *, max_messages: int, lease: float) -> list[Delivery]:
        """Messages moved to the dead-letter queue, leased like `receive`; delete with `delete_dead`."""

    async def delete_dead(self, endpoint: str, receipt: str) -> None: ...

    async def close(self) -> None: ...
