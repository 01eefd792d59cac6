"""The one place that turns configuration into implementations of the seams.

Nothing else in Skiff looks at which mode it runs in: the gateway and the controller receive a
JobQueue, a JobStore, a PayloadStore and an Orchestrator and use them through their protocols.
"""

from __future__ import annotations

from skiff.config import Settings
from skiff.payloads.base import PayloadStore
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


def build_payloads(settings: Settings) -> PayloadStore:
    if settings.payloads == "s3":
        from skiff.payloads.s3 import S3Payloads

        if not settings.s3_bucket:
            raise ValueError('payloads = "s3" needs a bucket: set SKIFF_S3_BUCKET or s3_bucket in skiff.toml')
        return S3Payloads(
            settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.aws_region,
            prefix=settings.s3_prefix,
        )
    from skiff.payloads.files import FilePayloads

    return FilePayloads(settings.state_dir / "payloads")
