"""Leader election: exactly one controller is active (a file lock embedded, a Consul lock in a cluster)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class LeaderLock(Protocol):
    async def acquire(self) -> None:
        """Block until this process is the leader."""

    def is_held(self) -> bool:
        """Whether leadership is still held (a Consul session can be lost, e.g. after a partition)."""

    async def release(self) -> None:
        """Give leadership up so another controller can take over at once."""

    def holder_pid(self) -> int | None:
        """The leader's pid when the lock records one (a lock file does; a Consul session names
        a node, not a process: None)."""

    async def close(self) -> None:
        """Free what the lock holds open (an HTTP session); after `release`."""
