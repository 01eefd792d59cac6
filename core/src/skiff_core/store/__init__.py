"""Job stores: job records, stream chunks, the worker registry, stop signals and notes."""

from skiff_core.store.base import (
    Closeable,
    JobRecords,
    JobStore,
    JobStreams,
    Notes,
    StopSignals,
    WorkerRecords,
)

__all__ = ["Closeable", "JobRecords", "JobStore", "JobStreams", "Notes", "StopSignals", "WorkerRecords"]
