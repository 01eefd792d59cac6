"""Leader election; the protocol is in skiff_core.leader.base."""

from skiff_core.leader.base import LeaderLock

__all__ = ["LeaderLock"]
