"""Job stores: job records, stream chunks, the worker registry and stop signals."""

from skiff_core.store.base import JobStore

__all__ = ["JobStore"]
