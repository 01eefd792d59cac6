"""The embedded leader lock: one holder at a time, across real processes; a dead holder's lock passes on."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

from skiff_core.leader import LeaderLock
from skiff_core.leader.file import FileLeaderLock

HOLDER = """
import asyncio, sys, time
from pathlib import Path
from skiff_core.leader.file import FileLeaderLock

async def main():
    lock = FileLeaderLock(Path(sys.argv[1]), poll_s=0.05)
    await lock.acquire()
    print("held", flush=True)
    time.sleep(120)

asyncio.run(main())
"""


def _start_holder(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_file_lock_satisfies_the_leader_protocol(tmp_path: Path) -> None:
    assert isinstance(FileLeaderLock(tmp_path / "lock"), LeaderLock)


def test_second_holder_waits_and_takes_over_when_the_first_dies(tmp_path: Path) -> None:
    path = tmp_path / "state" / "controller.lock"
    first = _start_holder(path)
    try:
        lock = FileLeaderLock(path, poll_s=0.05)
        assert lock.holder_pid() == first.pid

        async def scenario() -> None:
            waiter = asyncio.create_task(lock.acquire())
            await asyncio.sleep(0.5)
            assert not waiter.done(), "acquired a lock that another live process holds"
            assert not lock.is_held()
            first.kill()  # SIGKILL: no chance to release; the kernel drops the flock
            await asyncio.wait_for(waiter, 10)
            assert lock.is_held()
            assert lock.holder_pid() is not None

        asyncio.run(scenario())
    finally:
        first.kill()
        first.wait(5)
    # While this process holds it, another process cannot get it...
    blocked = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        assert blocked.poll() is None
        assert lock.holder_pid() != blocked.pid
        # ...and after release it can.
        asyncio.run(lock.release())
        assert not lock.is_held()
        assert blocked.stdout is not None
        assert blocked.stdout.readline().strip() == "held"
    finally:
        blocked.kill()
        blocked.wait(5)


def test_release_lets_another_holder_in_at_once(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    a, b = FileLeaderLock(path), FileLeaderLock(path, poll_s=0.05)

    async def scenario() -> None:
        await a.acquire()
        waiter = asyncio.create_task(b.acquire())
        await asyncio.sleep(0.2)
        assert not waiter.done()
        await a.release()
        await asyncio.wait_for(waiter, 5)
        assert b.is_held() and not a.is_held()
        await b.release()

    asyncio.run(scenario())
