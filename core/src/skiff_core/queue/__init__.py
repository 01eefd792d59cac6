"""Job queues with SQS semantics: the embedded SQLite queue and the SQS-compatible one."""

from skiff_core.queue.base import Delivery, JobQueue, QueueStats

__all__ = ["Delivery", "JobQueue", "QueueStats"]
