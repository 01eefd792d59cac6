"""skiff.aio.wait_event: a wake-up and a cancel landing together must still cancel.

asyncio.wait_for on Python 3.11 loses that cancel (python/cpython#86296): the loops that wait
"for a wake-up or a tick" then outlive the shutdown that cancels them, as `skiff up` did.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

import pytest

from skiff.aio import wait_event


async def _wake_and_cancel_together(wait: str) -> str:
    async def loop(event: asyncio.Event) -> str:
        if wait == "wait_event":
            await wait_event(event, 10)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), 10)
        return "ran on"

    event = asyncio.Event()
    task = asyncio.create_task(loop(event))
    await asyncio.sleep(0)  # the loop is waiting now
    event.set()
    task.cancel()
    try:
        return await task
    except asyncio.CancelledError:
        return "cancelled"


async def test_a_cancel_racing_a_wake_up_is_not_lost() -> None:
    assert await _wake_and_cancel_together("wait_event") == "cancelled"


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12 rebuilt wait_for on asyncio.timeout")
async def test_the_race_is_real_with_wait_for_on_311() -> None:
    # Why skiff.aio exists (and ruff bans asyncio.wait_for in Skiff): on 3.11 the cancel is lost.
    assert await _wake_and_cancel_together("wait_for") == "ran on"


async def test_wait_event_reports_set_or_timeout() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.05) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_event(event, 5) is True


async def test_a_cancel_swallowed_below_is_raised_at_the_next_wait() -> None:
    turns = 0

    async def swallowing_call() -> None:
        with contextlib.suppress(asyncio.CancelledError):  # what a careless library does
            await asyncio.sleep(10)

    async def loop() -> None:
        nonlocal turns
        while True:
            turns += 1
            await swallowing_call()
            await wait_event(asyncio.Event(), 0.01)

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.05)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert done == {task} and task.cancelled(), "the loop ran on after its cancel was swallowed"
    assert turns == 1
