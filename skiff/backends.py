"""The one place that turns configuration into implementations of the seams.

Nothing else in Skiff looks at which mode it runs in: the gateway and the controller receive a
JobQueue, a JobStore, a PayloadStore and an Orchestrator and use them through their protocols.
"""

from __future__ import annotations

from skiff.config import Settings
from skiff.queue.base import JobQueue
from skiff.store.base import JobStore


def build_queue(settings: Settings) -> JobQueue:
    if settings.queue == "sqs":
        from skiff.queue.sqs import SqsQueue

        return SqsQueue(
            endpoint_url=settings.sqs_endpoint_url,
            region=settings.aws_region,
            prefix=settings.sqs_queue_prefix,
        )
    from skiff.queue.sqlite import SqliteQueue

    settings.state_dir.mkdir(parents=True, exist_ok=True)
    return SqliteQueue(settings.db_path)


def build_store(settings: Settings) -> JobStore:
    if settings.store == "redis":
        from skiff.store.redis import RedisStore

        return RedisStore(settings.redis_url, prefix=settings.redis_prefix)
    from skiff.store.sqlite import SqliteStore

    settings.state_dir.mkdir(parents=True, exist_ok=True)
    return SqliteStore(settings.db_path)
