"""The controller's leader lock in the embedded mode: an exclusive `flock` on a file in the state dir.

Same interface as `skiff_core.leader.consul.ConsulLeaderLock`. The kernel releases a `flock` when the
holding process dies, however it dies (kill -9 included), so a waiting controller takes over
within one poll interval. The lock is tied to the open file description, which is why the file
stays open for as long as leadership is held. `flock(2)` is advisory and local to one machine,
which is all the embedded mode needs (the state dir must not be on NFS).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from pathlib import Path
from typing import IO


class FileLeaderLock:
    def __init__(self, path: Path, *, poll_s: float = 0.2) -> None:
        self.path = path
        self._poll_s = poll_s
        self._file: IO[str] | None = None

    def _try(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        except BaseException:
            handle.close()
            raise
        # Who holds it, for `skiff status` and for people looking at the state dir.
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        return True

    async def acquire(self) -> None:
        # Non-blocking attempts in a loop rather than a blocking flock in a thread: a thread
        # stuck in flock cannot be cancelled when the process shuts down.
        while not self._try():
            await asyncio.sleep(self._poll_s)

    def is_held(self) -> bool:
        return self._file is not None

    def holder_pid(self) -> int | None:
        """The pid written by the current holder (None when unknown)."""
        with contextlib.suppress(OSError, ValueError):
            return int(self.path.read_text().strip() or "x")
        return None

    async def release(self) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()

    async def close(self) -> None:
        """Nothing beyond `release`: the lock is one open file."""
