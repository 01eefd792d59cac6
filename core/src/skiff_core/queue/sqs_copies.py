"""Copies of a message that is still out on lease.

SQS delivers at least once: a standard queue may hand a message out again while an earlier
receive's lease (visibility timeout) still runs, and moto's server does so under concurrent
receives (its receive checks a message's visibility and marks it received without holding the
queue's lock). Handing that copy to a second worker would run the job twice.

So each process remembers the messages it received until their lease ends. A copy received
meanwhile is not handed out; its receipt handle becomes the message's current one, because SQS
acts only on the most recent handle: the holder's later delete and lease extensions, made with
the receipt it was given, go out with the current handle instead.

A lease ends early when the message is deleted or made visible again on purpose (a released or
re-queued delivery). Only this process's own calls are seen: a delivery re-queued by another
process is handed out here once the lease recorded for it has run out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

MAX_TRACKED = 100_000  # leases remembered at once; past this, ended ones are forgotten


@dataclass
class _Lease:
    handle: str  # the most recent receipt handle SQS gave for the message
    end: float  # monotonic
    handles: list[str] = field(default_factory=list)  # every handle given for it meanwhile


class LeasedMessages:
    def __init__(self, max_tracked: int = MAX_TRACKED) -> None:
        self._max = max_tracked
        self._by_id: dict[str, _Lease] = {}
        self._by_handle: dict[str, str] = {}  # any handle of a leased message -> its message id

    def received(self, message_id: str | None, handle: str, lease_end: float) -> bool:
        """Record a receive; False when it is a copy of a message whose earlier receive's lease
        still runs (the caller keeps it from every taker)."""
        if message_id is None:
            return True
        lease = self._by_id.get(message_id)
        if lease is not None and lease.end > time.monotonic():
            lease.handle = handle
            lease.handles.append(handle)
            self._by_handle[handle] = message_id
            return False
        if lease is not None:
            self._forget(message_id)
        self._by_id[message_id] = _Lease(handle, lease_end, [handle])
        self._by_handle[handle] = message_id
        if len(self._by_id) > self._max:
            self._prune()
        return True

    def current(self, handle: str) -> str:
        """The handle SQS acts on for the message `handle` was given for."""
        message_id = self._by_handle.get(handle)
        lease = self._by_id.get(message_id) if message_id is not None else None
        return lease.handle if lease is not None else handle

    def extended(self, handle: str, lease_end: float) -> None:
        message_id = self._by_handle.get(handle)
        if message_id is not None and message_id in self._by_id:
            self._by_id[message_id].end = lease_end

    def ended(self, handle: str) -> None:
        """The message was deleted or made visible again: a later receive of it is no copy."""
        message_id = self._by_handle.get(handle)
        if message_id is not None:
            self._forget(message_id)

    def _forget(self, message_id: str) -> None:
        lease = self._by_id.pop(message_id, None)
        for handle in lease.handles if lease is not None else ():
            self._by_handle.pop(handle, None)

    def _prune(self) -> None:
        now = time.monotonic()
        for message_id in [m for m, lease in self._by_id.items() if lease.end <= now]:
            self._forget(message_id)
